/**
 * The command line that explains itself: the shared flag parser (ts/commands/flags.ts), the
 * --help of every command (grouped flags, one line each with type and default, examples),
 * train's flags and --config keys from the one table in ts/train/config.ts, `plwtune --version`,
 * and the dispatcher (ts/cli.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { main } from '../../ts/cli'
import { commandHelp, FLAG_GROUPS, FlagTable, parseFlags } from '../../ts/commands/flags'
import { loadConfig, parseTrainArgs, TRAIN_FLAGS } from '../../ts/commands/train'
import { CONFIG_KEYS, DEFAULTS, kebab, TrainConfig } from '../../ts/train/config'
import { capture } from './io'

const ROOT = path.join(__dirname, '..', '..')

const TABLE = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'the model directory' },
  port: { kind: 'integer', group: 'server', default: 8080, help: 'the port' },
  temperature: { kind: 'number', group: 'generation', default: 0, help: 'sampling temperature' },
  lambdas: { kind: 'numbers', group: 'optimisation', help: 'weights' },
  json: { kind: 'boolean', group: 'output', help: 'one JSON object' },
} satisfies FlagTable

describe('parseFlags', () => {
  test('values typed by kind; --name=value; booleans bare or =true/=false; positional kept', () => {
    const { values, positional } = parseFlags(['gguf', '--model', 'm', '--port=9', '--temperature', '-0.5', '--lambdas', '0, 0.1,1',
      '--json=false'], TABLE)
    expect(values).toEqual({ model: 'm', port: 9, temperature: -0.5, lambdas: [0, 0.1, 1], json: false })
    expect(positional).toEqual(['gguf'])
    // the types follow the table
    const port: number | undefined = values.port
    const model: string | undefined = values.model
    expect([port, model]).toEqual([9, 'm'])
  })

  test('--help and -h are always understood', () => {
    expect(parseFlags(['--help'], TABLE).values.help).toBe(true)
    expect(parseFlags(['-h'], TABLE).values.help).toBe(true)
    expect(parseFlags([], TABLE).values.help).toBeUndefined()
  })

  test('errors name the flag: unknown (did you mean), missing value, wrong type', () => {
    expect(() => parseFlags(['--prot', '1'], TABLE)).toThrow('unknown flag --prot (did you mean --port?)')
    expect(() => parseFlags(['--zzzzzz'], TABLE)).toThrow(/^unknown flag --zzzzzz$/)
    expect(() => parseFlags(['--constructor'], TABLE)).toThrow('unknown flag --constructor')
    expect(() => parseFlags(['--model'], TABLE)).toThrow('--model needs a value')
    expect(() => parseFlags(['--model', '--port', '1'], TABLE)).toThrow('--model needs a value (found the flag --port after it)')
    expect(() => parseFlags(['--port', '1.5'], TABLE)).toThrow('--port: expected an integer, received "1.5"')
    expect(() => parseFlags(['--temperature', 'hot'], TABLE)).toThrow('--temperature: expected a number, received "hot"')
    expect(() => parseFlags(['--lambdas', '0,x'], TABLE)).toThrow('--lambdas: expected comma-separated numbers, received "0,x"')
    expect(() => parseFlags(['--json=yes'], TABLE)).toThrow('--json takes no value (or =true/=false)')
  })
})

describe('commandHelp', () => {
  test('usage, summary, the flags grouped in order with type and default, one line each; examples', () => {
    const text = commandHelp({ usage: 'plwtune x --model DIR', summary: 'Does x.', table: TABLE, examples: ['plwtune x --model m', 'plwtune x --json'] })
    expect(text.split('\n')).toEqual([
      'Usage: plwtune x --model DIR',
      '',
      'Does x.',
      '',
      'Model:',
      '  --model DIR      the model directory',
      '',
      'Optimisation:',
      '  --lambdas X,Y,…  weights',
      '',
      'Generation:',
      '  --temperature X  sampling temperature [0]',
      '',
      'Server:',
      '  --port N         the port [8080]',
      '',
      'Output:',
      '  --json           one JSON object',
      '',
      'Other:',
      '  --help           this help (also -h)',
      '',
      'Examples:',
      '  plwtune x --model m',
      '  plwtune x --json',
    ])
  })
})

/** Every command line's --help, as the dispatcher runs it. */
const COMMANDS = ['train', 'generate', 'eval', 'stats', 'data swap', 'data inspect', 'sweep', 'sweep analyze', 'merge', 'export gguf', 'serve', 'chat']
const run = (argv: string[]) => capture((a, io) => main(a, io), argv)

describe('every command explains itself', () => {
  test.each(COMMANDS)('plwtune %s --help: grouped flags, each with a description, and 2-3 examples', async (command) => {
    for (const flag of ['--help', '-h']) {
      const r = await run([...command.split(' '), flag])
      expect([r.code, r.err]).toEqual([0, ''])
      expect(r.out).toMatch(new RegExp(`^Usage: plwtune ${command} `))
      const lines = r.out.trimEnd().split('\n')
      const titles = lines.filter((l) => /^[A-Z][a-z]+:$/.test(l)).map((l) => l.slice(0, -1).toLowerCase())
      const groups = titles.filter((t) => t !== 'examples')
      expect(groups.length).toBeGreaterThan(0)
      expect(groups).toEqual(FLAG_GROUPS.filter((g) => groups.includes(g))) // in the fixed order
      const flagLines = lines.filter((l) => /^ {2}--[a-z]/.test(l))
      for (const l of flagLines) expect(l).toMatch(/^ {2}--[a-z0-9-]+( \S+)? +\S.*$/) // name, type, then a description
      expect(flagLines).toContainEqual(expect.stringMatching(/^ {2}--help +this help/))
      const examples = lines.slice(lines.indexOf('Examples:') + 1)
      // two or three command lines (a client's line, such as serve's curl, may come with them)
      expect(examples.filter((e) => new RegExp(`^ {2}(\\S.*\\| )?plwtune ${command}\\b`).test(e)).length).toBeGreaterThanOrEqual(2)
      expect(examples.length).toBeLessThanOrEqual(6)
    }
  })

  test('a misspelt flag keeps its did-you-mean, exit 2', async () => {
    expect(await run(['eval', '--jsn'])).toMatchObject({ code: 2, err: expect.stringContaining('unknown flag --jsn (did you mean --json?)') })
    expect(await run(['train', '--max-step', '3'])).toMatchObject({ code: 2,
      err: expect.stringContaining('unknown flag --max-step (did you mean --max-steps?)') })
    expect(await run(['merge', '--adaptor', 'x'])).toMatchObject({ code: 2, err: expect.stringContaining('did you mean --adapter?') })
  })

  test('plwtune --version prints package.json\'s version; --help lists the commands; an unknown command exits 2', async () => {
    const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
    for (const flag of ['--version', '-v']) expect(await run([flag])).toEqual({ code: 0, out: `${version}\n`, err: '' })
    const help = await run(['--help'])
    expect(help.code).toBe(0)
    for (const c of COMMANDS) expect(help.out).toMatch(new RegExp(`^ {2}${c} `, 'm'))
    expect(await run(['trian'])).toMatchObject({ code: 2, err: 'plwtune: unknown command "trian" (did you mean train? try plwtune --help)\n' })
    expect(await run(['frobnicate'])).toMatchObject({ code: 2, err: 'plwtune: unknown command "frobnicate" (try plwtune --help)\n' })
    expect(await run(['data', '--help'])).toMatchObject({ code: 0, out: expect.stringMatching(/^ {2}data swap .*\n {2}data inspect /) })
  })

  test('no command module imports the dispatcher (no import circle cli.ts ↔ commands/*)', () => {
    const dir = path.join(ROOT, 'ts', 'commands')
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      expect([f, fs.readFileSync(path.join(dir, f), 'utf8')]).not.toEqual([f, expect.stringMatching(/from '\.\.\/cli'/)])
    }
  })
})

describe('train: one table of TrainConfig keys drives help, flags and --config checks', () => {
  const keys = Object.keys(CONFIG_KEYS) as Array<keyof TrainConfig>

  test('every key has a group and a one-line help; DEFAULTS are the table\'s defaults', () => {
    expect(new Set(keys)).toEqual(new Set(Object.keys(DEFAULTS)))
    for (const k of keys) {
      const spec = CONFIG_KEYS[k]
      expect(FLAG_GROUPS).toContain(spec.group)
      expect(spec.help).toMatch(/^\S.*\S$/)
      expect(spec.help).not.toContain('\n')
      expect(DEFAULTS[k]).toEqual(spec.default)
      if (spec.check === 'enum') expect(spec.values).toContain(spec.default)
    }
  })

  test('every key is a flag (init: one per field), listed by --help with its default', async () => {
    const help = (await run(['train', '--help'])).out
    for (const k of keys) {
      if (k === 'init') continue
      expect(TRAIN_FLAGS[kebab(k)]).toMatchObject({ group: CONFIG_KEYS[k].group, help: CONFIG_KEYS[k].help })
      expect(help).toMatch(new RegExp(`^ {2}--${kebab(k)}\\b.*${CONFIG_KEYS[k].help.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'))
    }
    for (const f of ['init-n-layer', 'init-n-head', 'init-n-embd', 'init-n-positions', 'init-n-kv-head', 'no-shuffle', 'no-packing', 'config']) {
      expect(help).toMatch(new RegExp(`^ {2}--${f}\\b`, 'm'))
    }
    expect(help).toMatch(/^ {2}--lr X +peak learning rate \[0\.0001\]$/m)
    expect(help).toMatch(/^ {2}--lr-schedule S +.*\[cosine\]$/m)
  })

  test('flags reach their keys (typed by the table); a --config file is checked against the same table', () => {
    const { values } = parseTrainArgs(['--lr', '3e-4', '--no-shuffle', '--packing', '--init-n-layer', '2', '--lora-targets', 'q_proj,v_proj',
      '--use-rslora=false'])
    expect(values).toEqual({ lr: 3e-4, shuffle: false, packing: true, init: { nLayer: 2 }, loraTargets: 'q_proj,v_proj', useRslora: false })
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-flags-'))
    const file = path.join(dir, 'c.json')
    fs.writeFileSync(file, JSON.stringify({ maxSteps: 5, lrSchedule: 'linear', init: { nLayer: 2 } }))
    expect(loadConfig(['--config', file, '--data', 'x.jsonl'])).toMatchObject({ maxSteps: 5, lrSchedule: 'linear', init: { nLayer: 2, nHead: 4 } })
    fs.writeFileSync(file, JSON.stringify({ lrSchedul: 'linear' }))
    expect(() => loadConfig(['--config', file])).toThrow(`${file}: unknown key lrSchedul (did you mean lrSchedule?)`)
    fs.writeFileSync(file, JSON.stringify({ maxSteps: 2.5 }))
    expect(() => loadConfig(['--config', file])).toThrow(`${file}: Expected an integer for maxSteps but received 2.5`)
    fs.writeFileSync(file, JSON.stringify({ saveDtype: 'fp8' }))
    expect(() => loadConfig(['--config', file])).toThrow('Expected one of auto, float32, bfloat16, float16 for saveDtype but received "fp8"')
    expect(() => loadConfig(['--max-shard-size', 'big'])).toThrow('command line: Expected a size such as "5GB" or "500MB" for maxShardSize')
    expect(() => loadConfig(['--data', 'x', 'extra'])).toThrow('unexpected argument "extra" (flags start with --; see --help)')
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test('docs/cli.md documents every config key', () => {
    const doc = fs.readFileSync(path.join(ROOT, 'docs', 'cli.md'), 'utf8')
    for (const k of keys) expect([k, doc.includes(`\`${k}\``)]).toEqual([k, true])
  })
})
