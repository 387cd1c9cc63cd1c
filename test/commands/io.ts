/** Running a subcommand in-process with its output captured. */
import { Writable } from 'node:stream'

export interface Captured {
  code: number
  out: string
  err: string
}

export async function capture(command: (argv: string[], io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream }) => Promise<number>,
  argv: string[]): Promise<Captured> {
  let out = ''
  let err = ''
  const sink = (append: (s: string) => void) => new Writable({ write(chunk, _enc, cb) { append(String(chunk)); cb() } })
  const code = await command(argv, { out: sink((s) => { out += s }), err: sink((s) => { err += s }) })
  return { code, out, err }
}
