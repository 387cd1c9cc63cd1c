/**
 * Optimizer steps over epochs: which examples go in each step and micro-batch, collated, with
 * the step's loss normalizer Σw computed over all its micro-batches before the step runs.
 *
 * Order, per epoch (a pure function of seed and epoch, so resuming at (epoch, step) replays
 * exactly what an uninterrupted run would have seen, with no saved RNG state):
 * 1. a seeded permutation of the examples (file order when `shuffle: false`);
 * 2. with `groupByLength`, windows of `groupSize` steps are sorted by length (longest first)
 *    and the steps inside each window are shuffled, so micro-batches hold examples of similar
 *    length (less padding) while the sequence of step lengths stays random;
 * 3. consecutive runs of `batchSize` examples form a step, cut into micro-batches of
 *    `microBatchSize`; the last step of an epoch may be smaller unless `dropLast`.
 * With `packing`, each micro-batch's examples are packed into as few rows as fit maxLength,
 * so batchSize keeps meaning examples per step and the normalizer is the same packed or not.
 */
import { Batch, CollateOptions, checkPromptLossWeight, collate } from './batch'
import { EncodedExample } from './example'
import { Rng, STREAM, hashSeed, permutation, shuffleInPlace } from './rng'

export interface LoaderOptions {
  /** Examples per optimizer step. */
  batchSize: number
  /** Examples per micro-batch (gradient accumulation = batchSize / microBatchSize). Default batchSize. */
  microBatchSize?: number
  /** λ: the loss weight of prompt tokens, in [0, 1]. */
  promptLossWeight: number
  /** Default 0. */
  seed?: number
  /** Shuffle each epoch. Default true; false batches in the examples' order (length grouping off). */
  shuffle?: boolean
  /** Group examples of similar length into micro-batches. Default false. */
  groupByLength?: boolean
  /** Steps per length-grouping window. Default 16. */
  groupSize?: number
  /** Pack each micro-batch's examples into rows of at most maxLength ids. Default false. */
  packing?: boolean
  /** Row capacity when packing. Default: the longest example. */
  maxLength?: number
  /** The id at padding inputs. Default 0 (the trainer passes the tokenizer's eos). */
  padId?: number
  /** Round T up to a multiple of this. Default 1. */
  padToMultipleOf?: number
  /** Drop an epoch's last, smaller step. Default false. */
  dropLast?: boolean
}

export interface StepPosition {
  /** 0-based epoch. */
  epoch: number
  /** 0-based step within the epoch. */
  step: number
}

export interface Step extends StepPosition {
  microBatches: Batch[]
  /** Σ weights over every micro-batch of the step: the denominator of the step's loss. */
  normalizer: number
  examples: number
  /** Non-padding tokens (inputs) in the step. */
  tokens: number
}

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) {
    throw new RangeError(`BatchLoader: Expected a positive integer for ${name} but received ${String(v)}`)
  }
  return v
}

export class BatchLoader {
  readonly batchSize: number
  readonly microBatchSize: number
  readonly stepsPerEpoch: number
  private readonly collateOptions: CollateOptions
  private readonly seed: number
  private cached: { epoch: number; steps: number[][] } | null = null

  constructor(readonly examples: readonly EncodedExample[], readonly options: LoaderOptions) {
    this.batchSize = positiveInt(options.batchSize, 'batchSize')
    this.microBatchSize = positiveInt(options.microBatchSize ?? options.batchSize, 'microBatchSize')
    if (this.batchSize % this.microBatchSize !== 0) {
      throw new RangeError(`BatchLoader: Expected batchSize (${this.batchSize}) to be a multiple of microBatchSize ` +
        `(${this.microBatchSize})`)
    }
    checkPromptLossWeight(options.promptLossWeight, 'BatchLoader')
    positiveInt(options.groupSize ?? 16, 'groupSize')
    this.seed = options.seed ?? 0
    if (!Number.isInteger(this.seed)) throw new TypeError(`BatchLoader: Expected an integer for seed but received ${this.seed}`)
    if (examples.length === 0) throw new RangeError('BatchLoader: Expected at least one example but received none')
    const maxLen = examples.reduce((m, e) => Math.max(m, e.ids.length), 0)
    if (options.packing && options.maxLength !== undefined && options.maxLength < maxLen) {
      throw new RangeError(`BatchLoader: an example has ${maxLen} ids, more than maxLength ${options.maxLength}; ` +
        'encode with the same maxLength')
    }
    this.collateOptions = {
      promptLossWeight: options.promptLossWeight, padId: options.padId, packing: options.packing,
      maxLength: options.maxLength ?? maxLen, padToMultipleOf: options.padToMultipleOf,
    }
    const n = examples.length
    this.stepsPerEpoch = options.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize)
    if (this.stepsPerEpoch === 0) {
      throw new RangeError(`BatchLoader: ${n} examples make no full step of batchSize ${this.batchSize} with dropLast`)
    }
  }

  /** The example indices of every step of an epoch, in order. */
  epochPlan(epoch: number): number[][] {
    if (!Number.isInteger(epoch) || epoch < 0) throw new RangeError(`BatchLoader: Expected an epoch ≥ 0 but received ${epoch}`)
    if (this.cached !== null && this.cached.epoch === epoch) return this.cached.steps
    const n = this.examples.length
    const shuffle = this.options.shuffle ?? true
    const order = shuffle ? permutation(n, hashSeed(this.seed, STREAM.shuffle, epoch)) : Array.from({ length: n }, (_, i) => i)
    let steps: number[][] = []
    for (let s = 0; s < this.stepsPerEpoch; s++) steps.push(order.slice(s * this.batchSize, (s + 1) * this.batchSize))
    if (shuffle && this.options.groupByLength) steps = this.groupByLength(order, epoch)
    this.cached = { epoch, steps }
    return steps
  }

  private groupByLength(order: number[], epoch: number): number[][] {
    const window = this.batchSize * (this.options.groupSize ?? 16)
    const len = (i: number): number => this.examples[i].ids.length
    const rng = new Rng(hashSeed(this.seed, STREAM.group, epoch))
    const steps: number[][] = []
    const usable = this.stepsPerEpoch * this.batchSize
    for (let w = 0; w < usable; w += window) {
      const chunk = order.slice(w, Math.min(w + window, usable)).sort((a, b) => len(b) - len(a) || a - b)
      const inWindow: number[][] = []
      for (let s = 0; s < chunk.length; s += this.batchSize) inWindow.push(chunk.slice(s, s + this.batchSize))
      // A smaller last step stays last, so that every other step of the epoch is full.
      const partial = inWindow.length > 0 && inWindow[inWindow.length - 1].length < this.batchSize ? inWindow.pop() : undefined
      shuffleInPlace(inWindow, rng)
      if (partial !== undefined) inWindow.push(partial)
      steps.push(...inWindow)
    }
    return steps
  }

  /** The step at (epoch, step), collated. */
  step(epoch: number, step: number): Step {
    if (!Number.isInteger(step) || step < 0 || step >= this.stepsPerEpoch) {
      throw new RangeError(`BatchLoader: Expected a step in [0, ${this.stepsPerEpoch}) but received ${step}`)
    }
    const indices = this.epochPlan(epoch)[step]
    const microBatches: Batch[] = []
    for (let m = 0; m < indices.length; m += this.microBatchSize) {
      microBatches.push(collate(indices.slice(m, m + this.microBatchSize).map((i) => this.examples[i]), this.collateOptions))
    }
    let normalizer = 0
    let tokens = 0
    for (const b of microBatches) { normalizer += b.weightSum; tokens += b.realTokens }
    return { epoch, step, microBatches, normalizer, examples: indices.length, tokens }
  }

  /**
   * Steps from `from` (default the start) to the end of epoch `epochs − 1` (default: forever).
   * Resuming a run at (epoch, step) yields exactly the steps the uninterrupted run would have.
   */
  *steps(from: StepPosition = { epoch: 0, step: 0 }, epochs = Infinity): Generator<Step> {
    for (let epoch = from.epoch; epoch < epochs; epoch++) {
      for (let step = epoch === from.epoch ? from.step : 0; step < this.stepsPerEpoch; step++) yield this.step(epoch, step)
    }
  }

  /** The position after `p`: the next step, or the first of the next epoch. */
  next(p: StepPosition): StepPosition {
    return p.step + 1 < this.stepsPerEpoch ? { epoch: p.epoch, step: p.step + 1 } : { epoch: p.epoch + 1, step: 0 }
  }
}
