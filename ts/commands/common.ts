/**
 * What `plwtune generate` and `plwtune eval` share: the model directory and its training
 * template, the data file (instruction or multiple-choice records), and the split, which
 * reproduces the trainer's exactly (docs/eval.md, "Which records").
 *
 * The split is the trainer's call, `splitDataset(records, { val, test, seed: dataSeed })`, over
 * the records as the trainer read them (same format and skip-invalid setting). With `--run DIR`
 * every one of those comes from DIR/config.json (val is 0 when the run had --val-data, whose
 * file is then the val split; a config written before dataSeed existed split with its `seed`);
 * without it the ratios and seed are the flags train itself takes, --val-split, --test-split and
 * --data-seed, with train's defaults (0.05, 0, 42), so a run trained with default flags needs none.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ChoiceRecord, isChoiceFile, readChoiceDataset } from '../data/choices'
import { DataError } from '../data/errors'
import { readDataset, recordsFromObjects } from '../data/read'
import { DataFormat, DataRecord } from '../data/records'
import { resolveTemplate } from '../data/resolve-template'
import { splitDataset } from '../data/split'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { generateDemoRecords } from '../demo/tasks'
import { readMeta, TrainingMeta } from '../model-dir'
import { ConfigError, DEFAULTS, resolveConfig, TrainConfig } from '../train/config'
import { FlagTable, UsageError } from './flags'

export interface CommandIO {
  /** Results: the response, the JSONL with --out -, the summary or the --json object. */
  out: NodeJS.WritableStream
  /** Progress, warnings and errors. */
  err: NodeJS.WritableStream
}

export const STD_IO: CommandIO = { out: process.stdout, err: process.stderr }

export const SPLITS = ['train', 'val', 'test', 'all'] as const
export type SplitName = (typeof SPLITS)[number]

/** The model flags of the commands that load one (generate, eval, serve, chat, export). */
export const MODEL_FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR',
    help: 'a Hugging Face model directory, or a LoRA adapter directory (with --run: RUN_DIR/final)' },
  adapter: { kind: 'string', group: 'model', placeholder: 'DIR', help: 'a PEFT LoRA adapter applied to --model (plwtune\'s or PEFT\'s own)' },
} satisfies FlagTable

/** The flags of the split, as generate and eval take them. */
export const SPLIT_FLAGS = {
  data: { kind: 'string', group: 'data', placeholder: 'FILE', help: 'JSON or JSONL records (Alpaca, prompt/completion, chat or multiple choice)' },
  run: { kind: 'string', group: 'data', placeholder: 'RUN_DIR', help: 'a training run: its data, split ratios, seed and template (config.json)' },
  split: { kind: 'string', group: 'data', placeholder: 'NAME', help: 'train, val, test or all (with --run: test when the run has one; else all)' },
  'val-split': { kind: 'number', group: 'data', default: DEFAULTS.valSplit, help: 'the trainer\'s validation fraction of --data (as train\'s flag)' },
  'test-split': { kind: 'number', group: 'data', default: DEFAULTS.testSplit, help: 'the trainer\'s test fraction of --data (as train\'s flag)' },
  'data-seed': { kind: 'integer', group: 'data', default: DEFAULTS.dataSeed, help: 'the seed of the trainer\'s split (as train\'s flag)' },
  limit: { kind: 'integer', group: 'data', help: 'the first N records of the split' },
  format: { kind: 'string', group: 'data', placeholder: 'FORMAT', help: 'auto, alpaca, prompt-completion or chat (with --run: the run\'s) [auto]' },
} satisfies FlagTable

/** Sampling: generate, serve and chat take these (with their own defaults where they say). */
export const SAMPLING_FLAGS = {
  'max-new-tokens': { kind: 'integer', group: 'generation', default: 128, help: 'tokens generated per response at most' },
  temperature: { kind: 'number', group: 'generation', default: 0, help: 'sampling temperature; 0 is greedy' },
  'top-k': { kind: 'integer', group: 'generation', default: 0, help: 'sample from the k most likely tokens; 0: all' },
  'top-p': { kind: 'number', group: 'generation', default: 1, help: 'nucleus sampling: the smallest set of tokens with this probability' },
  seed: { kind: 'integer', group: 'generation', default: 0, help: 'the sampling seed (record i of a dataset samples with seed + i)' },
} satisfies FlagTable

/** Where the model runs. */
export const DEVICE_FLAGS = {
  device: { kind: 'string', group: 'other', placeholder: 'DEV', default: 'auto', help: 'cpu, cuda or auto (cuda when there is one)' },
} satisfies FlagTable

/** A training run directory: its resolved configuration (config.json). */
export interface RunInfo {
  dir: string
  config: TrainConfig
}

export function readRun(dir: string): RunInfo {
  const file = path.join(dir, 'config.json')
  if (!fs.existsSync(file)) throw new UsageError(`--run ${dir}: no config.json there (not a plwtune run directory)`)
  let saved: Record<string, unknown>
  try {
    saved = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new UsageError(`--run ${dir}: ${file} is not JSON (${(err as Error).message})`)
  }
  // Before dataSeed existed the trainer split (and generated the demo set) with `seed`.
  if (!Object.hasOwn(saved, 'dataSeed') && typeof saved.seed === 'number') saved = { ...saved, dataSeed: saved.seed }
  try {
    return { dir, config: resolveConfig({ source: file, values: saved }) }
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`--run ${dir}: ${err.message}`)
    throw err
  }
}

/**
 * The model directory: --model, else the run's final/ model. A LoRA adapter directory (a LoRA
 * run's final/, best/ or checkpoint) counts: it records its base model.
 */
export function modelDirOf(model: string | undefined, run: RunInfo | null): string {
  const dir = model ?? (run !== null ? path.join(run.dir, 'final') : undefined)
  if (dir === undefined) throw new UsageError('--model DIR is required (or --run RUN_DIR, whose final/ model is used)')
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new UsageError(`--model ${dir}: no such directory`)
  if (!fs.existsSync(path.join(dir, 'config.json')) && !fs.existsSync(path.join(dir, 'adapter_config.json'))) {
    throw new UsageError(`--model ${dir}: no config.json or adapter_config.json (not a model or adapter directory)`)
  }
  return dir
}

/**
 * What to load: `dir` (a model, or an adapter directory that records its base) with an
 * optional --adapter on top; `files` is where the tokenizer and plwtune.json are read (the
 * adapter's directory when it has a tokenizer, else the model's).
 */
export interface ModelRef {
  dir: string
  adapter?: string
  files: string
}

export function modelRefOf(model: string | undefined, adapter: string | undefined, run: RunInfo | null): ModelRef {
  const dir = modelDirOf(model, run)
  if (adapter === undefined) return { dir, files: dir }
  if (!fs.existsSync(path.join(adapter, 'adapter_config.json'))) {
    throw new UsageError(`--adapter ${adapter}: no adapter_config.json (expected a PEFT LoRA adapter directory, e.g. a LoRA run's final/)`)
  }
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new UsageError(`--model ${dir}: --adapter needs the base model directory here`)
  return { dir, adapter, files: fs.existsSync(path.join(adapter, 'tokenizer.json')) ? adapter : dir }
}

/**
 * What a model was trained with, by precedence: the model's plwtune.json, else the run's
 * config.json (--run), else nothing (an older or foreign model directory).
 */
export function trainingMeta(modelDir: string, run: RunInfo | null): { meta: KnownMeta | null; from: string } {
  const meta = readMeta(modelDir)
  if (meta !== null) return { meta, from: path.join(modelDir, 'plwtune.json') }
  if (run !== null) {
    const c = run.config
    return { meta: { template: c.template, format: c.format === 'auto' ? undefined : c.format, promptLossWeight: c.promptLossWeight,
      maxLength: c.maxLength }, from: path.join(run.dir, 'config.json') }
  }
  return { meta: null, from: '' }
}

/** TrainingMeta as far as it is known (a run's config.json with format auto does not say which format it detected). */
export type KnownMeta = Omit<TrainingMeta, 'format'> & { format?: DataFormat }

/**
 * The template prompts are rendered with: --template, else the training template (plwtune.json
 * or the run's config), else `auto` for the data's format, with a warning, since an older model
 * directory does not say how it was trained.
 */
export function pickTemplate(o: { flag: string | undefined; meta: KnownMeta | null; modelDir: string; format: DataFormat | undefined;
  tokenizer: Tokenizer; warn: (line: string) => void }): Template {
  const spec = o.flag ?? o.meta?.template
  if (spec === undefined) {
    o.warn(`warning: ${o.modelDir} has no plwtune.json (saved before plwtune recorded its training template), and neither ` +
      '--template nor --run says how it was trained: using the auto template for the data. Pass --template SPEC or --run RUN_DIR.')
  }
  // `auto` picks by the training data's format when known (plwtune.json records it), else by this data's.
  return resolveTemplate(spec === undefined || spec === 'auto' ? undefined : spec, { format: o.meta?.format ?? o.format, tokenizer: o.tokenizer })
}

export type Loaded =
  | { kind: 'instruction'; records: DataRecord[]; format: DataFormat; name: string }
  | { kind: 'choices'; records: ChoiceRecord[]; name: string }

function checkFile(flag: string, file: string): void {
  if (!fs.existsSync(file)) throw new UsageError(`${flag} ${file}: no such file`)
  if (fs.statSync(file).isDirectory()) throw new UsageError(`${flag} ${file}: is a directory, expected a JSON or JSONL file`)
}

/**
 * Reads the data: --data FILE, else the run's data (its file, or the built-in demo set it was
 * generated from). Multiple-choice records when `choices` is true or the first record is one.
 */
export async function loadData(o: { data: string | undefined; run: RunInfo | null; format: string | undefined; choices: boolean | 'auto' }): Promise<Loaded> {
  const c = o.run?.config ?? null
  const format = (o.format ?? c?.format ?? 'auto') as DataFormat | 'auto'
  if (!['auto', 'alpaca', 'prompt-completion', 'chat'].includes(format)) {
    throw new UsageError(`--format: expected one of auto, alpaca, prompt-completion, chat, received ${JSON.stringify(format)}`)
  }
  const skipInvalid = c?.skipInvalid ?? false
  const file = o.data ?? c?.data ?? null
  if (file === null) {
    if (c === null) throw new UsageError('--data FILE is required (or --run RUN_DIR, whose data is used)')
    if (o.choices === true) throw new UsageError('--choices: the run was trained on the built-in demo set, which has no multiple-choice records')
    const r = recordsFromObjects(generateDemoRecords(c.demoRecords, c.dataSeed), { name: 'built-in demo set' })
    return { kind: 'instruction', records: r.records, format: r.summary.format, name: `the built-in demo set (${c.demoRecords} records, seed ${c.dataSeed})` }
  }
  checkFile(o.data !== undefined ? '--data' : `the run's data file (${path.join(o.run!.dir, 'config.json')}; pass --data if it moved)`, file)
  if (o.choices === true || (o.choices === 'auto' && await isChoiceFile(file))) {
    const r = await readChoiceDataset(file, { skipInvalid })
    return { kind: 'choices', records: r.records, name: file }
  }
  const r = await readDataset(file, { format, skipInvalid })
  return { kind: 'instruction', records: r.records, format: r.summary.format, name: file }
}

export interface SplitChoice {
  split: SplitName
  val: number
  test: number
  seed: number
  /** Where the ratios came from, for the summary line. */
  from: string
}

/** The split to take and the ratios of the trainer's splitDataset call. */
export function chooseSplit(o: { split: string | undefined; valSplit: number | undefined; testSplit: number | undefined; dataSeed: number | undefined;
  run: RunInfo | null }): SplitChoice {
  if (o.split !== undefined && !(SPLITS as readonly string[]).includes(o.split)) {
    throw new UsageError(`--split: expected one of ${SPLITS.join(', ')}, received ${JSON.stringify(o.split)}`)
  }
  if (o.run !== null) {
    const extra = [o.valSplit !== undefined ? '--val-split' : null, o.testSplit !== undefined ? '--test-split' : null,
      o.dataSeed !== undefined ? '--data-seed' : null].filter((x) => x !== null)
    if (extra.length > 0) {
      throw new UsageError(`--run takes the split from ${path.join(o.run.dir, 'config.json')}; remove ${extra.join(', ')}`)
    }
    const c = o.run.config
    const val = c.valData !== null ? 0 : c.valSplit
    const split = (o.split ?? (c.testSplit > 0 ? 'test' : val > 0 || c.valData !== null ? 'val' : 'all')) as SplitName
    return { split, val, test: c.testSplit, seed: c.dataSeed, from: `the run's config: val ${val}, test ${c.testSplit}, data seed ${c.dataSeed}` }
  }
  const val = o.valSplit ?? DEFAULTS.valSplit
  const test = o.testSplit ?? DEFAULTS.testSplit
  const seed = o.dataSeed ?? DEFAULTS.dataSeed
  for (const [flag, r] of [['--val-split', val], ['--test-split', test]] as const) {
    if (!(r >= 0 && r < 1)) throw new UsageError(`${flag}: expected a number in [0, 1), received ${r}`)
  }
  if (val + test >= 1) throw new UsageError(`--val-split + --test-split must be < 1, received ${val} + ${test}`)
  return { split: (o.split ?? 'all') as SplitName, val, test, seed, from: `val ${val}, test ${test}, data seed ${seed}` }
}

/** The records of the chosen split (the trainer's splitDataset call), then the first `limit`. */
export async function selectSplit<T>(items: readonly T[], s: SplitChoice, o: { run: RunInfo | null; limit: number | undefined;
  readValData?: () => Promise<T[]> }): Promise<T[]> {
  let out: T[]
  if (s.split === 'all') {
    out = items.slice()
  } else if (s.split === 'val' && o.run?.config.valData != null) {
    if (o.readValData === undefined) throw new UsageError('--split val: the run validated on a separate file (valData), which this data kind cannot read')
    out = await o.readValData()
  } else {
    if (s.split !== 'train' && (s.split === 'val' ? s.val : s.test) === 0) {
      throw new UsageError(`--split ${s.split}: the ${s.split} ratio is 0 (${s.from}); give --${s.split}-split X and --data-seed N as the ` +
        'run was trained with, or --run RUN_DIR')
    }
    try {
      out = splitDataset(items, { val: s.val, test: s.test, seed: s.seed })[s.split]
    } catch (err) {
      if (err instanceof DataError || err instanceof RangeError) throw new UsageError(err.message)
      throw err
    }
  }
  if (o.limit !== undefined) {
    if (o.limit < 1) throw new UsageError(`--limit: expected an integer ≥ 1, received ${o.limit}`)
    out = out.slice(0, o.limit)
  }
  if (out.length === 0) throw new UsageError(`the ${s.split} split is empty`)
  return out
}

/** Reads a run's separate validation file as the trainer did. */
export async function readRunValData(run: RunInfo): Promise<DataRecord[]> {
  const file = run.config.valData as string
  checkFile(`the run's valData (${path.join(run.dir, 'config.json')})`, file)
  return (await readDataset(file, { format: run.config.format, skipInvalid: run.config.skipInvalid })).records
}

/** An error as the commands print it: `plwtune NAME: message`; usage errors exit 2, everything else 1. */
export function fail(io: CommandIO, command: string, err: unknown): number {
  const message = err instanceof Error ? err.message : String(err)
  io.err.write(`plwtune ${command}: ${message}\n`)
  return err instanceof UsageError ? 2 : 1
}

/** `12.3%`, or `—` for null. */
export function pct(x: number | null | undefined, digits = 1): string {
  return typeof x === 'number' ? `${(100 * x).toFixed(digits)}%` : '—'
}

/** A number with 4 decimals, or `—`. */
export function num(x: number | null | undefined, digits = 4): string {
  return typeof x === 'number' ? x.toFixed(digits) : '—'
}
