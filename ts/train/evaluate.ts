/**
 * The loss on a split, during training (validation and test) and for `plwtune eval`: weighted
 * with λ, completion-only and prompt-only, whatever λ is. Generation and its scores are in
 * ts/eval/generation.ts and ts/eval/match.ts, multiple choice in ts/eval/choices.ts.
 */
import { BatchLoader } from '../data/loader'
import { EncodedExample } from '../data/example'
import { Model } from '../model'

export interface SplitLoss {
  /** Σ w·CE / Σ w with the run's λ. */
  loss: number | null
  /** Mean CE over completion targets (eos included): what runs with different λ are compared on. */
  completionLoss: number | null
  /** Mean CE over prompt targets, measured even when λ = 0. */
  promptLoss: number | null
  /** Input tokens of the batches (packed rows count an example's first token too). */
  tokens: number
  /** Targets scored: completion (eos included) and prompt tokens, whatever λ is. */
  completionTargets: number
  promptTargets: number
}

export interface LossOptions {
  promptLossWeight: number
  microBatchSize: number
  padId: number
  packing: boolean
  maxLength: number
  /** Called after each batch with the examples done so far. */
  onProgress?: (examples: number) => void
}

export async function evaluateLoss(model: Model, examples: readonly EncodedExample[], o: LossOptions): Promise<SplitLoss> {
  if (examples.length === 0) return { loss: null, completionLoss: null, promptLoss: null, tokens: 0, completionTargets: 0, promptTargets: 0 }
  const loader = new BatchLoader(examples, {
    batchSize: o.microBatchSize, microBatchSize: o.microBatchSize, promptLossWeight: o.promptLossWeight,
    shuffle: false, padId: o.padId, packing: o.packing, maxLength: o.maxLength,
  })
  let lossSum = 0, weightSum = 0, cSum = 0, cCount = 0, pSum = 0, pCount = 0, tokens = 0, done = 0
  for (const step of loader.steps({ epoch: 0, step: 0 }, 1)) {
    for (const b of step.microBatches) {
      const r = await model.evaluate(b)
      lossSum += r.lossSum
      weightSum += r.weightSum
      cSum += r.completionLossSum
      cCount += r.completionCount
      pSum += r.promptLossSum
      pCount += r.promptCount
    }
    tokens += step.tokens
    done += step.examples
    o.onProgress?.(done)
  }
  return {
    loss: weightSum > 0 ? lossSum / weightSum : null,
    completionLoss: cCount > 0 ? cSum / cCount : null,
    promptLoss: pCount > 0 ? pSum / pCount : null,
    tokens,
    completionTargets: cCount,
    promptTargets: pCount,
  }
}
