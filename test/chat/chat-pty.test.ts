/**
 * plwtune chat in a pseudo-terminal, as a person uses it: util-linux `script` gives the chat a
 * pty, the test types lines (and Ctrl-C / Ctrl-D as the raw bytes a terminal sends) and reads
 * what appears on the screen, ANSI escapes removed.
 *
 * Runs the compiled CLI (dist/, which `npm test` builds first with tsc): `node dist/ts/cli.js
 * chat`, or chatCommand from dist/ directly while the dispatcher does not list `chat`.
 *
 * - tinyModelDir's memorizing model (the training template, no chat template): its answers,
 *   /reset, /params errors, the note when old turns are dropped, /exit;
 * - chatModelDir (its own chat_template, which it learned to follow): the history ("again"
 *   repeats the last answer), /reset ("again" with nothing before it: "nothing"), /system
 *   ("caps": capitals), Ctrl-D;
 * - a babbling model: Ctrl-C stops a long answer and the prompt comes back, a second Ctrl-C at
 *   the prompt leaves with status 0, as two quick Ctrl-Cs during an answer do.
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { tinyModelDir } from '../commands/tiny-model'
import { babblerDir, chatModelDir } from './models'

const ROOT = path.resolve(__dirname, '../..')
const HAS_SCRIPT = spawnSync('script', ['--version']).status === 0
const maybe = HAS_SCRIPT ? describe : describe.skip

/** The command line that starts the chat from dist/. */
function chatCommandLine(args: string[]): string[] {
  const cli = path.join(ROOT, 'dist/ts/cli.js')
  const direct = path.join(ROOT, 'dist/ts/commands/chat.js')
  if (!fs.existsSync(direct)) throw new Error(`${direct} is missing: build with npx tsc -p tsconfig.json first`)
  if (fs.readFileSync(cli, 'utf8').includes('commands/chat')) return [process.execPath, cli, 'chat', ...args]
  return [process.execPath, '-e', `require(${JSON.stringify(direct)}).chatCommand(process.argv.slice(1)).then((c) => process.exit(c))`, '--', ...args]
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
/** The screen's text: ANSI escape sequences and carriage returns removed. */
const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[ -/]*[@-~]/g, '').replace(/\x1b[=>]/g, '').replace(/\r/g, '')

/** A chat in a pty. */
class Pty {
  private raw = ''
  private mark = 0
  private readonly child: ChildProcess
  private exited = false
  readonly exit: Promise<number | null>

  constructor(args: string[]) {
    const cmd = chatCommandLine(args).map(quote).join(' ')
    this.child = spawn('script', ['-qfec', cmd, '/dev/null'], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, TERM: 'xterm' } })
    this.child.stdout!.on('data', (d: Buffer) => { this.raw += d.toString('utf8') })
    this.child.stderr!.on('data', (d: Buffer) => { this.raw += d.toString('utf8') })
    this.exit = new Promise((resolve) => this.child.on('exit', (code) => { this.exited = true; resolve(code) }))
  }

  /** Everything shown so far. */
  get screen(): string {
    return plain(this.raw)
  }

  /**
   * Waits until the text shown since the last match matches `re`; returns that text (up to
   * the end of the match) and moves the mark past it.
   */
  async until(re: RegExp, timeoutMs = 20000): Promise<string> {
    const start = Date.now()
    while (true) {
      const text = plain(this.raw.slice(this.mark))
      const m = re.exec(text)
      if (m !== null) {
        // Move the mark to the raw position where the match ends (the plain text is a subsequence of the raw).
        const end = m.index + m[0].length
        let seen = 0
        let i = this.mark
        while (seen < end && i < this.raw.length) {
          const rest = this.raw.slice(i)
          const esc = /^(\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[=>]|\r)/.exec(rest)
          if (esc !== null) { i += esc[0].length; continue }
          const cp = rest.codePointAt(0) as number
          i += cp > 0xffff ? 2 : 1
          seen += cp > 0xffff ? 2 : 1
        }
        this.mark = i
        return text.slice(0, end)
      }
      if (this.exited) throw new Error(`the chat ended while waiting for ${re}:\n${this.screen}`)
      if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${re} in:\n${text}\n--- whole screen ---\n${this.screen}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Waits for the prompt. */
  prompt(): Promise<string> {
    return this.until(/> $/)
  }

  /** Types a line (Enter is \r on a terminal) and returns what appears up to the next prompt. */
  async say(line: string): Promise<string> {
    this.send(line + '\r')
    const shown = await this.prompt()
    // What follows the echoed line: the answer and notes.
    const at = shown.indexOf(line + '\n')
    return (at >= 0 ? shown.slice(at + line.length + 1) : shown).replace(/> $/, '')
  }

  send(bytes: string): void {
    this.child.stdin!.write(bytes)
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL')
  }
}

let tiny: string
let chat: string
let babbler: string
const open: Pty[] = []
const start = (args: string[]) => {
  const p = new Pty(args)
  open.push(p)
  return p
}

maybe('plwtune chat in a terminal', () => {
  beforeAll(async () => {
    tiny = await tinyModelDir({ steps: 120 })
    chat = await chatModelDir()
    babbler = await babblerDir()
  })
  afterEach(() => {
    for (const p of open.splice(0)) p.kill()
  })

  test('the training template of a plwtune model: its answers, /reset, /params errors, dropped turns, /exit', async () => {
    const c = start(['--model', tiny, '--temperature', '0', '--max-tokens', '12', '--device', 'cpu'])
    const banner = await c.prompt()
    expect(banner).toMatch(/template custom \(the training template\), context 64 tokens, temperature=0 top_p=0\.9 top_k=0 max_tokens=12 seed=random/)
    expect(await c.say('red')).toBe('apple\n')
    expect(await c.say('/reset')).toBe('(conversation cleared)\n')
    expect(await c.say('blue')).toBe('sky\n')
    expect(await c.say('/params temperature=hot top_q=0.5')).toBe('(/params: temperature: expected a number ≥ 0 (0 is greedy), received "hot"; ' +
      'unknown parameter "top_q" (did you mean top_p?); the parameters are temperature, top_p, top_k, max_tokens, seed)\n')
    expect(await c.say('/params max_tokens=30')).toBe('(temperature=0 top_p=0.9 top_k=0 max_tokens=30 seed=random)\n')
    // 30 tokens of room: "Q: blue\nA: sky END" + eos (19) and a second turn (≥ 16) leave no room for a third question.
    expect(await c.say('white')).not.toMatch(/dropped/)
    expect(await c.say('pink')).toMatch(/^\(dropped the oldest turn of the conversation to fit the model's context of 64 tokens\)\n/)
    c.send('/exit\r')
    expect(await c.exit).toBe(0)
  })

  test("a model's chat_template: the history, /reset and /system change the answers as it learned; Ctrl-D leaves", async () => {
    const c = start(['--model', chat, '--temperature', '0', '--max-tokens', '12'])
    expect(await c.prompt()).toMatch(/template chat_template \(the model's chat_template\)/)
    expect(await c.say('red')).toBe('apple\n')
    expect(await c.say('again')).toBe('apple\n') // the history is in the prompt
    expect(await c.say('/reset')).toBe('(conversation cleared)\n')
    expect(await c.say('again')).toBe('nothing\n') // … and gone after /reset
    expect(await c.say('/system caps')).toBe('(system prompt set)\n')
    expect(await c.say('/reset')).toBe('(conversation cleared)\n')
    expect(await c.say('pink')).toBe('ROSE\n')
    expect(await c.say('/system')).toBe('(system prompt cleared)\n')
    expect(await c.say('/reset')).toBe('(conversation cleared)\n')
    expect(await c.say('pink')).toBe('rose\n')
    expect(await c.say('/help')).toMatch(/^Commands:\n {2}\/reset .*\nKeys: Ctrl-C stops an answer/s)
    c.send('\x04') // Ctrl-D at an empty prompt
    expect(await c.exit).toBe(0)
  })

  test('Ctrl-C stops a long answer and the prompt comes back; Ctrl-C at the prompt, or twice quickly, leaves with status 0', async () => {
    const args = ['--model', babbler, '--temperature', '0', '--max-tokens', '8000']
    const c = start(args)
    await c.prompt()
    c.send('go\r')
    const first = await c.until(/go\n\S{20}/) // streaming: 20 characters of the answer are on the screen
    c.send('\x03')
    const rest = await c.until(/\(stopped\)\n> $/)
    // the answer's line: what was on the screen at Ctrl-C, and what came before it took effect
    // (nothing, on a loaded machine)
    const answer = first.slice(first.indexOf('go\n') + 3) + rest.split('\n')[0]
    expect(answer.length).toBeGreaterThanOrEqual(20)
    expect(answer.length).toBeLessThan(8000)
    expect(await c.say('/params')).toMatch(/^\(temperature=0 /) // still chatting
    c.send('\x03')
    expect(await c.exit).toBe(0)

    const d = start(args)
    await d.prompt()
    d.send('go\r')
    await d.until(/go\n\S{20}/)
    d.send('\x03\x03')
    expect(await d.exit).toBe(0)
    expect(d.screen).not.toMatch(/Error|plwtune chat:.*error/i)
  })
})
