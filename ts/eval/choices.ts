/**
 * Multiple-choice accuracy by log-likelihood, as lm-evaluation-harness computes acc and
 * acc_norm (its loglikelihood requests; docs/eval.md), for `plwtune eval`. The records are
 * read by ts/data/choices.ts.
 */
import { ChoiceRecord } from '../data/choices'
import { Tokenizer } from '../data/tokenizer'
import { Model } from '../model'
import { meanStderr } from './match'

/**
 * lm-eval's tokenization of a (context, continuation) pair (HFLM._encode_pair): trailing
 * whitespace of the context moves to the front of the continuation; the continuation's ids
 * are the ids of context + continuation after the first len(encode(context)); an empty
 * context is the eos alone, the continuation then encoded alone.
 */
export function encodePair(tokenizer: Tokenizer, context: string, continuation: string): { context: number[]; continuation: number[] } {
  if (context === '') return { context: [tokenizer.eosId], continuation: tokenizer.encode(continuation) }
  const trimmed = context.replace(/\s+$/u, '')
  const spaces = context.slice(trimmed.length)
  if (trimmed === '') return { context: [tokenizer.eosId], continuation: tokenizer.encode(spaces + continuation) }
  const whole = tokenizer.encode(trimmed + spaces + continuation)
  const ctx = tokenizer.encode(trimmed)
  return { context: ctx, continuation: whole.slice(ctx.length) }
}

/** One (context, continuation) pair, ready for the model: `input` predicts `target` at its last target.length positions. */
export interface ChoiceRequest {
  record: number
  choice: number
  /** (context + continuation)[-(n_positions + 1):][:-1], as lm-eval cuts it. */
  input: number[]
  /** The continuation's ids. */
  target: number[]
  /** Context tokens dropped from the start to fit n_positions. */
  truncated: number
}

/** The requests of multiple-choice records for a model of `nPositions` (every choice of every record). */
export function choiceRequests(tokenizer: Tokenizer, records: readonly ChoiceRecord[], nPositions: number): ChoiceRequest[] {
  const out: ChoiceRequest[] = []
  records.forEach((r, ri) => {
    for (let c = 0; c < r.continuations.length; c++) {
      const pair = encodePair(tokenizer, r.contexts[c], r.continuations[c])
      if (pair.continuation.length === 0) {
        throw new Error(`multiple-choice record ${ri} (${r.source.file}${r.source.line !== undefined ? `:${r.source.line}` : ''}), choice ${c}: the continuation has no tokens`)
      }
      if (pair.continuation.length > nPositions) {
        throw new Error(`multiple-choice record ${ri}, choice ${c}: the continuation has ${pair.continuation.length} tokens, more than n_positions (${nPositions})`)
      }
      const whole = [...pair.context, ...pair.continuation]
      const window = whole.slice(-(nPositions + 1))
      out.push({ record: ri, choice: c, input: window.slice(0, -1), target: pair.continuation, truncated: whole.length - window.length })
    }
  })
  return out
}

export interface ChoiceScore {
  answer: number
  /** Per choice: Σ log p(continuation token | everything before it). */
  logLikelihoods: number[]
  /** Per choice: acc_norm's divisor. */
  normLengths: number[]
  /** argmax of the log-likelihoods (first on ties, as numpy's argmax). */
  pred: number
  /** argmax of log-likelihood / normLength. */
  predNorm: number
  /** Whether any choice lost context tokens to n_positions. */
  truncated: boolean
}

export interface ChoiceResult {
  scores: ChoiceScore[]
  acc: number | null
  accStderr: number | null
  accNorm: number | null
  accNormStderr: number | null
}

function argmax(xs: readonly number[]): number {
  let best = 0
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i
  return best
}

/**
 * Multiple-choice accuracy by log-likelihood: each choice's continuation scored given its
 * context (−log p of each continuation token from the engine's fused head, model.evaluate with
 * tokenLosses: no logits leave the device), acc = argmax of the sums, acc_norm = argmax of the
 * sums divided by the choice's length (docs/eval.md). Requests are sorted longest first and
 * batched up to `maxBatch` rows per call (right-padded: a causal model's padding does not
 * change the positions before it). An aborted `signal` stops it between batches, throwing the
 * signal's reason.
 */
export async function scoreChoices(model: Model, records: readonly ChoiceRecord[], requests: readonly ChoiceRequest[],
  o: { maxBatch: number; padId: number; onProgress?: (done: number, total: number) => void; signal?: AbortSignal }): Promise<ChoiceResult> {
  const lls = records.map((r) => new Array<number>(r.continuations.length).fill(NaN))
  const truncated = records.map(() => false)
  const order = requests.map((_, i) => i).sort((a, b) => requests[b].input.length - requests[a].input.length || a - b)
  let done = 0
  for (let start = 0; start < order.length;) {
    o.signal?.throwIfAborted() // between batches: a batch in the engine runs to its end
    const T = requests[order[start]].input.length
    const chunk = order.slice(start, start + Math.max(1, o.maxBatch))
    start += chunk.length
    const B = chunk.length
    const tokens = new Int32Array(B * T).fill(o.padId)
    const targets = new Int32Array(B * T)
    const kinds = new Uint8Array(B * T) // 2 (scored) at the positions that predict a continuation token
    chunk.forEach((ri, b) => {
      const q = requests[ri]
      tokens.set(q.input, b * T)
      const first = b * T + q.input.length - q.target.length
      targets.set(q.target, first)
      kinds.fill(2, first, first + q.target.length)
    })
    const r = await model.evaluate({ B, T, tokens, targets, weights: new Float32Array(B * T), kinds }, { tokenLosses: true })
    chunk.forEach((ri, b) => {
      const q = requests[ri]
      const first = b * T + q.input.length - q.target.length
      let sum = 0
      for (let j = 0; j < q.target.length; j++) sum -= r.tokenLosses[first + j]
      lls[q.record][q.choice] = sum
      if (q.truncated > 0) truncated[q.record] = true
    })
    done += B
    o.onProgress?.(done, order.length)
  }
  const scores = records.map((r, i): ChoiceScore => {
    const ll = lls[i]
    return {
      answer: r.answer, logLikelihoods: ll, normLengths: r.normLengths, pred: argmax(ll),
      predNorm: argmax(ll.map((x, c) => x / r.normLengths[c])), truncated: truncated[i],
    }
  })
  const acc = scores.map((s) => (s.pred === s.answer ? 1 : 0))
  const accNorm = scores.map((s) => (s.predNorm === s.answer ? 1 : 0))
  const mean = (xs: number[]) => (xs.length > 0 ? xs.reduce((s, x) => s + x, 0) / xs.length : null)
  return { scores, acc: mean(acc), accStderr: meanStderr(acc), accNorm: mean(accNorm), accNormStderr: meanStderr(accNorm) }
}
