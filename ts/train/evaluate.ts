/**
 * Evaluation during and after training, and for `plwtune eval` / `plwtune generate`:
 *
 * - the loss on a split: weighted with λ, completion-only and prompt-only, whatever λ is;
 * - answers generated for records (the training template's prompt, cut at its stop strings
 *   and the eos), scored by exact match and contains-match;
 * - multiple-choice accuracy by log-likelihood, as lm-evaluation-harness computes acc and
 *   acc_norm (docs/eval.md).
 */
import { StreamStopReason } from '../generate-stream'
import { ChoiceRecord } from '../data/choices'
import { encodeTexts } from '../data/encode'
import { BatchLoader } from '../data/loader'
import { EncodedExample } from '../data/example'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
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

// ---------------------------------------------------------------------------------------
// prompts and responses

/** The ids of a record's generation prompt: its segments before the last completion, encoded as in training (encodeTexts: BOS, boundaries). */
export function promptIds(template: Template, tokenizer: Tokenizer, record: DataRecord): { ids: number[]; text: string; expected: string } {
  const { segments } = template.render(record)
  let last = segments.length - 1
  while (last >= 0 && segments[last].kind !== 'completion') last--
  if (last < 0) throw new Error('the record renders no completion to generate')
  const before = segments.slice(0, last)
  const { prefix, parts } = encodeTexts(tokenizer, before.map((s) => s.text))
  return { ids: [...prefix, ...parts.flat()], text: before.map((s) => s.text).join(''), expected: segments[last].text }
}

/** Cuts a generated text at the first stop string. */
export function cutAtStop(text: string, stops: readonly string[]): string {
  let end = text.length
  for (const s of stops) {
    const i = s === '' ? -1 : text.indexOf(s)
    if (i >= 0 && i < end) end = i
  }
  return text.slice(0, end)
}

/** The answer a record holds: alpaca `output`, prompt/completion `completion`, chat: the last (assistant) message. */
export function expectedAnswer(record: DataRecord): string {
  switch (record.format) {
    case 'alpaca': return record.output
    case 'prompt-completion': return record.completion
    case 'chat': return record.messages[record.messages.length - 1].content
  }
}

/**
 * A record's text fields for a responses file: alpaca as it is; prompt/completion as
 * instruction = prompt, input = ""; chat: instruction = the last user message before the
 * answer, input = "", and `messages` = the conversation the answer continues.
 */
export function responseFields(record: DataRecord): { instruction: string; input: string; expected: string; messages?: Array<{ role: string; content: string }> } {
  switch (record.format) {
    case 'alpaca': return { instruction: record.instruction, input: record.input, expected: record.output }
    case 'prompt-completion': return { instruction: record.prompt, input: '', expected: record.completion }
    case 'chat': {
      const before = record.messages.slice(0, -1)
      const user = [...before].reverse().find((m) => m.role === 'user')
      return { instruction: user?.content ?? '', input: '', expected: expectedAnswer(record),
        messages: before.map((m) => ({ role: m.role, content: m.content })) }
    }
  }
}

/** The record with its answer replaced. */
export function withAnswer(record: DataRecord, answer: string): DataRecord {
  switch (record.format) {
    case 'alpaca': return { ...record, output: answer }
    case 'prompt-completion': return { ...record, completion: answer }
    case 'chat': return { ...record, messages: [...record.messages.slice(0, -1), { ...record.messages[record.messages.length - 1], content: answer }] }
  }
}

const ANSWER_PROBE = '\u27e6plwtune answer\u27e7'

/**
 * What the template writes inside the completion before the answer itself (alpaca "\n",
 * the completion template's " "; usually ""), found by rendering a probe answer. A response
 * that starts with it has it removed, so responses compare with the records' answers.
 */
export function completionPrefix(template: Template, record: DataRecord): string {
  try {
    const segments = template.render(withAnswer(record, ANSWER_PROBE)).segments
    for (let i = segments.length - 1; i >= 0; i--) {
      if (segments[i].kind !== 'completion') continue
      const at = segments[i].text.indexOf(ANSWER_PROBE)
      return at > 0 ? segments[i].text.slice(0, at) : ''
    }
  } catch {
    // a template that cannot render the probe: no prefix to remove
  }
  return ''
}

/** A generated text as a response: cut at the template's first stop string, the template's completion prefix removed. */
export function finishResponse(text: string, stops: readonly string[], prefix = ''): string {
  const cut = cutAtStop(text, stops)
  return prefix !== '' && cut.startsWith(prefix) ? cut.slice(prefix.length) : cut
}

/** Exact match: the trimmed texts are equal (case-sensitive). */
export function exactMatch(response: string, expected: string): boolean {
  return response.trim() === expected.trim()
}

/**
 * Contains-match: the trimmed response contains the trimmed expected answer, ignoring case
 * (String.prototype.toLowerCase, locale-independent). An empty expected answer matches only
 * an empty response.
 */
export function containsMatch(response: string, expected: string): boolean {
  const e = expected.trim().toLowerCase()
  const r = response.trim().toLowerCase()
  return e === '' ? r === '' : r.includes(e)
}

/** lm-eval's standard error of a mean: sample standard deviation (n − 1) / √n; null below 2 values. */
export function meanStderr(xs: readonly number[]): number | null {
  const n = xs.length
  if (n < 2) return null
  const mean = xs.reduce((s, x) => s + x, 0) / n
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)
  return Math.sqrt(variance / n)
}

// ---------------------------------------------------------------------------------------
// generation

export interface GenerationOptions {
  /** New tokens at most (≥ 1). */
  maxNewTokens: number
  /** 0 (default): greedy. */
  temperature?: number
  topK?: number
  topP?: number
  /** Sampling seed of the first prompt; prompt i uses seed + i, so a prompt's answer does not depend on the others. */
  seed?: number
}

export interface Generated {
  /** The response: cut at a stop string, the template's completion prefix removed. */
  response: string
  /** The decoded new tokens (up to and with the stop string that ended them). */
  raw: string
  /** 'aborted' only when the caller's signal ended it. */
  stopReason: StreamStopReason
  /** Prompt tokens dropped from the start to leave room for the answer (0 when none). */
  promptTruncated: number
  promptTokens: number
}

export interface GenerationRequest {
  ids: number[]
  /** Strings that end the response (the template's stop strings). */
  stops: readonly string[]
  /** Removed from the start of the response when it starts with it. */
  prefix?: string
}

/**
 * Generates one response; stops at the eos. A prompt that fits n_positions is kept whole and
 * the answer gets the room left (at most maxNewTokens; stopReason `length` when it ran into
 * the end). A prompt of n_positions tokens or more keeps its last n_positions −
 * min(maxNewTokens, n_positions / 2) tokens (cut from the start, as training cuts prompts);
 * an empty prompt becomes the eos (GPT-2's beginning of text).
 */
export async function generateOne(model: Model, tokenizer: Tokenizer, request: GenerationRequest,
  o: GenerationOptions & { index?: number; onText?: (delta: string) => void; signal?: AbortSignal }): Promise<Generated> {
  if (!(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1)) {
    throw new RangeError(`generate: Expected an integer ≥ 1 for maxNewTokens but received ${o.maxNewTokens}`)
  }
  const n = model.maxPositions
  let ids = request.ids.length > 0 ? request.ids : [tokenizer.eosId]
  let promptTruncated = 0
  if (ids.length >= n) {
    promptTruncated = ids.length - (n - Math.max(1, Math.min(o.maxNewTokens, Math.floor(n / 2))))
    ids = ids.slice(promptTruncated)
  }
  // The stop strings end generation in the engine (nothing is computed past them).
  const stream = model.generateStream(ids, {
    maxNewTokens: Math.min(o.maxNewTokens, n - ids.length), temperature: o.temperature ?? 0, topK: o.topK ?? 0, topP: o.topP ?? 1,
    seed: (o.seed ?? 0) + (o.index ?? 0), stopIds: [tokenizer.eosId], stopStrings: [...request.stops],
    decode: (t) => tokenizer.decode(t), signal: o.signal,
  })
  const emit = o.onText ? withoutPrefix(o.onText, request.prefix ?? '') : null
  for await (const piece of stream) if (piece.text !== '') emit?.(piece.text)
  const g = await stream.result
  const raw = tokenizer.decode(g.tokens)
  return { response: finishResponse(g.text, [], request.prefix), raw, stopReason: g.stopReason,
    promptTruncated, promptTokens: ids.length }
}

/** Passes text deltas on with `prefix` removed from the start (when the text starts with it). */
function withoutPrefix(emit: (delta: string) => void, prefix: string): (delta: string) => void {
  let pending: string | null = prefix === '' ? null : ''
  return (delta) => {
    if (pending === null) { emit(delta); return }
    pending += delta
    if (pending.length < prefix.length && prefix.startsWith(pending)) return
    const rest = pending.startsWith(prefix) ? pending.slice(prefix.length) : pending
    pending = null
    if (rest !== '') emit(rest)
  }
}

/** The generation request of a record: its training template's prompt, stops and completion prefix. */
export function recordRequest(template: Template, tokenizer: Tokenizer, record: DataRecord): GenerationRequest & { prompt: string } {
  const p = promptIds(template, tokenizer, record)
  return { ids: p.ids, prompt: p.text, stops: template.stop, prefix: completionPrefix(template, record) }
}

/**
 * Generates responses for requests on one or more copies of a model (each runs one call at a
 * time; copies run concurrently in the native thread pool). Results come back in request order;
 * `onResult` sees them as they finish.
 */
export async function generateMany(models: Model | readonly Model[], tokenizer: Tokenizer, requests: readonly GenerationRequest[],
  o: GenerationOptions & { onResult?: (index: number, g: Generated, done: number) => void }): Promise<Generated[]> {
  const pool = Array.isArray(models) ? models as readonly Model[] : [models as Model]
  if (pool.length === 0) throw new RangeError('generateMany: Expected at least one model but received none')
  const out = new Array<Generated>(requests.length)
  let next = 0
  let done = 0
  const worker = async (model: Model): Promise<void> => {
    while (next < requests.length) {
      const i = next++
      out[i] = await generateOne(model, tokenizer, requests[i], { ...o, index: i })
      done++
      o.onResult?.(i, out[i], done)
    }
  }
  await Promise.all(pool.map(worker))
  return out
}

export interface Answer {
  /** The prompt as the model saw it (template applied). */
  prompt: string
  expected: string
  response: string
  /** Exact match (trimmed). */
  correct: boolean
  stopReason: string
}

/** Greedy answers for records, scored by exact match of the trimmed texts (the trainer's test answers). */
export async function generateAnswers(model: Model, tokenizer: Tokenizer, template: Template, records: readonly DataRecord[],
  options: { maxNewTokens: number; onProgress?: (done: number) => void }): Promise<{ answers: Answer[]; accuracy: number | null }> {
  const requests = records.map((r) => recordRequest(template, tokenizer, r))
  const generated = await generateMany(model, tokenizer, requests, {
    maxNewTokens: options.maxNewTokens, onResult: (_, __, done) => options.onProgress?.(done),
  })
  const answers = generated.map((g, i): Answer => {
    const expected = expectedAnswer(records[i])
    return { prompt: requests[i].prompt, expected, response: g.response, correct: exactMatch(g.response, expected), stopReason: g.stopReason }
  })
  const correct = answers.filter((a) => a.correct).length
  return { answers, accuracy: answers.length > 0 ? correct / answers.length : null }
}

export interface MatchRates {
  responses: number
  exactMatch: number | null
  exactMatchStderr: number | null
  containsMatch: number | null
  containsMatchStderr: number | null
}

/** Exact- and contains-match rates of responses against expected answers, with lm-eval's standard errors. */
export function matchRates(pairs: ReadonlyArray<{ response: string; expected: string }>): MatchRates {
  const em = pairs.map((p) => (exactMatch(p.response, p.expected) ? 1 : 0))
  const cm = pairs.map((p) => (containsMatch(p.response, p.expected) ? 1 : 0))
  const mean = (xs: number[]) => (xs.length > 0 ? xs.reduce((s, x) => s + x, 0) / xs.length : null)
  return { responses: pairs.length, exactMatch: mean(em), exactMatchStderr: meanStderr(em), containsMatch: mean(cm), containsMatchStderr: meanStderr(cm) }
}

// ---------------------------------------------------------------------------------------
// multiple choice by log-likelihood (lm-evaluation-harness's loglikelihood requests)

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
 * change the positions before it).
 */
export async function scoreChoices(model: Model, records: readonly ChoiceRecord[], requests: readonly ChoiceRequest[],
  o: { maxBatch: number; padId: number; onProgress?: (done: number, total: number) => void }): Promise<ChoiceResult> {
  const lls = records.map((r) => new Array<number>(r.continuations.length).fill(NaN))
  const truncated = records.map(() => false)
  const order = requests.map((_, i) => i).sort((a, b) => requests[b].input.length - requests[a].input.length || a - b)
  let done = 0
  for (let start = 0; start < order.length;) {
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
