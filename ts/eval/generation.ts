/**
 * Answers generated for records, for `plwtune generate`, `plwtune eval --generate` and the
 * trainer's test answers: the training template's prompt (encoded as in training), cut at the
 * template's stop strings and the eos, the template's completion prefix removed. Scores of the
 * answers: ts/eval/match.ts.
 */
import { StreamStopReason } from '../generate-stream'
import { encodeTexts } from '../data/encode'
import { TemplateError } from '../data/errors'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { Model } from '../model'
import { exactMatch } from './match'

/** A record's generation prompt as texts: its segments before the last completion, and that completion's text. */
export function promptSegments(template: Template, record: DataRecord): { before: string[]; expected: string } {
  const { segments } = template.render(record)
  let last = segments.length - 1
  while (last >= 0 && segments[last].kind !== 'completion') last--
  if (last < 0) throw new TemplateError(`the ${template.name} template renders no answer to generate`)
  return { before: segments.slice(0, last).map((s) => s.text), expected: segments[last].text }
}

/** The ids of a record's generation prompt (promptSegments), encoded as in training (encodeTexts: BOS, boundaries). */
export function promptIds(template: Template, tokenizer: Tokenizer, record: DataRecord): { ids: number[]; text: string; expected: string } {
  const { before, expected } = promptSegments(template, record)
  const { prefix, parts } = encodeTexts(tokenizer, before)
  return { ids: [...prefix, ...parts.flat()], text: before.join(''), expected }
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
 * What the template writes around an answer inside the completion segment — before it
 * (alpaca "\n", the completion template's " "; usually "") and after it (chatml
 * "<|im_end|>\n", a template string's " END") — found by rendering a probe answer. Empty
 * when the template cannot render the probe.
 */
export function answerSurroundings(template: Template, record: DataRecord): { before: string; after: string } {
  try {
    const segments = template.render(withAnswer(record, ANSWER_PROBE)).segments
    for (let i = segments.length - 1; i >= 0; i--) {
      if (segments[i].kind !== 'completion') continue
      const at = segments[i].text.indexOf(ANSWER_PROBE)
      if (at < 0) continue
      return { before: segments[i].text.slice(0, at), after: segments[i].text.slice(at + ANSWER_PROBE.length) }
    }
  } catch {
    // a template that cannot render the probe: nothing known around answers
  }
  return { before: '', after: '' }
}

/** Special tokens that end an assistant turn in the chat templates of the supported families (ChatML, Llama 3, Phi-3, Gemma, Llama 2). */
export const END_OF_TURN = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>', '</s>', '<|endoftext|>'] as const

/** How an interactive answer (chat, the server) starts and ends. */
export interface AnswerEnds {
  /** What the template writes before the answer (alpaca "\n"): removed from its start. */
  prefix: string
  /** Strings that end the answer (never part of it). */
  stops: string[]
  /** Token ids that end it: the eos, and the stops that are one special token. */
  stopIds: number[]
}

/**
 * The one rule for where a chat or served answer ends: the template's stop strings, the text the
 * template closes an answer with (chatml "<|im_end|>", a template string's " END"), and the
 * end-of-turn special tokens (END_OF_TURN) the tokenizer has (a base model's eos is often not its
 * chat turn's end). `record` is the conversation or instruction with an empty answer.
 */
export function answerEnds(template: Template, tokenizer: Tokenizer, record: DataRecord): AnswerEnds {
  const around = answerSurroundings(template, record)
  const specials = new Set(tokenizer.specialTokens ?? [])
  const stops = new Set(template.stop.filter((s) => s !== ''))
  const closing = around.after.trimEnd()
  if (closing.trim() !== '') stops.add(closing)
  for (const t of END_OF_TURN) if (specials.has(t)) stops.add(t)
  const ids = new Set([tokenizer.eosId])
  for (const s of stops) {
    const t = s.trim()
    if (!specials.has(t)) continue
    const enc = tokenizer.encode(t)
    if (enc.length === 1) ids.add(enc[0])
  }
  return { prefix: around.before, stops: [...stops], stopIds: [...ids] }
}

/** The completion prefix: removed from responses that start with it, so they compare with the records' answers. */
export function completionPrefix(template: Template, record: DataRecord): string {
  return answerSurroundings(template, record).before
}

/**
 * Removes `prefix` from the start of a text that arrives in pieces: holds the first characters
 * until they are known to be (or not to be) the prefix, then passes everything through.
 */
export class PrefixStripper {
  private held = ''
  private decided: boolean

  constructor(private readonly prefix: string) {
    this.decided = prefix === ''
  }

  push(text: string): string {
    if (this.decided) return text
    this.held += text
    if (this.held.length < this.prefix.length && this.prefix.startsWith(this.held)) return ''
    this.decided = true
    const out = this.held.startsWith(this.prefix) ? this.held.slice(this.prefix.length) : this.held
    this.held = ''
    return out
  }

  /**
   * At the end of the text: what is still held (a text shorter than the prefix is not the
   * prefix, and is the text), so the pieces add up to `finishResponse`'s answer.
   */
  end(): string {
    const out = this.held
    this.held = ''
    this.decided = true
    return out
  }
}

/** A generated text as a response: cut at the template's first stop string, the template's completion prefix removed. */
export function finishResponse(text: string, stops: readonly string[], prefix = ''): string {
  const cut = cutAtStop(text, stops)
  return prefix !== '' && cut.startsWith(prefix) ? cut.slice(prefix.length) : cut
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
  const strip = new PrefixStripper(request.prefix ?? '')
  for await (const piece of stream) {
    const text = o.onText && piece.text !== '' ? strip.push(piece.text) : ''
    if (text !== '') o.onText!(text)
  }
  const held = strip.end()
  if (held !== '') o.onText?.(held)
  const g = await stream.result
  const raw = tokenizer.decode(g.tokens)
  return { response: finishResponse(g.text, [], request.prefix), raw, stopReason: g.stopReason,
    promptTruncated, promptTokens: ids.length }
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
