/**
 * Seeded randomness and the train/val/test split: deterministic, pinned to exact values (so a
 * change of platform or of the generator shows up here), disjoint and complete.
 */
import { DataError, Rng, hashSeed, permutation, splitDataset } from '../../ts/data'

describe('seeded randomness', () => {
  test('pinned values: the same on every platform', () => {
    expect([...Array(3)].map(((r) => () => r.nextU32())(new Rng(123)))).toEqual([3381219976, 766838775, 2127363934])
    expect(permutation(10, 42)).toEqual([0, 7, 3, 5, 2, 1, 8, 9, 4, 6])
    expect([hashSeed(42), hashSeed(0, 1), hashSeed(-1), hashSeed(2 ** 40 + 3)]).toEqual([106841593, 4031592070, 3977123946, 2136493193])
  })

  test('hashSeed separates its inputs and refuses non-integers', () => {
    const seen = new Set<number>()
    for (let a = 0; a < 30; a++) for (let b = 0; b < 30; b++) seen.add(hashSeed(a, b))
    expect(seen.size).toBe(900)
    expect(hashSeed(1, 2)).not.toBe(hashSeed(2, 1))
    expect(() => hashSeed(0.5)).toThrow(TypeError)
  })

  test('below(n) is in range and roughly uniform', () => {
    const r = new Rng(1)
    const counts = new Array(7).fill(0)
    for (let i = 0; i < 70000; i++) counts[r.below(7)]++
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(500)
  })
})

describe('splitDataset', () => {
  const items = Array.from({ length: 20 }, (_, i) => i)

  test('pinned split; each part in the original order', () => {
    expect(splitDataset(items, { val: 0.1, test: 0.15, seed: 7 })).toEqual({
      test: [9, 13, 17], val: [14, 19], train: [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 15, 16, 18],
    })
  })

  test('deterministic, disjoint and complete; the seed matters', () => {
    const a = splitDataset(items, { val: 0.2, test: 0.1, seed: 3 })
    expect(splitDataset(items, { val: 0.2, test: 0.1, seed: 3 })).toEqual(a)
    expect([a.train.length, a.val.length, a.test.length]).toEqual([14, 4, 2])
    expect([...a.train, ...a.val, ...a.test].sort((x, y) => x - y)).toEqual(items)
    expect(splitDataset(items, { val: 0.2, test: 0.1, seed: 4 })).not.toEqual(a)
  })

  test('no split by default; a positive ratio gets at least one record', () => {
    expect(splitDataset(items)).toEqual({ train: items, val: [], test: [] })
    const s = splitDataset(items, { val: 0.001 })
    expect(s.val).toHaveLength(1)
    expect(s.train).toHaveLength(19)
  })

  test('bad ratios and an empty train split are errors', () => {
    expect(() => splitDataset(items, { val: 1 })).toThrow('splitDataset: Expected a number in [0, 1) for val but received 1')
    expect(() => splitDataset(items, { test: -0.1 })).toThrow(RangeError)
    expect(() => splitDataset([1, 2], { val: 0.5, test: 0.5 - 1e-9 })).toThrow(DataError)
    expect(() => splitDataset(items, { seed: 1.5 })).toThrow(TypeError)
  })
})
