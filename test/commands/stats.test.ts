/**
 * `plwtune stats` on tiny datasets counted by hand with the byte tokenizer (one token per
 * UTF-8 byte): means, sample standard deviations, totals, the ratio, the verdict both ways,
 * the --json shape, the mapping of each format, and every error a user can make.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { statsCommand } from '../../ts/commands/stats'
import { ByteTokenizer, recordsFromObjects } from '../../ts/data'
import { datasetStats, fieldStats, plwAdvice } from '../../ts/data/stats'
import { TINY_MERGES, jsonl, tempDir, tinyBpeTokenizer, writeFile } from '../data/fixtures'
import { capture } from './io'

const dir = tempDir()
const run = (argv: string[]) => capture(statsCommand, argv)

// Byte counts: instruction 4, 2 ("é" is two bytes), 6; input 0, 3, 1; output 2, 1, 3.
const SHORT = [
  { instruction: 'abcd', input: '', output: 'xy' },
  { instruction: 'é', input: 'cde', output: 'x' },
  { instruction: 'abcdef', input: 'f', output: 'xyz' },
]
// instruction mean 4, sample std sqrt(((4-4)² + (2-4)² + (6-4)²) / 2) = 2
// input mean 4/3, sample std sqrt(((16 + 25 + 1) / 9) / 2) = sqrt(7/3)
// completion mean 2, sample std sqrt((0 + 1 + 1) / 2) = 1
// total 12 + 4 + 6 = 22; ratio 2 / (4 + 4/3) = 0.375
const shortFile = writeFile(dir, 'short.jsonl', jsonl(SHORT))
// instruction 1, 1; input 0, 2; output 8, 10: ratio 9 / (1 + 1) = 4.5
const longFile = writeFile(dir, 'long.json', JSON.stringify([
  { instruction: 'a', output: 'abcdefgh' },
  { instruction: 'b', input: 'cd', output: 'abcdefghij' },
], null, 2))

describe('the numbers, by hand', () => {
  test('means, sample standard deviations, totals and the ratio of a short-completion set', async () => {
    const r = await run(['--data', shortFile, '--json'])
    expect(r.code).toBe(0)
    expect(r.err).toBe('')
    const j = JSON.parse(r.out)
    expect(j.records).toBe(3)
    expect(j.instruction.mean).toBeCloseTo(4, 12)
    expect(j.instruction.std).toBeCloseTo(2, 12)
    expect(j.input.mean).toBeCloseTo(4 / 3, 12)
    expect(j.input.std).toBeCloseTo(Math.sqrt(7 / 3), 12)
    expect(j.completion.mean).toBeCloseTo(2, 12)
    expect(j.completion.std).toBeCloseTo(1, 12)
    expect(j.total_tokens).toBe(22)
    expect(j.completion_prompt_ratio).toBeCloseTo(0.375, 12)
    expect(j.verdict).toBe('short-completion')
    expect(j.recommended_plw).toBe(0.1)
    expect(j.reason).toMatch(/shorter than prompts/)
    expect(j.reason).not.toMatch(/close to 1/)
    expect(j.tokenizer).toBe('byte')
  })

  test('a long-completion set (JSON array, missing input): verdict long, λ 0', async () => {
    const j = JSON.parse((await run(['--data', longFile, '--json'])).out)
    expect(j).toMatchObject({ records: 2, total_tokens: 1 + 1 + 0 + 2 + 8 + 10, verdict: 'long-completion', recommended_plw: 0 })
    expect(j.input).toEqual({ mean: 1, std: Math.sqrt(2) })
    expect(j.completion_prompt_ratio).toBeCloseTo(4.5, 12)
    expect(j.reason).toMatch(/no relationship between λ and performance/)
  })

  test('--json prints exactly one object with exactly these keys', async () => {
    const r = await run(['--json', '--data', shortFile])
    expect(r.out.trim().split('\n')).toHaveLength(1)
    const j = JSON.parse(r.out)
    expect(Object.keys(j)).toEqual(['records', 'instruction', 'input', 'completion', 'total_tokens',
      'completion_prompt_ratio', 'verdict', 'recommended_plw', 'reason', 'tokenizer'])
    for (const k of ['instruction', 'input', 'completion']) expect(Object.keys(j[k])).toEqual(['mean', 'std'])
    expect(typeof j.records).toBe('number')
    expect(typeof j.recommended_plw).toBe('number')
  })

  test('the human report: the table, the ratio, the verdict and the reason', async () => {
    const r = await run(['--data', shortFile])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^data: .*short\.jsonl: 3 records \(alpaca, detected\)$/m)
    expect(r.out).toMatch(/^tokenizer: the built-in byte tokenizer/m)
    expect(r.out).toMatch(/^\| tokens per record +\| +mean \| +std \| +total \|$/m)
    expect(r.out).toMatch(/^\| instruction +\| +4\.00 \| +2\.00 \| +12 \|$/m)
    expect(r.out).toMatch(/^\| input +\| +1\.33 \| +1\.53 \| +4 \|$/m)
    expect(r.out).toMatch(/^\| completion +\| +2\.00 \| +1\.00 \| +6 \|$/m)
    expect(r.out).toMatch(/^\| all +\| +7\.33 \| +\| +22 \|$/m)
    expect(r.out).toMatch(/sample standard deviation \(n − 1\)/)
    expect(r.out).toMatch(/^completion\/prompt ratio: 0\.375 = 2\.00 \/ \(4\.00 \+ 1\.33\)$/m)
    expect(r.out).toMatch(/^verdict: short-completion$/m)
    expect(r.out).toMatch(/^recommended prompt loss weight: 0\.1 \(--prompt-loss-weight 0\.1\)$/m)
    expect(r.out).toMatch(/^reason: completions are shorter than prompts/m)
  })
})

describe('formats map onto instruction, input and completion', () => {
  test('prompt-completion: prompt → instruction, input 0', async () => {
    const file = writeFile(dir, 'pc.jsonl', jsonl([{ prompt: 'abcd', completion: 'xy' }, { prompt: 'ab', completion: 'xyzw' }]))
    const j = JSON.parse((await run(['--data', file, '--json'])).out)
    expect(j.instruction).toEqual({ mean: 3, std: Math.sqrt(2) })
    expect(j.input).toEqual({ mean: 0, std: 0 })
    expect(j.completion).toEqual({ mean: 3, std: Math.sqrt(2) })
    expect(j.completion_prompt_ratio).toBe(1)
    expect(j.verdict).toBe('long-completion') // exactly 1 is not shorter
  })

  test('chat: system and user contents → instruction, every assistant turn → completion', async () => {
    const file = writeFile(dir, 'chat.jsonl', jsonl([
      { messages: [{ role: 'system', content: 'sys' }, { role: 'user', content: 'hello' }, { role: 'assistant', content: 'ok' },
        { role: 'user', content: 'q' }, { role: 'assistant', content: 'yes' }] },
    ]))
    const j = JSON.parse((await run(['--data', file, '--json'])).out)
    expect(j).toMatchObject({ records: 1, instruction: { mean: 9, std: 0 }, input: { mean: 0, std: 0 },
      completion: { mean: 5, std: 0 }, total_tokens: 14 })
  })

  test('--format overrides detection', async () => {
    const r = await run(['--data', shortFile, '--format', 'chat'])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/short\.jsonl:1: field "messages": missing/)
  })
})

describe('inputs: the demo set and a model tokenizer', () => {
  test('no --data: the built-in demo set (short completions, λ 0.1)', async () => {
    const r = await run(['--demo-records', '90', '--json'])
    expect(r.code).toBe(0)
    const j = JSON.parse(r.out)
    expect(j.records).toBe(90)
    expect(j.verdict).toBe('short-completion')
    expect(j.recommended_plw).toBe(0.1)
    expect((await run(['--demo-records', '90'])).out).toMatch(/^data: built-in demo set: 90 records/m)
  })

  test('--model DIR counts with its tokenizer.json', async () => {
    const model = path.join(dir, 'model')
    fs.mkdirSync(model)
    fs.writeFileSync(path.join(model, 'tokenizer.json'), JSON.stringify(tinyBpeTokenizer(TINY_MERGES)))
    // " the the" is 8 bytes but 2 tokens ("Ġthe" twice); "abc" is 3 of either.
    const file = writeFile(dir, 'bpe.jsonl', jsonl([{ instruction: 'abc', output: ' the the' }]))
    expect(JSON.parse((await run(['--data', file, '--json'])).out).completion.mean).toBe(8)
    const j = JSON.parse((await run(['--data', file, '--model', model, '--json'])).out)
    expect(j.completion.mean).toBe(2)
    expect(j.tokenizer).toBe(model)
    expect(j.verdict).toBe('short-completion')
  })
})

describe('errors', () => {
  test('a missing file', async () => {
    const r = await run(['--data', path.join(dir, 'nope.jsonl')])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/^plwtune stats: .*nope\.jsonl: cannot open the dataset \(no such file\)/)
    expect(r.out).toBe('')
  })

  test('bad flags exit 2 and name the flag', async () => {
    expect(await run(['--jsn'])).toMatchObject({ code: 2, err: expect.stringMatching(/unknown flag --jsn \(did you mean --json\?\)/) })
    expect(await run(['--data'])).toMatchObject({ code: 2, err: expect.stringMatching(/--data needs a value/) })
    expect(await run(['--format', 'csv'])).toMatchObject({ code: 2, err: expect.stringMatching(/--format: expected one of auto, alpaca/) })
    expect(await run(['--demo-records', '1.5'])).toMatchObject({ code: 2, err: expect.stringMatching(/expected an integer/) })
    expect(await run(['--demo-records', '0'])).toMatchObject({ code: 2 })
    expect(await run(['--data', shortFile, '--demo-records', '5'])).toMatchObject({ code: 2, err: expect.stringMatching(/not with --data/) })
    expect(await run(['data.json'])).toMatchObject({ code: 2, err: expect.stringMatching(/unexpected argument "data.json"/) })
  })

  test('a bad record is reported with file:line and field; --skip-invalid skips and counts it', async () => {
    const file = writeFile(dir, 'bad.jsonl', jsonl([SHORT[0], { instruction: 'abc', output: 5 }, SHORT[1], SHORT[2]]))
    const r = await run(['--data', file])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/bad\.jsonl:2: field "output": expected a string, received number/)
    const skipped = await run(['--data', file, '--skip-invalid'])
    expect(skipped.code).toBe(0)
    expect(skipped.out).toMatch(/3 records \(alpaca, detected\), 1 invalid skipped/)
    expect(JSON.parse((await run(['--data', file, '--skip-invalid', '--json'])).out).total_tokens).toBe(22)
  })

  test('a model directory without tokenizer.json', async () => {
    const r = await run(['--data', shortFile, '--model', dir])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/no tokenizer\.json/)
  })

  test('--help prints the usage and exits 0', async () => {
    for (const flag of ['--help', '-h']) {
      const r = await run([flag])
      expect(r.code).toBe(0)
      expect(r.out).toMatch(/^Usage: plwtune stats/)
    }
  })
})

describe('datasetStats, fieldStats and plwAdvice', () => {
  test('the sample standard deviation against the textbook formula on random counts; one value has std 0', () => {
    let seed = 7
    const xs = Array.from({ length: 257 }, () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % 100 })
    const n = xs.length
    const sum = xs.reduce((a, b) => a + b, 0)
    const sumSq = xs.reduce((a, b) => a + b * b, 0)
    const s = fieldStats(xs)
    expect(s.total).toBe(sum)
    expect(s.mean).toBeCloseTo(sum / n, 12)
    expect(s.std).toBeCloseTo(Math.sqrt((sumSq - (sum * sum) / n) / (n - 1)), 9)
    expect(fieldStats([5])).toEqual({ mean: 5, std: 0, total: 5 })
    expect(() => fieldStats([])).toThrow(/at least one value/)
  })

  test('the verdict threshold is a ratio of 1; near it the reason says the verdict is weak', () => {
    expect(plwAdvice(0.999)).toMatchObject({ verdict: 'short-completion', recommendedPlw: 0.1 })
    expect(plwAdvice(1)).toMatchObject({ verdict: 'long-completion', recommendedPlw: 0 })
    expect(plwAdvice(0.1).reason).not.toMatch(/close to 1/)
    expect(plwAdvice(0.6).reason).toMatch(/close to 1/)
    expect(plwAdvice(1.9).reason).toMatch(/close to 1/)
    expect(plwAdvice(2).reason).not.toMatch(/close to 1/)
    expect(plwAdvice(null)).toMatchObject({ verdict: 'long-completion', recommendedPlw: 0 })
  })

  test('no prompt tokens: no ratio (null in JSON)', () => {
    const { records } = recordsFromObjects([{ prompt: '', completion: 'abc' }])
    const s = datasetStats(records, new ByteTokenizer())
    expect(s.completionPromptRatio).toBeNull()
    expect(s.verdict).toBe('long-completion')
  })
})
