/**
 * The PyTorch peer: runs bench/torch_peer.py (python3, or PLW_PYTHON) on the same cases and
 * reads back its one JSON line. Skipped, with one message, where `import torch` fails.
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import type { Device } from '../ts/native'
import type { BenchCase, TimingOptions } from './harness'

export interface PeerResult {
  ms: number
  mean_ms: number
  min_ms: number
  n: number
  what: string
  /** adamw: optimizer.step() alone, without the gradient norm. */
  step_ms?: number
  /** adamw on cpu: clip + step with AdamW(fused=True). */
  fused_ms?: number
  fused_error?: string
}

export interface PeerRun {
  torch: string
  device: string | null
  results: Record<string, PeerResult>
  errors: Record<string, string>
}

const python = process.env.PLW_PYTHON ?? 'python3'
let probed: { ok: boolean; version: string; why: string } | null = null

/** Whether `import torch` works (asked once per run). */
export function torchAvailable(): { ok: boolean; version: string; why: string } {
  if (probed) return probed
  const r = spawnSync(python, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 })
  probed = r.status === 0
    ? { ok: true, version: r.stdout.trim(), why: '' }
    : { ok: false, version: '', why: r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`) }
  return probed
}

/** torch_peer.py beside this file (bench/) or, from dist/bench/, two levels up. */
function scriptPath(): string {
  const candidates = [path.join(__dirname, 'torch_peer.py'), path.join(__dirname, '..', '..', 'bench', 'torch_peer.py')]
  const found = candidates.find((p) => fs.existsSync(p))
  if (!found) throw new Error(`bench: torch_peer.py not found (looked in ${candidates.join(', ')})`)
  return found
}

/** Runs the peer over the cases of one device; null with a reason when it cannot. */
export function runPeer(device: Device, cases: BenchCase[], timing: (c: BenchCase) => TimingOptions,
  threads: number): { run: PeerRun | null; why: string } {
  const withPeer = cases.filter((c) => c.peer !== null)
  if (withPeer.length === 0) return { run: null, why: 'no case has a peer' }
  const spec = {
    device,
    threads,
    cases: withPeer.map((c) => {
      const t = timing(c)
      return { id: c.id, ...c.peer, time_ms: t.timeMs, min_iters: t.minIterations, warmup: t.warmupIterations }
    }),
  }
  process.stdout.write(`  running the PyTorch peer (${withPeer.length} cases on ${device}) ...\n`)
  const r = spawnSync(python, [scriptPath()], {
    input: JSON.stringify(spec),
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'inherit'], // the peer's progress goes to our stderr
    maxBuffer: 64 * 1024 * 1024,
    timeout: 30 * 60_000,
  })
  if (r.error) return { run: null, why: `torch_peer.py did not run: ${r.error.message}` }
  if (r.status !== 0) return { run: null, why: `torch_peer.py exited with ${r.status}` }
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'))
  if (!line) return { run: null, why: 'torch_peer.py printed no JSON line' }
  try {
    return { run: JSON.parse(line) as PeerRun, why: '' }
  } catch (err) {
    return { run: null, why: `torch_peer.py printed bad JSON: ${(err as Error).message}` }
  }
}
