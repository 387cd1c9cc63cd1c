/**
 * The OpenAI API's shapes as `plwtune serve` speaks them: request bodies checked field by field
 * (an unknown or ill-typed field is a 400 naming it, never ignored), the error object, and the
 * response and stream-chunk objects of /v1/completions and /v1/chat/completions.
 *
 * Fields OpenAI defines that the server cannot honour (logprobs, penalties, n > 1, tools, …) are
 * accepted only at their no-op value (`n: 1`, `frequency_penalty: 0`, `logprobs: null`, …), so
 * clients that send the defaults explicitly still work, and one that asks for more is told so.
 */

/** `{error: {message, type, param, code}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly type: string = 'invalid_request_error',
    readonly param: string | null = null, readonly code: string | null = null) {
    super(message)
    this.name = 'ApiError'
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

const invalid = (param: string, message: string, code: string | null = null): ApiError => new ApiError(400, message, 'invalid_request_error', param, code)

/** Sampling and length settings common to both endpoints, checked. */
export interface SamplingRequest {
  model: string | null
  /** null: the server's default (as much as the context leaves, up to DEFAULT_MAX_TOKENS). */
  maxTokens: number | null
  temperature: number
  topP: number
  topK: number
  stop: string[]
  /** null: a fresh random seed per request (OpenAI's behaviour without one). */
  seed: number | null
  stream: boolean
  includeUsage: boolean
}

export interface CompletionRequest extends SamplingRequest {
  prompt: string
}

export type ChatRole = 'system' | 'user' | 'assistant'

export interface ChatRequest extends SamplingRequest {
  messages: Array<{ role: ChatRole; content: string }>
}

/** OpenAI's defaults (temperature 1, top_p 1); top_k is llama.cpp's extension (0: off). */
export const SAMPLING_DEFAULTS = { temperature: 1, topP: 1, topK: 0 } as const
/** Stop strings a request may give (OpenAI allows 4). */
export const MAX_STOP = 16

type Checker = (value: unknown, out: Partial<SamplingRequest & { prompt: string; messages: ChatRequest['messages'] }>) => void

const typeOf = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v)

function expectNumber(param: string, v: unknown, o: { integer?: boolean; min?: number; max?: number; minExclusive?: boolean }): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (o.integer && !Number.isSafeInteger(v))) {
    throw invalid(param, `${param}: expected ${o.integer ? 'an integer' : 'a number'}, received ${typeOf(v) === 'number' ? v : typeOf(v)}`)
  }
  if (o.min !== undefined && (o.minExclusive ? v <= o.min : v < o.min)) {
    throw invalid(param, `${param}: expected a number ${o.minExclusive ? '>' : '≥'} ${o.min}, received ${v}`)
  }
  if (o.max !== undefined && v > o.max) throw invalid(param, `${param}: expected a number ≤ ${o.max}, received ${v}`)
  return v
}

/** A field accepted only at its no-op values (OpenAI features the server does not have). */
const onlyNoop = (param: string, ok: (v: unknown) => boolean, what: string): Checker => (v) => {
  if (!ok(v)) throw invalid(param, `${param}: not supported by plwtune serve (${what})`, 'unsupported_parameter')
}

const isNullish = (v: unknown): boolean => v === null || v === undefined

const COMMON: Record<string, Checker> = {
  model: (v, out) => {
    if (typeof v !== 'string') throw invalid('model', `model: expected a string, received ${typeOf(v)}`)
    out.model = v
  },
  max_tokens: (v, out) => {
    if (v === null) return
    out.maxTokens = expectNumber('max_tokens', v, { integer: true, min: 1 })
  },
  temperature: (v, out) => {
    if (v === null) return
    out.temperature = expectNumber('temperature', v, { min: 0, max: 2 })
  },
  top_p: (v, out) => {
    if (v === null) return
    out.topP = expectNumber('top_p', v, { min: 0, minExclusive: true, max: 1 })
  },
  top_k: (v, out) => {
    if (v === null) return
    out.topK = expectNumber('top_k', v, { integer: true, min: 0 })
  },
  stop: (v, out) => {
    if (v === null) return
    const list = typeof v === 'string' ? [v] : v
    if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) {
      throw invalid('stop', `stop: expected a string or an array of strings, received ${typeOf(v)}`)
    }
    if (list.length > MAX_STOP) throw invalid('stop', `stop: at most ${MAX_STOP} strings, received ${list.length}`)
    if (list.some((s) => s === '')) throw invalid('stop', 'stop: an empty string never matches; remove it')
    out.stop = list as string[]
  },
  seed: (v, out) => {
    if (v === null) return
    const s = expectNumber('seed', v, { integer: true })
    // The engine takes a 64-bit seed from a double; negative seeds wrap into it.
    out.seed = s < 0 ? s + 2 ** 53 : s
  },
  stream: (v, out) => {
    if (v === null) return
    if (typeof v !== 'boolean') throw invalid('stream', `stream: expected a boolean, received ${typeOf(v)}`)
    out.stream = v
  },
  stream_options: (v, out) => {
    if (v === null) return
    if (typeof v !== 'object' || Array.isArray(v)) throw invalid('stream_options', `stream_options: expected an object, received ${typeOf(v)}`)
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (k !== 'include_usage') throw invalid(`stream_options.${k}`, `stream_options.${k}: unknown field (plwtune serve knows include_usage)`)
      if (typeof x !== 'boolean') throw invalid('stream_options.include_usage', `stream_options.include_usage: expected a boolean, received ${typeOf(x)}`)
      out.includeUsage = x
    }
  },
  n: (v) => {
    if (v === null || v === 1) return
    expectNumber('n', v, { integer: true, min: 1 })
    throw invalid('n', `n: plwtune serve generates one choice per request (n must be 1, received ${v})`, 'unsupported_parameter')
  },
  user: (v) => {
    if (typeof v !== 'string') throw invalid('user', `user: expected a string, received ${typeOf(v)}`)
  },
  presence_penalty: onlyNoop('presence_penalty', (v) => isNullish(v) || v === 0, 'only 0'),
  frequency_penalty: onlyNoop('frequency_penalty', (v) => isNullish(v) || v === 0, 'only 0'),
  logit_bias: onlyNoop('logit_bias', (v) => isNullish(v) || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v as object).length === 0), 'only {}'),
}

const COMPLETION_FIELDS: Record<string, Checker> = {
  ...COMMON,
  prompt: (v, out) => {
    const p = Array.isArray(v) && v.length === 1 ? v[0] : v
    if (typeof p !== 'string') {
      throw invalid('prompt', Array.isArray(v)
        ? `prompt: an array must hold exactly one string (one prompt per request), received ${v.length} items`
        : `prompt: expected a string, received ${typeOf(v)}`)
    }
    out.prompt = p
  },
  logprobs: onlyNoop('logprobs', (v) => isNullish(v) || v === 0, 'only null'),
  echo: onlyNoop('echo', (v) => isNullish(v) || v === false, 'only false'),
  best_of: onlyNoop('best_of', (v) => isNullish(v) || v === 1, 'only 1'),
  suffix: onlyNoop('suffix', (v) => isNullish(v) || v === '', 'only null'),
}

const CHAT_ROLES: readonly ChatRole[] = ['system', 'user', 'assistant']

/** A message's content: a string, or OpenAI's array of `{type: "text", text}` parts (joined). */
function messageContent(v: unknown, param: string): string {
  if (typeof v === 'string') return v
  if (Array.isArray(v)) {
    return v.map((part, j) => {
      const p = part as { type?: unknown; text?: unknown } | null
      if (typeof p !== 'object' || p === null || p.type !== 'text' || typeof p.text !== 'string') {
        throw invalid(`${param}[${j}]`, `${param}[${j}]: expected {"type": "text", "text": "..."} (plwtune serve takes text only)`)
      }
      return p.text
    }).join('')
  }
  throw invalid(param, `${param}: expected a string or an array of text parts, received ${typeOf(v)}`)
}

const CHAT_FIELDS: Record<string, Checker> = {
  ...COMMON,
  max_completion_tokens: (v, out) => COMMON.max_tokens(v, out),
  messages: (v, out) => {
    if (!Array.isArray(v) || v.length === 0) throw invalid('messages', `messages: expected a non-empty array, received ${Array.isArray(v) ? 'an empty array' : typeOf(v)}`)
    out.messages = v.map((m, i) => {
      const at = `messages[${i}]`
      if (typeof m !== 'object' || m === null || Array.isArray(m)) throw invalid(at, `${at}: expected an object, received ${typeOf(m)}`)
      const o = m as Record<string, unknown>
      for (const k of Object.keys(o)) {
        if (k !== 'role' && k !== 'content' && k !== 'name') throw invalid(`${at}.${k}`, `${at}.${k}: unknown field (plwtune serve reads role, content and name)`)
      }
      const role = o.role === 'developer' ? 'system' : o.role // OpenAI's newer name for system
      if (!CHAT_ROLES.includes(role as ChatRole)) {
        throw invalid(`${at}.role`, `${at}.role: expected system, user or assistant, received ${JSON.stringify(o.role)}`)
      }
      if (o.name !== undefined && typeof o.name !== 'string') throw invalid(`${at}.name`, `${at}.name: expected a string, received ${typeOf(o.name)}`)
      return { role: role as ChatRole, content: messageContent(o.content, `${at}.content`) }
    })
    if (out.messages[out.messages.length - 1].role === 'assistant') {
      throw invalid('messages', 'messages: the last message is the assistant\'s; end with a user (or system) message for the model to answer')
    }
  },
  logprobs: onlyNoop('logprobs', (v) => isNullish(v) || v === false, 'only false'),
  top_logprobs: onlyNoop('top_logprobs', (v) => isNullish(v) || v === 0, 'only null'),
  tools: onlyNoop('tools', (v) => isNullish(v) || (Array.isArray(v) && v.length === 0), 'no tool calls'),
  tool_choice: onlyNoop('tool_choice', (v) => isNullish(v) || v === 'none', 'only "none"'),
  parallel_tool_calls: onlyNoop('parallel_tool_calls', (v) => isNullish(v) || typeof v === 'boolean', 'no tool calls'),
  response_format: onlyNoop('response_format', (v) => isNullish(v) || (typeof v === 'object' && (v as { type?: unknown }).type === 'text'),
    'only {"type": "text"}'),
}

function parseBody(body: unknown, fields: Record<string, Checker>, required: string[]): Partial<SamplingRequest & { prompt: string; messages: ChatRequest['messages'] }> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ApiError(400, `the request body must be a JSON object, received ${typeOf(body)}`)
  }
  const out: Partial<SamplingRequest & { prompt: string; messages: ChatRequest['messages'] }> = {}
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    const check = Object.hasOwn(fields, k) ? fields[k] : undefined
    if (check === undefined) {
      throw invalid(k, `${k}: unknown field (plwtune serve reads ${Object.keys(fields).join(', ')})`, 'unknown_parameter')
    }
    if (v !== undefined) check(v, out)
  }
  for (const k of required) {
    if ((body as Record<string, unknown>)[k] === undefined) throw invalid(k, `${k}: required`, 'missing_required_parameter')
  }
  if (out.includeUsage !== undefined && out.stream !== true) {
    throw invalid('stream_options', 'stream_options: only with stream: true')
  }
  return out
}

function sampling(p: Partial<SamplingRequest>): SamplingRequest {
  return {
    model: p.model ?? null, maxTokens: p.maxTokens ?? null, temperature: p.temperature ?? SAMPLING_DEFAULTS.temperature,
    topP: p.topP ?? SAMPLING_DEFAULTS.topP, topK: p.topK ?? SAMPLING_DEFAULTS.topK, stop: p.stop ?? [], seed: p.seed ?? null,
    stream: p.stream ?? false, includeUsage: p.includeUsage ?? false,
  }
}

/** A /v1/completions body, checked. */
export function parseCompletionRequest(body: unknown): CompletionRequest {
  const p = parseBody(body, COMPLETION_FIELDS, ['prompt'])
  return { ...sampling(p), prompt: p.prompt as string }
}

/** A /v1/chat/completions body, checked. */
export function parseChatRequest(body: unknown): ChatRequest {
  const p = parseBody(body, CHAT_FIELDS, ['messages'])
  return { ...sampling(p), messages: p.messages as ChatRequest['messages'] }
}

// ---------------------------------------------------------------------------------------
// responses

export type FinishReason = 'stop' | 'length'

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
  /** cached_tokens: prompt tokens the KV cache still held from the previous request (OpenAI's prompt caching field). */
  prompt_tokens_details: { cached_tokens: number }
}

export const usage = (prompt: number, completion: number, cached: number): Usage => ({ prompt_tokens: prompt,
  completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } })

/** What one response is about: its id, the Unix time it was created, the model's name. */
export interface ResponseHead {
  id: string
  created: number
  model: string
}

export function completionResponse(h: ResponseHead, text: string, finish: FinishReason, u: Usage): object {
  return { id: h.id, object: 'text_completion', created: h.created, model: h.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }], usage: u }
}

export function completionChunk(h: ResponseHead, text: string, finish: FinishReason | null): object {
  return { id: h.id, object: 'text_completion', created: h.created, model: h.model,
    choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] }
}

export function chatResponse(h: ResponseHead, content: string, finish: FinishReason, u: Usage): object {
  return { id: h.id, object: 'chat.completion', created: h.created, model: h.model,
    choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: finish }], usage: u }
}

/** A chat stream chunk: the first carries the role, the last an empty delta and the finish reason. */
export function chatChunk(h: ResponseHead, delta: { role?: 'assistant'; content?: string }, finish: FinishReason | null): object {
  return { id: h.id, object: 'chat.completion.chunk', created: h.created, model: h.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] }
}

/** The usage chunk after the last one (stream_options.include_usage): no choices. */
export function usageChunk(h: ResponseHead, object: 'text_completion' | 'chat.completion.chunk', u: Usage): object {
  return { id: h.id, object, created: h.created, model: h.model, choices: [], usage: u }
}

export function modelList(ids: Array<{ id: string; created: number }>): object {
  return { object: 'list', data: ids.map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'plwtune' })) }
}
