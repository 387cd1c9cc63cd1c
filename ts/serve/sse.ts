/**
 * Server-sent events as OpenAI streams them: `data: {json}\n\n` per chunk, `data: [DONE]\n\n` at
 * the end; an error after the headers went out is one `data: {"error": {...}}` event (the openai
 * client raises it as an APIError) and the stream ends without [DONE].
 */
import type { ServerResponse } from 'node:http'

export function startEvents(res: ServerResponse): void {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream; charset=utf-8',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
    'X-Accel-Buffering': 'no', // nginx: pass events on as they come
  })
  res.flushHeaders()
}

/** One event; false when the client is gone (nothing was written). */
export function sendEvent(res: ServerResponse, data: object): boolean {
  if (res.destroyed || res.writableEnded) return false
  res.write(`data: ${JSON.stringify(data)}\n\n`)
  return true
}

export function endEvents(res: ServerResponse): void {
  if (res.destroyed || res.writableEnded) return
  res.end('data: [DONE]\n\n')
}

/** Ends the stream with an error event instead of [DONE]. */
export function failEvents(res: ServerResponse, error: object): void {
  if (res.destroyed || res.writableEnded) return
  res.end(`data: ${JSON.stringify(error)}\n\n`)
}
