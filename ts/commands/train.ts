/**
 * `plwtune train [flags]` (also `npm run train -- [flags]`): every TrainConfig key as a
 * --kebab-case flag (CONFIG_KEYS in ts/train/config.ts: the one table that gives each key its
 * type, default, group and help), plus --config FILE (JSON, the same keys in camelCase) and
 * --help. With neither --model nor --data it runs the built-in demo.
 *
 * The flags are scanned by the shared parser (ts/commands/flags.ts: unknown flags with a
 * did-you-mean, missing values); their values are handed to resolveConfig as text converted
 * to the key's type where it can be, so that a wrong value is refused by the same check, and
 * with the same message, as a wrong value in a config file ("Expected a number for lr…").
 *
 * Ctrl-C: the first SIGINT stops after the current step, saves a checkpoint and exits 130;
 * the copies npm and npx forward within the next two seconds are absorbed; a SIGINT after
 * that quits at once (the last checkpoint stays as it was).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { CONFIG_KEYS, ConfigError, ConfigKey, DEFAULTS, DEMO, kebab, resolveConfig, TrainConfig } from '../train/config'
import { Progress } from '../train/progress'
import { Trainer, StepMetrics, TrainResult } from '../train/trainer'
import { CommandIO, STD_IO } from './common'
import { commandHelp, FlagDef, FlagKind, FlagTable, scanFlags } from './flags'
import { abortOnSigint } from './interrupt'

/** The fresh model's sizes: one flag per field of `init`. */
const INIT_FLAGS: Record<string, { key: keyof TrainConfig['init']; help: string }> = {
  'init-n-layer': { key: 'nLayer', help: 'a fresh model\'s layers (without --model)' },
  'init-n-head': { key: 'nHead', help: 'a fresh model\'s attention heads' },
  'init-n-embd': { key: 'nEmbd', help: 'a fresh model\'s hidden size' },
  'init-n-positions': { key: 'nPositions', help: 'a fresh model\'s positions (context length)' },
  'init-n-kv-head': { key: 'nKvHead', help: 'a fresh Llama-family model\'s KV heads; 0: --init-n-head' },
}
/** Boolean keys whose default is true, and the flag that turns them off. */
const NEGATIONS: Record<string, keyof TrainConfig> = { 'no-shuffle': 'shuffle', 'no-packing': 'packing' }

function flagKind(spec: ConfigKey<unknown>): FlagKind {
  return spec.check === 'boolean' ? 'boolean' : spec.check === 'integer' ? 'integer' : spec.check === 'number' ? 'number' : 'string'
}

/** The flag of one TrainConfig key, as train (and the commands that take train's flags) list it. */
export function trainFlag(key: Exclude<keyof TrainConfig, 'init'>): FlagDef {
  const spec = CONFIG_KEYS[key] as ConfigKey<unknown>
  const d = spec.default
  return { kind: flagKind(spec), group: spec.group, help: spec.help, placeholder: spec.placeholder,
    default: typeof d === 'string' || typeof d === 'number' || (typeof d === 'boolean' && d) ? d : undefined }
}

/** Train's flags, in CONFIG_KEYS' order: each key's flag (init's one per field), --no-shuffle, --no-packing, --config. */
export const TRAIN_FLAGS: FlagTable = (() => {
  const table: FlagTable = {}
  for (const key of Object.keys(CONFIG_KEYS) as Array<keyof TrainConfig>) {
    if (key === 'init') {
      for (const [flag, { key: k, help }] of Object.entries(INIT_FLAGS)) {
        table[flag] = { kind: 'integer', group: 'model', help, placeholder: 'N', default: DEFAULTS.init[k] }
      }
      continue
    }
    table[kebab(key)] = trainFlag(key)
    for (const [flag, negated] of Object.entries(NEGATIONS)) {
      if (negated === key) table[flag] = { kind: 'boolean', group: CONFIG_KEYS[key].group, help: `--${kebab(key)}=false` }
    }
  }
  table.config = { kind: 'string', group: 'other', placeholder: 'FILE',
    help: 'a JSON object of these keys in camelCase ({"maxSteps": 100}); flags override it' }
  return table
})()

/** Any other --init-<field> (refused by resolveConfig, naming the field). */
const INIT_FAMILY: FlagDef = { kind: 'integer', group: 'model', help: '' }

/**
 * The command line's values, by TrainConfig key (not yet checked: resolveConfig does that),
 * the --config file, and whether --help was asked for.
 */
export function parseTrainArgs(argv: readonly string[]): { values: Record<string, unknown>; configFile: string | null; help: boolean } {
  const { flags, help } = scanFlags(argv, TRAIN_FLAGS, { unknownSuffix: '; see --help', noPositional: true, families: { 'init-': INIT_FAMILY } })
  const values: Record<string, unknown> = {}
  let configFile: string | null = null
  for (const { flag, def, raw } of flags) {
    if (flag === 'config') {
      if (!raw) throw new ConfigError('--config needs a file')
      configFile = raw
    } else if (Object.hasOwn(NEGATIONS, flag)) {
      values[NEGATIONS[flag]] = raw === 'false'
    } else if (flag.startsWith('init-') && flag !== 'init-arch') { // --init-n-layer 4 → init.nLayer
      const k = Object.hasOwn(INIT_FLAGS, flag) ? INIT_FLAGS[flag].key : flag.slice(5).replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase())
      values.init = { ...(values.init as object | undefined), [k]: Number(raw) }
    } else {
      const key = flag.replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase())
      // The text converted where it reads as the key's type; otherwise left as text for resolveConfig to refuse.
      if (def.kind === 'boolean') values[key] = raw === null || raw === 'true' ? true : raw === 'false' ? false : raw
      else if (def.kind === 'number' || def.kind === 'integer') values[key] = raw!.trim() === '' || Number.isNaN(Number(raw)) ? raw : Number(raw)
      else values[key] = raw
    }
  }
  return { values, configFile, help }
}

export function trainHelp(): string {
  return commandHelp({
    usage: 'plwtune train [--config FILE] [flags]',
    summary: [
      'Fine-tunes a model (GPT-2 or the Llama family; full, or LoRA with --lora-r) on instruction data with a',
      'prompt loss weight λ. With no --model and no --data it trains the built-in demo (a tiny byte-level GPT on',
      'generated tasks; the demo preset changes some defaults: see docs/training.md). Flags override --config FILE,',
      'which overrides the defaults shown. Every flag is a configuration key (--max-steps is maxSteps: docs/cli.md).',
    ].join('\n'),
    table: TRAIN_FLAGS,
    examples: [
      'plwtune train                                   # the built-in demo',
      'plwtune train --model gpt2 --data alpaca.json --prompt-loss-weight 0.1 --epochs 3 --out runs/alpaca',
      'plwtune train --model Qwen2.5-0.5B --data data.jsonl --lora-r 16 --config lora.json --out runs/lora',
      'plwtune train --resume runs/alpaca              # continue an interrupted run exactly',
    ],
  })
}

function readConfigFile(configFile: string): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(configFile, 'utf8'))
  } catch (err) {
    throw new ConfigError(`${configFile}: ${(err as Error).message}`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${configFile}: expected a JSON object`)
  if ((json as Record<string, unknown>).resume != null) {
    throw new ConfigError(`${configFile}: "resume" is not a config-file key: a run is continued with --resume RUN_DIR alone, ` +
      'which reads the run\'s own saved configuration and checks it')
  }
  return json as Record<string, unknown>
}

/** The run's configuration from train's command line (the demo preset, --config, flags; or --resume's saved one); null for --help. */
/**
 * The configuration of `plwtune train [argv]`. `dataList` accepts a config file whose `data` is
 * a list of files (plwtune sweep's datasets): it receives the list and the first file stands
 * for the rest, as a first --data would; without it a list is an error.
 */
export function loadConfig(argv: readonly string[], o: { dataList?: (files: string[]) => void } = {}): TrainConfig | null {
  const { values, configFile, help } = parseTrainArgs(argv)
  if (help) return null
  if (typeof values.resume === 'string') {
    const others = Object.keys(values).filter((k) => k !== 'resume' && k !== 'allowDataChange')
    if (others.length > 0 || configFile !== null) {
      throw new ConfigError(`--resume continues a run with its saved configuration; remove ${others.map((k) => `--${kebab(k)}`).join(', ') || '--config'}`)
    }
    const file = path.join(values.resume, 'config.json')
    if (!fs.existsSync(file)) throw new ConfigError(`--resume ${values.resume}: no config.json there (not a plwtune run directory)`)
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>
    return resolveConfig({ source: file, values: { ...saved, resume: values.resume, out: values.resume,
      allowDataChange: values.allowDataChange ?? false } })
  }
  const layers: Array<{ source: string; values: Record<string, unknown> }> = []
  const file = configFile !== null ? readConfigFile(configFile) : {}
  if (Array.isArray(file.data)) {
    const list = file.data as unknown[]
    if (!o.dataList) throw new ConfigError(`${configFile}: "data" is a list: several datasets are a sweep's (plwtune sweep); train takes one file`)
    if (list.length === 0 || !list.every((f) => typeof f === 'string' && f !== '')) {
      throw new ConfigError(`${configFile}: "data": Expected a file or a non-empty list of files but received ${JSON.stringify(list)}`)
    }
    o.dataList(list as string[])
    file.data = list[0]
  }
  const isDemo = (values.model ?? file.model ?? null) === null && (values.data ?? file.data ?? null) === null
  if (isDemo) layers.push({ source: 'the demo preset', values: DEMO as Record<string, unknown> })
  if (configFile !== null) layers.push({ source: configFile, values: file })
  layers.push({ source: 'command line', values })
  return resolveConfig(...layers)
}

function fmt(x: number | null | undefined, digits = 4): string {
  return typeof x === 'number' ? x.toFixed(digits) : '—'
}

/** `plwtune train`: 0 done, 1 failed (or the loss became non-finite), 2 bad flags or configuration, 130 interrupted. */
export async function trainCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let config: TrainConfig | null
  try {
    config = loadConfig(argv)
  } catch (err) {
    io.err.write(`plwtune train: ${(err as Error).message}\n`)
    return 2
  }
  if (config === null) {
    io.out.write(trainHelp() + '\n')
    return 0
  }
  const out = config.out
  const trainer = new Trainer(config)
  const controller = new AbortController()
  const stopListening = abortOnSigint(controller, io.err, 'plwtune')
  const stream = io.out as NodeJS.WriteStream
  let progress: Progress | null = null
  trainer.on('log', (line: string) => (progress ? progress.log(line) : io.out.write(line + '\n')))
  trainer.on('start', (s: { totalSteps: number; startStep: number; stepsPerEpoch: number; examples: number }) => {
    io.out.write(`training ${s.totalSteps} steps (${s.stepsPerEpoch} per epoch of ${s.examples} examples)` +
      `${s.startStep > 0 ? `, from step ${s.startStep}` : ''}; run directory ${out}\n`)
    progress = new Progress({ total: s.totalSteps, stream, label: 'train' })
    progress.update(s.startStep, {})
  })
  trainer.on('step', (m: StepMetrics) => {
    progress?.update(m.step, { loss: m.loss.toFixed(4), compl: fmt(m.completion_loss), lr: m.lr.toExponential(1),
      'tok/s': Math.round(m.tokens_per_s) })
  })
  trainer.on('eval', (e: { step: number; loss: number | null; completionLoss: number | null; promptLoss: number | null; improved: boolean }) => {
    progress?.log(`step ${e.step}: val loss ${fmt(e.loss)}, completion ${fmt(e.completionLoss)}, prompt ${fmt(e.promptLoss)}` +
      `${e.improved ? ' (best so far: saved to best/)' : ''}`)
  })
  trainer.on('checkpoint', (c: { step: number; dir: string }) => progress?.log(`checkpoint: ${c.dir}`))
  trainer.on('generate-start', (g: { total: number }) => {
    progress?.finish()
    progress = new Progress({ total: g.total, stream, label: 'test answers' })
  })
  trainer.on('generate-progress', (g: { done: number }) => progress?.update(g.done, {}))
  let result: TrainResult
  try {
    result = await trainer.fit({ signal: controller.signal })
  } catch (err) {
    ;(progress as Progress | null)?.finish()
    io.err.write(`plwtune train: ${(err as Error).message}\n`)
    return 1
  } finally {
    stopListening()
  }
  ;(progress as Progress | null)?.finish()
  io.out.write(summary(result) + '\n')
  return result.stopReason === 'interrupted' ? 130 : result.stopReason === 'non_finite' ? 1 : 0
}

/** The text train prints at the end: how it stopped, where the models are, the test results. */
export function summary(r: TrainResult): string {
  const lines = ['', `== ${r.stopReason === 'completed' ? 'done' : r.stopReason.replace('_', ' ')}: ${r.message}`]
  lines.push(`steps ${r.steps}/${r.totalSteps}; best validation completion loss ${fmt(r.bestValCompletionLoss)}`)
  if (r.finalDir) {
    const adapter = fs.existsSync(path.join(r.finalDir, 'adapter_config.json'))
    lines.push(`final model: ${r.finalDir} (${adapter ? 'a PEFT LoRA adapter; plwtune merge folds it into its base' : 'Hugging Face format'})`)
  }
  if (r.bestDir) lines.push(`best model:  ${r.bestDir}`)
  if (r.lastCheckpoint) lines.push(`checkpoint:  ${r.lastCheckpoint}`)
  lines.push(`metrics: ${path.join(r.runDir, 'metrics.jsonl')}; plot: ${path.join(r.runDir, 'loss.svg')}`)
  if (r.test) {
    if (r.test.loss) lines.push(`test loss ${fmt(r.test.loss.loss)}, completion ${fmt(r.test.loss.completionLoss)}`)
    if (r.test.answers.length > 0) {
      lines.push('', 'sample answers (test split):')
      for (const a of r.test.answers.slice(0, 8)) {
        const q = a.prompt.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Below is')).slice(-4, -1).join(' | ')
        lines.push(`  ${a.correct ? '✓' : '✗'} ${q.slice(0, 70)}  →  ${JSON.stringify(a.response.trim())}` +
          `${a.correct ? '' : ` (expected ${JSON.stringify(a.expected.trim())})`}`)
      }
      const n = r.test.answers.length
      lines.push(`test exact match: ${(100 * (r.test.accuracy ?? 0)).toFixed(1)}% of ${n} (${r.test.answers.filter((a) => a.correct).length}/${n})`)
    }
  }
  return lines.join('\n')
}
