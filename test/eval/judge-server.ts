/** A scripted OpenAI-compatible chat server for the judge suites: Node's http, on 127.0.0.1, any free port. */
import * as http from 'node:http'
import { AddressInfo } from 'node:net'

export interface Seen {
  url: string
  headers: http.IncomingHttpHeaders
  body: { model?: string; temperature?: number; messages?: Array<{ role: string; content: string }> } & Record<string, unknown>
}

/** What the script answers a request with: a reply's text (OpenAI's shape), or a raw status/body, or a dropped connection. */
export type Answer = string | null | { status: number; body?: string | object; headers?: Record<string, string>; delayMs?: number } | 'drop'
  | { content: string; delayMs: number }

export interface FakeJudge {
  /** The API base, http://127.0.0.1:PORT/v1. */
  url: string
  requests: Seen[]
  /** Most requests being answered at once. */
  maxInFlight: number
  close(): Promise<void>
}

/** OpenAI's chat.completion object around `content`. */
export function completion(content: string | null, model = 'judge'): object {
  return { id: 'chatcmpl-test', object: 'chat.completion', created: 0, model,
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }
}

export async function fakeJudge(script: (req: Seen, n: number) => Answer): Promise<FakeJudge> {
  const requests: Seen[] = []
  let inFlight = 0
  const timers = new Set<NodeJS.Timeout>()
  const state = { maxInFlight: 0 }
  const server = http.createServer((req, res) => {
    let raw = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { raw += c })
    req.on('end', () => {
      let body: Seen['body'] = {}
      try { body = JSON.parse(raw) as Seen['body'] } catch { /* left empty */ }
      const seen = { url: req.url ?? '', headers: req.headers, body }
      requests.push(seen)
      inFlight++
      state.maxInFlight = Math.max(state.maxInFlight, inFlight)
      const a = script(seen, requests.length)
      const send = () => {
        inFlight--
        if (a === 'drop') { req.socket.destroy(); return }
        if (a === null || typeof a === 'string' || 'content' in a) {
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end(JSON.stringify(completion(a === null || typeof a === 'string' ? a : a.content, body.model)))
          return
        }
        res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers })
        res.end(a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body))
      }
      const delay = a !== null && typeof a === 'object' && a.delayMs !== undefined ? a.delayMs : 0
      if (delay > 0) {
        const t = setTimeout(() => { timers.delete(t); send() }, delay)
        timers.add(t)
      }
      else send()
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    get maxInFlight() { return state.maxInFlight },
    close: () => new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t)
      server.closeAllConnections()
      server.close(() => resolve())
    }),
  }
}
