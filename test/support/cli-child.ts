/**
 * The plwtune command line as a child process, for the suites that signal, kill or starve it
 * (test/train/cli.test.ts, fault-kill.test.ts, write-failure.test.ts). It runs the built CLI
 * (dist/ts/cli.js: `npx tsc -p tsconfig.json` first), as a user would.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'

export const CLI = path.join(__dirname, '..', '..', 'dist', 'ts', 'cli.js')

export interface CliChild {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** The exit: a code, or the signal that ended it. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/** `plwtune ARGS` started (its own process group when `group`); stdout and stderr collected as they come. */
export function spawnCli(args: string[], o: { group?: boolean; env?: NodeJS.ProcessEnv } = {}): CliChild {
  const child = spawn(process.execPath, [CLI, ...args], { detached: o.group ?? false, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...o.env } })
  let stdout = '', stderr = ''
  child.stdout!.on('data', (d) => { stdout += String(d) })
  child.stderr!.on('data', (d) => { stderr += String(d) })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })))
  return { child, stdout: () => stdout, stderr: () => stderr, exited }
}

/** `plwtune ARGS` run to its end. */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, ...env } })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/**
 * A demo-preset training child writing into `out` (its own process group when `group`), once
 * it has logged a few steps; stderr collected as it comes.
 */
export async function trainChild(out: string, group: boolean): Promise<{ child: ChildProcess; stderr: () => string; metricsFile: string }> {
  const { child, stderr } = spawnCli(['train', '--device', 'cpu', '--demo-records', '400', '--max-steps', '400', '--batch-size', '8',
    '--init-n-layer', '1', '--init-n-embd', '16', '--init-n-head', '2', '--init-n-positions', '128', '--max-length', '128',
    '--eval-every', '0', '--generate-eval', '0', '--out', out], { group })
  const metricsFile = path.join(out, 'metrics.jsonl')
  const deadline = Date.now() + 60000
  while (!(fs.existsSync(metricsFile) && fs.readFileSync(metricsFile, 'utf8').split('\n').length > 3) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50))
  }
  return { child, stderr, metricsFile }
}
