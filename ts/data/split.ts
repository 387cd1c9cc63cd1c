/**
 * Deterministic train/val/test split by ratios and a seed.
 *
 * A seeded permutation of the indices (rng.ts: the same on every platform) assigns the first
 * round(n·test) to test, the next round(n·val) to val and the rest to train; inside each
 * split the records keep their file order, so `shuffle: false` later batches in file order.
 * A ratio > 0 always gets at least one record; the train split must keep at least one.
 */
import { DataError } from './errors'
import { STREAM, hashSeed, permutation } from './rng'

export interface SplitOptions {
  /** Fraction of the records for validation, in [0, 1). Default 0. */
  val?: number
  /** Fraction for the test split, in [0, 1). Default 0. */
  test?: number
  /** Default 0. */
  seed?: number
}

export interface Splits<T> {
  train: T[]
  val: T[]
  test: T[]
}

export function splitDataset<T>(items: readonly T[], options: SplitOptions = {}): Splits<T> {
  const val = options.val ?? 0
  const test = options.test ?? 0
  const seed = options.seed ?? 0
  for (const [name, r] of [['val', val], ['test', test]] as const) {
    if (typeof r !== 'number' || !(r >= 0 && r < 1)) {
      throw new RangeError(`splitDataset: Expected a number in [0, 1) for ${name} but received ${r}`)
    }
  }
  if (!Number.isInteger(seed)) throw new TypeError(`splitDataset: Expected an integer for seed but received ${seed}`)
  const n = items.length
  const count = (r: number): number => (r > 0 ? Math.max(1, Math.round(n * r)) : 0)
  const nTest = count(test)
  const nVal = count(val)
  if (nTest + nVal >= n && nTest + nVal > 0) {
    throw new DataError(`cannot split ${n} records into val ${val} and test ${test}: the train split would be empty`, [])
  }
  if (nTest + nVal === 0) return { train: items.slice(), val: [], test: [] }
  const perm = permutation(n, hashSeed(seed, STREAM.split))
  const pick = (from: number, to: number): T[] => perm.slice(from, to).sort((a, b) => a - b).map((i) => items[i])
  return { test: pick(0, nTest), val: pick(nTest, nTest + nVal), train: pick(nTest + nVal, n) }
}
