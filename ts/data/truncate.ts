/**
 * Truncation to maxLength that keeps the completion: tokens are dropped from the start of the
 * prompt, after the example's `keep` leading ids (its BOS, which stays first). An example is cut
 * only when every dropped token, and the token that becomes the first (it is never a target:
 * nothing precedes it), is a prompt token; otherwise its completion does not fit, and the caller
 * reports it — never silently cut.
 *
 * For multi-turn chats every assistant turn is completion, so a conversation whose earlier
 * assistant turns would have to go is reported too.
 */
import { EncodedExample, KIND_PROMPT } from './example'

export type TruncateResult =
  | { example: EncodedExample; dropped: number }
  | { example: null; needed: number }

/**
 * `maxLength` bounds the ids of an example (the `n_positions` of the model, as Hugging Face's
 * `model_max_length`): a row then holds maxLength − 1 (input, target) pairs.
 */
export function truncateExample(ex: EncodedExample, maxLength: number): TruncateResult {
  const L = ex.ids.length
  if (L <= maxLength) return { example: ex, dropped: 0 }
  let firstCompletion = 0
  while (firstCompletion < L && ex.kinds[firstCompletion] === KIND_PROMPT) firstCompletion++
  const keep = Math.min(ex.keep ?? 0, firstCompletion)
  // Keep at least one token before the first completion token, so that it stays a target.
  const maxDrop = Math.max(0, firstCompletion - Math.max(keep, 1))
  const drop = L - maxLength
  if (drop > maxDrop) return { example: null, needed: L - maxDrop }
  const cut = <T extends Int32Array | Uint8Array | Float32Array>(a: T): T => {
    if (keep === 0) return a.slice(drop) as T
    const out = a.slice(0, L - drop) as T
    out.set(a.subarray(keep + drop), keep)
    return out
  }
  return {
    example: {
      ...ex,
      ids: cut(ex.ids),
      kinds: cut(ex.kinds),
      weights: ex.weights !== null ? cut(ex.weights) : null,
      promptTokens: ex.promptTokens - drop,
      truncated: ex.truncated + drop,
    },
    dropped: drop,
  }
}
