/**
 * plwtune eval on tiny models: the losses against model.evaluate computed here, perplexity,
 * exact and contains match (the scoring functions on fixed responses, then on a model that
 * memorized its answers), multiple-choice acc and acc_norm against a float64 computation from
 * model.logits written here, the --json object, and the errors a user meets.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { loadModel } from '../../ts/model'
import { EvalReport, evalCommand } from '../../ts/commands/eval'
import { codePoints, collate, encodeDataset, readDataset } from '../../ts/data'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { encodePair } from '../../ts/eval/choices'
import { containsMatch, exactMatch, matchRates, meanStderr } from '../../ts/eval/match'
import { capture } from './io'
import { FACTS, QA_TEMPLATE, TINY, tinyModelDir, tmp, writeJsonl } from './tiny-model'

let memorized: string
let random: string
let dir: string

beforeAll(async () => {
  memorized = await tinyModelDir({ steps: 120, promptLossWeight: 0.25 })
  random = await tinyModelDir({ scale: 12, seed: 5 }) // confident, well-separated random predictions
  dir = tmp('plw-eval-')
})

async function evalJson(argv: string[]): Promise<EvalReport> {
  const r = await capture(evalCommand, [...argv, '--json'])
  expect({ code: r.code, err: r.code === 0 ? '' : r.err }).toEqual({ code: 0, err: '' })
  const lines = r.out.split('\n').filter((l) => l !== '')
  expect(lines).toHaveLength(1) // exactly one JSON object on stdout
  return JSON.parse(lines[0]) as EvalReport
}

describe('scoring functions', () => {
  test('exact match: trimmed, case-sensitive; contains match: trimmed response contains the trimmed answer, any case', () => {
    expect(exactMatch(' 42\n', '42')).toBe(true)
    expect(exactMatch('Paris', 'paris')).toBe(false)
    expect(containsMatch('The answer is Paris.', ' paris ')).toBe(true)
    expect(containsMatch('Pari', 'Paris')).toBe(false)
    expect(containsMatch('', '')).toBe(true)
    expect(containsMatch('anything', '  ')).toBe(false) // an empty answer matches only an empty response
    const rates = matchRates([{ response: '42', expected: '42' }, { response: 'It is 7', expected: '7' }, { response: 'x', expected: 'y' },
      { response: 'Yes', expected: 'yes' }])
    expect(rates).toMatchObject({ responses: 4, exactMatch: 0.25, containsMatch: 0.75 })
    expect(rates.exactMatchStderr).toBeCloseTo(Math.sqrt((3 * 0.25 ** 2 + 0.75 ** 2) / 3 / 4), 12)
    expect(meanStderr([1])).toBeNull()
  })

  test('lm-eval pair encoding: the context\'s trailing spaces move to the continuation; an empty context is the eos', () => {
    const tok = new ByteTokenizer()
    const b = (s: string) => [...Buffer.from(s)]
    expect(encodePair(tok, 'Answer: ', 'yes')).toEqual({ context: b('Answer:'), continuation: b(' yes') })
    expect(encodePair(tok, 'Answer:', ' yes')).toEqual({ context: b('Answer:'), continuation: b(' yes') })
    expect(encodePair(tok, '', 'yes')).toEqual({ context: [tok.eosId], continuation: b('yes') })
  })

  test('acc_norm lengths are code points (Python len), without the leading space lm-eval keeps out', () => {
    expect(codePoints('café')).toBe(4) // 5 bytes
    expect(codePoints('😀')).toBe(1) // 2 UTF-16 units, 4 bytes
  })
})

describe('plwtune eval: losses', () => {
  test('weighted, completion and prompt loss equal model.evaluate over the same examples; perplexity = exp(completion loss)', async () => {
    const data = writeJsonl(path.join(dir, 'loss.jsonl'), Array.from({ length: 11 }, (_, i) => ({
      instruction: `what is ${i} plus ${i}?`, input: i % 3 === 0 ? `think ${i}` : '', output: String(2 * i) })))
    for (const lambda of [0, 0.3, 1]) {
      const report = await evalJson(['--model', random, '--data', data, '--prompt-loss-weight', String(lambda), '--batch-size', '4', '--device', 'cpu'])
      // the reference: every example in one unpacked batch, one evaluate call
      const tok = new ByteTokenizer()
      const { records } = await readDataset(data)
      const examples = encodeDataset(records, resolveTemplate(QA_TEMPLATE), tok, { maxLength: TINY.nPositions }).examples
      const batch = collate(examples, { promptLossWeight: lambda, padId: tok.eosId })
      const model = await loadModel(random, { device: 'cpu', maxBatch: batch.B, maxSeqLen: batch.T })
      const r = await model.evaluate(batch)
      model.dispose()
      expect(report).toMatchObject({ kind: 'instruction', records: 11, template: 'custom', prompt_loss_weight: lambda, skipped_too_long: 0 })
      if (lambda === 0) expect(report.loss).toBeCloseTo(r.completionLossSum / r.completionCount, 5)
      else expect(report.loss).toBeCloseTo(r.lossSum / r.weightSum, 5)
      expect(report.completion_loss).toBeCloseTo(r.completionLossSum / r.completionCount, 5)
      expect(report.prompt_loss).toBeCloseTo(r.promptLossSum / r.promptCount, 5)
      expect(report.completion_perplexity).toBe(Math.exp(report.completion_loss as number))
      expect(report.completion_tokens).toBe(r.completionCount)
      expect(report.prompt_tokens).toBe(r.promptCount)
      expect(r.completionCount + r.promptCount).toBe(examples.reduce((s, e) => s + e.ids.length - 1, 0))
    }
  })

  test('λ defaults to the model\'s plwtune.json, else 0.1', async () => {
    const data = writeJsonl(path.join(dir, 'facts.jsonl'), FACTS.map(([instruction, output]) => ({ instruction, input: '', output })))
    expect((await evalJson(['--model', memorized, '--data', data])).prompt_loss_weight).toBe(0.25)
    const bare = await tinyModelDir({ meta: false })
    const r = await capture(evalCommand, ['--model', bare, '--data', data, '--template', QA_TEMPLATE, '--json'])
    expect(JSON.parse(r.out).prompt_loss_weight).toBe(0.1)
  })

  test('the human summary names the split and every number', async () => {
    const data = writeJsonl(path.join(dir, 'split.jsonl'), Array.from({ length: 20 }, (_, i) => ({ instruction: `n ${i}`, input: '', output: `${i}` })))
    const r = await capture(evalCommand, ['--model', random, '--data', data, '--split', 'val', '--val-split', '0.2', '--data-seed', '3'])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^eval .* on the val split \(4 records; val 0\.2, test 0, data seed 3\) of .*split\.jsonl\n/)
    for (const name of ['template', 'loss \\(weighted, λ = 0\\.1\\)', 'completion loss', 'prompt loss', 'completion perplexity', 'tokens scored']) {
      expect(r.out).toMatch(new RegExp(`\\n  ${name} +[0-9a-z]`))
    }
  })
})

describe('plwtune eval --generate', () => {
  test('exact and contains match of the responses of a model that memorized its answers', async () => {
    // the model answers "apple", "sky", …; the expected answers are altered to exercise both scores
    const expected = ['apple', 'Sky', 'the grass', 'sno', 'night', 'tulip']
    const data = writeJsonl(path.join(dir, 'rigged.jsonl'), FACTS.map(([instruction], i) => ({ instruction, input: '', output: expected[i] })))
    const out = path.join(dir, 'rigged-responses.jsonl')
    const report = await evalJson(['--model', memorized, '--data', data, '--generate', '--max-new-tokens', '12', '--out', out])
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    expect(lines.map((l) => l.response)).toEqual(FACTS.map(([, a]) => a))
    const rates = matchRates(lines)
    expect(report).toMatchObject({ responses: 6, exact_match: 2 / 6, contains_match: 4 / 6 }) // apple, night; + Sky, sno
    expect(report.exact_match).toBe(rates.exactMatch)
    expect(report.contains_match).toBe(rates.containsMatch)
    expect(report.exact_match_stderr).toBe(rates.exactMatchStderr)
    expect(lines.map((l) => [l.exact_match, l.contains_match])).toEqual(
      [[true, true], [false, true], [false, false], [false, true], [true, true], [false, false]])
  })
})

/**
 * Σ log p(continuation | context) from model.logits on one unpadded row, log-softmax in float64;
 * a sequence longer than n_positions + 1 keeps its last n_positions + 1 tokens (lm-eval's cut).
 */
async function referenceLogLikelihood(modelDir: string, context: string, continuation: string): Promise<number> {
  const tok = new ByteTokenizer()
  const ctx = context === '' ? [tok.eosId] : [...Buffer.from(context)]
  const cont = [...Buffer.from(continuation)]
  const seq = [...ctx, ...cont].slice(-(TINY.nPositions + 1))
  const T = seq.length - 1
  const model = await loadModel(modelDir, { device: 'cpu', maxBatch: 1, maxSeqLen: T })
  const logits = await model.logits({ B: 1, T, tokens: Int32Array.from(seq.slice(0, T)), targets: new Int32Array(T), weights: new Float32Array(T) })
  model.dispose()
  const V = TINY.vocabSize
  let sum = 0
  for (let j = 0; j < cont.length; j++) {
    const t = T - cont.length + j // the position that predicts cont[j]
    const row = Array.from(logits.subarray(t * V, (t + 1) * V), Number)
    const m = Math.max(...row)
    const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0))
    sum += row[cont[j]] - lse
  }
  return sum
}

describe('plwtune eval: multiple choice', () => {
  const records = [
    { context: 'Question: Which is a fruit?\nAnswer:', choices: [' apple', ' a stone', ' café au lait', ' x'], answer: 0 },
    { context: 'The sky is', choices: [' blue', ' green and a very long continuation', ' red'], answer: 2 },
    { context: '', choices: ['yes', 'no'], answer: 1 }, // an empty context: the eos conditions
    { context: 'Pick one:', choices: [' été', ' ete'], answer: 1 },
    // WinoGrande's partial scoring: the sentence to the blank with each option, then the same rest
    { contexts: ['The cup did not fit in the box as the cup', 'The cup did not fit in the box as the box'], continuation: ' was big.', answer: 0 },
    // longer than n_positions (64): the context loses its start, as lm-eval cuts it
    { context: `${'a long preamble, '.repeat(4)}so the answer is`, choices: [' one', ' two'], answer: 1 },
  ]

  test('acc and acc_norm equal a float64 computation from model.logits, per record and over the set, at any batch size', async () => {
    const data = writeJsonl(path.join(dir, 'mc.jsonl'), records)
    const scoresFile = path.join(dir, 'mc-scores.jsonl')
    const report = await evalJson(['--model', random, '--data', data, '--out', scoresFile, '--batch-size', '3'])
    const scores = fs.readFileSync(scoresFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    let acc = 0, accNorm = 0
    for (let i = 0; i < records.length; i++) {
      const r = records[i] as { context?: string; choices?: string[]; contexts?: string[]; continuation?: string; answer: number }
      const pairs = r.choices !== undefined ? r.choices.map((c) => [r.context as string, c]) : (r.contexts as string[]).map((c) => [c, r.continuation as string])
      const lls: number[] = []
      for (const [c, k] of pairs) lls.push(await referenceLogLikelihood(random, c, k))
      // lm-eval: len() of the choice without its leading delimiter space; of the context for multiple inputs
      const lengths = r.choices !== undefined ? r.choices.map((c) => [...c.replace(/^ /, '')].length) : (r.contexts as string[]).map((c) => [...c].length)
      const argmax = (xs: number[]) => xs.reduce((b, x, j) => (x > xs[b] ? j : b), 0)
      const pred = argmax(lls), predNorm = argmax(lls.map((x, j) => x / lengths[j]))
      expect(scores[i].norm_lengths).toEqual(lengths)
      scores[i].loglikelihoods.forEach((x: number, j: number) => expect(x).toBeCloseTo(lls[j], 3))
      expect([scores[i].pred, scores[i].pred_norm]).toEqual([pred, predNorm])
      acc += pred === r.answer ? 1 : 0
      accNorm += predNorm === r.answer ? 1 : 0
    }
    expect(report).toMatchObject({ kind: 'multiple_choice', records: 6, acc: acc / 6, acc_norm: accNorm / 6, choices_truncated: 1,
      loss: null, exact_match: null, template: null })
    // one row per logits call gives the same scores
    const one = path.join(dir, 'mc-one.jsonl')
    await evalJson(['--model', random, '--data', data, '--out', one, '--batch-size', '1'])
    const single = fs.readFileSync(one, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    single.forEach((s, i) => s.loglikelihoods.forEach((x: number, j: number) => expect(x).toBeCloseTo(scores[i].loglikelihoods[j], 4)))
  })

  test('--choices reads the data as multiple choice and reports every bad record with its line and field', async () => {
    const bad = writeJsonl(path.join(dir, 'mc-bad.jsonl'), [
      { context: 'a', choices: [' b', ' c'], answer: 0 },
      { context: 'a', choices: [' b', ' c'], answer: 2 },
      { context: 'a', choices: [' b'], answer: 0 },
      { context: 'a', choices: [' b', 3], answer: '1' },
    ])
    const r = await capture(evalCommand, ['--model', random, '--data', bad])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/mc-bad\.jsonl: 3 invalid multiple-choice records of 4/)
    expect(r.err).toMatch(/mc-bad\.jsonl:2: field "answer": expected an index in \[0, 1\], received 2/)
    expect(r.err).toMatch(/mc-bad\.jsonl:3: field "choices": expected at least 2 entries, received 1/)
    expect(r.err).toMatch(/mc-bad\.jsonl:4: field "choices\[1\]": expected a string, received number/)
    expect(r.err).toMatch(/mc-bad\.jsonl:4: field "answer": expected an integer index, received string "1"/)
    const alpaca = writeJsonl(path.join(dir, 'alpaca.jsonl'), [{ instruction: 'a', input: '', output: 'b' }])
    const forced = await capture(evalCommand, ['--model', random, '--data', alpaca, '--choices'])
    expect(forced.code).toBe(1)
    expect(forced.err).toMatch(/alpaca\.jsonl:1: field "choices": missing/)
  })
})

describe('plwtune eval: errors', () => {
  test('bad flags, missing files and impossible combinations are clear errors', async () => {
    const data = writeJsonl(path.join(dir, 'e.jsonl'), FACTS.map(([instruction, output]) => ({ instruction, input: '', output })))
    const mc = writeJsonl(path.join(dir, 'e-mc.jsonl'), [{ context: 'a', choices: [' b', ' c'], answer: 0 }])
    const cases: Array<[string[], number, RegExp]> = [
      [['--model', random, '--data', data, '--jsn'], 2, /unknown flag --jsn \(did you mean --json\?\)/],
      [['--model', random], 2, /--data FILE is required/],
      [['--data', data], 2, /--model DIR is required/],
      [['--model', random, '--data', path.join(dir, 'none.jsonl')], 2, /--data .*none\.jsonl: no such file/],
      [['--model', path.join(dir, 'no-model'), '--data', data], 2, /--model .*no-model: no such directory/],
      [['--model', random, '--data', data, '--prompt-loss-weight', '1.5'], 2, /--prompt-loss-weight: expected a number in \[0, 1\]/],
      [['--model', random, '--data', data, '--batch-size', '0'], 2, /--batch-size: expected an integer ≥ 1/],
      [['--model', random, '--data', data, '--max-new-tokens', '8'], 2, /--max-new-tokens goes with --generate/],
      [['--model', random, '--data', data, '--out', '-'], 2, /stdout carries the report/],
      [['--model', random, '--data', data, '--out', path.join(dir, 'x.jsonl')], 2, /--out writes per-record results/],
      [['--model', random, '--data', mc, '--generate'], 2, /--generate needs instruction records/],
      [['--model', random, '--data', data, '--split', 'test', '--test-split', '0.9', '--val-split', '0.2'], 2, /must be < 1/],
      [['--model', random, '--data', data, 'extra'], 2, /unexpected argument "extra"/],
    ]
    for (const [argv, code, message] of cases) {
      const r = await capture(evalCommand, argv)
      expect({ argv, code: r.code }).toEqual({ argv, code })
      expect(r.err).toMatch(message)
      expect(r.err).toMatch(/^plwtune eval: /)
      expect(r.out).toBe('')
    }
    const help = await capture(evalCommand, ['--help'])
    expect(help.code).toBe(0)
    expect(help.out).toMatch(/^Usage: plwtune eval/)
  })
})
