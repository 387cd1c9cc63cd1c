/**
 * `plwtune serve`'s HTTP server: OpenAI's /v1/completions, /v1/chat/completions and /v1/models
 * over Node's own http module (docs/deploy.md, "The server").
 *
 * No framework: the server is three routes, and everything that matters for a model behind
 * HTTP — reading a bounded body, server-sent events flushed token by token, noticing a client
 * that left, a bounded queue, timeouts, a clean shutdown — is a few lines of `node:http` that we
 * control exactly, with no dependency to keep up to date.
 *
 * One request computes at a time (ModelQueue, first come first served, `maxQueue` waiting at most,
 * 429 beyond). Each request has an AbortController that its timeout, its client's leaving and the
 * server's closing abort; the generation then stops within a token, and the request leaves the
 * queue if it had not started.
 *
 *   const { url, close } = await startServer({ served, port: 0 })
 *   const client = new OpenAI({ baseURL: url + '/v1', apiKey: 'none' })
 */
import { createHash, randomBytes, randomInt, timingSafeEqual } from 'node:crypto'
import * as http from 'node:http'
import type { AddressInfo } from 'node:net'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import {
  ApiError, chatChunk, chatResponse, completionChunk, completionResponse, FinishReason, modelList, parseChatRequest, parseCompletionRequest,
  ResponseHead, SamplingRequest, usage, usageChunk,
} from './openai-shapes'
import { GenerateOptions } from '../native'
import { StreamPiece, StreamResult, StreamTextOptions } from '../generate-stream'
import { chatPrompt, completionPrompt, PromptPlan } from './prompt'
import { finishResponse, PrefixStripper } from '../eval/generation'
import { LeftQueueError, ModelQueue, QueueFullError } from './queue'
import { endEvents, failEvents, sendEvent, startEvents } from './sse'

// ---------------------------------------------------------------------------------------
// the model as the server uses it (Model.generateStream, ts/model.ts)

/** The part of Model the server needs (tests serve a stand-in with the same shape). */
export interface StreamingModel {
  generateStream(prompt: ArrayLike<number>, options?: GenerateOptions & StreamTextOptions): AsyncIterable<StreamPiece> & { result: Promise<StreamResult> }
  readonly maxPositions: number
}

/** What is served: a loaded model, its tokenizer, the template of chat requests, its name. */
export interface ServedModel {
  model: StreamingModel
  tokenizer: Tokenizer
  template: Template
  /** The id /v1/models lists and responses carry. */
  name: string
  /** Tokens of prompt + answer one request may use (≤ the model's positions). */
  context: number
}

export const SERVER_DEFAULTS = {
  host: '127.0.0.1', port: 8080, maxQueue: 16, timeoutS: 300, maxBodyBytes: 1 << 20, defaultMaxTokens: 256,
} as const

export interface ServerOptions {
  served: ServedModel
  /** Default 127.0.0.1: only this machine. */
  host?: string
  /** Default 8080; 0 picks a free port (the url says which). */
  port?: number
  /** Requests that may wait behind the running one (default 16); one more is answered 429. */
  maxQueue?: number
  /** Seconds a request may take from arrival to its last token, queue included (default 300); then it is aborted. */
  timeoutS?: number
  /** Clients must send `Authorization: Bearer KEY` (401 otherwise). */
  apiKey?: string | null
  /** Largest request body (default 1 MiB; 413 beyond). */
  maxBodyBytes?: number
  /** New tokens when a request gives no max_tokens (default 256, and never beyond the context). */
  defaultMaxTokens?: number
  /**
   * Keep the KV cache of the last request for the next one that starts with it (default true):
   * a conversation sent back with one more message runs only the new part
   * (usage.prompt_tokens_details.cached_tokens). false: every request is prefilled whole, and its
   * answer depends on it alone (Model.generate's reuseCache).
   */
  promptCache?: boolean
  /** One line per request (method, path, status, tokens, seconds) and per notable event. */
  log?: (line: string) => void
  /** What happens to each generation, in order (tests watch the queue with it). */
  onEvent?: (e: { kind: 'queued' | 'start' | 'end'; seq: number; path: string }) => void
}

export interface RunningServer {
  /** http://host:port (no trailing slash); the OpenAI base URL is url + '/v1'. */
  url: string
  server: http.Server
  /** Stops accepting, aborts what runs and waits (streams end, queued requests get 503), closes every connection. The model is the caller's to dispose. */
  close(): Promise<void>
}

type AbortWhy = 'timeout' | 'client' | 'shutdown'

class Aborted extends Error {
  constructor(readonly why: AbortWhy) {
    super(why)
  }
}

function sendJson(res: http.ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  const text = JSON.stringify(body)
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text), ...headers })
  res.end(text)
}

function abortError(why: AbortWhy, timeoutS: number): ApiError {
  return why === 'timeout'
    ? new ApiError(504, `the request took longer than the server's timeout (${timeoutS} s) and was stopped`, 'timeout_error', null, 'timeout')
    : new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutdown')
}

/** Reads a body of at most `limit` bytes (413 beyond, told as soon as it is known). */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'])
  const tooLarge = (): ApiError => new ApiError(413, `the request body is larger than the server's limit of ${limit} bytes`, 'invalid_request_error',
    null, 'request_too_large')
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    req.on('data', (chunk: Buffer) => {
      if (failed) return
      size += chunk.length
      if (size > limit) { failed = true; reject(tooLarge()); return }
      chunks.push(chunk)
    })
    req.on('end', () => { if (!failed) resolve(Buffer.concat(chunks)) })
    req.on('error', (err) => { if (!failed) { failed = true; reject(err) } })
  })
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch (err) {
    throw new ApiError(400, `the request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', null, 'invalid_json')
  }
}

/** Constant-time check of `Authorization: Bearer KEY` (digests of equal length, so the key's length leaks nothing either). */
function authorized(header: string | undefined, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header ?? '')
  const given = createHash('sha256').update(m !== null ? m[1].trim() : '').digest()
  const want = createHash('sha256').update(key).digest()
  return timingSafeEqual(given, want) && m !== null
}

export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const { served } = o
  const host = o.host ?? SERVER_DEFAULTS.host
  const timeoutS = o.timeoutS ?? SERVER_DEFAULTS.timeoutS
  const maxBody = o.maxBodyBytes ?? SERVER_DEFAULTS.maxBodyBytes
  const defaultMaxTokens = o.defaultMaxTokens ?? SERVER_DEFAULTS.defaultMaxTokens
  const promptCache = o.promptCache ?? true
  const apiKey = o.apiKey ?? null
  const log = o.log ?? (() => {})
  const queue = new ModelQueue(o.maxQueue ?? SERVER_DEFAULTS.maxQueue)
  const created = Math.floor(Date.now() / 1000)
  if (!(served.context >= 2 && served.context <= served.model.maxPositions)) {
    throw new RangeError(`context: expected an integer in [2, ${served.model.maxPositions}], received ${served.context}`)
  }
  if (apiKey !== null && apiKey === '') throw new RangeError('apiKey: an empty key would let everyone in; give none, or a real one')

  /** Requests in flight: aborted on close. */
  const active = new Set<AbortController>()
  const handlers = new Set<Promise<void>>()
  let closing = false
  let seq = 0

  /**
   * One generation on the model, in turn. `onText` gets the answer's text as it comes (cut at the
   * stops, the template's prefix removed); the return is the whole answer and why it ended.
   */
  async function generate(plan: PromptPlan, s: SamplingRequest, maxNew: number, signal: AbortSignal, path: string,
    onText: ((delta: string) => void) | null): Promise<{ text: string; tokens: number; cached: number; finish: FinishReason }> {
    const n = ++seq
    o.onEvent?.({ kind: 'queued', seq: n, path })
    return queue.run(async () => {
      o.onEvent?.({ kind: 'start', seq: n, path })
      try {
        const stream = served.model.generateStream(plan.ids, {
          maxNewTokens: maxNew, temperature: s.temperature, topP: s.topP, topK: s.topK,
          seed: s.seed ?? randomInt(0, 2 ** 32), stopIds: plan.stopIds, signal, reuseCache: promptCache,
          decode: (ids) => served.tokenizer.decode(ids), stopStrings: plan.stops,
        })
        const strip = new PrefixStripper(plan.prefix)
        for await (const piece of stream) {
          const delta = strip.push(piece.text)
          if (delta !== '' && onText !== null) onText(delta)
        }
        const r = await stream.result
        if (r.stopReason === 'aborted') throw new Aborted((signal.reason as AbortWhy | undefined) ?? 'shutdown')
        const text = finishResponse(r.text, plan.stops, plan.prefix)
        const held = strip.end()
        if (held !== '' && onText !== null) onText(held)
        return { text, tokens: r.tokens.length, cached: r.reusedTokens, finish: r.stopReason === 'stop' ? 'stop' : 'length' }
      } finally {
        o.onEvent?.({ kind: 'end', seq: n, path })
      }
    }, signal)
  }

  /** The new tokens a request may have: its max_tokens (or the default), within the context. */
  function budget(plan: PromptPlan, s: SamplingRequest, param: string): number {
    if (plan.ids.length >= served.context) {
      throw new ApiError(400, `${param}: the prompt is ${plan.ids.length} tokens, and the server's context is ${served.context} tokens ` +
        '(prompt and answer together): shorten it', 'invalid_request_error', param, 'context_length_exceeded')
    }
    return Math.min(s.maxTokens ?? defaultMaxTokens, served.context - plan.ids.length)
  }

  async function answer(req: http.IncomingMessage, res: http.ServerResponse, path: string, controller: AbortController): Promise<string> {
    const chat = path === '/v1/chat/completions'
    const body = parseJson(await readBody(req, maxBody))
    const r = chat ? parseChatRequest(body) : parseCompletionRequest(body)
    const plan = 'messages' in r
      ? chatPrompt(served.template, served.tokenizer, r.messages, r.stop)
      : completionPrompt(served.tokenizer, r.prompt, r.stop)
    const maxNew = budget(plan, r, chat ? 'messages' : 'prompt')
    const head: ResponseHead = { id: `${chat ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`, created: Math.floor(Date.now() / 1000),
      model: served.name }
    const promptTokens = plan.ids.length

    if (!r.stream) {
      const g = await generate(plan, r, maxNew, controller.signal, path, null)
      const u = usage(promptTokens, g.tokens, g.cached)
      sendJson(res, 200, chat ? chatResponse(head, g.text, g.finish, u) : completionResponse(head, g.text, g.finish, u))
      return `${g.tokens} tokens, ${g.finish}`
    }

    // Streaming: the headers go out with the first text (until then a 429, a timeout or any
    // error is still a plain JSON answer with its status), then one event per text delta.
    let started = false
    const start = (): void => {
      if (started) return
      started = true
      startEvents(res)
      if (chat) sendEvent(res, chatChunk(head, { role: 'assistant', content: '' }, null))
    }
    try {
      const g = await generate(plan, r, maxNew, controller.signal, path, (delta) => {
        start()
        sendEvent(res, chat ? chatChunk(head, { content: delta }, null) : completionChunk(head, delta, null))
      })
      start()
      sendEvent(res, chat ? chatChunk(head, {}, g.finish) : completionChunk(head, '', g.finish))
      if (r.includeUsage) sendEvent(res, usageChunk(head, chat ? 'chat.completion.chunk' : 'text_completion', usage(promptTokens, g.tokens, g.cached)))
      endEvents(res)
      return `${g.tokens} tokens, ${g.finish}, streamed`
    } catch (err) {
      if (!started) throw err
      const e = err instanceof Aborted ? abortError(err.why, timeoutS) : new ApiError(500, (err as Error).message, 'server_error')
      failEvents(res, e.body())
      return `stream ended: ${e.message}`
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const t0 = Date.now()
    const path = (req.url ?? '/').split('?')[0]
    const controller = new AbortController()
    let note: string
    res.on('close', () => { if (!res.writableFinished) controller.abort('client') })
    try {
      if (closing) throw new ApiError(503, 'the server is shutting down', 'server_error', null, 'server_shutdown')
      const routes: Record<string, string> = { '/v1/completions': 'POST', '/v1/chat/completions': 'POST', '/v1/models': 'GET', '/health': 'GET' }
      const method = routes[path] ?? (path.startsWith('/v1/models/') ? 'GET' : undefined)
      if (method === undefined) throw new ApiError(404, `no route ${req.method} ${path} (plwtune serve has POST /v1/completions, POST /v1/chat/completions, GET /v1/models)`, 'invalid_request_error', null, 'not_found')
      if (req.method !== method) {
        res.setHeader('Allow', method)
        throw new ApiError(405, `${path} takes ${method}, not ${req.method}`, 'invalid_request_error', null, 'method_not_allowed')
      }
      if (path === '/health') { sendJson(res, 200, { status: 'ok', waiting: queue.waiting, busy: queue.busy }); return }
      if (apiKey !== null && !authorized(req.headers.authorization, apiKey)) {
        throw new ApiError(401, 'missing or wrong API key: send the header "Authorization: Bearer KEY" with the server\'s --api-key', 'invalid_request_error',
          null, 'invalid_api_key')
      }
      if (path === '/v1/models') { sendJson(res, 200, modelList([{ id: served.name, created }])); return }
      if (path.startsWith('/v1/models/')) {
        const id = decodeURIComponent(path.slice('/v1/models/'.length))
        if (id !== served.name) throw new ApiError(404, `model ${JSON.stringify(id)}: this server serves ${JSON.stringify(served.name)}`, 'invalid_request_error', 'model', 'model_not_found')
        sendJson(res, 200, { id, object: 'model', created, owned_by: 'plwtune' })
        return
      }
      active.add(controller)
      const timer = setTimeout(() => controller.abort('timeout'), timeoutS * 1000)
      try {
        note = await answer(req, res, path, controller)
      } finally {
        clearTimeout(timer)
        active.delete(controller)
      }
    } catch (err) {
      let e: ApiError
      if (err instanceof ApiError) e = err
      else if (err instanceof QueueFullError) e = new ApiError(429, err.message, 'rate_limit_error', null, 'queue_full')
      else if (err instanceof LeftQueueError) e = abortError((err.reason as AbortWhy | undefined) ?? 'shutdown', timeoutS)
      else if (err instanceof Aborted) e = abortError(err.why, timeoutS)
      else {
        e = new ApiError(500, `internal error: ${(err as Error).message}`, 'server_error')
        log(`error: ${(err as Error).stack ?? String(err)}`)
      }
      if (controller.signal.reason === 'client') note = 'client left'
      else {
        const headers: Record<string, string> = e.status === 413 ? { Connection: 'close' } : e.status === 429 ? { 'Retry-After': '1' } : {}
        if (e.status === 401) headers['WWW-Authenticate'] = 'Bearer'
        sendJson(res, e.status, e.body(), headers)
        note = e.message
      }
    }
    log(`${req.method} ${path} ${res.statusCode} ${((Date.now() - t0) / 1000).toFixed(2)} s${note !== '' ? ` (${note})` : ''}`)
  }

  const server = http.createServer((req, res) => {
    const p = handle(req, res).catch((err) => { log(`error: ${(err as Error).stack ?? String(err)}`); res.destroy() })
    handlers.add(p)
    void p.finally(() => handlers.delete(p))
  })
  server.headersTimeout = 30_000
  server.requestTimeout = 0 // the per-request timeout above governs; a long stream is no slow client
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'EADDRINUSE'
      ? new Error(`${host}:${o.port ?? SERVER_DEFAULTS.port} is in use: choose another port (0 picks a free one)`)
      : err.code === 'EADDRNOTAVAIL' ? new Error(`${host} is not an address of this machine`) : err))
    server.listen(o.port ?? SERVER_DEFAULTS.port, host, () => { server.removeAllListeners('error'); resolve() })
  })
  server.on('error', (err) => log(`error: ${err.message}`))
  const address = server.address() as AddressInfo
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${shown}:${address.port}`

  let closed: Promise<void> | null = null
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const c of active) c.abort('shutdown')
      await Promise.allSettled([...handlers])
      await queue.idle()
      server.closeAllConnections()
      await stopped
    })()
    return closed
  }
  return { url, server, close }
}
