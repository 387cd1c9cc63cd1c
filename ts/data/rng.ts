/**
 * Seeded randomness for the data layer: splits, epoch shuffles and length grouping.
 *
 * Only 32-bit integer arithmetic (Math.imul, >>>) and exact double operations, so the same
 * seed gives the same order on every platform and Node version. Streams are derived from
 * (seed, purpose, epoch) by hashing, never by drawing from a shared generator, so an epoch's
 * order is a pure function of its inputs: resuming at (epoch, step) needs no saved state.
 */

/** murmur3's 32-bit finalizer: a bijective mix of one word. */
function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** A 32-bit seed from a list of integers (each taken modulo 2^32; negative and >2^32 values fold in too). */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9
  for (const part of parts) {
    if (!Number.isInteger(part)) throw new TypeError(`hashSeed: Expected integers but received ${part}`)
    const lo = part >>> 0
    const hi = Math.floor(part / 4294967296) >>> 0
    h = fmix32(h ^ lo)
    h = fmix32((h + 0x6d2b79f5) ^ hi)
  }
  return h
}

/** Streams of the data layer, so that the split and the shuffles never share draws. */
export const STREAM = { split: 1, shuffle: 2, group: 3 } as const

/** mulberry32: a small, fast 32-bit generator; plenty for shuffling data. */
export class Rng {
  private state: number
  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** The next 32-bit unsigned integer. */
  nextU32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return (t ^ (t >>> 14)) >>> 0
  }

  /** An integer in [0, n), n ≤ 2^32. */
  below(n: number): number {
    return Math.floor((this.nextU32() / 4294967296) * n)
  }
}

/** Fisher–Yates shuffle in place. */
export function shuffleInPlace<T>(items: T[], rng: Rng): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.below(i + 1)
    const t = items[i]
    items[i] = items[j]
    items[j] = t
  }
  return items
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number): number[] {
  const idx = Array.from({ length: n }, (_, i) => i)
  return shuffleInPlace(idx, new Rng(seed))
}
