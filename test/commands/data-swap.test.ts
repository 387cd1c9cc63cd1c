/**
 * `plwtune data swap` (the study's AlpacaDataShort construction) on tiny datasets counted by
 * hand with the byte tokenizer: both phrasings, order, unchanged records (extra keys and all),
 * the tie, JSON vs JSONL by extension, the errors, and idempotence.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { dataSwapCommand } from '../../ts/commands/data-swap'
import { AlpacaRecord, ByteTokenizer, readDataset, recordsFromObjects } from '../../ts/data'
import { recordTokenCounts } from '../../ts/data/stats'
import { SWAP_INSTRUCTION, SWAP_INSTRUCTION_WITH_CONTEXT, swapLongCompletions } from '../../ts/data/swap'
import { TINY_MERGES, jsonl, tempDir, tinyBpeTokenizer, writeFile } from '../data/fixtures'
import { capture } from './io'

const dir = tempDir()
const run = (argv: string[]) => capture(dataSwapCommand, argv)
const NO_INPUT = 'Predict the prompt that generated the following AI output.'
const WITH_CONTEXT = 'Predict the prompt that generated the below AI output given the following context. Context: '

const DATA = [
  { instruction: 'Say', input: '', output: 'a longer answer' }, // 15 > 3 + 0: swapped, no-input phrasing
  { id: 7, instruction: 'Add these', input: '1 2', output: '3' }, // 1 < 9 + 3: unchanged, id kept
  { instruction: 'Echo', input: 'ctx', output: 'something long here', category: 'x' }, // 19 > 4 + 3: swapped, with context
  { instruction: 'abc', input: 'de', output: 'fghij' }, // 5 = 3 + 2: not longer, unchanged
  { instruction: 'Name it.', input: null, output: 'ok' }, // unchanged, null input kept as null
]
const EXPECTED = [
  { instruction: NO_INPUT, input: 'a longer answer', output: 'Say' },
  DATA[1],
  { instruction: WITH_CONTEXT + 'ctx', input: 'something long here', output: 'Echo', category: 'x' },
  DATA[3],
  DATA[4],
]
const input = writeFile(dir, 'in.jsonl', jsonl(DATA))
const readJsonl = (file: string) => fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))

describe('the swap', () => {
  test('JSONL out: both phrasings, order kept, the others unchanged with their extra keys', async () => {
    const out = path.join(dir, 'out.jsonl')
    const r = await run(['--data', input, '--out', out])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(SWAP_INSTRUCTION).toBe(NO_INPUT)
    expect(SWAP_INSTRUCTION_WITH_CONTEXT).toBe(WITH_CONTEXT)
    expect(readJsonl(out)).toEqual(EXPECTED)
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]) // the temporary file was renamed
    expect(r.out).toMatch(/^swapped 2 of 5 records \(completion longer than prompt\); 3 unchanged$/m)
    // bytes before: instruction 3+9+4+3+8 = 27, input 0+3+3+2+0 = 8, output 15+1+19+5+2 = 42 → 42/35 = 1.2
    // after: instruction 58+9+95+3+8 = 173, input 15+3+19+2+0 = 39, output 3+1+4+5+2 = 15 → 15/212
    expect(NO_INPUT.length).toBe(58)
    expect((WITH_CONTEXT + 'ctx').length).toBe(95)
    expect(r.out).toContain(`completion/prompt ratio: 1.200 (long-completion) → ${(15 / 212).toFixed(3)} (short-completion)`)
    expect(r.out).toMatch(/wrote .*out\.jsonl \(JSON Lines, 5 records\)/)
  })

  test('JSON out (from a JSON array in): the same records as one indented array, readable back', async () => {
    const arrayIn = writeFile(dir, 'in.json', JSON.stringify(DATA, null, 4))
    const out = path.join(dir, 'sub', 'out.json') // its folder is created
    const r = await run(['--data', arrayIn, '--out', out])
    expect(r.code).toBe(0)
    const text = fs.readFileSync(out, 'utf8')
    expect(text.startsWith('[\n  {')).toBe(true)
    expect(JSON.parse(text)).toEqual(EXPECTED)
    const back = await readDataset(out)
    expect(back.records.map((x) => (x as AlpacaRecord).output)).toEqual(['Say', '3', 'Echo', 'fghij', 'ok'])
    expect(r.out).toMatch(/wrote .*out\.json \(a JSON array, 5 records\)/)
  })

  test('JSONL with a BOM, CRLF line ends and blank lines: each record still found by its line', async () => {
    const text = '\ufeff' + DATA.map((d) => JSON.stringify(d)).join('\r\n\r\n') + '\r\n'
    const out = path.join(dir, 'crlf-out.jsonl')
    expect((await run(['--data', writeFile(dir, 'crlf.jsonl', text), '--out', out])).code).toBe(0)
    expect(readJsonl(out)).toEqual(EXPECTED)
  })

  test('idempotent: swapping the output again changes nothing', async () => {
    const once = path.join(dir, 'once.jsonl')
    const twice = path.join(dir, 'twice.jsonl')
    expect((await run(['--data', input, '--out', once])).code).toBe(0)
    const r = await run(['--data', once, '--out', twice])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/swapped 0 of 5 records/)
    expect(fs.readFileSync(twice, 'utf8')).toBe(fs.readFileSync(once, 'utf8'))
  })

  test('property: on random records, no swapped record has a completion longer than its prompt, and a second pass swaps none', () => {
    let seed = 12345
    const rand = (n: number) => { seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0; return seed % n }
    const alphabet = ['a', 'b', ' ', 'é', '€', '\n', 'z']
    const text = (max: number) => Array.from({ length: rand(max + 1) }, () => alphabet[rand(alphabet.length)]).join('')
    const items = Array.from({ length: 400 }, () => ({ instruction: 'i' + text(30), input: rand(2) === 0 ? '' : text(30), output: text(90) }))
    const { records } = recordsFromObjects(items)
    const tokenizer = new ByteTokenizer()
    const once = swapLongCompletions(records as AlpacaRecord[], tokenizer)
    expect(once.swapped.some(Boolean)).toBe(true)
    expect(once.swapped.some((s) => !s)).toBe(true)
    once.records.forEach((r, i) => {
      const c = recordTokenCounts(r, tokenizer)
      expect(c.completion).toBeLessThanOrEqual(c.instruction + c.input)
      if (!once.swapped[i]) expect(r).toBe(records[i])
    })
    const twice = swapLongCompletions(once.records, tokenizer)
    expect(twice.swapped.every((s) => !s)).toBe(true)
    expect(twice.records).toEqual(once.records)
  })

  test('"longer" is in tokens of --model\'s tokenizer', async () => {
    const model = path.join(dir, 'model')
    fs.mkdirSync(model)
    fs.writeFileSync(path.join(model, 'tokenizer.json'), JSON.stringify(tinyBpeTokenizer(TINY_MERGES)))
    // " the the the": 12 bytes but 3 tokens; "Say it" has 6 of either.
    const file = writeFile(dir, 'bpe.jsonl', jsonl([{ instruction: 'Say it', input: '', output: ' the the the' }]))
    const bytes = path.join(dir, 'bpe-bytes.jsonl')
    const tokens = path.join(dir, 'bpe-tokens.jsonl')
    expect((await run(['--data', file, '--out', bytes])).out).toMatch(/swapped 1 of 1/)
    const r = await run(['--data', file, '--out', tokens, '--model', model])
    expect(r.out).toMatch(/swapped 0 of 1/)
    expect(r.out).toContain(`tokenizer: ${model}/tokenizer.json`)
  })
})

describe('errors', () => {
  test('--out must end in .json or .jsonl; nothing is written otherwise', async () => {
    for (const [name, why] of [['out.txt', '".txt"'], ['out', 'no extension']]) {
      const out = path.join(dir, name)
      const r = await run(['--data', input, '--out', out])
      expect(r.code).toBe(2)
      expect(r.err).toContain(`expected a file ending in .json (a JSON array) or .jsonl (JSON Lines), received ${why}`)
      expect(fs.existsSync(out)).toBe(false)
    }
  })

  test('missing flags, unknown flags, --out over the input', async () => {
    expect(await run(['--out', path.join(dir, 'x.json')])).toMatchObject({ code: 2, err: expect.stringMatching(/--data FILE is required/) })
    expect(await run(['--data', input])).toMatchObject({ code: 2, err: expect.stringMatching(/--out FILE is required/) })
    expect(await run(['--data', input, '--outt', 'x.json'])).toMatchObject({ code: 2, err: expect.stringMatching(/unknown flag --outt \(did you mean --out\?\)/) })
    expect(await run(['--data', input, '--out', input])).toMatchObject({ code: 2, err: expect.stringMatching(/is the input file/) })
    expect((await run(['--help'])).out).toMatch(/^Usage: plwtune data swap/)
  })

  test('a missing file; a bad record with file:line (or skipped with --skip-invalid)', async () => {
    const missing = await run(['--data', path.join(dir, 'nope.json'), '--out', path.join(dir, 'x.json')])
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/nope\.json: cannot open the dataset \(no such file\)/)
    const bad = writeFile(dir, 'bad.jsonl', jsonl([DATA[0], { instruction: '', output: 'x' }, DATA[1]]))
    const out = path.join(dir, 'bad-out.jsonl')
    const r = await run(['--data', bad, '--out', out])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(/bad\.jsonl:2: field "instruction": expected a non-empty string/)
    expect(fs.existsSync(out)).toBe(false)
    const skipped = await run(['--data', bad, '--out', out, '--skip-invalid'])
    expect(skipped.code).toBe(0)
    expect(skipped.out).toMatch(/1 invalid skipped/)
    expect(readJsonl(out)).toEqual([EXPECTED[0], EXPECTED[1]])
  })

  test('records of another format are refused', async () => {
    const pc = writeFile(dir, 'pc.jsonl', jsonl([{ prompt: 'a', completion: 'bcd' }]))
    const chat = writeFile(dir, 'chat.jsonl', jsonl([{ messages: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'bcd' }] }]))
    for (const [file, format] of [[pc, 'prompt-completion'], [chat, 'chat']]) {
      const r = await run(['--data', file, '--out', path.join(dir, 'x.jsonl')])
      expect(r.code).toBe(1)
      expect(r.err).toContain(`holds ${format} records; data swap is defined on Alpaca records`)
    }
  })
})
