/**
 * The LLM judge (ts/eval/judge.ts) and `plwtune eval --judge`: verdicts and their counts
 * (scored, unparsed, failed) from a scripted OpenAI-shaped server, the concurrency limit, a
 * fatal reply stopping the run, resumption from the responses file (a rerun sends no request;
 * only failed, missing or changed records are asked again), the flags and their errors (the
 * API key from an environment variable, never printed), and `plwtune serve` itself as the
 * judge: its answers are no scores, and must be counted as unparsed (or as failed when the
 * prompt does not fit its context), never guessed.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { evalCommand, EvalReport } from '../../ts/commands/eval'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import {
  JUDGE_PROMPT_HASH, judgeLines, judgeResponses, JudgeSettings, JudgeStopped, JudgedLine, judgeSettingsOf, readJudgeCache, renderJudgePrompt,
} from '../../ts/eval/judge'
import { initModel, loadModel, Model } from '../../ts/model'
import { loadTokenizer, writeMeta } from '../../ts/model-dir'
import { RunningServer, startServer } from '../../ts/serve/server'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { capture } from '../commands/io'
import { FACTS, QA_TEMPLATE, TINY, tinyModelDir, tmp, writeJsonl } from '../commands/tiny-model'
import { Answer, FakeJudge, fakeJudge, Seen } from './judge-server'

const servers: FakeJudge[] = []
afterEach(async () => { for (const s of servers.splice(0)) await s.close() })

async function judgeServer(script: (req: Seen, n: number) => Answer): Promise<FakeJudge> {
  const s = await fakeJudge(script)
  servers.push(s)
  return s
}

/** The four texts of a judge request, read back from its rendered prompt. */
function promptFields(req: Seen): { instruction: string; reference: string; answer: string } {
  const p = req.body.messages?.[0].content ?? ''
  const m = /### Instruction\n([\s\S]*?)\n\n### Input[\s\S]*### Reference answer\n([\s\S]*?)\n\n### Model's answer\n([\s\S]*?)\n\n### How to grade/.exec(p)
  if (m === null) throw new Error(`not a judge prompt: ${p}`)
  return { instruction: m[1], reference: m[2], answer: m[3] }
}

/** A judge that gives 100 to an answer equal to the reference, 0 otherwise. */
const strict = (req: Seen): Answer => {
  const f = promptFields(req)
  return `The answer ${f.answer === f.reference ? 'matches' : 'does not match'} the reference.\nScore: ${f.answer === f.reference ? 100 : 0}`
}

const lines = (n: number): JudgedLine[] => Array.from({ length: n }, (_, i) => ({
  instruction: `question ${i}`, input: i % 2 === 0 ? '' : `input ${i}`, expected: `answer ${i}`, response: i % 3 === 0 ? `wrong ${i}` : `answer ${i}`,
}))

const settings = (url: string, o: Partial<JudgeSettings> = {}): JudgeSettings => ({ url, model: 'judge-1', concurrency: 2, ...o })
const fast = { backoffMs: 1, tries: 3 }
const silent = { write: () => true } as unknown as NodeJS.WritableStream

describe('judgeLines', () => {
  test('each record\'s prompt is sent once; scores, unparsed and failed replies are counted apart; mean and stderr over the scores', async () => {
    const s = await judgeServer((req) => {
      const f = promptFields(req)
      if (f.instruction === 'question 4') return 'I cannot grade this.'
      if (f.instruction === 'question 5') return { status: 400, body: { error: { message: 'prompt too long' } } }
      return strict(req)
    })
    const ls = lines(6)
    const summary = await judgeLines(ls, settings(s.url), { client: fast })
    expect(s.requests).toHaveLength(6)
    const sent = s.requests.map((r) => r.body.messages?.[0].content).sort()
    expect(sent).toEqual(ls.map((l) => renderJudgePrompt(l)).sort())
    // 0 and 3 are wrong (0), 1 and 2 right (100), 4 unparsed, 5 failed
    expect(summary).toMatchObject({ model: 'judge-1', prompt: JUDGE_PROMPT_HASH, records: 6, scored: 4, mean: 50, unparsed: 1, failed: 1, cached: 0 })
    expect(summary.stderr).toBeCloseTo(Math.sqrt((4 * 50 ** 2) / 3 / 4), 10)
    expect(ls[1].judge).toEqual({ model: 'judge-1', prompt: JUDGE_PROMPT_HASH, score: 100, reply: 'The answer matches the reference.\nScore: 100' })
    expect(ls[4].judge).toEqual({ model: 'judge-1', prompt: JUDGE_PROMPT_HASH, score: null, reply: 'I cannot grade this.' })
    expect(ls[5].judge).toMatchObject({ score: null, error: expect.stringMatching(/HTTP 400: prompt too long/) })
    expect(ls[5].judge?.reply).toBeUndefined()
  })

  test('at most `concurrency` requests at a time', async () => {
    for (const concurrency of [1, 3]) {
      const s = await judgeServer(() => ({ content: 'Score: 50', delayMs: 30 }))
      const summary = await judgeLines(lines(10), settings(s.url, { concurrency }))
      expect(summary).toMatchObject({ scored: 10, mean: 50 })
      expect(s.maxInFlight).toBe(concurrency)
    }
  })

  test('429 and 500 on the way are retried within the record', async () => {
    const s = await judgeServer((req, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '0' } } : n === 2 ? { status: 500 } : strict(req)))
    const summary = await judgeLines(lines(3), settings(s.url, { concurrency: 1 }), { client: fast })
    expect(summary).toMatchObject({ scored: 3, failed: 0 })
    expect(s.requests).toHaveLength(5)
  })

  test('a fatal reply (401) stops the run: no new requests; the verdicts before it are kept', async () => {
    const s = await judgeServer((req, n) => (n <= 2 ? strict(req) : { status: 401, body: { error: 'invalid api key' } }))
    const ls = lines(8)
    let stopped: unknown = null
    try {
      await judgeLines(ls, settings(s.url, { concurrency: 1 }), { client: fast })
    } catch (err) {
      stopped = err
    }
    expect(stopped).toBeInstanceOf(JudgeStopped)
    expect((stopped as JudgeStopped).message).toMatch(/HTTP 401: invalid api key/)
    expect((stopped as JudgeStopped).summary).toMatchObject({ records: 2, scored: 2 })
    expect(s.requests).toHaveLength(3)
    expect(ls.filter((l) => l.judge !== undefined)).toHaveLength(2)
  })
})

describe('resumption from the responses file', () => {
  test('a rerun sends no request; failed, changed and missing records are asked again; another judge or prompt hash asks again', async () => {
    const dir = tmp('plw-judge-')
    const out = path.join(dir, 'responses.jsonl')
    let failOnce = true
    const s = await judgeServer((req) => {
      const f = promptFields(req)
      if (f.instruction === 'question 2' && failOnce) { failOnce = false; return { status: 400, body: { error: 'context' } } }
      if (f.instruction === 'question 4') return 'no idea'
      return strict(req)
    })
    const first = await judgeResponses(lines(6), settings(s.url), { out, err: silent, client: fast })
    expect(first).toMatchObject({ records: 6, scored: 4, unparsed: 1, failed: 1, cached: 0 })
    expect(s.requests).toHaveLength(6)
    const saved = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as JudgedLine)
    expect(saved.map((l) => l.judge?.score ?? null)).toEqual([0, 100, null, 0, null, 100])
    expect(readJudgeCache(out).size).toBe(5) // the failed verdict is not reusable

    // the rerun: only the failed record (2) is asked again; the unparsed one (4) is kept
    const second = await judgeResponses(lines(6), settings(s.url), { out, err: silent, client: fast })
    expect(s.requests).toHaveLength(7)
    expect(promptFields(s.requests[6]).instruction).toBe('question 2')
    expect(second).toMatchObject({ records: 6, scored: 5, mean: 60, unparsed: 1, failed: 0, cached: 5 })

    // nothing left to ask: no request at all
    const third = await judgeResponses(lines(6), settings(s.url), { out, err: silent })
    expect(s.requests).toHaveLength(7)
    expect(third).toEqual({ ...second, cached: 6 })

    // a changed response and a new record are asked; the rest are not
    const changed = lines(7)
    changed[1].response = 'something else'
    await judgeResponses(changed, settings(s.url), { out, err: silent })
    expect(s.requests.slice(7).map((r) => promptFields(r).instruction).sort()).toEqual(['question 1', 'question 6'])

    // another judge model: everything again
    const other = await judgeResponses(lines(7), settings(s.url, { model: 'judge-2' }), { out, err: silent })
    expect(other.cached).toBe(0)
    expect(s.requests).toHaveLength(9 + 7)

    // another prompt (its hash): everything again
    const edited = fs.readFileSync(out, 'utf8').split(JUDGE_PROMPT_HASH).join('0123456789ab')
    fs.writeFileSync(out, edited + '{"instruction": "cut sho') // and a line cut short by a crash, skipped
    const again = await judgeResponses(lines(7), settings(s.url, { model: 'judge-2' }), { out, err: silent })
    expect(again.cached).toBe(0)
    expect(s.requests).toHaveLength(16 + 7)
  })

  test('the file is saved while the judge answers, and when the run stops on a fatal reply', async () => {
    const dir = tmp('plw-judge-')
    const out = path.join(dir, 'responses.jsonl')
    const s = await judgeServer((req, n) => (n <= 3 ? strict(req) : { status: 404, body: { error: 'model "judge-1" not found' } }))
    await expect(judgeResponses(lines(8), settings(s.url, { concurrency: 1 }), { out, err: silent, saveEveryMs: 0 }))
      .rejects.toThrow(/judge stopped: .*HTTP 404: model "judge-1" not found.*; the 3 verdicts so far are kept in .*responses\.jsonl: rerun to continue/)
    const saved = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as JudgedLine)
    expect(saved).toHaveLength(8)
    expect(saved.filter((l) => l.judge !== undefined)).toHaveLength(3)
    // the rerun asks only for the other 5
    const t = await judgeServer(strict)
    const summary = await judgeResponses(lines(8), settings(t.url), { out, err: silent })
    expect(t.requests).toHaveLength(5)
    expect(summary).toMatchObject({ records: 8, scored: 8, cached: 3 })
  })
})

describe('judgeSettingsOf: the flags', () => {
  test('settings, defaults and errors; the key comes from the environment variable named, and is never in a message', () => {
    const env = { JUDGE_KEY: 'sk-from-env-42' }
    expect(judgeSettingsOf({})).toEqual({ settings: null, error: null })
    expect(judgeSettingsOf({ judge: 'http://h:1/v1', 'judge-model': 'm' }, env))
      .toEqual({ settings: { url: 'http://h:1/v1', model: 'm', apiKey: undefined, concurrency: 4 }, error: null })
    expect(judgeSettingsOf({ judge: 'http://h:1/v1', 'judge-model': 'm', 'judge-key': 'JUDGE_KEY', 'judge-concurrency': 8 }, env).settings)
      .toEqual({ url: 'http://h:1/v1', model: 'm', apiKey: 'sk-from-env-42', concurrency: 8 })
    const error = (v: Record<string, unknown>) => judgeSettingsOf(v, env).error
    expect(error({ judge: 'http://h:1/v1' })).toMatch(/--judge needs --judge-model/)
    expect(error({ 'judge-model': 'm' })).toBe('--judge-model goes with --judge URL')
    expect(error({ judge: 'localhost:11434', 'judge-model': 'm' })).toMatch(/--judge: .*http/)
    expect(error({ judge: 'http://h:1/v1', 'judge-model': 'm', 'judge-concurrency': 0 })).toMatch(/--judge-concurrency: expected an integer ≥ 1/)
    const pasted = error({ judge: 'http://h:1/v1', 'judge-model': 'm', 'judge-key': 'sk-live-abcdef' })
    expect(pasted).toMatch(/NAME of an environment variable/)
    expect(pasted).not.toContain('sk-live-abcdef')
    const unset = error({ judge: 'http://h:1/v1', 'judge-model': 'm', 'judge-key': 'sk_live_abcdef' })
    expect(unset).toMatch(/not set/)
    expect(unset).not.toContain('sk_live_abcdef')
  })
})

describe('plwtune eval --judge', () => {
  let memorized: string
  let data: string
  let dir: string
  beforeAll(async () => {
    memorized = await tinyModelDir({ steps: 120 })
    dir = tmp('plw-judge-eval-')
    // the memorized facts, one of them with a reference the model does not give
    data = writeJsonl(path.join(dir, 'facts.jsonl'), FACTS.map(([instruction, output], i) => ({ instruction, input: '', output: i === 5 ? 'tulip' : output })))
  })

  async function run(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
    Object.assign(process.env, env)
    try {
      return await capture(evalCommand, argv)
    } finally {
      for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v }
    }
  }

  test('the judge\'s mean score beside exact match; scores kept in --out; the rerun sends no request', async () => {
    const s = await judgeServer(strict)
    const out = path.join(dir, 'judged.jsonl')
    const argv = ['--model', memorized, '--data', data, '--device', 'cpu', '--judge', s.url, '--judge-model', 'strict', '--out', out]
    const r = await run([...argv, '--json'])
    expect({ code: r.code, err: r.code === 0 ? '' : r.err }).toEqual({ code: 0, err: '' })
    const report = JSON.parse(r.out) as EvalReport
    expect(report).toMatchObject({ responses: 6, exact_match: 5 / 6, judge_model: 'strict', judge_prompt: JUDGE_PROMPT_HASH,
      judge_scored: 6, judge_unparsed: 0, judge_failed: 0 })
    expect(report.judge_score).toBeCloseTo(500 / 6, 10)
    expect(report.judge_score_stderr).toBeCloseTo(Math.sqrt((5 * (100 - 500 / 6) ** 2 + (500 / 6) ** 2) / 5 / 6), 10)
    expect(s.requests).toHaveLength(6)
    const saved = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as JudgedLine & { exact_match: boolean })
    expect(saved.map((l) => l.judge?.score)).toEqual(saved.map((l) => (l.exact_match ? 100 : 0)))

    const again = await run(argv) // human-readable this time
    expect(again.code).toBe(0)
    expect(s.requests).toHaveLength(6)
    expect(again.err).toMatch(/judge: 6 of 6 verdicts reused from .*judged\.jsonl; asking for 0/)
    expect(again.out).toMatch(/exact match +83\.3% ± 16\.7 +\(5\/6\)/)
    expect(again.out).toMatch(/judge \(strict\) +83\.3 ± 16\.7 \/ 100 +\(6 scored, 0 unparsed, 0 failed\)/)
  })

  test('--judge-key: the key from the environment goes as a Bearer token and appears nowhere else', async () => {
    const key = 'sk-judge-secret-7f3a'
    const s = await judgeServer((req) => (req.headers.authorization === `Bearer ${key}` ? 'Score: 70' : { status: 401, body: { error: 'no key' } }))
    const out = path.join(dir, 'keyed.jsonl')
    const r = await run(['--model', memorized, '--data', data, '--device', 'cpu', '--judge', s.url, '--judge-model', 'm', '--judge-key', 'PLW_TEST_JUDGE_KEY',
      '--out', out, '--json'], { PLW_TEST_JUDGE_KEY: key })
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out)).toMatchObject({ judge_scored: 6, judge_score: 70 })
    for (const text of [r.out, r.err, fs.readFileSync(out, 'utf8')]) expect(text).not.toContain(key)
  })

  test('a fatal reply exits 1, naming what the server said, and keeps the file', async () => {
    const s = await judgeServer(() => ({ status: 404, body: { error: 'model "nope" not found, try pulling it first' } }))
    const out = path.join(dir, 'fatal.jsonl')
    const r = await run(['--model', memorized, '--data', data, '--device', 'cpu', '--judge', s.url, '--judge-model', 'nope', '--judge-concurrency', '1',
      '--out', out])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/plwtune eval: judge stopped: .*HTTP 404: model "nope" not found, try pulling it first/)
    expect(s.requests).toHaveLength(1)
    expect(fs.readFileSync(out, 'utf8').trim().split('\n')).toHaveLength(6)
  })

  test('usage errors exit 2', async () => {
    const base = ['--model', memorized, '--data', data, '--device', 'cpu']
    const cases: Array<[string[], RegExp]> = [
      [['--judge', 'http://127.0.0.1:9/v1'], /--judge needs --judge-model/],
      [['--judge-model', 'm'], /--judge-model goes with --judge URL/],
      [['--judge', 'http://127.0.0.1:9/v1', '--judge-model', 'm', '--judge-key', 'sk-pasted-key'], /NAME of an environment variable/],
      [['--judge', 'http://127.0.0.1:9/v1', '--judge-model', 'm', '--judge-concurrency', '0'], /--judge-concurrency/],
      [['--judge', 'http://127.0.0.1:9/v1', '--judge-model', 'm', '--judge-concurrency', '1.5'], /--judge-concurrency: expected an integer/],
    ]
    for (const [flags, message] of cases) {
      const r = await run([...base, ...flags])
      expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringMatching(message) })
      expect(r.err).not.toContain('sk-pasted-key')
    }
    const mc = writeJsonl(path.join(dir, 'mc.jsonl'), [{ context: 'Q: red\nA:', choices: [' apple', ' sky'], answer: 0 }])
    const r = await run(['--model', memorized, '--data', mc, '--device', 'cpu', '--judge', 'http://127.0.0.1:9/v1', '--judge-model', 'm'])
    expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringMatching(/--judge needs instruction records/) })
  })
})

describe('plwtune serve as the judge', () => {
  /** A random byte-level GPT-2 with room for the judge's prompt (TINY's 64 positions hold none). */
  async function longContextModelDir(nPositions: number): Promise<string> {
    const d = tmp('plw-judge-model-')
    const tok = new ByteTokenizer()
    const model = await initModel({ ...TINY, nPositions }, { seed: 7, maxBatch: 1, maxSeqLen: 8 })
    await model.save(d)
    model.dispose()
    writeTokenizerFiles(d, { byte: { specialTokens: tok.specialTokens, maxLength: nPositions } })
    writeMeta(d, { template: QA_TEMPLATE, format: 'alpaca', promptLossWeight: 0.1, maxLength: nPositions })
    return d
  }

  async function serveDir(modelDir: string, context: number, requests: string[]): Promise<{ server: RunningServer; model: Model }> {
    const model = await loadModel(modelDir, { device: 'cpu', precision: 'f32', maxBatch: 1, maxSeqLen: context })
    const tokenizer = await loadTokenizer(modelDir)
    const server = await startServer({ served: { model, tokenizer, template: resolveTemplate(QA_TEMPLATE), name: 'plw-judge', context }, port: 0,
      defaultMaxTokens: 24, log: (line) => { if (line.startsWith('POST ')) requests.push(line) } })
    return { server, model }
  }

  let memorized: string
  let data: string
  let dir: string
  beforeAll(async () => {
    memorized = await tinyModelDir({ steps: 120 })
    dir = tmp('plw-judge-serve-')
    data = writeJsonl(path.join(dir, 'facts.jsonl'), FACTS.slice(0, 3).map(([instruction, output]) => ({ instruction, input: '', output })))
  })

  test('its answers are no scores: every record is counted as unparsed, none guessed; the rerun asks nothing', async () => {
    const requests: string[] = []
    const { server, model } = await serveDir(await longContextModelDir(2048), 2048, requests)
    try {
      const out = path.join(dir, 'served.jsonl')
      const argv = ['--model', memorized, '--data', data, '--device', 'cpu', '--judge', server.url, '--judge-model', 'plw-judge', '--out', out, '--json']
      const r = await capture(evalCommand, argv)
      expect({ code: r.code, err: r.code === 0 ? '' : r.err }).toEqual({ code: 0, err: '' })
      expect(JSON.parse(r.out)).toMatchObject({ responses: 3, exact_match: 1, judge_model: 'plw-judge', judge_scored: 0, judge_score: null,
        judge_score_stderr: null, judge_unparsed: 3, judge_failed: 0 })
      expect(requests).toHaveLength(3)
      for (const line of requests) expect(line).toMatch(/^POST \/v1\/chat\/completions 200 /)
      const saved = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as JudgedLine)
      for (const l of saved) expect(l.judge).toMatchObject({ model: 'plw-judge', prompt: JUDGE_PROMPT_HASH, score: null, reply: expect.any(String) })
      expect(saved.every((l) => (l.judge?.reply ?? '').length > 0)).toBe(true) // text that is no score (the model is random)
      const again = await capture(evalCommand, argv)
      expect(again.code).toBe(0)
      expect(JSON.parse(again.out)).toMatchObject({ judge_unparsed: 3 })
      expect(requests).toHaveLength(3)
    } finally {
      await server.close()
      model.dispose()
    }
  })

  test('a judge whose context is too short for the prompt (TINY: 64 positions) answers 400: counted as failed, not retried', async () => {
    const requests: string[] = []
    const { server, model } = await serveDir(memorized, 64, requests)
    try {
      const r = await capture(evalCommand, ['--model', memorized, '--data', data, '--device', 'cpu', '--judge', server.url + '/v1',
        '--judge-model', 'plw-judge', '--json'])
      expect({ code: r.code, err: r.code === 0 ? '' : r.err }).toEqual({ code: 0, err: '' })
      expect(JSON.parse(r.out)).toMatchObject({ judge_scored: 0, judge_unparsed: 0, judge_failed: 3 })
      expect(requests).toHaveLength(3) // one each: a 400 is not retried
      for (const line of requests) expect(line).toMatch(/^POST \/v1\/chat\/completions 400 .*context/)
    } finally {
      await server.close()
      model.dispose()
    }
  })
})
