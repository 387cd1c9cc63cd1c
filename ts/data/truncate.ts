/**
 * Truncation to maxLength that keeps the completion: tokens are dropped from the start of the
 * prompt. An example is cut only when every dropped token, and the token that becomes the
 * first (it is never a target: nothing precedes it), is a prompt token; otherwise its
 * completion does not fit, and the caller reports it — never silently cut.
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
  // Keep at least one token before the first completion token, so that it stays a target.
  const maxDrop = Math.max(0, firstCompletion - 1)
  const drop = L - maxLength
  if (drop > maxDrop) return { example: null, needed: L - maxDrop }
  return {
    example: {
      ...ex,
      ids: ex.ids.slice(drop),
      kinds: ex.kinds.slice(drop),
      weights: ex.weights !== null ? ex.weights.slice(drop) : null,
      promptTokens: ex.promptTokens - drop,
      truncated: ex.truncated + drop,
    },
    dropped: drop,
  }
}
