/**
 * The judge's HTTP client (ts/eval/judge-client.ts) against a local server answering in
 * OpenAI's shape: the request it sends, the reply's text, retries on 429 / 5xx / dropped
 * connections / timeouts with exponential backoff and Retry-After, the statuses that fail one
 * record or stop the run, and the API key kept out of every message.
 */
import { chatCompletion, chatCompletionsUrl, JudgeClientOptions, JudgeRequestError, retryAfterMs } from '../../ts/eval/judge-client'
import { Answer, FakeJudge, fakeJudge, Seen } from './judge-server'

let server: FakeJudge | null = null
afterEach(async () => { await server?.close(); server = null })

/** A server answering request n with answers[n - 1] (the last one after that). */
async function serve(...answers: Answer[]): Promise<FakeJudge> {
  server = await fakeJudge((_req: Seen, n: number) => answers[Math.min(n, answers.length) - 1])
  return server
}

/** Options with recorded, instant waits. */
function opts(url: string, extra: Partial<JudgeClientOptions> = {}): { o: JudgeClientOptions; waits: number[] } {
  const waits: number[] = []
  return { waits, o: { url, model: 'judge-model', backoffMs: 100, random: () => 1, sleep: async (ms) => { waits.push(ms) }, ...extra } }
}

async function failure(p: Promise<unknown>): Promise<JudgeRequestError> {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(JudgeRequestError)
    return err as JudgeRequestError
  }
  throw new Error('expected a JudgeRequestError')
}

describe('chatCompletionsUrl', () => {
  test.each([
    ['http://localhost:11434/v1', 'http://localhost:11434/v1/chat/completions'],
    ['http://localhost:11434/v1/', 'http://localhost:11434/v1/chat/completions'],
    ['http://localhost:8080', 'http://localhost:8080/v1/chat/completions'],
    ['http://localhost:8080/', 'http://localhost:8080/v1/chat/completions'],
    ['https://api.example.com/openai/v1', 'https://api.example.com/openai/v1/chat/completions'],
    ['http://h:1/v1/chat/completions', 'http://h:1/v1/chat/completions'],
  ])('%s → %s', (base, url) => expect(chatCompletionsUrl(base)).toBe(url))

  test('refuses what is not an http(s) URL', () => {
    expect(() => chatCompletionsUrl('localhost:11434')).toThrow(/http/)
    expect(() => chatCompletionsUrl('not a url')).toThrow(/not a URL/)
    expect(() => chatCompletionsUrl('ftp://h/v1')).toThrow(/only http/)
  })
})

describe('retryAfterMs', () => {
  const h = (o: Record<string, string>) => ({ get: (k: string) => o[k] ?? null })
  test('retry-after-ms, retry-after in seconds, as an HTTP date; nothing or nonsense is null', () => {
    expect(retryAfterMs(h({ 'retry-after-ms': '1500', 'retry-after': '9' }))).toBe(1500)
    expect(retryAfterMs(h({ 'retry-after': '2' }))).toBe(2000)
    expect(retryAfterMs(h({ 'retry-after': '0.5' }))).toBe(500)
    const now = Date.parse('2026-01-01T00:00:00Z')
    expect(retryAfterMs(h({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }), now)).toBe(3000)
    expect(retryAfterMs(h({ 'retry-after': 'Wed, 31 Dec 2025 23:59:00 GMT' }), now)).toBe(0)
    expect(retryAfterMs(h({}))).toBeNull()
    expect(retryAfterMs(h({ 'retry-after': 'soon' }))).toBeNull()
  })
})

describe('chatCompletion', () => {
  test('one user message at temperature 0 to BASE/chat/completions; the reply text back', async () => {
    const s = await serve('Score: 85')
    const r = await chatCompletion(opts(s.url).o, 'grade this')
    expect(r).toEqual({ content: 'Score: 85', attempts: 1 })
    expect(s.requests).toHaveLength(1)
    const q = s.requests[0]
    expect(q.url).toBe('/v1/chat/completions')
    expect(q.body).toMatchObject({ model: 'judge-model', temperature: 0, stream: false, messages: [{ role: 'user', content: 'grade this' }] })
    expect(q.headers['content-type']).toBe('application/json')
    expect(q.headers.authorization).toBeUndefined()
  })

  test('the API key goes as a Bearer token', async () => {
    const s = await serve('ok')
    await chatCompletion(opts(s.url, { apiKey: 'sk-test-123' }).o, 'x')
    expect(s.requests[0].headers.authorization).toBe('Bearer sk-test-123')
  })

  test('null content, content parts', async () => {
    const s = await serve(null, { status: 200, body: { choices: [{ message: { role: 'assistant', content: [{ type: 'text', text: 'Score: ' }, { type: 'text', text: '7' }] } }] } })
    expect((await chatCompletion(opts(s.url).o, 'x')).content).toBe('')
    expect((await chatCompletion(opts(s.url).o, 'x')).content).toBe('Score: 7')
  })

  test('garbage with status 200 (not JSON, no choices) fails this record without retrying', async () => {
    const s = await serve({ status: 200, body: '<html>proxy</html>' }, { status: 200, body: { choices: [] } })
    const e1 = await failure(chatCompletion(opts(s.url).o, 'x'))
    expect(e1.message).toMatch(/not JSON: <html>proxy<\/html>/)
    const e2 = await failure(chatCompletion(opts(s.url).o, 'x'))
    expect(e2.message).toMatch(/no choices\[0\]\.message/)
    expect({ fatal: e2.fatal, attempts: e2.attempts, requests: s.requests.length }).toEqual({ fatal: false, attempts: 1, requests: 2 })
  })

  test('429 then success: waits what Retry-After says', async () => {
    const s = await serve({ status: 429, headers: { 'retry-after': '2' }, body: { error: { message: 'rate limited' } } }, 'Score: 60')
    const { o, waits } = opts(s.url)
    expect(await chatCompletion(o, 'x')).toEqual({ content: 'Score: 60', attempts: 2 })
    expect(waits).toEqual([2000])
    expect(s.requests).toHaveLength(2)
  })

  test('retry-after-ms is honoured; a Retry-After beyond maxRetryAfterMs waits maxRetryAfterMs', async () => {
    const s = await serve({ status: 503, headers: { 'retry-after-ms': '1500' } }, { status: 429, headers: { 'retry-after': '3600' } }, 'ok')
    const { o, waits } = opts(s.url, { maxRetryAfterMs: 10_000 })
    expect((await chatCompletion(o, 'x')).attempts).toBe(3)
    expect(waits).toEqual([1500, 10_000])
  })

  test('a real Retry-After wait (1 s) with the default sleep', async () => {
    const s = await serve({ status: 429, headers: { 'retry-after': '1' } }, 'Score: 1')
    const t0 = Date.now()
    const r = await chatCompletion({ url: s.url, model: 'm' }, 'x')
    expect(r.content).toBe('Score: 1')
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950)
  })

  test('500 then success: one backoff', async () => {
    const s = await serve({ status: 500, body: { error: 'boom' } }, 'Score: 90')
    const { o, waits } = opts(s.url)
    expect(await chatCompletion(o, 'x')).toEqual({ content: 'Score: 90', attempts: 2 })
    expect(waits).toEqual([100])
  })

  test('backoff doubles, up to maxBackoffMs, with jitter in [0.5, 1] of it', async () => {
    const s = await serve({ status: 500 }, { status: 502 }, { status: 503 }, { status: 504 }, 'ok')
    const a = opts(s.url, { random: () => 1, maxBackoffMs: 300, tries: 5 })
    await chatCompletion(a.o, 'x')
    expect(a.waits).toEqual([100, 200, 300, 300])
    const s2 = await fakeJudge((_r, n) => (n < 4 ? { status: 500 } : 'ok'))
    const b = opts(s2.url, { random: () => 0 })
    await chatCompletion(b.o, 'x')
    await s2.close()
    expect(b.waits).toEqual([50, 100, 200])
  })

  test('5xx every time: gives up after `tries` attempts, naming the last error', async () => {
    const s = await serve({ status: 500, body: { error: { message: 'model crashed' } } })
    const { o, waits } = opts(s.url, { tries: 3 })
    const e = await failure(chatCompletion(o, 'x'))
    expect(e.message).toBe(`${s.url}/chat/completions: HTTP 500: model crashed, after 3 attempts`)
    expect({ status: e.status, attempts: e.attempts, fatal: e.fatal }).toEqual({ status: 500, attempts: 3, fatal: false })
    expect(s.requests).toHaveLength(3)
    expect(waits).toHaveLength(2)
  })

  test('a dropped connection is retried', async () => {
    const s = await serve('drop', 'Score: 5')
    expect(await chatCompletion(opts(s.url).o, 'x')).toEqual({ content: 'Score: 5', attempts: 2 })
  })

  test('nobody listening: retried, then a failure naming the cause', async () => {
    const s = await serve('ok')
    const url = s.url
    await s.close()
    server = null
    const e = await failure(chatCompletion(opts(url, { tries: 2 }).o, 'x'))
    expect(e.message).toMatch(/ECONNREFUSED/)
    expect(e.message).toMatch(/after 2 attempts/)
    expect(e.status).toBeNull()
  })

  test('a reply slower than timeoutMs is abandoned and asked again', async () => {
    const s = await serve({ content: 'late', delayMs: 2000 }, 'Score: 33')
    expect(await chatCompletion(opts(s.url, { timeoutMs: 200 }).o, 'x')).toEqual({ content: 'Score: 33', attempts: 2 })
    const s2 = await fakeJudge(() => ({ content: 'late', delayMs: 2000 }))
    const e = await failure(chatCompletion(opts(s2.url, { timeoutMs: 100, tries: 2 }).o, 'x'))
    await s2.close()
    expect(e.message).toMatch(/no reply within 0.1 s, after 2 attempts/)
  })

  test('400 fails this record at once; 401, 403 and 404 are fatal (the run stops)', async () => {
    const s = await serve({ status: 400, body: { error: { message: 'prompt too long' } } })
    const e = await failure(chatCompletion(opts(s.url).o, 'x'))
    expect({ status: e.status, attempts: e.attempts, fatal: e.fatal }).toEqual({ status: 400, attempts: 1, fatal: false })
    expect(e.message).toMatch(/HTTP 400: prompt too long$/)
    for (const status of [401, 403, 404]) {
      const s2 = await fakeJudge(() => ({ status, body: { error: 'model "nope" not found' } }))
      const e2 = await failure(chatCompletion(opts(s2.url).o, 'x'))
      expect(s2.requests).toHaveLength(1)
      await s2.close()
      expect({ status: e2.status, fatal: e2.fatal }).toEqual({ status, fatal: true })
      expect(e2.message).toContain(`HTTP ${status}: model "nope" not found`)
    }
  })

  test('the API key never appears in an error, even when the server echoes it', async () => {
    const s = await fakeJudge((req) => ({ status: 401, body: { error: `bad key: ${String(req.headers.authorization)}` } }))
    server = s
    const e = await failure(chatCompletion(opts(s.url, { apiKey: 'sk-secret-987' }).o, 'x'))
    expect(e.message).toContain('bad key: Bearer ***')
    expect(e.message).not.toContain('sk-secret-987')
  })

  test('an abort signal cancels the request and the wait', async () => {
    const s = await serve({ content: 'late', delayMs: 5000 })
    const c = new AbortController()
    setTimeout(() => c.abort(), 100)
    const t0 = Date.now()
    await expect(chatCompletion({ url: s.url, model: 'm', signal: c.signal }, 'x')).rejects.toThrow(/cancelled/)
    expect(Date.now() - t0).toBeLessThan(2000)
  })
})
