#!/usr/bin/env node
/**
 * The plwtune command line. `plwtune train [flags]` (also `npm run train -- [flags]`):
 * every TrainConfig key as a --kebab-case flag, plus --config FILE (JSON) and --help.
 * With neither --model nor --data it runs the built-in demo.
 *
 * Ctrl-C: the first SIGINT stops after the current step, saves a checkpoint and exits 130;
 * the copies npm and npx forward within the next two seconds are absorbed; a SIGINT after
 * that quits at once (the last checkpoint stays as it was).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ConfigError, DEFAULTS, DEMO, kebab, nearest, resolveConfig, TrainConfig } from './train/config'
import { Progress, formatDuration } from './train/progress'
import { Trainer, StepMetrics, TrainResult } from './train/trainer'
import { abortOnSigint } from './commands/interrupt'

const BOOLEAN_NEGATIONS: Record<string, keyof TrainConfig> = { 'no-shuffle': 'shuffle', 'no-packing': 'packing' }

export function parseTrainArgs(argv: string[]): { values: Record<string, unknown>; configFile: string | null; help: boolean } {
  const byFlag = new Map<string, keyof TrainConfig>()
  for (const key of Object.keys(DEFAULTS) as Array<keyof TrainConfig>) byFlag.set(kebab(key), key)
  const values: Record<string, unknown> = {}
  let configFile: string | null = null
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') { help = true; continue }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`)
    let [flag, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    if (flag === 'config') {
      configFile = inline ?? argv[++i]
      if (!configFile) throw new ConfigError('--config needs a file')
      continue
    }
    if (Object.hasOwn(BOOLEAN_NEGATIONS, flag)) { values[BOOLEAN_NEGATIONS[flag]] = false; continue }
    if (flag.startsWith('init-') && flag !== 'init-arch') { // --init-n-layer 4 → init.nLayer
      const k = flag.slice(5).replace(/-([a-z])/g, (_, ch: string) => ch.toUpperCase())
      const v = inline ?? argv[++i]
      values.init = { ...(values.init as object | undefined), [k]: Number(v) }
      continue
    }
    const key = byFlag.get(flag)
    if (!key) {
      const near = nearest(flag, [...byFlag.keys()])
      throw new ConfigError(`unknown flag --${flag}${near ? ` (did you mean --${near}?)` : ''}; see --help`)
    }
    const expected = DEFAULTS[key]
    if (typeof expected === 'boolean') {
      values[key] = inline === undefined ? true : inline === 'true' ? true : inline === 'false' ? false : inline
      continue
    }
    const raw = inline ?? argv[++i]
    if (raw === undefined) throw new ConfigError(`--${flag} needs a value`)
    // `--lr --max-steps 3`: the value is missing, not "--max-steps" (a negative number is a value)
    if (inline === undefined && /^--[a-z]/.test(raw)) throw new ConfigError(`--${flag} needs a value (found the flag ${raw} after it)`)
    if (typeof expected === 'number') {
      const x = Number(raw)
      values[key] = raw.trim() === '' || Number.isNaN(x) ? raw : x
    } else {
      values[key] = raw
    }
  }
  return { values, configFile, help }
}

function helpText(): string {
  const lines = ['Usage: plwtune train [--config FILE] [flags]', '',
    'Fine-tunes a model (GPT-2 or the Llama family; full, or LoRA with --lora-r) on instruction data with a prompt loss weight. With no --model and no --data,',
    'trains the built-in demo (a tiny byte-level GPT on generated tasks).', '', 'Flags (default in brackets):']
  for (const [key, value] of Object.entries(DEFAULTS)) {
    if (key === 'init') continue
    lines.push(`  --${kebab(key)}${typeof value === 'boolean' ? '' : ' X'}  [${JSON.stringify(value)}]`)
  }
  lines.push('  --no-shuffle, --no-packing', '  --init-n-layer N --init-n-head N --init-n-embd N --init-n-positions N  (a fresh model without --model)',
    '  --init-arch gpt2|llama|qwen2|qwen3|mistral --init-n-kv-head N  (the fresh model\'s architecture; KV heads for the Llama family)',
    '  --lora-r R --lora-alpha A --lora-dropout P --lora-targets all-linear|q_proj,v_proj,... --use-rslora',
    '                 LoRA adapters on --model (docs/lora.md); final/, best/ and checkpoints are PEFT adapter directories',
    '  --config FILE  a JSON object of the same keys (camelCase); flags override it', '  --resume RUN_DIR  continue a run exactly')
  return lines.join('\n')
}

export function loadConfig(argv: string[]): TrainConfig | null {
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
  const file = configFile !== null ? (() => {
    let json: unknown
    try { json = JSON.parse(fs.readFileSync(configFile, 'utf8')) } catch (err) {
      throw new ConfigError(`${configFile}: ${(err as Error).message}`)
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${configFile}: expected a JSON object`)
    if ((json as Record<string, unknown>).resume != null) {
      throw new ConfigError(`${configFile}: "resume" is not a config-file key: a run is continued with --resume RUN_DIR alone, ` +
        'which reads the run\'s own saved configuration and checks it')
    }
    return json as Record<string, unknown>
  })() : {}
  const isDemo = (values.model ?? file.model ?? null) === null && (values.data ?? file.data ?? null) === null
  if (isDemo) layers.push({ source: 'the demo preset', values: DEMO as Record<string, unknown> })
  if (configFile !== null) layers.push({ source: configFile, values: file })
  layers.push({ source: 'command line', values })
  return resolveConfig(...layers)
}

function fmt(x: number | null | undefined, digits = 4): string {
  return typeof x === 'number' ? x.toFixed(digits) : '—'
}

export async function trainCommand(argv: string[], io = { out: process.stdout, err: process.stderr }): Promise<number> {
  let config: TrainConfig | null
  try {
    config = loadConfig(argv)
  } catch (err) {
    io.err.write(`plwtune train: ${(err as Error).message}\n`)
    return 2
  }
  if (config === null) {
    io.out.write(helpText() + '\n')
    return 0
  }
  const trainer = new Trainer(config)
  const controller = new AbortController()
  const stopListening = abortOnSigint(controller, io.err, 'plwtune')
  let progress: Progress | null = null
  trainer.on('log', (line: string) => (progress ? progress.log(line) : io.out.write(line + '\n')))
  trainer.on('start', (s: { totalSteps: number; startStep: number; stepsPerEpoch: number; examples: number }) => {
    io.out.write(`training ${s.totalSteps} steps (${s.stepsPerEpoch} per epoch of ${s.examples} examples)` +
      `${s.startStep > 0 ? `, from step ${s.startStep}` : ''}; run directory ${config!.out}\n`)
    progress = new Progress({ total: s.totalSteps, stream: io.out as NodeJS.WriteStream, label: 'train' })
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
    progress = new Progress({ total: g.total, stream: io.out as NodeJS.WriteStream, label: 'test answers' })
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

const COMMANDS = `Usage: plwtune <command> [flags]   (plwtune <command> --help for its flags)

Commands:
  train      fine-tune a model (full or LoRA) with a prompt loss weight
  generate   answer one prompt or every record of a dataset split (responses JSONL)
  eval       loss, completion loss and perplexity, exact/contains match, multiple choice
  stats      token counts, completion/prompt ratio and a recommended prompt loss weight
  data swap  turn long-completion records into prompt-prediction tasks (AlpacaDataShort)
  data inspect  the first examples token by token, with each token's kind and loss weight
  sweep      the same training over several prompt loss weights and seeds
  merge      a LoRA adapter merged into its base: a plain Hugging Face model directory
`

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  const io = { out: process.stdout, err: process.stderr }
  switch (command) {
    case 'train': return trainCommand(rest)
    case 'generate': return (await import('./commands/generate')).generateCommand(rest, io)
    case 'eval': return (await import('./commands/eval')).evalCommand(rest, io)
    case 'stats': return (await import('./commands/stats')).statsCommand(rest, io)
    case 'sweep': return (await import('./commands/sweep')).sweepCommand(rest, io)
    case 'merge': return (await import('./commands/merge')).mergeCommand(rest, io)
    case 'data':
      if (rest[0] === 'swap') return (await import('./commands/data-swap')).dataSwapCommand(rest.slice(1), io)
      if (rest[0] === 'inspect') return (await import('./commands/data-inspect')).dataInspectCommand(rest.slice(1), io)
      process.stderr.write(`plwtune data: expected a subcommand: swap or inspect\n`)
      return 2
  }
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(COMMANDS)
    return command === undefined ? 2 : 0
  }
  process.stderr.write(`plwtune: unknown command ${JSON.stringify(command)} (try plwtune --help)\n`)
  return 2
}

if (require.main === module) {
  const t0 = Date.now()
  main(process.argv.slice(2)).then((code) => {
    if (process.argv[2] === 'train' && code === 0) process.stdout.write(`(${formatDuration(Date.now() - t0)} in all)\n`)
    process.exitCode = code
  }, (err: unknown) => {
    process.stderr.write(`plwtune: ${(err as Error).stack ?? String(err)}\n`)
    process.exitCode = 1
  })
}
