/**
 * plwtune chat as a function: piped input (no terminal: no prompt, one answer per line, notes on
 * stderr), --help, and the usage errors.
 */
import { Readable, Writable } from 'node:stream'
import { chatCommand } from '../../ts/commands/chat'
import { capture } from '../commands/io'
import { tinyModelDir } from '../commands/tiny-model'

let tiny: string

beforeAll(async () => {
  tiny = await tinyModelDir({ steps: 120 })
})

async function piped(argv: string[], input: string): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const sink = (append: (s: string) => void) => new Writable({ write(chunk, _enc, cb) { append(String(chunk)); cb() } })
  const code = await chatCommand(argv, { in: Readable.from([input]), out: sink((s) => { out += s }), err: sink((s) => { err += s }) })
  return { code, out, err }
}

describe('plwtune chat', () => {
  test('piped input: one answer a line, commands applied in order, notes on stderr; the end of input ends the chat', async () => {
    const r = await piped(['--model', tiny, '--temperature', '0', '--max-tokens', '12', '--device', 'cpu'],
      'red\n/reset\n\nblue\n/reset\n/system be brief\n/system\ngreen\n/params seed=-1\n/nope\n')
    expect(r.code).toBe(0)
    expect(r.out).toBe('apple\nsky\ngrass\n')
    expect(r.err).toMatch(/^plwtune chat: .* on cpu, template custom \(the training template\), context 64 tokens, temperature=0 top_p=0\.9/)
    expect(r.err).toContain('(conversation cleared)\n')
    expect(r.err).toContain('(system prompt set; the custom template has no system role, so it goes first, as plain text)\n(system prompt cleared)\n')
    expect(r.err).toContain('(/params: seed: expected an integer ≥ 0, or random, received "-1")\n')
    expect(r.err).toContain('(unknown command /nope')
  })

  test('--help: the flags grouped with their types and defaults, the in-chat commands, examples', async () => {
    const r = await capture(chatCommand, ['--help'])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^Usage: plwtune chat --model DIR/)
    expect(r.out).toMatch(/Generation:\n(.*\n)*\s+--temperature X\s+sampling temperature; 0 is greedy \[0\.7\]/)
    expect(r.out).toMatch(/--max-tokens N\s+new tokens per answer at most \[512\]/)
    expect(r.out).toContain('/params k=v ...')
    expect(r.out).toMatch(/Examples:\n {2}plwtune chat --model/)
  })

  test('usage errors exit 2 and name the flag', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--model', tiny, '--top-p', '0'], /--top-p: expected a number in \(0, 1\], received 0/],
      [['--model', tiny, '--temprature', '1'], /unknown flag --temprature \(did you mean --temperature\?\)/],
      [['--model', tiny, '--max-tokens', '0'], /--max-tokens: expected an integer ≥ 1/],
      [['--model', tiny, '--device', 'tpu'], /--device: expected cpu, cuda or auto/],
      [[], /--model DIR is required/],
      [['--model', tiny, 'hello'], /unexpected argument "hello"/],
    ]
    for (const [argv, message] of cases) {
      const r = await capture(chatCommand, argv)
      expect(r.code).toBe(2)
      expect(r.err).toMatch(message)
      expect(r.err.startsWith('plwtune chat: ')).toBe(true)
    }
  })
})
