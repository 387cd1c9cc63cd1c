/**
 * A tokenized example: the ids of `prompt ++ completion ++ [eos]` with, per token, its kind
 * and (optionally) its own loss weight. The prompt loss weight λ is applied later, by the
 * batcher, so one encoding serves every λ of a sweep.
 */
import { Source } from './errors'

export const KIND_PAD = 0
export const KIND_PROMPT = 1
export const KIND_COMPLETION = 2

export interface EncodedExample {
  /** prompt ids ++ completion ids ++ [eos] (or as the template lays out the segments). */
  ids: Int32Array
  /** Per token: KIND_PROMPT or KIND_COMPLETION. */
  kinds: Uint8Array
  /** Per token: a weight overriding the kind's (chat `weight`), NaN for none; null when no token has one. */
  weights: Float32Array | null
  /** Tokens of kind prompt / completion (the eos counts as completion). */
  promptTokens: number
  completionTokens: number
  /** Prompt tokens dropped from the start to fit maxLength (0 when none). */
  truncated: number
  source: Source
  /** Leading ids truncation keeps, dropping the prompt tokens after them: the tokenizer's BOS. 0 or absent: none. */
  keep?: number
}

/** The loss weight of token i of an example under prompt loss weight λ. */
export function tokenWeight(ex: EncodedExample, i: number, lambda: number): number {
  const w = ex.weights !== null ? ex.weights[i] : NaN
  if (w === w) return w // not NaN
  return ex.kinds[i] === KIND_PROMPT ? lambda : 1
}
