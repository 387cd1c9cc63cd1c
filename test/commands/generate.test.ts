/**
 * plwtune generate on tiny models: one prompt, a dataset split to a responses JSONL, cutting at
 * the template's stop strings, the trainer's split reproduced (--run and explicit flags), and
 * the errors a user meets.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { chooseSplit, readRun } from '../../ts/commands/common'
import { generateCommand, ResponseLine } from '../../ts/commands/generate'
import { readDataset, splitDataset } from '../../ts/data'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { loadModel } from '../../ts/model'
import { resolveConfig } from '../../ts/train/config'
import { completionPrefix, cutAtStop, finishResponse, generateOne, recordRequest } from '../../ts/eval/generation'
import { Trainer } from '../../ts/train/trainer'
import { capture } from './io'
import { FACTS, QA_TEMPLATE, tinyModelDir, tmp, writeJsonl } from './tiny-model'

const readLines = (file: string) => fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ResponseLine)

let memorized: string
let facts: string

beforeAll(async () => {
  memorized = await tinyModelDir({ steps: 120 })
  facts = writeJsonl(path.join(tmp(), 'facts.jsonl'), FACTS.map(([instruction, output]) => ({ instruction, input: '', output })))
})

describe('plwtune generate', () => {
  test('one instruction or prompt prints its response, rendered with the training template and cut at its stop', async () => {
    const a = await capture(generateCommand, ['--model', memorized, '--instruction', 'red', '--device', 'cpu'])
    expect(a).toMatchObject({ code: 0, out: 'apple\n', err: '' })
    const b = await capture(generateCommand, ['--model', memorized, '--prompt', 'blue'])
    expect(b.out).toBe('sky\n') // a prompt/completion record: the template maps prompt to {instruction}
    const raw = await capture(generateCommand, ['--model', memorized, '--prompt', 'Q: green\nA: ', '--raw'])
    expect(raw.out).toBe('grass\n') // as it is, no template; still cut at the template's stop
  })

  test('a dataset gives a responses JSONL: one line per record, in order, with the fields and scores', async () => {
    const out = path.join(tmp(), 'responses.jsonl')
    const r = await capture(generateCommand, ['--model', memorized, '--data', facts, '--out', out])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/wrote 6 responses to .*responses\.jsonl: all records of .*facts\.jsonl, template custom; exact match 100\.0%/)
    expect(r.err).toMatch(/generate 6\/6 \(100%\)/) // the progress bar (plain lines off a TTY)
    const lines = readLines(out)
    expect(lines).toHaveLength(FACTS.length)
    lines.forEach((l, i) => {
      expect(Object.keys(l).sort()).toEqual(['contains_match', 'exact_match', 'expected', 'input', 'instruction', 'response', 'source', 'stop_reason'])
      expect(l).toEqual({ instruction: FACTS[i][0], input: '', expected: FACTS[i][1], response: FACTS[i][1], exact_match: true,
        contains_match: true, stop_reason: 'stop', source: `${facts}:${i + 1}` })
    })
    const piped = await capture(generateCommand, ['--model', memorized, '--data', facts, '--out', '-', '--limit', '2'])
    expect(piped.out.trim().split('\n').map((l) => JSON.parse(l).response)).toEqual(['apple', 'sky'])
    expect(piped.err).toMatch(/wrote 2 responses:/)
  })

  test('responses are cut at the template stop strings: the model says "apple END", the response is "apple"', async () => {
    const tok = new ByteTokenizer()
    const template = resolveTemplate(QA_TEMPLATE)
    const { records } = await readDataset(facts)
    const model = await loadModel(memorized, { device: 'cpu' })
    const g = await generateOne(model, tok, recordRequest(template, tok, records[0]), { maxNewTokens: 16 })
    model.dispose()
    expect(g.raw).toBe('apple END') // then the eos, which stopped it
    expect(g).toMatchObject({ response: 'apple', stopReason: 'stop', promptTruncated: 0 })
    // A template without the stop string: nothing to cut, the response keeps " END".
    const uncut = await capture(generateCommand, ['--model', memorized, '--instruction', 'red', '--template', 'Q: {instruction}\nA: {output}'])
    expect(uncut.out).toBe('apple END\n')
    // max tokens: a cut-off answer says so
    const short = path.join(tmp(), 'short.jsonl')
    await capture(generateCommand, ['--model', memorized, '--data', facts, '--out', short, '--max-new-tokens', '2', '--limit', '1'])
    expect(readLines(short)[0]).toMatchObject({ response: 'ap', stop_reason: 'max_tokens', exact_match: false, contains_match: false })
  })

  test('stop cutting and the completion prefix, as pure functions', () => {
    expect(cutAtStop('42 END\nQ: x', [' END', '\nQ:'])).toBe('42')
    expect(cutAtStop('42', [])).toBe('42')
    expect(cutAtStop('a<|im_end|>b', ['<|im_end|>', ''])).toBe('a')
    const rec = { format: 'alpaca' as const, instruction: 'i', input: '', output: 'o', source: { file: 'x', index: 0 } }
    expect(completionPrefix(resolveTemplate('alpaca'), rec)).toBe('\n') // "### Response:" then "\n" + output
    expect(completionPrefix(resolveTemplate('completion'), rec)).toBe(' ') // the leading space of OpenAI's format
    expect(completionPrefix(resolveTemplate('chatml'), rec)).toBe('')
    expect(finishResponse('\n42\n\n### Instruction:\nmore', resolveTemplate('alpaca').stop, '\n')).toBe('42\n\n')
    expect(finishResponse(' 42 END', resolveTemplate('completion').stop, ' ')).toBe('42')
  })

  test('the split is the trainer\'s: --run DIR and explicit --val-split/--test-split/--data-seed give the records the trainer held out', async () => {
    const dir = tmp()
    const data = writeJsonl(path.join(dir, 'data.jsonl'), Array.from({ length: 40 }, (_, i) => ({ instruction: `item ${i}`, input: '', output: String(i % 7) })))
    const run = path.join(dir, 'run')
    const result = await new Trainer(resolveConfig({ source: 'test', values: {
      device: 'cpu', data, template: QA_TEMPLATE, init: { nLayer: 1, nHead: 2, nEmbd: 16, nPositions: 64 }, maxSteps: 1, batchSize: 4,
      valSplit: 0.1, testSplit: 0.2, dataSeed: 7, seed: 3, generateEval: 100, maxNewTokens: 4, out: run,
    } })).fit()
    expect(result.stopReason).toBe('completed')
    const trainerAnswers = fs.readFileSync(path.join(run, 'test_responses.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    const { records } = await readDataset(data)
    const expectedTest = splitDataset(records, { val: 0.1, test: 0.2, seed: 7 }).test

    const viaRun = path.join(dir, 'via-run.jsonl')
    const a = await capture(generateCommand, ['--run', run, '--out', viaRun]) // model: run/final; split: test (the run has one)
    expect(a.code).toBe(0)
    expect(a.out).toMatch(/the test split \(the run's config: val 0\.1, test 0\.2, data seed 7\)/)
    const viaFlags = path.join(dir, 'via-flags.jsonl')
    const b = await capture(generateCommand, ['--model', path.join(run, 'final'), '--data', data, '--split', 'test', '--val-split', '0.1',
      '--test-split', '0.2', '--data-seed', '7', '--max-new-tokens', '4', '--out', viaFlags])
    expect(b.code).toBe(0)
    for (const file of [viaRun, viaFlags]) {
      const lines = readLines(file)
      expect(lines.map((l) => l.instruction)).toEqual(expectedTest.map((r) => (r as { instruction: string }).instruction))
      // the trainer's own answers for its test split, record for record
      expect(lines.map((l) => [l.expected, l.response])).toEqual(trainerAnswers.map((t) => [t.expected, t.response]))
    }
    // the other splits have the trainer's sizes: round(40 · 0.1) = 4 val, 40 − 8 − 4 = 28 train
    const val = path.join(dir, 'val.jsonl'), train = path.join(dir, 'train.jsonl')
    await capture(generateCommand, ['--run', run, '--split', 'val', '--out', val])
    await capture(generateCommand, ['--run', run, '--split', 'train', '--out', train, '--limit', '5'])
    expect(readLines(val)).toHaveLength(4)
    expect(readLines(train).map((l) => l.instruction)).toEqual(splitDataset(records, { val: 0.1, test: 0.2, seed: 7 }).train.slice(0, 5)
      .map((r) => (r as { instruction: string }).instruction))
    // --run fixes the ratios: flags that would change them are refused
    const clash = await capture(generateCommand, ['--run', run, '--test-split', '0.3'])
    expect(clash.code).toBe(2)
    expect(clash.err).toMatch(/--run takes the split from .*config\.json; remove --test-split/)
  })

  test('a run directory written before dataSeed existed split with its seed, and so does --run now', () => {
    const run = tmp()
    const { dataSeed: _, ...older } = resolveConfig({ source: 'test', values: { seed: 7, valSplit: 0.1, testSplit: 0.2 } })
    fs.writeFileSync(path.join(run, 'config.json'), JSON.stringify(older))
    expect(chooseSplit({ split: undefined, valSplit: undefined, testSplit: undefined, dataSeed: undefined, run: readRun(run) }))
      .toMatchObject({ split: 'test', val: 0.1, test: 0.2, seed: 7 })
  })

  test('a model directory without plwtune.json: a warning and the auto template, unless --template says', async () => {
    const bare = await tinyModelDir({ steps: 120, meta: false })
    const warned = await capture(generateCommand, ['--model', bare, '--instruction', 'red', '--max-new-tokens', '4'])
    expect(warned.code).toBe(0)
    expect(warned.err).toMatch(/has no plwtune\.json .* using the auto template/)
    const told = await capture(generateCommand, ['--model', bare, '--instruction', 'red', '--template', QA_TEMPLATE])
    expect(told).toMatchObject({ code: 0, out: 'apple\n', err: '' })
  })

  test('sampling is seeded: the same seed gives the same responses', async () => {
    const run = (seed: string) => capture(generateCommand, ['--model', memorized, '--data', facts, '--out', '-', '--temperature', '1.5',
      '--top-k', '20', '--seed', seed])
    const a = await run('3'), b = await run('3')
    expect(a.out).toBe(b.out)
    expect(a.out.trim().split('\n')).toHaveLength(6)
  })

  test('bad flags and missing files are clear errors (exit 2), and --help prints the usage', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--model', memorized, '--instruction', 'x', '--temprature', '1'], /unknown flag --temprature \(did you mean --temperature\?\)/],
      [['--model', memorized, '--prompt', 'x', '--instruction', 'y'], /give --prompt or --instruction, not both/],
      [['--model', memorized, '--input', 'x'], /--input goes with --instruction/],
      [['--instruction', 'x'], /--model DIR is required/],
      [['--model', path.join(memorized, 'nope'), '--instruction', 'x'], /--model .*nope: no such directory/],
      [['--model', memorized], /give --prompt, --instruction or --data FILE/],
      [['--model', memorized, '--data', path.join(memorized, 'missing.jsonl')], /--data .*missing\.jsonl: no such file/],
      [['--model', memorized, '--data', facts, '--split', 'dev'], /--split: expected one of train, val, test, all, received "dev"/],
      [['--model', memorized, '--data', facts, '--split', 'test'], /the test ratio is 0 .* give --test-split X and --data-seed N/],
      [['--model', memorized, '--data', facts, '--top-p', '0'], /--top-p: expected a number in \(0, 1\]/],
      [['--model', memorized, '--data', facts, '--max-new-tokens', '1.5'], /--max-new-tokens: expected an integer/],
      [['--model', memorized, '--data', facts, '--device', 'tpu'], /--device: expected cpu, cuda or auto/],
      [['--run', path.join(memorized)], /config\.json.*(not a plwtune run directory|Expected|unknown key)/],
    ]
    for (const [argv, message] of cases) {
      const r = await capture(generateCommand, argv)
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 })
      expect(r.err).toMatch(message)
      expect(r.err).toMatch(/^plwtune generate: /)
    }
    const mc = writeJsonl(path.join(tmp(), 'mc.jsonl'), [{ context: 'a', choices: [' b', ' c'], answer: 0 }])
    const wrongKind = await capture(generateCommand, ['--model', memorized, '--data', mc])
    expect(wrongKind.code).toBe(2)
    expect(wrongKind.err).toMatch(/multiple-choice records .* plwtune eval/)
    const help = await capture(generateCommand, ['--help'])
    expect(help.code).toBe(0)
    expect(help.out).toMatch(/^Usage: plwtune generate/)
  })
})
