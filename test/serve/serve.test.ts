/**
 * plwtune serve through the official `openai` client: completions, chat, streaming (the chunks
 * add up to the answer the same request gets whole), stop sequences, the queue (one generation
 * at a time, in arrival order, 429 beyond --max-queue), malformed requests (400 naming the field,
 * and the server keeps serving), limits (413, context, timeout), the API key, a client leaving
 * mid-stream, and Ctrl-C on the real CLI.
 *
 * The tiny model (test/commands/tiny-model.ts) memorized FACTS under 'Q: {instruction}\nA: {output} END';
 * the queue, timeout and disconnect cases use FakeModel, whose pace is fixed.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import OpenAI from 'openai'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { loadModel, Model } from '../../ts/model'
import { loadTokenizer } from '../../ts/model-dir'
import { RunningServer, ServedModel, ServerOptions, startServer } from '../../ts/serve/server'
import { generationPrompt } from '../../ts/data/template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { serveCommand } from '../../ts/commands/serve'
import { capture } from '../commands/io'
import { FACTS, QA_TEMPLATE, tinyModelDir } from '../commands/tiny-model'
import { FakeModel } from './fake-model'

const ROOT = path.resolve(__dirname, '../..')

let dir: string
let model: Model
let served: ServedModel
let tiny: RunningServer
let client: OpenAI

const clientOf = (url: string, o: { apiKey?: string } = {}) => new OpenAI({ baseURL: url + '/v1', apiKey: o.apiKey ?? 'none', maxRetries: 0 })

/** An error thrown by `f`, for matching. */
async function thrown(f: () => Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await f()
  } catch (err) {
    return err as Record<string, unknown>
  }
  throw new Error('expected an error')
}

beforeAll(async () => {
  dir = await tinyModelDir({ steps: 120 })
  model = await loadModel(dir, { device: 'cpu', precision: 'f32', maxBatch: 1, maxSeqLen: 64 })
  const tokenizer = await loadTokenizer(dir)
  served = { model, tokenizer, template: resolveTemplate(QA_TEMPLATE), name: 'tiny', context: 64 }
  tiny = await startServer({ served, port: 0 })
  client = clientOf(tiny.url)
})

afterAll(async () => {
  await tiny?.close()
  model?.dispose()
})

describe('plwtune serve: the OpenAI API over the tiny model', () => {
  test('GET /v1/models lists the served model; it listens on 127.0.0.1', async () => {
    expect(tiny.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const list = await client.models.list()
    expect(list.data.map((m) => m.id)).toEqual(['tiny'])
    expect(list.data[0]).toMatchObject({ object: 'model', owned_by: 'plwtune' })
    expect(await client.models.retrieve('tiny')).toMatchObject({ id: 'tiny' })
  })

  test('completions: the prompt as it is; eos, a stop sequence and max_tokens end it, with usage', async () => {
    const prompt = 'Q: red\nA: '
    const whole = await client.completions.create({ model: 'tiny', prompt, temperature: 0, max_tokens: 30 })
    expect(whole.object).toBe('text_completion')
    expect(whole.choices).toEqual([{ index: 0, text: 'apple END', logprobs: null, finish_reason: 'stop' }])
    expect(whole.usage).toEqual({ prompt_tokens: prompt.length, completion_tokens: 'apple END'.length, total_tokens: prompt.length + 9,
      prompt_tokens_details: { cached_tokens: 0 } })
    const stopped = await client.completions.create({ model: 'tiny', prompt: [prompt], temperature: 0, stop: [' END'] })
    expect(stopped.choices[0]).toMatchObject({ text: 'apple', finish_reason: 'stop' })
    const stopString = await client.completions.create({ model: 'tiny', prompt, temperature: 0, stop: 'pl' })
    expect(stopString.choices[0].text).toBe('ap')
    const short = await client.completions.create({ model: 'tiny', prompt, temperature: 0, max_tokens: 3 })
    expect(short.choices[0]).toMatchObject({ text: 'app', finish_reason: 'length' })
    expect(short.usage?.completion_tokens).toBe(3)
  })

  test('a prompt that continues the previous request reuses its KV cache (usage.prompt_tokens_details.cached_tokens)', async () => {
    const first = 'Q: red\nA: '
    const r1 = await client.completions.create({ model: 'tiny', prompt: first, temperature: 0, max_tokens: 30 })
    const next = `${first}${r1.choices[0].text}\nQ: blue\nA: `
    const r2 = await client.completions.create({ model: 'tiny', prompt: next, temperature: 0, max_tokens: 30 })
    // The cache held the first prompt and the answer tokens it fed back (bytes here).
    const cached = r2.usage?.prompt_tokens_details?.cached_tokens ?? 0
    expect(cached).toBeGreaterThanOrEqual(first.length + r1.choices[0].text.length - 1)
    expect(cached).toBeLessThan(next.length)
    // The same prompt after an unrelated request is run whole, and answers the same.
    await client.completions.create({ model: 'tiny', prompt: 'Q: white\nA: ', temperature: 0, max_tokens: 30 })
    const r3 = await client.completions.create({ model: 'tiny', prompt: next, temperature: 0, max_tokens: 30 })
    expect(r3.usage?.prompt_tokens_details?.cached_tokens).toBe(0)
    expect(r3.choices[0].text).toBe(r2.choices[0].text)
    // promptCache: false (--no-prompt-cache): the continuation is prefilled whole.
    const s = await startServer({ served, port: 0, promptCache: false })
    try {
      const c = clientOf(s.url)
      await c.completions.create({ model: 'tiny', prompt: first, temperature: 0, max_tokens: 30 })
      const again = await c.completions.create({ model: 'tiny', prompt: next, temperature: 0, max_tokens: 30 })
      expect(again.usage?.prompt_tokens_details?.cached_tokens).toBe(0)
      expect(again.choices[0].text).toBe(r2.choices[0].text)
    } finally {
      await s.close()
    }
  })

  test('chat: the messages rendered with the training template, the answer cut at its stop string', async () => {
    for (const [color, thing] of FACTS.slice(0, 3)) {
      const r = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: color }], temperature: 0 })
      expect(r.object).toBe('chat.completion')
      expect(r.choices[0]).toMatchObject({ index: 0, message: { role: 'assistant', content: thing }, finish_reason: 'stop' })
      expect(r.usage?.prompt_tokens).toBe(`Q: ${color}\nA: `.length)
    }
    // An instruction template renders one user message; a conversation is refused with a reason.
    const e = await thrown(() => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'red' },
      { role: 'assistant', content: 'apple' }, { role: 'user', content: 'blue' }] }))
    expect(e).toMatchObject({ status: 400, param: 'messages', code: 'conversation_not_supported' })
  })

  test('chat with a chat template (chatml): a whole conversation is rendered as training renders it', async () => {
    const chatml = resolveTemplate('chatml')
    const s = await startServer({ served: { ...served, template: chatml }, port: 0 })
    try {
      const c = clientOf(s.url)
      const render = (messages: Array<{ role: 'system' | 'user' | 'assistant'; content: string }>) => generationPrompt(chatml,
        { format: 'chat', messages: [...messages, { role: 'assistant', content: '' }], source: { file: 'x', index: 0 } })
      const short = [{ role: 'user' as const, content: 'r' }]
      expect(render(short)).toBe('<|im_start|>user\nr<|im_end|>\n<|im_start|>assistant\n')
      const r = await c.chat.completions.create({ model: 'tiny', messages: short, temperature: 0, max_tokens: 4 })
      expect(r.usage?.prompt_tokens).toBe(render(short).length) // bytes: the byte tokenizer has no <|im_start|>
      expect(r.choices[0].finish_reason).toBe('length') // this model never learned chatml: it rambles
      // A conversation (system, turns) is rendered whole; the tiny context says how long it came out.
      const talk = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'red' },
        { role: 'assistant' as const, content: 'apple' }, { role: 'user' as const, content: 'blue' }]
      const e = await thrown(() => c.chat.completions.create({ model: 'tiny', messages: talk }))
      expect(e).toMatchObject({ status: 400, code: 'context_length_exceeded' })
      expect(String(e.message)).toContain(`the prompt is ${render(talk).length} tokens`)
    } finally {
      await s.close()
    }
  })

  test('streaming: the chunks add up to the whole answer (greedy, and sampled with the same seed), then [DONE]', async () => {
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = []
    const stream = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'green' }], temperature: 0,
      stream: true, stream_options: { include_usage: true } })
    for await (const c of stream) chunks.push(c)
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' })
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')
    expect(text).toBe('grass')
    expect(chunks.length).toBeGreaterThan(3) // token by token, not one piece
    const last = chunks[chunks.length - 2]
    expect(last.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' })
    expect(chunks[chunks.length - 1]).toMatchObject({ choices: [], usage: { prompt_tokens: 'Q: green\nA: '.length, completion_tokens: expect.any(Number) } })
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)

    const request = { model: 'tiny', prompt: 'Q: white\nA: ', temperature: 1.5, seed: 7, max_tokens: 20 }
    const whole = await client.completions.create(request)
    const again = await client.completions.create(request)
    expect(again.choices[0].text).toBe(whole.choices[0].text) // the seed fixes the sample
    let streamed = ''
    let finish: string | null = null
    for await (const c of await client.completions.create({ ...request, stream: true })) {
      streamed += c.choices[0].text
      finish = c.choices[0].finish_reason ?? finish
    }
    expect(streamed).toBe(whole.choices[0].text)
    expect(finish).toBe(whole.choices[0].finish_reason)
  })

  test('a malformed request gets a 400 naming the field, and the server keeps serving', async () => {
    const raw = await fetch(tiny.url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"prompt": "Q: red' })
    expect(raw.status).toBe(400)
    expect(await raw.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json', param: null, message: expect.stringMatching(/not valid JSON/) } })
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ prompt: 'x', max_tokens: 'ten' }, 'max_tokens'],
      [{ prompt: 'x', temperature: -1 }, 'temperature'],
      [{ prompt: 'x', top_p: 0 }, 'top_p'],
      [{ prompt: 'x', n: 2 }, 'n'],
      [{ prompt: 'x', stop: [1] }, 'stop'],
      [{ prompt: 'x', seed: 1.5 }, 'seed'],
      [{ prompt: ['a', 'b'] }, 'prompt'],
      [{ prompt: 'x', frobnicate: true }, 'frobnicate'],
      [{ max_tokens: 3 }, 'prompt'],
    ]
    for (const [body, param] of cases) {
      const e = await thrown(() => client.completions.create({ model: 'tiny', ...body } as never))
      expect({ status: e.status, param: e.param }).toEqual({ status: 400, param })
    }
    const chat = await thrown(() => client.chat.completions.create({ model: 'tiny', messages: [{ role: 'robot', content: 'hi' }] } as never))
    expect(chat).toMatchObject({ status: 400, param: 'messages[0].role' })
    const long = await thrown(() => client.completions.create({ model: 'tiny', prompt: 'x'.repeat(64) }))
    expect(long).toMatchObject({ status: 400, param: 'prompt', code: 'context_length_exceeded' })
    const notFound = await fetch(tiny.url + '/v2/anything')
    expect(notFound.status).toBe(404)
    const wrongMethod = await fetch(tiny.url + '/v1/completions')
    expect([wrongMethod.status, wrongMethod.headers.get('allow')]).toEqual([405, 'POST'])
    const ok = await client.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'pink' }], temperature: 0 })
    expect(ok.choices[0].message.content).toBe('rose')
  })
})

/** Waits until `events` holds `what`. */
async function seen(events: string[], what: string): Promise<void> {
  const t0 = Date.now()
  while (!events.includes(what)) {
    if (Date.now() - t0 > 5000) throw new Error(`no ${what} in ${events.join(', ')}`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

describe('plwtune serve: queue, limits, keys and disconnects (a model of fixed pace)', () => {
  const servers: RunningServer[] = []
  const fakeServer = async (fake: FakeModel, o: Partial<ServerOptions> = {}): Promise<RunningServer> => {
    const s = await startServer({ served: { model: fake, tokenizer: new ByteTokenizer(), template: resolveTemplate(QA_TEMPLATE), name: 'fake',
      context: fake.maxPositions }, port: 0, ...o })
    servers.push(s)
    return s
  }
  afterAll(async () => { for (const s of servers) await s.close() })

  test('concurrent requests are served one at a time, in the order they came', async () => {
    const fake = new FakeModel(256, 5)
    const events: string[] = []
    const s = await fakeServer(fake, { onEvent: (e) => events.push(`${e.kind} ${e.seq}`) })
    const c = clientOf(s.url)
    const answers: Array<Promise<string>> = []
    for (let i = 1; i <= 4; i++) {
      answers.push(c.completions.create({ model: 'fake', prompt: `p${i}`, max_tokens: 4 + i }).then((r) => r.choices[0].text))
      await seen(events, `queued ${i}`) // arrival order is the client's order
    }
    expect(await Promise.all(answers)).toEqual(['abcde', 'abcdef', 'abcdefg', 'abcdefgh'])
    const starts = events.filter((e) => e.startsWith('start'))
    expect(starts).toEqual(['start 1', 'start 2', 'start 3', 'start 4'])
    // No overlap: each generation ends before the next starts.
    for (let i = 1; i < 4; i++) expect(events.indexOf(`end ${i}`)).toBeLessThan(events.indexOf(`start ${i + 1}`))
    expect(fake.runs.map((r) => String.fromCharCode(...r.prompt))).toEqual(['p1', 'p2', 'p3', 'p4'])
  })

  test('beyond --max-queue waiting requests, 429; the others are answered', async () => {
    const fake = new FakeModel(256, 20)
    const events: string[] = []
    const s = await fakeServer(fake, { maxQueue: 1, onEvent: (e) => events.push(`${e.kind} ${e.seq}`) })
    const c = clientOf(s.url)
    const first = c.completions.create({ model: 'fake', prompt: 'a', max_tokens: 10 })
    await seen(events, 'start 1')
    const second = c.completions.create({ model: 'fake', prompt: 'b', max_tokens: 2 })
    await seen(events, 'queued 2')
    expect(events).not.toContain('end 1')
    const third = await thrown(() => c.completions.create({ model: 'fake', prompt: 'c', max_tokens: 2 }))
    expect(third).toMatchObject({ status: 429, type: 'rate_limit_error', code: 'queue_full' })
    expect((await first).choices[0].text).toBe('abcdefghij')
    expect((await second).choices[0].text).toBe('ab')
  })

  test('--api-key: 401 without it or with a wrong one (models included), served with it', async () => {
    const s = await fakeServer(new FakeModel(256, 1), { apiKey: 'sekret-123' })
    for (const key of ['none', 'sekret-12', 'sekret-1234']) {
      const e = await thrown(() => clientOf(s.url, { apiKey: key }).completions.create({ model: 'fake', prompt: 'x', max_tokens: 2 }))
      expect(e).toMatchObject({ status: 401, code: 'invalid_api_key' })
    }
    expect((await fetch(s.url + '/v1/models')).status).toBe(401)
    const ok = clientOf(s.url, { apiKey: 'sekret-123' })
    expect((await ok.completions.create({ model: 'fake', prompt: 'x', max_tokens: 2 })).choices[0].text).toBe('ab')
    expect((await ok.models.list()).data[0].id).toBe('fake')
  })

  test('a body over the limit is 413', async () => {
    const s = await fakeServer(new FakeModel(256, 1), { maxBodyBytes: 1000 })
    const r = await fetch(s.url + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'fake', prompt: 'x'.repeat(2000) }) })
    expect(r.status).toBe(413)
    expect(await r.json()).toMatchObject({ error: { code: 'request_too_large' } })
    const ok = await clientOf(s.url).completions.create({ model: 'fake', prompt: 'x', max_tokens: 1 })
    expect(ok.choices[0].text).toBe('a')
  })

  test('the timeout stops a generation: 504 before any text, an error event mid-stream; waiting requests time out too', async () => {
    const fake = new FakeModel(256, 40)
    const s = await fakeServer(fake, { timeoutS: 0.3 })
    const c = clientOf(s.url)
    const slow = c.completions.create({ model: 'fake', prompt: 'a', max_tokens: 26 })
    const waiting = await thrown(() => c.completions.create({ model: 'fake', prompt: 'b', max_tokens: 2 }))
    expect(waiting).toMatchObject({ status: 504, code: 'timeout' })
    expect(await thrown(() => slow)).toMatchObject({ status: 504, code: 'timeout' })
    expect(fake.runs[0].ended).toBe('aborted')
    const runs = fake.runs.length // 1, or 2 when the second's turn came just before its time was up
    let text = ''
    const e = await thrown(async () => {
      for await (const chunk of await c.completions.create({ model: 'fake', prompt: 'c', max_tokens: 26, stream: true })) text += chunk.choices[0].text
    })
    expect(e).toMatchObject({ code: 'timeout' })
    expect(text.length).toBeGreaterThan(2)
    expect(text.length).toBeLessThan(26)
    expect(fake.runs[runs].ended).toBe('aborted')
  })

  test('close(): a running stream ends with an error event, a waiting request gets 503, the port closes', async () => {
    const fake = new FakeModel(256, 20)
    const events: string[] = []
    const s = await startServer({ served: { model: fake, tokenizer: new ByteTokenizer(), template: resolveTemplate(QA_TEMPLATE), name: 'fake',
      context: 256 }, port: 0, onEvent: (e) => events.push(`${e.kind} ${e.seq}`) })
    const c = clientOf(s.url)
    let text = ''
    let closing: Promise<void> | null = null
    const waiting = thrown(async () => {
      await seen(events, 'start 1')
      await c.completions.create({ model: 'fake', prompt: 'b', max_tokens: 2 })
    })
    const e = await thrown(async () => {
      for await (const chunk of await c.completions.create({ model: 'fake', prompt: 'a', max_tokens: 26, stream: true })) {
        text += chunk.choices[0].text
        if (text.length >= 3 && events.includes('queued 2') && closing === null) closing = s.close()
      }
    })
    expect(e).toMatchObject({ code: 'server_shutdown' })
    expect(await waiting).toMatchObject({ status: 503 })
    await closing
    expect(fake.runs.map((r) => r.ended)).toEqual(['aborted'])
    expect(await listening(Number(new URL(s.url).port))).toBe(false)
  })

  test('a client that leaves mid-stream stops its generation', async () => {
    const fake = new FakeModel(256, 20)
    const s = await fakeServer(fake)
    const controller = new AbortController()
    let text = ''
    await (async () => {
      const stream = await clientOf(s.url).completions.create({ model: 'fake', prompt: 'a', max_tokens: 26, stream: true }, { signal: controller.signal })
      for await (const chunk of stream) {
        text += chunk.choices[0].text
        if (text.length >= 3) controller.abort()
      }
    })().catch(() => {}) // the client ends the loop (or throws its abort error)
    expect(text.length).toBeLessThan(6)
    const t0 = Date.now()
    while (fake.runs[0].ended === null && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10))
    expect(fake.runs[0].ended).toBe('aborted')
    expect(fake.runs[0].options.signal?.aborted).toBe(true)
  })
})

/** Resolves true when something accepts connections at host:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('error', () => resolve(false))
  })
}

describe('plwtune serve: the command', () => {
  test('--help, flag errors (exit 2) and a port in use', async () => {
    const help = await capture(serveCommand, ['--help'])
    expect(help.code).toBe(0)
    expect(help.out).toMatch(/^Usage: plwtune serve --model DIR/)
    expect(help.out).toMatch(/--max-queue N +requests that may wait .* \[16\]/)
    expect(help.out).toMatch(/--api-key KEY/)
    expect(await capture(serveCommand, ['--model', dir, '--max-queu', '3'])).toMatchObject({ code: 2, err: expect.stringMatching(/did you mean --max-queue/) })
    expect(await capture(serveCommand, ['--model', dir, '--device', 'tpu'])).toMatchObject({ code: 2, err: expect.stringMatching(/--device/) })
    expect(await capture(serveCommand, ['--model', dir, '--context', '65'])).toMatchObject({ code: 2, err: expect.stringMatching(/--context: .*\[2, 64\]/) })
    const taken = Number(new URL(tiny.url).port)
    expect(await capture(serveCommand, ['--model', dir, '--port', String(taken), '--device', 'cpu']))
      .toMatchObject({ code: 1, err: expect.stringMatching(/127\.0\.0\.1:\d+ is in use: choose another port/) })
  })

  test('Ctrl-C (SIGINT) on the real command closes cleanly: exit 0, the port closed', async () => {
    const cli = path.join(ROOT, 'dist/ts/cli.js')
    const command = path.join(ROOT, 'dist/ts/commands/serve.js')
    if (!fs.existsSync(command)) {
      const built = spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' })
      if (!fs.existsSync(command)) throw new Error(`no ${command}: tsc failed\n${built.stdout}${built.stderr}`)
    }
    // The CLI once it dispatches serve; until then the command itself.
    const viaCli = fs.existsSync(cli) && /serveCommand/.test(fs.readFileSync(cli, 'utf8'))
    const args = ['serve', '--model', dir, '--port', '0', '--device', 'cpu']
    const child: ChildProcess = viaCli
      ? spawn(process.execPath, [cli, ...args], { cwd: ROOT })
      : spawn(process.execPath, ['-e', `require(${JSON.stringify(command)}).serveCommand(process.argv.slice(1)).then((c) => process.exit(c))`,
        '--', ...args.slice(1)], { cwd: ROOT })
    let out = ''
    let err = ''
    child.stdout?.on('data', (d) => { out += d })
    child.stderr?.on('data', (d) => { err += d })
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    const t0 = Date.now()
    while (!/\/v1 serves/.test(out) && Date.now() - t0 < 20000 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20))
    const url = /(http:\/\/127\.0\.0\.1:(\d+))\/v1/.exec(out)
    if (url === null) throw new Error(`the server did not start:\n${out}${err}`)
    const port = Number(url![2])
    const c = clientOf(url![1])
    expect((await c.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'black' }], temperature: 0 })).choices[0].message.content).toBe('night')
    child.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(err).toMatch(/SIGINT: closing/)
    expect(err).toMatch(/closed/)
    expect(await listening(port)).toBe(false)
  })
})
