/**
 * Benchmarks with few-shot contexts (ts/eval/benchmarks.ts) and `plwtune eval --benchmarks /
 * --baseline` on tiny models (CPU): the flags and their errors, the study's shot defaults, the
 * few-shot draw (deterministic, never the scored record, different per record) and the exact
 * context text on a hand-made set, the log-likelihoods against a float64 computation from
 * model.logits written here, the text and --json reports, and a model against itself as its
 * own baseline (every delta 0).
 */
import * as path from 'node:path'
import { evalCommand, EvalReport } from '../../ts/commands/eval'
import { choiceRecordsFromObjects } from '../../ts/data/choices'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import {
  Benchmark, DEFAULT_FEWSHOT_SEED, fewShotIndices, fewShotRecord, loadBenchmarks, parseBenchmarkFlags, prepareBenchmark, scoreBenchmark, STUDY_SHOTS,
} from '../../ts/eval/benchmarks'
import { scoreChoices } from '../../ts/eval/choices'
import { loadModel } from '../../ts/model'
import { capture } from '../commands/io'
import { FACTS, TINY, tinyModelDir, tmp, writeJsonl } from '../commands/tiny-model'

/** A hand-made set: three `{context, choices}` records and one WinoGrande-style `{contexts, continuation}`. */
const TOY = [
  { context: 'Question: 2+2?\nAnswer:', choices: [' 3', ' 4'], answer: 1 },
  { context: 'Question: sky?\nAnswer:', choices: [' blue', ' green'], answer: 0 },
  { contexts: ['The cup did not fit in the box: the cup', 'The cup did not fit in the box: the box'], continuation: ' was too big.', answer: 0 },
  { context: 'Question: ice?\nAnswer:', choices: [' cold', ' hot'], answer: 0 },
]
/** Each TOY record solved, written out by hand. */
const SOLVED = ['Question: 2+2?\nAnswer: 4', 'Question: sky?\nAnswer: blue', 'The cup did not fit in the box: the cup was too big.',
  'Question: ice?\nAnswer: cold']

const toy = (shots: number): Benchmark => ({ name: 'toy', file: '<toy>', shots, records: choiceRecordsFromObjects(TOY, '<toy>') })

describe('flags', () => {
  test('--benchmarks NAME=FILE with the study\'s shots by default, --shots overriding', () => {
    expect(STUDY_SHOTS).toEqual({ arc: 25, arc_challenge: 25, piqa: 0, truthfulqa_mc1: 0, winogrande: 5 })
    expect(parseBenchmarkFlags('arc=a.jsonl, piqa=dir/p.jsonl,truthfulqa_mc1=t.jsonl,winogrande=w=1.jsonl,mine=m.jsonl,arc_challenge=c.jsonl')).toEqual([
      { name: 'arc', file: 'a.jsonl', shots: 25 }, { name: 'piqa', file: 'dir/p.jsonl', shots: 0 }, { name: 'truthfulqa_mc1', file: 't.jsonl', shots: 0 },
      { name: 'winogrande', file: 'w=1.jsonl', shots: 5 }, { name: 'mine', file: 'm.jsonl', shots: 0 }, { name: 'arc_challenge', file: 'c.jsonl', shots: 25 },
    ])
    expect(parseBenchmarkFlags('arc=a.jsonl,mine=m.jsonl', 'arc=0,mine=3')).toEqual([{ name: 'arc', file: 'a.jsonl', shots: 0 },
      { name: 'mine', file: 'm.jsonl', shots: 3 }])
  })

  test.each([
    ['', undefined, /--benchmarks: expected NAME=FILE/],
    ['arc=a.jsonl,', undefined, /--benchmarks: expected NAME=FILE/],
    ['a.jsonl', undefined, /--benchmarks: "a.jsonl" is not NAME=FILE/],
    ['arc=', undefined, /--benchmarks: arc= has no FILE/],
    ['my bench=a.jsonl', undefined, /"my bench" is not a benchmark name/],
    ['arc=a.jsonl,arc=b.jsonl', undefined, /--benchmarks: arc is given twice/],
    ['arc=a.jsonl', 'piqa=1', /--shots: piqa is not among --benchmarks \(arc\)/],
    ['arc=a.jsonl', 'arc=-1', /--shots: arc=-1: expected an integer ≥ 0/],
    ['arc=a.jsonl', 'arc=2.5', /--shots: arc=2.5: expected an integer ≥ 0/],
    ['arc=a.jsonl', 'arc', /--shots: "arc" is not NAME=K/],
    ['arc=a.jsonl', 'arc=1,arc=2', /--shots: arc is given twice/],
  ])('%j --shots %j: a usage error', (benchmarks, shots, message) => {
    expect(() => parseBenchmarkFlags(benchmarks, shots)).toThrow(expect.objectContaining({ name: 'UsageError', message: expect.stringMatching(message) }))
  })
})

describe('few-shot draw', () => {
  test('deterministic, never the scored record, distinct, different per record, all others when there are too few', () => {
    const n = 200
    const draws = Array.from({ length: n }, (_, i) => fewShotIndices(n, i, 25, 42, 'arc'))
    draws.forEach((d, i) => {
      expect(d).toHaveLength(25)
      expect(d).not.toContain(i)
      expect(new Set(d).size).toBe(25)
      expect(d.every((j) => Number.isInteger(j) && j >= 0 && j < n)).toBe(true)
      expect(fewShotIndices(n, i, 25, 42, 'arc')).toEqual(d) // a pure function of (seed, name, i)
    })
    expect(new Set(draws.map((d) => d.join(','))).size).toBe(n)
    expect(fewShotIndices(n, 0, 25, 43, 'arc')).not.toEqual(draws[0]) // the seed and the name change the draw
    expect(fewShotIndices(n, 0, 25, 42, 'piqa')).not.toEqual(draws[0])
    // spread over the set: every record is drawn somewhere
    expect(new Set(draws.flat()).size).toBe(n)
    // k ≥ n − 1: every other record, once each
    for (let i = 0; i < 4; i++) expect([...fewShotIndices(4, i, 9, 42, 'x')].sort()).toEqual([0, 1, 2, 3].filter((j) => j !== i))
    expect(fewShotIndices(1, 0, 5, 42, 'x')).toEqual([])
    expect(fewShotIndices(10, 3, 0, 42, 'x')).toEqual([])
  })

  test('the context text: solved examples (right context + continuation) joined by blank lines before each context', () => {
    const b = toy(2)
    // the draws of this seed (pinned: a change here changes every few-shot score and breaks resumed sweeps)
    expect([0, 1, 2, 3].map((i) => fewShotIndices(4, i, 2, DEFAULT_FEWSHOT_SEED, 'toy'))).toEqual([[2, 3], [0, 3], [3, 1], [0, 2]])
    const r0 = fewShotRecord(b.records, 0, 2, DEFAULT_FEWSHOT_SEED, 'toy')
    const prefix0 = 'The cup did not fit in the box: the cup was too big.\n\nQuestion: ice?\nAnswer: cold\n\n'
    expect(r0.contexts).toEqual([prefix0 + 'Question: 2+2?\nAnswer:', prefix0 + 'Question: 2+2?\nAnswer:'])
    expect(r0.continuations).toEqual([' 3', ' 4'])
    expect(r0.normLengths).toEqual([1, 1]) // acc_norm divides by the choice alone, never the few-shot text
    // WinoGrande's partial scoring: each option's context gets the same examples; the continuation stays
    const r2 = fewShotRecord(b.records, 2, 2, DEFAULT_FEWSHOT_SEED, 'toy')
    const prefix2 = 'Question: ice?\nAnswer: cold\n\nQuestion: sky?\nAnswer: blue\n\n'
    expect(r2.contexts).toEqual([prefix2 + 'The cup did not fit in the box: the cup', prefix2 + 'The cup did not fit in the box: the box'])
    expect(r2.continuations).toEqual([' was too big.', ' was too big.'])
    expect(r2.normLengths).toEqual(b.records[2].normLengths)
    // every record with every shot count: the prefix is SOLVED[drawn].join("\n\n") + "\n\n", never its own
    for (const k of [0, 1, 2, 3, 5]) {
      for (let i = 0; i < 4; i++) {
        const drawn = fewShotIndices(4, i, k, 9, 'toy')
        const prefix = drawn.length > 0 ? drawn.map((j) => SOLVED[j]).join('\n\n') + '\n\n' : ''
        const r = fewShotRecord(b.records, i, k, 9, 'toy')
        expect(r.contexts).toEqual(b.records[i].contexts.map((c) => prefix + c))
        expect(r.contexts[0]).not.toContain(SOLVED[i])
      }
    }
  })
})

/** Σ log p(continuation | context) from model.logits on one unpadded row, log-softmax in float64, cut to n_positions + 1 tokens as lm-eval does. */
async function referenceLogLikelihood(modelDir: string, context: string, continuation: string): Promise<{ ll: number; cut: boolean }> {
  const whole = [...Buffer.from(context), ...Buffer.from(continuation)]
  const cont = [...Buffer.from(continuation)]
  const seq = whole.slice(-(TINY.nPositions + 1))
  const T = seq.length - 1
  const model = await loadModel(modelDir, { device: 'cpu', maxBatch: 1, maxSeqLen: T })
  const logits = await model.logits({ B: 1, T, tokens: Int32Array.from(seq.slice(0, T)), targets: new Int32Array(T), weights: new Float32Array(T) })
  model.dispose()
  const V = TINY.vocabSize
  let ll = 0
  for (let j = 0; j < cont.length; j++) {
    const t = T - cont.length + j // the position that predicts cont[j]
    const row = Array.from(logits.subarray(t * V, (t + 1) * V), Number)
    const m = Math.max(...row)
    ll += row[cont[j]] - (m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0)))
  }
  return { ll, cut: whole.length > seq.length }
}

let random: string
let memorized: string
let dir: string

beforeAll(async () => {
  random = await tinyModelDir({ scale: 12, seed: 5 }) // confident, well-separated random predictions
  memorized = await tinyModelDir({ steps: 120 })
  dir = tmp('plw-bench-')
})

describe('scoring', () => {
  test('log-likelihoods of the few-shot contexts equal a float64 computation from model.logits; acc, acc_norm, truncated', async () => {
    const b = toy(1)
    const tok = new ByteTokenizer()
    const model = await loadModel(random, { device: 'cpu', maxBatch: 3, maxSeqLen: TINY.nPositions })
    const prepared = prepareBenchmark(tok, b, model.maxPositions, 5)
    const scored = await scoreChoices(model, prepared.records, prepared.requests, { maxBatch: 3, padId: tok.eosId })
    const score = await scoreBenchmark(model, tok, b, { seed: 5 })
    model.dispose()
    let acc = 0, accNorm = 0, truncated = 0
    for (let i = 0; i < b.records.length; i++) {
      const [j] = fewShotIndices(4, i, 1, 5, 'toy')
      const r = b.records[i]
      const lls: number[] = []
      let cut = false
      for (let c = 0; c < r.contexts.length; c++) {
        const ref = await referenceLogLikelihood(random, `${SOLVED[j]}\n\n${r.contexts[c]}`, r.continuations[c])
        lls.push(ref.ll)
        cut ||= ref.cut
        expect(Math.abs(scored.scores[i].logLikelihoods[c] - ref.ll)).toBeLessThan(1e-4)
      }
      const argmax = (xs: number[]) => xs.reduce((best, x, k) => (x > xs[best] ? k : best), 0)
      acc += argmax(lls) === r.answer ? 1 : 0
      accNorm += argmax(lls.map((x, c) => x / r.normLengths[c])) === r.answer ? 1 : 0
      truncated += cut ? 1 : 0
    }
    expect(truncated).toBe(1) // the WinoGrande record with its example is longer than 64 bytes
    expect(score).toEqual({ name: 'toy', shots: 1, n: 4, acc: acc / 4, acc_stderr: expect.any(Number), acc_norm: accNorm / 4,
      acc_norm_stderr: expect.any(Number), truncated })
    const p = acc / 4
    expect(score.acc_stderr).toBeCloseTo(Math.sqrt((p * (1 - p) * 4) / 3 / 4), 12) // sample standard deviation / √n
  })

  test('the same draws at every batch size; too few records for the shots: all others, said once', async () => {
    const tok = new ByteTokenizer()
    const notes: string[] = []
    const model = await loadModel(random, { device: 'cpu', maxBatch: 4, maxSeqLen: TINY.nPositions })
    const a = await scoreBenchmark(model, tok, toy(9), { maxBatch: 1, warn: (l) => notes.push(l) })
    const b = await scoreBenchmark(model, tok, toy(3), { maxBatch: 4, warn: (l) => notes.push(l) })
    const short = await loadModel(random, { device: 'cpu', maxBatch: 4, maxSeqLen: 8 })
    await expect(scoreBenchmark(short, tok, toy(1))).rejects.toThrow(/longest request has \d+ tokens, more than the model was loaded for \(maxSeqLen 8\)/)
    short.dispose()
    model.dispose()
    expect(notes).toEqual(['benchmark toy: 9 shots asked, but it has 4 records: each record is scored with all 3 others'])
    expect({ ...a, shots: 3 }).toEqual(b)
  })

  test('loadBenchmarks reads each file; a bad record is reported with its file and line', async () => {
    const good = writeJsonl(path.join(dir, 'good.jsonl'), TOY)
    const bad = writeJsonl(path.join(dir, 'bad.jsonl'), [TOY[0], { context: 'x', choices: [' a', ' b'], answer: 2 }])
    const [g] = await loadBenchmarks([{ name: 'g', file: good, shots: 1 }])
    expect(g).toMatchObject({ name: 'g', file: good, shots: 1 })
    expect(g.records.map((r) => r.answer)).toEqual([1, 0, 0, 0])
    await expect(loadBenchmarks([{ name: 'b', file: bad, shots: 0 }])).rejects.toThrow(/bad\.jsonl: 1 invalid multiple-choice record of 2/)
  })
})

async function evalRun(argv: string[]): Promise<{ report: EvalReport; err: string }> {
  const r = await capture(evalCommand, [...argv, '--json', '--device', 'cpu'])
  expect({ code: r.code, err: r.code === 0 ? '' : r.err }).toEqual({ code: 0, err: '' })
  const lines = r.out.split('\n').filter((l) => l !== '')
  expect(lines).toHaveLength(1)
  return { report: JSON.parse(lines[0]) as EvalReport, err: r.err }
}

/** Five ARC-style records about the memorized facts, and the TOY set as a WinoGrande stand-in. */
function benchmarkFiles(): { arc: string; wino: string } {
  const arc = writeJsonl(path.join(dir, 'facts-mc.jsonl'), FACTS.slice(0, 5).map(([colour, thing], i) => ({
    context: `Q: ${colour}\nA:`, choices: [` ${FACTS[(i + 1) % 6][1]}`, ` ${thing}`, ` ${FACTS[(i + 2) % 6][1]}`], answer: 1 })))
  return { arc, wino: writeJsonl(path.join(dir, 'wino.jsonl'), TOY) }
}

describe('plwtune eval --benchmarks', () => {
  test('alone: each benchmark\'s scores as scoreBenchmark gives them, the --json keys, the text table', async () => {
    const { arc, wino } = benchmarkFiles()
    const { report, err } = await evalRun(['--model', random, '--benchmarks', `facts=${arc},winogrande=${wino}`, '--shots', 'facts=2', '--seed', '7'])
    expect(err).toContain('note: benchmark winogrande: 5 shots asked, but it has 4 records: each record is scored with all 3 others')
    const tok = new ByteTokenizer()
    const model = await loadModel(random, { device: 'cpu', maxBatch: 8, maxSeqLen: TINY.nPositions })
    const bs = await loadBenchmarks(parseBenchmarkFlags(`facts=${arc},winogrande=${wino}`, 'facts=2'))
    const expected = []
    for (const b of bs) expected.push(await scoreBenchmark(model, tok, b, { seed: 7, warn: () => undefined }))
    model.dispose()
    expect(report.benchmarks).toEqual(Object.fromEntries(expected.map(({ name, ...s }) => [name, {
      acc: s.acc, acc_stderr: s.acc_stderr, acc_norm: s.acc_norm, acc_norm_stderr: s.acc_norm_stderr, n: s.n, shots: s.shots, truncated: s.truncated }])))
    expect(report.benchmarks?.facts).toMatchObject({ n: 5, shots: 2 })
    expect(report.benchmarks?.winogrande).toMatchObject({ n: 4, shots: 5 })
    expect(report).toMatchObject({ data: null, kind: null, split: null, records: null, loss: null, acc: null, benchmark_seed: 7, baseline: null, delta: null })
    // every key of the instruction report is still there
    for (const key of ['model', 'data', 'kind', 'split', 'val_split', 'test_split', 'data_seed', 'records', 'template', 'prompt_loss_weight', 'loss',
      'completion_loss', 'prompt_loss', 'completion_perplexity', 'completion_tokens', 'prompt_tokens', 'skipped_too_long', 'responses', 'exact_match',
      'exact_match_stderr', 'contains_match', 'contains_match_stderr', 'acc', 'acc_stderr', 'acc_norm', 'acc_norm_stderr', 'choices_truncated',
      'judge_model', 'judge_prompt', 'judge_score', 'judge_score_stderr', 'judge_scored', 'judge_unparsed', 'judge_failed', 'benchmarks', 'baseline', 'delta']) {
      expect(report).toHaveProperty([key])
    }
    const text = await capture(evalCommand, ['--model', random, '--benchmarks', `facts=${arc},winogrande=${wino}`, '--shots', 'facts=2', '--seed', '7'])
    expect(text.code).toBe(0)
    expect(text.out).toMatch(/^eval .* on benchmarks\n/)
    expect(text.out).toContain('benchmarks (few-shot seed 7; acc ± standard error)')
    expect(text.out).toMatch(/\| benchmark +\| shots \| +n \| +acc \| +acc_norm \| cut to fit \|/)
    const pctOf = (x: number) => `${(100 * x).toFixed(1)}%`
    const f = report.benchmarks?.facts as NonNullable<EvalReport['benchmarks']>[string]
    expect(text.out).toMatch(new RegExp(`\\| facts +\\| +2 \\| +5 \\| +${pctOf(f.acc)} ± ${(100 * f.acc_stderr).toFixed(1)} \\| +${pctOf(f.acc_norm)} ± [0-9.]+ \\| +${f.truncated} \\|`))
    expect(text.out).toMatch(/\| winogrande +\| +5 \| +4 \|/)
  })

  test('beside the instruction data: the data\'s metrics unchanged, the benchmarks added', async () => {
    const { arc } = benchmarkFiles()
    const data = writeJsonl(path.join(dir, 'facts.jsonl'), FACTS.map(([instruction, output]) => ({ instruction, input: '', output })))
    const plain = (await evalRun(['--model', memorized, '--data', data])).report
    const both = (await evalRun(['--model', memorized, '--data', data, '--benchmarks', `facts=${arc}`])).report
    expect(plain.benchmarks).toBeNull()
    expect(plain.benchmark_seed).toBeNull()
    expect({ ...both, benchmarks: null, benchmark_seed: null }).toEqual(plain)
    expect(both.benchmarks?.facts).toMatchObject({ n: 5, shots: 0, truncated: 0 })
    expect(both.benchmarks?.facts.acc).toBe(1) // it memorized these answers
    expect(both.benchmark_seed).toBe(DEFAULT_FEWSHOT_SEED)
  })

  test.each([
    [['--shots', 'arc=1'], /--shots goes with --benchmarks/, 2],
    [['--seed', '3'], /--seed goes with --benchmarks/, 2],
    [[], /--data FILE is required \(or --run RUN_DIR, whose data is used, or --benchmarks NAME=FILE,…\)/, 2],
    [['--benchmarks', 'arc'], /--benchmarks: "arc" is not NAME=FILE/, 2],
    [['--benchmarks', 'arc=a.jsonl', '--generate'], /--generate goes with --data or --run/, 2],
    [['--benchmarks', 'arc=a.jsonl', '--limit', '3'], /--limit goes with --data or --run/, 2],
    [['--benchmarks', 'arc=/nonexistent/a.jsonl'], /\/nonexistent\/a\.jsonl/, 1],
    [['--benchmarks', 'arc=a.jsonl', '--baseline', '/nonexistent/base'], /--baseline \/nonexistent\/base: no config\.json/, 2],
  ])('%j: %s', async (argv, message, code) => {
    const r = await capture(evalCommand, ['--model', random, ...argv])
    expect(r.code).toBe(code)
    expect(r.err).toMatch(message)
    expect(r.out).toBe('')
  })
})

describe('plwtune eval --baseline', () => {
  test('a model against itself: the baseline equals the model\'s metrics and every delta is 0 (data, generation, benchmarks)', async () => {
    const { arc, wino } = benchmarkFiles()
    const data = writeJsonl(path.join(dir, 'facts-base.jsonl'), FACTS.map(([instruction, output]) => ({ instruction, input: '', output })))
    const argv = ['--model', memorized, '--data', data, '--generate', '--max-new-tokens', '12', '--benchmarks', `facts=${arc},winogrande=${wino}`,
      '--baseline', memorized]
    const { report, err } = await evalRun(argv)
    expect(err.split('note: benchmark winogrande: 5 shots asked').length - 1).toBe(1) // said once, not again for the base
    const { model: _m, ...baseMetrics } = report.baseline as NonNullable<EvalReport['baseline']>
    expect(report.baseline?.model).toBe(memorized)
    for (const [k, x] of Object.entries(baseMetrics)) expect([k, x]).toEqual([k, (report as unknown as Record<string, unknown>)[k]])
    expect(report.delta).toEqual({ loss: 0, completion_loss: 0, prompt_loss: 0, completion_perplexity: 0, exact_match: 0, contains_match: 0,
      acc: null, acc_norm: null, benchmarks: { facts: { acc: 0, acc_norm: 0 }, winogrande: { acc: 0, acc_norm: 0 } } })
    expect(report.loss).not.toBeNull()
    expect(report.exact_match).toBe(1)
    const text = await capture(evalCommand, [...argv, '--device', 'cpu'])
    expect(text.code).toBe(0)
    expect(text.out).toContain(`against the base model ${memorized}`)
    expect(text.out).toMatch(/\n {28}model +base +Δ vs base\n/)
    expect(text.out).toMatch(/\n {2}completion loss +[0-9.]+ +[0-9.]+ +0\.0000\n/)
    expect(text.out).toMatch(/\n {2}exact match +100\.0% ± 0\.0 {2}\(6\/6\) +100\.0% ± 0\.0 {2}\(6\/6\) +0\.0 pts\n/)
    expect(text.out).toMatch(/\| benchmark +\| shots \| +n \| +acc \| +acc_norm \| +base acc \| Δ acc vs base \| +base acc_norm \| Δ acc_norm vs base \| cut to fit \|/)
    expect(text.out).toMatch(/\| facts +\| +0 \| +5 \| +100\.0% ± 0\.0 \|.*\| +0\.0 pts \|.*\| +0\.0 pts \| +0 \|/)
  })

  test('a trained model against another: delta = model − base; multiple-choice data too', async () => {
    const { arc } = benchmarkFiles()
    const { report } = await evalRun(['--model', memorized, '--data', arc, '--benchmarks', `facts=${arc}`, '--baseline', random])
    const alone = (await evalRun(['--model', random, '--data', arc, '--benchmarks', `facts=${arc}`])).report
    expect(report.kind).toBe('multiple_choice')
    expect(report.baseline).toMatchObject({ model: random, acc: alone.acc, acc_norm: alone.acc_norm, benchmarks: alone.benchmarks, loss: null })
    expect(report.delta?.acc).toBeCloseTo((report.acc as number) - (alone.acc as number), 12)
    expect(report.delta?.acc_norm).toBeCloseTo((report.acc_norm as number) - (alone.acc_norm as number), 12)
    expect(report.delta?.benchmarks?.facts.acc).toBeCloseTo((report.benchmarks?.facts.acc as number) - (alone.benchmarks?.facts.acc as number), 12)
    expect(report.delta?.loss).toBeNull()
  })
})
