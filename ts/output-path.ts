/**
 * Output paths, checked before any work: every command that writes (train --out, sweep --out,
 * generate --out, data swap --out, merge --out) makes its directory here, one component at a
 * time, and proves it writable with a probe file, so a bad path fails at once with a message
 * naming the flag and the path — not after an hour of training, and never in a loop (Node's
 * recursive mkdir spins forever on a path under /proc, whose mkdir answers ENOENT).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

export class OutputPathError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'OutputPathError'
  }
}

function explain(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  const why: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'not permitted', EROFS: 'read-only file system', ENOSPC: 'no space left on the device',
    ENOTDIR: 'a part of the path is a file, not a directory', ENOENT: 'the file system does not allow creating it here',
    EEXIST: 'a file of that name exists',
  }
  return why[e.code ?? ''] ?? (e.message || String(err))
}

/** Makes `dir` (and missing parents) and checks a file can be written in it. `flag` names the option ("--out"). */
export function prepareOutputDir(dir: string, flag: string, shown: string = dir): string {
  const abs = path.resolve(dir)
  const missing: string[] = []
  let at = abs
  while (!fs.existsSync(at)) {
    missing.unshift(at)
    const parent = path.dirname(at)
    if (parent === at) break
    at = parent
  }
  if (fs.existsSync(at) && !fs.statSync(at).isDirectory()) {
    throw new OutputPathError(`${flag} ${shown}: ${at} is a file, not a directory`)
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d)
    } catch (err) {
      throw new OutputPathError(`${flag} ${shown}: cannot create ${d} (${explain(err)})`)
    }
  }
  const probe = path.join(abs, `.plwtune-write-test-${process.pid}`)
  try {
    fs.writeFileSync(probe, '')
    fs.rmSync(probe, { force: true })
  } catch (err) {
    throw new OutputPathError(`${flag} ${shown}: cannot write there (${explain(err)})`)
  }
  return abs
}

/** Checks `file` can be written (its directory is made and probed; an existing directory of that name is refused). */
export function prepareOutputFile(file: string, flag: string): string {
  const abs = path.resolve(file)
  if (fs.existsSync(abs) && fs.statSync(abs).isDirectory()) throw new OutputPathError(`${flag} ${file}: is a directory, expected a file`)
  prepareOutputDir(path.dirname(abs), flag, file)
  return abs
}
