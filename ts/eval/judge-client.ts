/**
 * A minimal client for an OpenAI-compatible `POST /chat/completions` (Ollama, llama.cpp's
 * server, vLLM, `plwtune serve`, hosted APIs), as the LLM judge uses it: one user message,
 * temperature 0, the reply's text back.
 *
 * Node's own fetch, not the `openai` package: the request is one JSON POST and the reply one
 * field, the package would become a runtime dependency of every install for that, and its
 * retry policy (two retries, its own backoff) is not the one wanted here. The policy here:
 *
 * - retried: network errors (refused, reset, DNS), a request that takes longer than `timeoutMs`,
 *   HTTP 408, 409, 429 and 5xx; up to `tries` attempts in all. The wait before attempt k + 1 is
 *   the server's Retry-After (`retry-after-ms`, or `retry-after` in seconds or as an HTTP date;
 *   at most `maxRetryAfterMs`) when it sends one, else exponential backoff with jitter:
 *   min(maxBackoffMs, backoffMs · 2^(k−1)) · (0.5 + 0.5 · random).
 * - fatal (JudgeRequestError with `fatal`): HTTP 401, 403 and 404 — a wrong key, URL or model
 *   name fails every record alike, so the caller stops instead of sending the rest.
 * - other 4xx (400 for a prompt longer than the judge's context, 413, 422): this record fails.
 * The API key goes in `Authorization: Bearer`; it is removed from every error message.
 */

/** How to reach the judge, and how hard to try. */
export interface JudgeClientOptions {
  /** The API's base URL as the openai package's baseURL takes it (http://localhost:11434/v1); see chatCompletionsUrl. */
  url: string
  /** The judge's model name (`model` in the request). */
  model: string
  /** Sent as `Authorization: Bearer KEY` when given. */
  apiKey?: string
  /** One attempt's limit, the reply's body included [300 000]. */
  timeoutMs?: number
  /** Attempts in all, the first included [5]. */
  tries?: number
  /** The first backoff [1000]; it doubles each retry, up to maxBackoffMs [30 000]. */
  backoffMs?: number
  maxBackoffMs?: number
  /** The longest Retry-After honoured; a longer one waits this long [120 000]. */
  maxRetryAfterMs?: number
  /** Cancels the request and any wait (Ctrl-C). */
  signal?: AbortSignal
  /** Test hooks. */
  fetch?: typeof fetch
  random?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

/** A request that failed: its HTTP status (null: no response), attempts made, and whether the whole run should stop. */
export class JudgeRequestError extends Error {
  constructor(message: string, readonly status: number | null, readonly attempts: number, readonly fatal: boolean) {
    super(message)
    this.name = 'JudgeRequestError'
  }
}

/** The reply: the message's text ('' when the server sent none) and the attempts it took. */
export interface JudgeReply {
  content: string
  attempts: number
}

/**
 * The endpoint for a base URL: `BASE/chat/completions`; a URL that already ends in
 * `/chat/completions` is kept; a bare host (`http://localhost:8080`, no path) gets `/v1` first.
 */
export function chatCompletionsUrl(base: string): string {
  let u: URL
  try {
    u = new URL(base)
  } catch {
    throw new Error(`not a URL: ${JSON.stringify(base)} (give the API's base, e.g. http://localhost:11434/v1)`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`${JSON.stringify(base)}: only http:// and https:// URLs`)
  let p = u.pathname.replace(/\/+$/, '')
  if (!p.endsWith('/chat/completions')) p = (p === '' ? '/v1' : p) + '/chat/completions'
  u.pathname = p
  return u.toString()
}

const RETRY_STATUS = new Set([408, 409, 429])
const FATAL_STATUS = new Set([401, 403, 404])

const defaultSleep = (ms: number, signal?: AbortSignal): Promise<void> => new Promise((resolve, reject) => {
  if (signal?.aborted) { reject(abortError()); return }
  const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
  const onAbort = () => { clearTimeout(t); reject(abortError()) }
  signal?.addEventListener('abort', onAbort, { once: true })
})

function abortError(): Error {
  return Object.assign(new Error('the judge request was cancelled'), { name: 'AbortError' })
}

/** The wait a response asks for in ms (retry-after-ms, or retry-after as seconds or an HTTP date), or null. */
export function retryAfterMs(headers: { get(name: string): string | null }, now = Date.now()): number | null {
  const ms = headers.get('retry-after-ms')
  if (ms !== null && ms.trim() !== '' && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms)
  const ra = headers.get('retry-after')
  if (ra === null || ra.trim() === '') return null
  if (/^\s*\d+(\.\d+)?\s*$/.test(ra)) return Number(ra) * 1000
  const at = Date.parse(ra)
  return Number.isFinite(at) ? Math.max(0, at - now) : null
}

/** The error text a server sent (OpenAI's {error: {message}}, Ollama's {error: "…"}), or the start of the body. */
function errorText(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: unknown; message?: unknown }
    const e = j.error
    if (typeof e === 'string') return e
    if (typeof e === 'object' && e !== null && typeof (e as { message?: unknown }).message === 'string') return (e as { message: string }).message
    if (typeof j.message === 'string') return j.message
  } catch { /* not JSON */ }
  const t = body.replace(/\s+/g, ' ').trim()
  return t.length > 300 ? t.slice(0, 300) + '…' : t
}

/** The message's text from an OpenAI-shaped body, or an error saying what is missing. */
function contentOf(body: string): string {
  let j: unknown
  try {
    j = JSON.parse(body)
  } catch {
    throw new Error(`the reply is not JSON: ${errorText(body) || '(empty)'}`)
  }
  const choice = (j as { choices?: unknown }).choices
  const message = Array.isArray(choice) && choice.length > 0 ? (choice[0] as { message?: unknown }).message : undefined
  if (typeof message !== 'object' || message === null) throw new Error('the reply has no choices[0].message')
  const content = (message as { content?: unknown }).content
  if (content === null || content === undefined) return ''
  if (typeof content === 'string') return content
  // Some servers send content parts: [{type: 'text', text}].
  if (Array.isArray(content)) return content.map((p) => (typeof p === 'object' && p !== null && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('')
  throw new Error('choices[0].message.content is not text')
}

/** Sends one user message at temperature 0 and returns the reply's text, retrying as the file comment says. */
export async function chatCompletion(o: JudgeClientOptions, prompt: string): Promise<JudgeReply> {
  const url = chatCompletionsUrl(o.url)
  const doFetch = o.fetch ?? fetch
  const sleep = o.sleep ?? defaultSleep
  const random = o.random ?? Math.random
  const tries = Math.max(1, o.tries ?? 5)
  const timeoutMs = o.timeoutMs ?? 300_000
  const scrub = (s: string) => (o.apiKey ? s.split(o.apiKey).join('***') : s)
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' }
  if (o.apiKey) headers.authorization = `Bearer ${o.apiKey}`
  const body = JSON.stringify({ model: o.model, messages: [{ role: 'user', content: prompt }], temperature: 0, stream: false })
  let last: string
  let lastStatus: number | null
  for (let attempt = 1; ; attempt++) {
    if (o.signal?.aborted) throw abortError()
    let wait: number | null = null
    const controller = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; controller.abort() }, timeoutMs)
    const onAbort = () => controller.abort()
    o.signal?.addEventListener('abort', onAbort, { once: true })
    try {
      const res = await doFetch(url, { method: 'POST', headers, body, signal: controller.signal })
      const text = await res.text()
      lastStatus = res.status
      if (res.ok) {
        try {
          return { content: contentOf(text), attempts: attempt }
        } catch (err) {
          throw new JudgeRequestError(scrub(`${url}: ${(err as Error).message}`), res.status, attempt, false)
        }
      }
      last = `HTTP ${res.status}${text.trim() !== '' ? `: ${errorText(text)}` : ''}`
      if (FATAL_STATUS.has(res.status)) {
        const hint = res.status === 404 ? ' (is the URL the API base, e.g. …/v1, and the model name one the server has?)'
          : ' (is --judge-key the environment variable holding the right key?)'
        throw new JudgeRequestError(scrub(`${url}: ${last}${hint}`), res.status, attempt, true)
      }
      if (!RETRY_STATUS.has(res.status) && res.status < 500) throw new JudgeRequestError(scrub(`${url}: ${last}`), res.status, attempt, false)
      wait = retryAfterMs(res.headers)
      if (wait !== null) wait = Math.min(wait, o.maxRetryAfterMs ?? 120_000)
    } catch (err) {
      if (err instanceof JudgeRequestError) throw err
      if (o.signal?.aborted) throw abortError()
      lastStatus = null
      const cause = (err as { cause?: { code?: string; message?: string } }).cause
      last = timedOut ? `no reply within ${timeoutMs / 1000} s` : `${(err as Error).message}${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ''}`
    } finally {
      clearTimeout(timer)
      o.signal?.removeEventListener('abort', onAbort)
    }
    if (attempt >= tries) {
      throw new JudgeRequestError(scrub(`${url}: ${last}, after ${attempt} attempt${attempt > 1 ? 's' : ''}`), lastStatus, attempt, false)
    }
    if (wait === null) {
      const base = Math.min(o.maxBackoffMs ?? 30_000, (o.backoffMs ?? 1000) * 2 ** (attempt - 1))
      wait = base * (0.5 + 0.5 * random())
    }
    await sleep(wait, o.signal)
  }
}
