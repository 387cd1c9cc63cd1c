/**
 * What every benchmark family shares: the case description, the tinybench measurement of one
 * async op, and seeded random inputs.
 *
 * Each native op runs on a worker thread and resolves a Promise when the work is done (on
 * CUDA after a synchronize), so a sample is the wall time of `await op()`: launch + kernel +
 * the hop back to the event loop. That hop is ~10-50 us, negligible at the sizes measured.
 */
import { Bench } from 'tinybench'
import type { Device } from '../ts/native'
import { Rng } from '../ts/data/rng'

/** What torch_peer.py runs for a case: the same op at the same sizes (see torch_peer.py). */
export type PeerSpec =
  | { kind: 'ce'; N: number; V: number; dtype: 'float32' | 'bfloat16' }
  | { kind: 'head'; N: number; C: number; V: number; dtype: 'float32' | 'bfloat16' }
  | { kind: 'adamw'; shapes: number[][]; decay: boolean[]; lr: number; beta1: number; beta2: number; eps: number;
      weightDecay: number; maxGradNorm: number }
  | { kind: 'sgemm'; M: number; N: number; K: number; transB: boolean }
  | { kind: 'attn'; B: number; T: number; NH: number; NKV: number; hs: number; dtype: 'float32' | 'bfloat16' }

/** What the floor of a case is: moving `bytes` at the memory bandwidth, or `flops` at the peak. */
export type Floor =
  | { kind: 'bandwidth'; bytes: number }
  | { kind: 'flops'; flops: number; precision: 'fp32' | 'tf32' | 'bf16' }

export interface Prepared {
  run: () => Promise<unknown>
  dispose: () => void
}

export interface BenchCase {
  /** Short family key, as --only takes it: ce, head, adamw, sgemm, attn, train. */
  family: string
  /** Unique within a run: family/device/shape/dtype. */
  id: string
  name: string
  shape: string
  dtype: string
  device: Device
  floor: Floor
  /** Minimum number of timed iterations (tinybench runs until both time and iterations are reached). */
  minIterations: number
  peer: PeerSpec | null
  /** Allocates and fills the inputs (untimed); returns the timed op and the cleanup. */
  prepare: () => Promise<Prepared>
}

export interface Timing {
  medianMs: number
  meanMs: number
  /** Relative margin of error of the mean, %. */
  rme: number
  minMs: number
  maxMs: number
  samples: number
}

export interface TimingOptions {
  /** Time box of the timed phase, ms (tinybench `time`). */
  timeMs: number
  minIterations: number
  warmupIterations: number
}

/** Times `await fn()` with tinybench: warm-up iterations first, then a time-boxed run. */
export async function measure(name: string, fn: () => Promise<unknown>, o: TimingOptions): Promise<Timing> {
  const bench = new Bench({
    time: o.timeMs,
    iterations: o.minIterations,
    warmupTime: 0,
    warmupIterations: o.warmupIterations,
    throws: true,
  })
  // A native async function: tinybench awaits it (and does not probe it with an extra call).
  bench.add(name, async () => {
    await fn()
  })
  await bench.warmup()
  await bench.run()
  const r = bench.tasks[0]?.result
  if (!r || r.error !== undefined || r.samples.length === 0) {
    throw new Error(`bench: ${name} produced no samples${r?.error !== undefined ? `: ${String(r.error)}` : ''}`)
  }
  const s = [...r.samples].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { medianMs: median, meanMs: r.mean, rme: r.rme, minMs: r.min, maxMs: r.max, samples: s.length }
}

/** A seeded generator, uniform in [0, 1): the data layer's mulberry32. */
export function rng(seed: number): () => number {
  const r = new Rng(seed)
  return () => r.nextU32() / 4294967296
}

/**
 * n values uniform in [-scale, scale]. A pool of 2^20 random values is tiled over the array
 * (rows of the benchmark shapes do not line up with it), which keeps the fill of the 400M-element
 * inputs of the GPU sizes at memcpy speed; the values only have to be realistic, not independent.
 */
export function randomUniform(n: number, scale: number, seed: number): Float32Array {
  const out = new Float32Array(n)
  const poolSize = Math.min(n, 1 << 20)
  const r = rng(seed)
  for (let i = 0; i < poolSize; i++) out[i] = (2 * r() - 1) * scale
  for (let filled = poolSize; filled < n; filled += poolSize) {
    out.copyWithin(filled, 0, Math.min(poolSize, n - filled))
  }
  return out
}

/** Targets uniform in [0, V) and loss weights as PLW batches carry them: 1 / lambda / 0. */
export function targetsAndWeights(N: number, V: number, seed: number): { targets: Int32Array; weights: Float32Array; norm: number } {
  const r = rng(seed)
  const targets = new Int32Array(N)
  const weights = new Float32Array(N)
  let norm = 0
  for (let i = 0; i < N; i++) {
    targets[i] = Math.floor(r() * V)
    const u = r()
    weights[i] = u < 0.3 ? 0.1 : u < 0.9 ? 1 : 0 // 30 % prompt (lambda = 0.1), 60 % completion, 10 % padding
    norm += weights[i]
  }
  return { targets, weights, norm: norm > 0 ? norm : 1 }
}

export const elemSize = (dtype: string): number => (dtype === 'bfloat16' ? 2 : 4)

/** The timing budget of one case. */
export function timingFor(c: BenchCase, quick: boolean): TimingOptions {
  return quick
    ? { timeMs: 300, minIterations: Math.min(c.minIterations, 3), warmupIterations: 1 }
    : { timeMs: 2000, minIterations: c.minIterations, warmupIterations: 2 }
}
