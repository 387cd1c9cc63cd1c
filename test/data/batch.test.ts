/**
 * Batching: padding, packing (segments, positions and the weight-0 boundary target), the
 * step's normalizer over gradient accumulation, and the epoch iterator (deterministic, file
 * order without shuffling, length grouping, exact resume).
 */
import {
  Batch, BatchLoader, ByteTokenizer, EncodedExample, PAD_TARGET, Step, collate, completionTemplate, encodeRecord,
  packRows, recordsFromObjects, tokenWeight,
} from '../../ts/data'

const tok = new ByteTokenizer()
const template = completionTemplate({ separator: '>', stop: '', leadingSpace: false })

/** Examples with prompt "p…" and completion "c…" of the given lengths (ids = prompt + 1 separator + completion + eos). */
function examples(shapes: Array<[prompt: number, completion: number]>): EncodedExample[] {
  const objs = shapes.map(([p, c], i) => ({ prompt: String.fromCharCode(65 + (i % 26)).repeat(p), completion: 'c'.repeat(c) }))
  return recordsFromObjects(objs).records.map((r) => encodeRecord(r, template, tok))
}

/** Per example of a batch: its (input, position, target, weight) tuples, found by segment. */
function perExample(b: Batch): Array<Array<[number, number, number, number]>> {
  const out: Array<Array<[number, number, number, number]>> = []
  for (let r = 0; r < b.B; r++) {
    const rows = new Map<number, Array<[number, number, number, number]>>()
    for (let t = 0; t < b.T; t++) {
      const o = r * b.T + t
      if (b.segments[o] < 0) continue
      if (!rows.has(b.segments[o])) rows.set(b.segments[o], [])
      if (b.kinds[o] !== 0) (rows.get(b.segments[o]) as Array<[number, number, number, number]>).push([b.tokens[o], b.positions[o], b.targets[o], b.weights[o]])
    }
    out.push(...rows.values())
  }
  return out
}

const key = (x: unknown): string => JSON.stringify(x)

describe('collate: padding to the longest', () => {
  test('padding positions: padId, target -100, weight 0, kind 0, position 0, segment -1', () => {
    const exs = examples([[3, 2], [1, 1]]) // ids of 7 and 4
    const b = collate(exs, { promptLossWeight: 0.5, padId: 256 })
    expect([b.B, b.T, b.examples]).toEqual([2, 6, 2])
    const row1 = (a: ArrayLike<number>): number[] => Array.from(a).slice(6, 12)
    expect(row1(b.tokens)).toEqual([66, 62, 99, 256, 256, 256])
    expect(row1(b.targets)).toEqual([62, 99, 256, PAD_TARGET, PAD_TARGET, PAD_TARGET])
    expect(row1(b.weights)).toEqual([0.5, 1, 1, 0, 0, 0])
    expect(row1(b.kinds)).toEqual([1, 2, 2, 0, 0, 0])
    expect(row1(b.positions)).toEqual([0, 1, 2, 0, 0, 0])
    expect(row1(b.segments)).toEqual([0, 0, 0, -1, -1, -1])
    expect(b.realTokens).toBe(6 + 3)
    expect(b.weightSum).toBe(0.5 * 3 + 3 + 0.5 + 2)
  })

  test('padToMultipleOf rounds T up', () => {
    const b = collate(examples([[3, 2]]), { promptLossWeight: 1, padToMultipleOf: 8 })
    expect(b.T).toBe(8)
    expect(b.realTokens).toBe(6)
  })

  test('bad inputs', () => {
    expect(() => collate([], { promptLossWeight: 1 })).toThrow('collate: Expected at least one example but received none')
    const one = { ...examples([[1, 1]])[0], ids: Int32Array.of(5), kinds: Uint8Array.of(1) }
    expect(() => collate([one], { promptLossWeight: 1 })).toThrow('collate: Expected examples of at least 2 ids but example 0 has 1')
  })
})

describe('packing', () => {
  test('first-fit decreasing into rows of at most maxLength ids', () => {
    expect(packRows([5, 4, 3, 6, 2], 10)).toEqual([[3, 1], [0, 2, 4]])
    expect(packRows([5, 5, 5], 9)).toEqual([[0], [1], [2]])
    expect(() => packRows([11], 10)).toThrow(RangeError)
  })

  test('segments, positions restarting at 0, and the boundary target weighted 0', () => {
    const exs = examples([[2, 1], [1, 1], [3, 3]]) // ids of 5, 4, 8
    const b = collate(exs, { promptLossWeight: 0.1, packing: true, maxLength: 9, padId: 0 })
    // FFD: [8] alone (8 + 5 > 9), then [5, 4] = 9 ids → 8 positions; T = max(7, 8) = 8.
    expect([b.B, b.T]).toEqual([2, 8])
    const row = (a: ArrayLike<number>, r: number): number[] => Array.from(a).slice(r * 8, r * 8 + 8)
    expect(row(b.segments, 1)).toEqual([0, 0, 0, 0, 0, 1, 1, 1])
    expect(row(b.positions, 1)).toEqual([0, 1, 2, 3, 4, 0, 1, 2])
    expect(row(b.tokens, 1)).toEqual([65, 65, 62, 99, 256, 66, 62, 99])
    expect(row(b.targets, 1)).toEqual([65, 62, 99, 256, 66, 62, 99, 256])
    expect(row(b.weights, 1).map((w) => Math.round(w * 10) / 10)).toEqual([0.1, 0.1, 1, 1, 0, 0.1, 1, 1])
    expect(row(b.kinds, 1)).toEqual([1, 1, 2, 2, 0, 1, 2, 2])
    expect(row(b.segments, 0)).toEqual([0, 0, 0, 0, 0, 0, 0, -1])
    expect(b.realTokens).toBe(7 + 8)
  })

  test('each packed example sees exactly what it sees unpacked; the weight sum is the same', () => {
    const exs = examples([[5, 2], [1, 9], [3, 3], [8, 1], [2, 2], [4, 4], [1, 1]])
    for (const lambda of [0, 0.1, 1]) {
      const plain = collate(exs, { promptLossWeight: lambda })
      const packed = collate(exs, { promptLossWeight: lambda, packing: true, maxLength: 24 })
      expect(packed.B).toBeLessThan(plain.B)
      expect(perExample(packed).map(key).sort()).toEqual(perExample(plain).map(key).sort())
      expect(packed.weightSum).toBe(plain.weightSum)
    }
  })
})

describe('BatchLoader', () => {
  const data = examples(Array.from({ length: 23 }, (_, i) => [1 + ((i * 7) % 11), 1 + ((i * 5) % 6)] as [number, number]))
  const ids = (s: Step): string[] => s.microBatches.flatMap((b) => {
    const out: string[] = []
    for (let r = 0; r < b.B; r++) out.push(tok.decode(b.tokens.slice(r * b.T, r * b.T + 2)))
    return out
  })
  const lambdaWeightSum = (exs: EncodedExample[], lambda: number): number =>
    exs.reduce((s, e) => { for (let i = 1; i < e.ids.length; i++) s += Math.fround(tokenWeight(e, i, lambda)); return s }, 0)

  test('the normalizer is Σw over every micro-batch of the step, the same for any accumulation', () => {
    const whole = new BatchLoader(data, { batchSize: 8, promptLossWeight: 0.1, seed: 5 })
    const halves = new BatchLoader(data, { batchSize: 8, microBatchSize: 4, promptLossWeight: 0.1, seed: 5 })
    const quarters = new BatchLoader(data, { batchSize: 8, microBatchSize: 2, promptLossWeight: 0.1, seed: 5 })
    expect(whole.stepsPerEpoch).toBe(3)
    for (let s = 0; s < 3; s++) {
      const [a, b, c] = [whole.step(0, s), halves.step(0, s), quarters.step(0, s)]
      expect([a.microBatches.length, b.microBatches.length, c.microBatches.length]).toEqual(s < 2 ? [1, 2, 4] : [1, 2, 4])
      expect(b.normalizer).toBeCloseTo(a.normalizer, 9)
      expect(c.normalizer).toBeCloseTo(a.normalizer, 9)
      expect(b.normalizer).toBe(b.microBatches.reduce((x, m) => x + m.weightSum, 0))
      const plan = whole.epochPlan(0)[s]
      expect(a.normalizer).toBeCloseTo(lambdaWeightSum(plan.map((i) => data[i]), 0.1), 9)
      expect([a.examples, b.examples]).toEqual([plan.length, plan.length])
      expect(a.tokens).toBe(plan.reduce((x, i) => x + data[i].ids.length - 1, 0))
    }
    expect(whole.step(0, 2).examples).toBe(7) // 23 = 8 + 8 + 7
  })

  test('packing keeps batchSize in examples and the normalizer', () => {
    const plain = new BatchLoader(data, { batchSize: 8, microBatchSize: 4, promptLossWeight: 0.1, seed: 1 })
    const packed = new BatchLoader(data, { batchSize: 8, microBatchSize: 4, promptLossWeight: 0.1, seed: 1, packing: true, maxLength: 40 })
    for (let s = 0; s < plain.stepsPerEpoch; s++) {
      expect(packed.step(0, s).normalizer).toBe(plain.step(0, s).normalizer)
      expect(packed.step(0, s).examples).toBe(plain.step(0, s).examples)
    }
  })

  test('every example once per epoch; epochs differ; the same seed gives the same steps', () => {
    const a = new BatchLoader(data, { batchSize: 4, promptLossWeight: 0, seed: 9 })
    const b = new BatchLoader(data, { batchSize: 4, promptLossWeight: 0, seed: 9 })
    for (const epoch of [0, 1, 2]) {
      expect(a.epochPlan(epoch).flat().sort((x, y) => x - y)).toEqual(data.map((_, i) => i))
      expect(key(a.epochPlan(epoch))).toBe(key(b.epochPlan(epoch)))
    }
    expect(key(a.epochPlan(0))).not.toBe(key(a.epochPlan(1)))
    expect(key(new BatchLoader(data, { batchSize: 4, promptLossWeight: 0, seed: 10 }).epochPlan(0))).not.toBe(key(a.epochPlan(0)))
    expect(ids(a.step(1, 3))).toEqual(ids(b.step(1, 3)))
  })

  test('shuffle: false batches in file order, every epoch', () => {
    const l = new BatchLoader(data, { batchSize: 5, microBatchSize: 5, promptLossWeight: 1, shuffle: false, groupByLength: true })
    expect(l.epochPlan(0).flat()).toEqual(data.map((_, i) => i))
    expect(l.epochPlan(3)).toEqual(l.epochPlan(0))
  })

  test('resuming at (epoch, step) replays exactly the rest of the run', () => {
    const opts = { batchSize: 4, microBatchSize: 2, promptLossWeight: 0.1, seed: 3, groupByLength: true, groupSize: 2 }
    const run = [...new BatchLoader(data, opts).steps({ epoch: 0, step: 0 }, 3)]
    expect(run).toHaveLength(3 * 6)
    const resumed = [...new BatchLoader(data, opts).steps({ epoch: 1, step: 4 }, 3)]
    expect(resumed.map((s) => [s.epoch, s.step])).toEqual(run.slice(6 + 4).map((s) => [s.epoch, s.step]))
    expect(resumed.map(key)).toEqual(run.slice(6 + 4).map(key))
    const l = new BatchLoader(data, opts)
    expect(l.next({ epoch: 1, step: 4 })).toEqual({ epoch: 1, step: 5 })
    expect(l.next({ epoch: 1, step: 5 })).toEqual({ epoch: 2, step: 0 })
  })

  test('length grouping: less padding, still a permutation, the smaller step last', () => {
    const many = examples(Array.from({ length: 203 }, (_, i) => [1 + ((i * 37) % 97), 1 + ((i * 11) % 13)] as [number, number]))
    const padding = (l: BatchLoader): number => {
      let pad = 0
      for (const s of l.steps({ epoch: 0, step: 0 }, 1)) for (const b of s.microBatches) pad += b.B * b.T - b.realTokens
      return pad
    }
    const opts = { batchSize: 8, microBatchSize: 4, promptLossWeight: 0.1, seed: 2 }
    const grouped = new BatchLoader(many, { ...opts, groupByLength: true })
    expect(padding(grouped)).toBeLessThan(padding(new BatchLoader(many, opts)) / 3)
    const plan = grouped.epochPlan(0)
    expect(plan.flat().sort((x, y) => x - y)).toEqual(many.map((_, i) => i))
    expect(plan.map((s) => s.length)).toEqual([...Array(25).fill(8), 3])
  })

  test('dropLast drops the smaller last step', () => {
    const l = new BatchLoader(data, { batchSize: 5, promptLossWeight: 0, dropLast: true })
    expect(l.stepsPerEpoch).toBe(4)
    expect(l.epochPlan(0).every((s) => s.length === 5)).toBe(true)
  })

  test('bad options are errors that name the option', () => {
    expect(() => new BatchLoader(data, { batchSize: 6, microBatchSize: 4, promptLossWeight: 0 }))
      .toThrow('BatchLoader: Expected batchSize (6) to be a multiple of microBatchSize (4)')
    expect(() => new BatchLoader(data, { batchSize: 0, promptLossWeight: 0 })).toThrow('Expected a positive integer for batchSize but received 0')
    expect(() => new BatchLoader(data, { batchSize: 4, promptLossWeight: -1 })).toThrow('promptLossWeight')
    expect(() => new BatchLoader([], { batchSize: 4, promptLossWeight: 0 })).toThrow('Expected at least one example')
    expect(() => new BatchLoader(data, { batchSize: 4, promptLossWeight: 0, packing: true, maxLength: 4 })).toThrow('more than maxLength 4')
    expect(() => new BatchLoader(data, { batchSize: 4, promptLossWeight: 0 }).step(0, 99)).toThrow('Expected a step in [0, 6) but received 99')
  })
})
