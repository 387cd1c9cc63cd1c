/**
 * Collating examples into one micro-batch: (B, T) arrays of inputs, targets and per-target
 * loss weights, padded to the longest row, optionally packing several examples per row.
 *
 * Shape legend: B = rows, T = positions per row. A row of one example with ids of length L
 * holds L − 1 positions: tokens = ids[0..L−2], targets = ids[1..L−1]. The target at position
 * t is token t+1 and carries token t+1's weight (docs/loss-contract.md):
 *   prompt token → λ, completion token (with eos) → 1, a chat `weight` overrides either,
 *   padding → 0, and in a packed row the target that crosses into the next example → 0.
 *
 * Padding: tokens = padId, targets = PAD_TARGET (-100; never read: its weight is 0), kind 0,
 * position 0, segment -1. segments number the examples of a row 0, 1, 2, …; positions restart
 * at 0 for each example, so attention (masked to equal segments) and position embeddings see
 * each packed example exactly as they would see it alone.
 */
import { EncodedExample, KIND_PAD, tokenWeight } from './example'
import type { Batch as EngineBatch } from '../native'

/** The engine's micro-batch (ts/native.ts) with every optional array filled, and counts. */
export interface Batch extends EngineBatch {
  /** (B, T) KIND_PAD (0), KIND_PROMPT (1), KIND_COMPLETION (2) of each target. */
  kinds: Uint8Array
  /** (B, T) position of each input within its example. */
  positions: Int32Array
  /** (B, T) example index within the row; -1 at padding. */
  segments: Int32Array
  /** Examples in this micro-batch. */
  examples: number
  /** Σ weights of this micro-batch, in double over the f32 weights. */
  weightSum: number
  /** Non-padding positions. */
  realTokens: number
}

export const PAD_TARGET = -100

export interface CollateOptions {
  /** λ, the weight of prompt targets, in [0, 1]. */
  promptLossWeight: number
  /** The id at padding inputs (any valid id; the tokenizer's eos is customary). Default 0. */
  padId?: number
  /** Several examples per row, each row at most maxLength ids. Default false. */
  packing?: boolean
  /** Row capacity in ids when packing (rows hold maxLength − 1 positions). Default: the longest example. */
  maxLength?: number
  /** Round T up to a multiple of this (kernels like multiples of 8 or 64). Default 1. */
  padToMultipleOf?: number
}

export function checkPromptLossWeight(lambda: number, who: string): void {
  if (typeof lambda !== 'number' || !(lambda >= 0 && lambda <= 1)) {
    throw new RangeError(`${who}: Expected a number in [0, 1] for promptLossWeight but received ${lambda}`)
  }
}

/**
 * Rows of examples (indices into `examples`): one per example, or, when packing, first-fit
 * decreasing by length into rows of at most `capacity` ids (ties keep the batch's order).
 */
export function packRows(lengths: readonly number[], capacity: number): number[][] {
  const order = lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b)
  const rows: number[][] = []
  const used: number[] = []
  for (const i of order) {
    if (lengths[i] > capacity) {
      throw new RangeError(`packRows: an example of ${lengths[i]} ids exceeds the row capacity ${capacity}`)
    }
    let r = 0
    while (r < rows.length && used[r] + lengths[i] > capacity) r++
    if (r === rows.length) { rows.push([]); used.push(0) }
    rows[r].push(i)
    used[r] += lengths[i]
  }
  return rows
}

export function collate(examples: readonly EncodedExample[], options: CollateOptions): Batch {
  checkPromptLossWeight(options.promptLossWeight, 'collate')
  if (examples.length === 0) throw new RangeError('collate: Expected at least one example but received none')
  const lambda = options.promptLossWeight
  const padId = options.padId ?? 0
  const multiple = options.padToMultipleOf ?? 1
  const lengths = examples.map((e) => e.ids.length)
  for (let i = 0; i < examples.length; i++) {
    if (lengths[i] < 2) throw new RangeError(`collate: Expected examples of at least 2 ids but example ${i} has ${lengths[i]}`)
  }
  const rows = options.packing
    ? packRows(lengths, options.maxLength ?? Math.max(...lengths))
    : examples.map((_, i) => [i])
  const rowIds = rows.map((r) => r.reduce((s, i) => s + lengths[i], 0))
  const B = rows.length
  const T = Math.ceil((Math.max(...rowIds) - 1) / multiple) * multiple
  const n = B * T
  const tokens = new Int32Array(n).fill(padId)
  const targets = new Int32Array(n).fill(PAD_TARGET)
  const weights = new Float32Array(n)
  const kinds = new Uint8Array(n)
  const positions = new Int32Array(n)
  const segments = new Int32Array(n).fill(-1)
  let realTokens = 0
  for (let b = 0; b < B; b++) {
    const row = rows[b]
    const last = rowIds[b] - 1 // positions in this row: the row's final id is a target only
    let t = 0
    for (let j = 0; j < row.length; j++) {
      const ex = examples[row[j]]
      const L = ex.ids.length
      const next = j + 1 < row.length ? examples[row[j + 1]] : null
      for (let k = 0; k < L && t < last; k++, t++) {
        const o = b * T + t
        tokens[o] = ex.ids[k]
        positions[o] = k
        segments[o] = j
        if (k + 1 < L) {
          targets[o] = ex.ids[k + 1]
          weights[o] = tokenWeight(ex, k + 1, lambda)
          kinds[o] = ex.kinds[k + 1]
        } else {
          // The example's last id predicting the next example's first: not a target (weight 0).
          targets[o] = (next as EncodedExample).ids[0]
          kinds[o] = KIND_PAD
        }
      }
    }
    realTokens += last
  }
  let weightSum = 0
  for (let i = 0; i < n; i++) weightSum += weights[i]
  return { B, T, tokens, targets, weights, kinds, positions, segments, examples: examples.length, weightSum, realTokens }
}
