/**
 * Flags, config files and model directories that used to pass the checks and fail later (at
 * step 1, after the run directory existed) or be quietly changed: each now ends in a message
 * naming the flag, file or field before anything is written, or is honoured and recorded.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { loadConfig, trainCommand } from '../../ts/commands/train'
import { configFromHf } from '../../ts/arch'
import { readConfig } from '../../ts/checkpoint'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { initModel } from '../../ts/model'
import { readMeta } from '../../ts/model-dir'
import { evalCommand } from '../../ts/commands/eval'
import { parseFlags } from '../../ts/commands/flags'
import { generateCommand } from '../../ts/commands/generate'
import { parseSweepArgs, sweepCommand } from '../../ts/commands/sweep'
import { StepMetrics, Trainer } from '../../ts/train/trainer'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { capture } from '../commands/io'
import { tinyModelDir, tmp, writeJsonl } from '../commands/tiny-model'
import { tinyTrainConfig } from '../support/train-config'

const FORBIDDEN = '(__proto__, constructor and prototype would reach JavaScript object prototypes; remove it)'

/** Every file under `dir` with its bytes: "nothing changed" is this listing before and after. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const f of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    const p = path.join(dir, f)
    out[f] = fs.statSync(p).isDirectory() ? '<dir>' : fs.readFileSync(p, 'base64')
  }
  return out
}

let model: string // the tiny GPT-2 of the command suites: byte tokenizer (ids 0..256), vocab_size 257, n_positions 64
let data: string
let work: string
beforeAll(async () => {
  model = await tinyModelDir()
  work = tmp('plw-checks-')
  data = writeJsonl(path.join(work, 'data.jsonl'), Array.from({ length: 24 }, (_, i) => ({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` })))
})

/** trainCommand as the other subcommands take their streams (its Progress bar only writes to them). */
const trainCmd = (argv: string[], io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream }) =>
  trainCommand(argv, io as unknown as Parameters<typeof trainCommand>[1])

/** `plwtune train` in-process on the tiny model: --out is a fresh path under a fresh directory (not created). */
async function train(args: string[]): Promise<{ code: number; out: string; err: string; dir: string }> {
  const dir = path.join(tmp('plw-checks-out-'), 'run')
  const r = await capture(trainCmd, ['--data', data, '--model', model, '--max-steps', '2', '--batch-size', '4', '--device', 'cpu',
    '--template', 'Q: {instruction} {input}\nA: {output}', '--out', dir, ...args])
  return { ...r, dir }
}

/** A copy of the tiny model with config.json fields replaced (weights untouched). */
function withConfig(fields: Record<string, unknown>): string {
  const dir = tmp('plw-checks-model-')
  for (const f of fs.readdirSync(model)) fs.copyFileSync(path.join(model, f), path.join(dir, f))
  const file = path.join(dir, 'config.json')
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...fields }))
  return dir
}

describe('1. numbers the engine range-checks at step 1 are checked with the config', () => {
  test.each([
    [['--lr', '1e10'], 'lr (--lr) must be in (0, 1000], the engine\'s range; received 10000000000'],
    [['--weight-decay', '2000'], 'weightDecay (--weight-decay) must be in [0, 1000], the engine\'s range; received 2000'],
    [['--adam-beta1', '0.9999999999'], 'adamBeta1 (--adam-beta1) must be in [0, 0.999999999], the engine\'s range; received 0.9999999999'],
    [['--adam-beta2', '1'], 'adamBeta2 (--adam-beta2) must be in [0, 0.999999999], the engine\'s range; received 1'],
    [['--adam-eps', '0'], 'adamEps (--adam-eps) must be in [1e-30, 1], the engine\'s range; received 0'],
    [['--adam-eps', '2'], 'adamEps (--adam-eps) must be in [1e-30, 1], the engine\'s range; received 2'],
    [['--max-grad-norm', '1e31'], 'maxGradNorm (--max-grad-norm) must be in [0, 1e+30], the engine\'s range; received 1e+31'],
    [['--lora-r', '70000'], 'loraR (--lora-r) must be in [0, 65536], the engine\'s range; received 70000'],
    [['--lora-r', '4', '--lora-dropout', '0.9999999'], 'loraDropout (--lora-dropout) must be in [0, 0.999999], the engine\'s range; received 0.9999999'],
  ])('%j', async (args, message) => {
    const r = await train(args)
    expect(r.code).toBe(2)
    expect(r.err).toBe(`plwtune train: ${message}\n`)
    expect(fs.existsSync(r.dir)).toBe(false)
  })

  test('the bounds themselves pass; LoRA ranges apply only with LoRA on', () => {
    expect(loadConfig(['--lr', '1000', '--adam-beta2', '0.999999999', '--adam-eps', '1e-30', '--weight-decay', '1000'])).toMatchObject({ lr: 1000 })
    expect(loadConfig(['--lora-dropout', '0.9999999'])).toMatchObject({ loraR: 0 })
  })
})

describe('2. --max-length above the model\'s positions', () => {
  test('is capped with a note, recorded as the value used, and both resumes (saved config, or the original one) continue', async () => {
    for (const how of ['--resume', 'library'] as const) {
      const out = path.join(tmp('plw-checks-out-'), 'run')
      const cfg = tinyTrainConfig({ model, data, template: 'Q: {instruction} {input}\nA: {output}', maxLength: 100000, maxSteps: 4,
        batchSize: 4, out })
      const logs: string[] = []
      const controller = new AbortController()
      const t = new Trainer(cfg)
      t.on('log', (l: string) => logs.push(l))
      t.on('step', (m: StepMetrics) => { if (m.step === 2) controller.abort() })
      expect((await t.fit({ signal: controller.signal })).stopReason).toBe('interrupted')
      expect(logs).toContain(`note: --max-length 100000 is more than the model's 64 positions (${path.join(model, 'config.json')}); ` +
        'using 64, which the run\'s config.json records')
      expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).maxLength).toBe(64)
      expect(JSON.parse(fs.readFileSync(path.join(out, 'checkpoints', 'step-2', 'plwtune.json'), 'utf8')).maxLength).toBe(64)
      const resumed = how === '--resume' ? loadConfig(['--resume', out])! : { ...cfg, resume: out }
      const r = await new Trainer(resumed).fit()
      expect(r.stopReason).toBe('completed')
      expect(r.steps).toBe(4)
    }
  })

  test('a run that asked for no more than the model has records what it asked (0: the model\'s length)', async () => {
    const out = path.join(tmp('plw-checks-out-'), 'run')
    const logs: string[] = []
    const t = new Trainer(tinyTrainConfig({ model, data, template: 'Q: {instruction} {input}\nA: {output}', maxLength: 0, maxSteps: 1,
      batchSize: 4, out }))
    t.on('log', (l: string) => logs.push(l))
    await t.fit()
    expect(logs.filter((l) => l.startsWith('note:'))).toEqual([])
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).maxLength).toBe(0)
  })
})

describe('3. JSON keys that reach object prototypes are refused by name', () => {
  test.each([
    ['{"__proto__": {"x": 1}, "lr": 0.001}', '__proto__'], // was "options.join is not a function"
    ['{"constructor": 1}', 'constructor'],
    ['{"lr": 0.001, "prototype": {}}', 'prototype'],
    ['{"init": {"__proto__": {"nLayer": 9}}}', 'init.__proto__'],
    ['{"toString": 1}', null], // an inherited name that is no key: "unknown key"
  ])('a --config file %s', async (text, key) => {
    const file = path.join(tmp('plw-checks-cfg-'), 'c.json')
    fs.writeFileSync(file, text)
    const r = await train(['--config', file])
    expect(r.code).toBe(2)
    expect(r.err).toBe(key === null ? `plwtune train: ${file}: unknown key toString\n` : `plwtune train: ${file}: key "${key}" is not allowed ${FORBIDDEN}\n`)
    expect(fs.existsSync(r.dir)).toBe(false)
  })

  test('flags: --constructor and --init-__proto__ are no flags; the shared flag parser takes own keys only', () => {
    expect(() => loadConfig(['--constructor', '1'])).toThrow('unknown flag --constructor; see --help')
    expect(() => loadConfig(['--__proto__', '1'])).toThrow('unknown flag --__proto__')
    expect(() => loadConfig(['--init-__proto__', '1'])).toThrow(`command line: key "init.__proto__" is not allowed ${FORBIDDEN}`)
    expect(() => parseFlags(['--constructor', '1'], { data: { kind: 'string', group: 'data', help: '' } })).toThrow('unknown flag --constructor')
    expect(() => parseFlags(['--toString', '1'], { data: { kind: 'string', group: 'data', help: '' } })).toThrow('unknown flag --toString')
  })

  test('a run\'s saved config.json (--resume, eval --run) and a sweep\'s config file', async () => {
    const run = tmp('plw-checks-run-')
    const file = path.join(run, 'config.json')
    fs.writeFileSync(file, '{"lr": 0.001, "constructor": {"x": 1}}')
    const before = snapshot(run)
    expect(() => loadConfig(['--resume', run])).toThrow(`${file}: key "constructor" is not allowed ${FORBIDDEN}`)
    const ev = await capture(evalCommand, ['--run', run])
    expect(ev.err).toContain(`--run ${run}: ${file}: key "constructor" is not allowed`)
    const cfg = path.join(tmp('plw-checks-cfg-'), 's.json')
    fs.writeFileSync(cfg, '{"__proto__": {"lr": 1}}')
    expect(() => parseSweepArgs(['--config', cfg])).toThrow(`${cfg}: key "__proto__" is not allowed`)
    expect(snapshot(run)).toEqual(before)
  })

  test('sweep.json of an existing sweep', async () => {
    const out = tmp('plw-checks-sweep-')
    fs.writeFileSync(path.join(out, 'sweep.json'), '{"config": {"__proto__": {"lr": 1}}}')
    const before = snapshot(out)
    const r = await capture(sweepCommand, ['--out', out, '--device', 'cpu', '--demo-records', '40', '--max-steps', '1'])
    expect(r.code).not.toBe(0)
    expect(r.err).toContain(`${path.join(out, 'sweep.json')}: key "config.__proto__" is not allowed ${FORBIDDEN}`)
    expect(snapshot(out)).toEqual(before)
  })

  test('a model\'s config.json and plwtune.json', async () => {
    const dir = tmp('plw-checks-model-')
    for (const f of fs.readdirSync(model)) fs.copyFileSync(path.join(model, f), path.join(dir, f))
    const cfg = fs.readFileSync(path.join(dir, 'config.json'), 'utf8')
    fs.writeFileSync(path.join(dir, 'config.json'), cfg.replace(/^\{/, '{"__proto__": {"n_layer": 2},'))
    expect(() => readConfig(dir)).toThrow(`${path.join(dir, 'config.json')}: key "__proto__" is not allowed ${FORBIDDEN}`)
    expect(() => configFromHf(JSON.parse('{"model_type": "constructor"}'), 'x.json')).toThrow('x.json: model_type "constructor" is not supported')
    expect(() => configFromHf(JSON.parse('null'), 'x.json')).toThrow('x.json: expected a JSON object')
    fs.writeFileSync(path.join(dir, 'config.json'), cfg)
    fs.writeFileSync(path.join(dir, 'plwtune.json'), '{"template": "alpaca", "prototype": 1}')
    expect(() => readMeta(dir)).toThrow(`${path.join(dir, 'plwtune.json')}: key "prototype" is not allowed`)
  })
})

describe('4. a tokenizer with more ids than the model\'s embedding rows', () => {
  let small: string
  beforeAll(async () => {
    small = tmp('plw-checks-model-')
    const tok = new ByteTokenizer() // ids 0..256
    const m = await initModel({ nLayer: 1, nHead: 2, nEmbd: 32, nPositions: 64, vocabSize: 200 }, { seed: 1 })
    await m.save(small)
    m.dispose()
    writeTokenizerFiles(small, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
  })
  const message = (dir: string) => `${path.join(dir, 'config.json')}: vocab_size 200 is smaller than the tokenizer's ids ` +
    `(${path.join(dir, 'tokenizer.json')}: largest id 256): ids 200 to 256 have no row in the model's embedding; ` +
    'use the tokenizer the model was trained with (its own tokenizer.json)'

  test('train refuses it before the run directory exists', async () => {
    const r = await train(['--model', small])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`plwtune train: ${message(small)}\n`)
    expect(fs.existsSync(r.dir)).toBe(false)
  })

  test('nothing of --out is left behind, parents included', async () => {
    const parent = tmp('plw-checks-out-')
    const out = path.join(parent, 'a', 'b', 'run')
    await expect(new Trainer(tinyTrainConfig({ model: small, data, out, maxSteps: 2 })).fit()).rejects.toThrow(message(small))
    expect(fs.readdirSync(parent)).toEqual([])
  })

  test('generate and eval refuse the pair too', async () => {
    const g = await capture(generateCommand, ['--model', small, '--prompt', 'hi', '--device', 'cpu'])
    expect(g.code).toBe(1)
    expect(g.err).toBe(`plwtune generate: ${message(small)}\n`)
    const e = await capture(evalCommand, ['--model', small, '--data', data, '--device', 'cpu'])
    expect(e.code).toBe(1)
    expect(e.err).toContain(`plwtune eval: ${message(small)}\n`)
  })

  test('a larger embedding than the tokenizer needs is fine (Qwen pads its table)', async () => {
    const big = tmp('plw-checks-model-')
    const tok = new ByteTokenizer()
    const m = await initModel({ nLayer: 1, nHead: 2, nEmbd: 32, nPositions: 64, vocabSize: 300 }, { seed: 1 })
    await m.save(big)
    m.dispose()
    writeTokenizerFiles(big, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
    const r = await train(['--model', big])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
  })
})

describe('5. absurd sizes in a config.json are refused with the limit', () => {
  test.each([
    [{ n_positions: 1e9 }, 'field "n_positions": 1000000000 is more than plwtune\'s limit of 16777216'],
    [{ vocab_size: 2 ** 25 }, 'field "vocab_size": 33554432 is more than plwtune\'s limit of 16777216'],
    [{ n_embd: 2 ** 17 }, 'field "n_embd": 131072 is more than plwtune\'s limit of 65536'],
    [{ n_layer: 5000 }, 'field "n_layer": 5000 is more than plwtune\'s limit of 4096'],
  ])('GPT-2 %j', async (fields, message) => {
    const r = await train(['--model', withConfig(fields)])
    expect(r.code).toBe(1)
    expect(r.err).toMatch(new RegExp(`^plwtune train: .*config\\.json: ${message.replace(/[()]/g, '\\$&')} \\(far above any released model; see docs/reliability\\.md\\)\\n$`))
    expect(fs.existsSync(r.dir)).toBe(false)
  })

  test('Llama family fields, and a fresh model\'s --init sizes', () => {
    const llama = { architectures: ['LlamaForCausalLM'], vocab_size: 300, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2,
      intermediate_size: 128, max_position_embeddings: 64 }
    expect(() => configFromHf({ ...llama, max_position_embeddings: 1e9 }, 'l.json')).toThrow('l.json: field "max_position_embeddings": 1000000000 is more than plwtune\'s limit of 16777216')
    expect(() => configFromHf({ ...llama, intermediate_size: 2 ** 21 }, 'l.json')).toThrow('field "intermediate_size": 2097152 is more than plwtune\'s limit of 1048576')
    expect(() => configFromHf({ ...llama, rms_norm_eps: 0 }, 'l.json')).toThrow('l.json: field "rms_norm_eps": expected a number in [1e-30, 1], received 0')
    expect(configFromHf({ ...llama, max_position_embeddings: 10485760 }, 'l.json')).toMatchObject({ maxPositions: 10485760 }) // Llama 4 Scout's
    expect(() => loadConfig(['--init-n-positions', '1e9'])).toThrow('command line: Expected an integer nPositions in [1, 16777216] (plwtune\'s limits: docs/reliability.md) for init')
  })
})

describe('6. GPT-2 config.json fields the engine cannot honour are refused, not ignored', () => {
  test.each([
    [{ layer_norm_epsilon: 0.1 }, 'layer_norm_epsilon 0.1 is not supported: plwtune\'s GPT-2 LayerNorm uses 1e-5 (GPT-2\'s own), built into its kernels'],
    [{ tie_word_embeddings: false }, 'tie_word_embeddings false is not supported: plwtune\'s GPT-2 ties the LM head to the token table ' +
      '(transformer.wte.weight); an untied lm_head.weight would be ignored. (The Llama-family models support an untied head.)'],
    [{ n_inner: 100 }, 'n_inner 100 is not supported: plwtune\'s GPT-2 MLP is 4 · n_embd = 128 wide'],
    [{ scale_attn_by_inverse_layer_idx: true }, 'scale_attn_by_inverse_layer_idx true is not supported: plwtune\'s GPT-2 attention is scaled by 1/√head_dim only'],
  ])('%j', async (fields, message) => {
    const dir = withConfig(fields)
    const r = await train(['--model', dir])
    expect(r.code).toBe(1)
    expect(r.err).toBe(`plwtune train: ${path.join(dir, 'config.json')}: ${message}\n`)
    expect(fs.existsSync(r.dir)).toBe(false)
    const g = await capture(generateCommand, ['--model', dir, '--prompt', 'hi', '--device', 'cpu'])
    expect(g.err).toContain(message)
  })

  test('the values the engine has load: 1e-5 (also as an f32 rounds it), tied, n_inner 4·n_embd or null', () => {
    const base = JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8'))
    for (const fields of [{ layer_norm_epsilon: 1e-5 }, { layer_norm_epsilon: 9.999999747378752e-6 }, { tie_word_embeddings: true },
      { n_inner: 128 }, { n_inner: null }, { scale_attn_weights: true }]) {
      expect(configFromHf({ ...base, ...fields }, 'c.json')).toMatchObject({ arch: 'gpt2', nEmbd: 32 })
    }
  })
})

describe('7. a completion longer than the maximum length', () => {
  const longData = () => writeJsonl(path.join(tmp('plw-checks-data-'), 'long.jsonl'), [
    { instruction: 'Add one.', input: '1', output: '2' }, { instruction: 'Spell.', input: '', output: 'x'.repeat(100) },
    ...Array.from({ length: 10 }, (_, i) => ({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` }))])

  test('past the model\'s positions: names them and --skip-invalid, and no --max-length that cannot help', async () => {
    const file = longData()
    const r = await train(['--data', file])
    expect(r.code).toBe(1)
    expect(r.err).toBe('plwtune train: 1 example whose completion does not fit in the maximum length of 64 tokens (the model takes at ' +
      `most 64 positions, per ${path.join(model, 'config.json')}, fewer than the 102 needed, so --max-length cannot help: shorten those ` +
      `completions, or pass --skip-invalid to skip and count them):\n  ${file}:2: 115 tokens do not fit in 64: its completion ` +
      '(101 tokens with eos) and one token before it need 102\n')
    expect(r.err).not.toMatch(/skipTooLong|raise maxLength/)
    expect(fs.existsSync(r.dir)).toBe(false)
  })

  test('within them: --max-length to raise, and how far', async () => {
    const file = writeJsonl(path.join(tmp('plw-checks-data-'), 'long.jsonl'), [{ instruction: 'Spell.', input: '', output: 'x'.repeat(40) },
      ...Array.from({ length: 10 }, (_, i) => ({ instruction: 'Add one.', input: `${i}`, output: `${i + 1}` }))])
    const r = await train(['--data', file, '--max-length', '32'])
    expect(r.code).toBe(1)
    expect(r.err).toContain('1 example whose completion does not fit in the maximum length of 32 tokens (raise --max-length to 42 or ' +
      `more, which the model allows: it takes up to 64 positions, per ${path.join(model, 'config.json')}; or shorten those completions, ` +
      'or pass --skip-invalid to skip and count them)')
    expect(fs.existsSync(r.dir)).toBe(false)
    const skipped = await train(['--data', file, '--max-length', '32', '--skip-invalid'])
    expect(skipped.code).toBe(0)
    expect(skipped.out).toMatch(/1 too long, skipped/)
  })
})
