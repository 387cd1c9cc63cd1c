/**
 * The sweep's definition: its own flags beside train's, the λ × seed grid, the metric, where
 * each run lives, and the sweep file (sweep.json) that keeps a continued sweep's settings fixed.
 * The sweep as a whole is described in ts/commands/sweep.ts.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile } from '../atomic-write'
import { loadConfig, parseTrainArgs } from '../commands/train'
import { ConfigError, DEFAULTS, kebab, TrainConfig } from '../train/config'
import { StopReason } from '../train/trainer'
import { prepareOutputDir } from '../output-path'
import { readJsonObject } from '../json-keys'
import { FlagTable, parseFlags, UsageError } from '../commands/flags'
import { BenchmarkScore, BenchmarkSpec, parseBenchmarkFlags } from '../eval/benchmarks'
import { lambdaLabel } from './plot'

export type SweepMetric = 'completion_loss' | 'exact_match'

export const DEFAULT_LAMBDAS = [0, 0.01, 0.05, 0.1, 0.5, 1]
export const DEFAULT_SEEDS = [1, 2]
export const DEFAULT_OUT = 'runs/sweep'

/** One dataset of a sweep: its name (the file's, without extension; "demo" for the built-in set) and its directory. */
export interface DatasetSpec {
  name: string
  /** The data file; null for the built-in demo set. */
  data: string | null
  /** The dataset's sweep directory: `out` itself for one dataset, out/<name> for several. */
  out: string
}

export interface SweepSpec {
  /** Ascending, distinct, each in [0, 1]. */
  lambdas: number[]
  /** Ascending, distinct, integers ≥ 0. */
  seeds: number[]
  metric: SweepMetric
  /** The sweep directory. */
  out: string
  /** Every run's configuration but promptLossWeight, seed and out (and data, per dataset). */
  base: TrainConfig
  /** One or more (--data, repeated); the grid runs per dataset. */
  datasets: DatasetSpec[]
  /** Scored after every run, and on the base model once per sweep (--benchmarks, --shots). */
  benchmarks: BenchmarkSpec[]
  /** The analysis's family-wise significance level. */
  alpha: number
}

/** A benchmark's two accuracies for one model: a run's, the base model's, or their difference. */
export interface AccPair {
  acc: number
  acc_norm: number
}

/** One finished run: what result.json holds and results.csv lists. */
export interface RunResult {
  lambda: number
  seed: number
  stop_reason: StopReason
  /** The best validation completion loss over the run's evaluations. */
  val_completion_loss: number | null
  test_completion_loss: number | null
  /** Fraction of generated test answers that match exactly; null without generation. */
  test_exact_match: number | null
  steps: number
  /** Time spent on the run, including the time before a resume (to its checkpoint). */
  seconds: number
  /** The final model's score on each benchmark (--benchmarks); absent without benchmarks or for a diverged run. */
  benchmarks?: Record<string, BenchmarkScore>
  /** Each benchmark's change against the base model (run − base); absent without a base (no --model). */
  vs_base?: Record<string, AccPair>
}

/** What a metric reads from a run and how it is shown. */
export interface MetricInfo {
  metric: SweepMetric
  key: 'val_completion_loss' | 'test_completion_loss' | 'test_exact_match'
  /** e.g. "val completion loss". */
  label: string
  higherIsBetter: boolean
  percent: boolean
}

export function metricInfo(metric: SweepMetric, base: Pick<TrainConfig, 'valSplit' | 'valData'>): MetricInfo {
  if (metric === 'exact_match') return { metric, key: 'test_exact_match', label: 'test exact match', higherIsBetter: true, percent: true }
  const hasVal = base.valData !== null || base.valSplit > 0
  return hasVal
    ? { metric, key: 'val_completion_loss', label: 'val completion loss', higherIsBetter: false, percent: false }
    : { metric, key: 'test_completion_loss', label: 'test completion loss', higherIsBetter: false, percent: false }
}

/** The sweep's own flags; every other flag is train's (ts/commands/train.ts), passed to each run. */
export const SWEEP_FLAGS = {
  lambdas: { kind: 'numbers', group: 'optimisation', placeholder: 'L,…', default: DEFAULT_LAMBDAS.join(','),
    help: 'prompt loss weights λ, each in [0, 1]' },
  seeds: { kind: 'numbers', group: 'optimisation', placeholder: 'S,…', default: DEFAULT_SEEDS.join(','),
    help: 'seeds (integers ≥ 0); the spread is over these' },
  metric: { kind: 'string', group: 'evaluation', placeholder: 'M',
    help: 'completion_loss (best val completion loss) or exact_match (test answers; the default when generated)' },
  out: { kind: 'string', group: 'output', placeholder: 'DIR', default: DEFAULT_OUT, help: 'the sweep directory' },
  benchmarks: { kind: 'string', group: 'evaluation', placeholder: 'NAME=FILE,…',
    help: 'multiple-choice benchmarks scored after every run and on the base model (--model) once' },
  shots: { kind: 'string', group: 'evaluation', placeholder: 'NAME=K,…',
    help: 'few-shot examples per benchmark (default: the study\'s arc 25, piqa 0, truthfulqa_mc1 0, winogrande 5; else 0)' },
  alpha: { kind: 'number', group: 'evaluation', default: 0.05, help: 'the significance level of the study\'s analysis (Holm–Bonferroni)' },
} satisfies FlagTable
/** Train keys the sweep sets itself, and what to use instead. */
const OWN_KEYS: Partial<Record<keyof TrainConfig, string>> = {
  promptLossWeight: 'the sweep varies it: use --lambdas',
  seed: 'the sweep varies it: use --seeds',
  resume: 'a sweep resumes by running the same command again',
}

function sortedDistinct(xs: number[], flag: string): number[] {
  const seen = new Set<number>()
  for (const x of xs) {
    if (seen.has(x)) throw new UsageError(`--${flag} lists ${x} twice`)
    seen.add(x)
  }
  return [...xs].sort((a, b) => a - b)
}

/**
 * Splits the sweep's own flags (--lambdas, --seeds, --metric, --out) from the train flags,
 * checks both, and resolves the runs' shared configuration as `plwtune train` would (the demo
 * preset without --model and --data, --config, flags). Returns null for --help.
 */
export function parseSweepArgs(argv: string[]): SweepSpec | null {
  const own: string[] = []
  const train: string[] = []
  const dataFiles: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i].startsWith('--') ? argv[i].slice(2).split('=')[0] : ''
    if (flag === 'data') {
      // repeatable here: the first goes to train's flags (it decides the preset), every one is a dataset
      const value = argv[i].includes('=') ? argv[i].slice(argv[i].indexOf('=') + 1) : argv[++i]
      if (value === undefined) throw new UsageError('--data: expected a file')
      if (dataFiles.length === 0) train.push('--data', value)
      dataFiles.push(value)
    } else if (Object.hasOwn(SWEEP_FLAGS, flag)) {
      own.push(argv[i])
      if (!argv[i].includes('=') && i + 1 < argv.length) own.push(argv[++i])
    } else {
      train.push(argv[i])
    }
  }
  const { values, positional } = parseFlags(own, SWEEP_FLAGS)
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}`)
  const parsed = parseTrainArgs(train)
  if (parsed.help) return null
  for (const key of Object.keys(parsed.values) as Array<keyof TrainConfig>) {
    if (OWN_KEYS[key]) throw new UsageError(`--${kebab(key)}: ${OWN_KEYS[key]}`)
  }

  const lambdas = sortedDistinct((values.lambdas as number[] | undefined) ?? DEFAULT_LAMBDAS, 'lambdas')
  for (const x of lambdas) {
    if (!(x >= 0 && x <= 1)) throw new UsageError(`--lambdas: ${x} is outside [0, 1] (λ is the loss weight of prompt tokens)`)
  }
  const seeds = sortedDistinct((values.seeds as number[] | undefined) ?? DEFAULT_SEEDS, 'seeds')
  for (const s of seeds) {
    if (!(Number.isInteger(s) && s >= 0)) throw new UsageError(`--seeds: Expected integers ≥ 0 but received ${s}`)
  }
  const base = loadConfig(train, { dataList: (files) => {
    if (dataFiles.length > 0) throw new UsageError('--data and a list of datasets in --config: give the datasets one way')
    dataFiles.push(...files)
  } }) as TrainConfig
  const generates = base.generateEval > 0 && base.testSplit > 0
  const metricArg = values.metric as string | undefined
  if (metricArg !== undefined && metricArg !== 'completion_loss' && metricArg !== 'exact_match') {
    throw new UsageError(`--metric: Expected completion_loss or exact_match but received ${JSON.stringify(metricArg)}`)
  }
  const metric: SweepMetric = (metricArg as SweepMetric | undefined) ?? (generates ? 'exact_match' : 'completion_loss')
  if (metric === 'exact_match' && !generates) {
    throw new UsageError('--metric exact_match needs generated test answers: set --test-split and --generate-eval above 0')
  }
  if (metric === 'completion_loss' && base.valData === null && base.valSplit === 0 && base.testSplit === 0) {
    throw new UsageError('--metric completion_loss needs a validation or test split: set --val-split, --val-data or --test-split')
  }
  const out = (values.out as string | undefined) ?? DEFAULT_OUT
  const benchmarks = values.benchmarks !== undefined ? parseBenchmarkFlags(values.benchmarks as string, values.shots as string | undefined) : []
  if (values.shots !== undefined && values.benchmarks === undefined) throw new UsageError('--shots needs --benchmarks')
  const alpha = (values.alpha as number | undefined) ?? 0.05
  if (!(alpha > 0 && alpha < 1)) throw new UsageError(`--alpha: expected a number in (0, 1), received ${alpha}`)
  return { lambdas, seeds, metric, out, base: { ...base, resume: null }, datasets: datasetsOf(dataFiles, base.data, out), benchmarks, alpha }
}

/** The datasets' names and directories: one dataset is the sweep directory itself, several get out/<name>. */
export function datasetsOf(files: readonly string[], data: string | null, out: string): DatasetSpec[] {
  if (files.length <= 1) return [{ name: datasetName(data), data, out }]
  const names = files.map(datasetName)
  const seen = new Map<string, string>()
  files.forEach((f, i) => {
    const other = seen.get(names[i])
    if (other !== undefined) throw new UsageError(`--data ${other} and --data ${f} have the same name ${JSON.stringify(names[i])}: rename one of them`)
    seen.set(names[i], f)
  })
  return files.map((f, i) => ({ name: names[i], data: f, out: path.join(out, names[i]) }))
}

/** A dataset's name: its file's base name without extension ("alpaca-short.json" → "alpaca-short"); "demo" for the built-in set. */
export function datasetName(data: string | null): string {
  if (data === null) return 'demo'
  const base = path.basename(data).replace(/\.(jsonl?|json\.gz|jsonl\.gz|csv|parquet)$/i, '')
  return base.replace(/[^\w.+-]/g, '_') || 'data'
}

/** The spec of one dataset's grid: its directory and its data file. */
export function datasetSpec(spec: SweepSpec, d: DatasetSpec): SweepSpec {
  return { ...spec, out: d.out, base: { ...spec.base, data: d.data }, datasets: [d] }
}

/** The run directory of (λ, seed). */
export function runDirOf(out: string, lambda: number, seed: number): string {
  return path.join(out, `lambda-${lambdaLabel(lambda)}`, `seed-${seed}`)
}

// ---------------------------------------------------------------------------------------
// the sweep file

function sharedConfig(base: TrainConfig, benchmarks: readonly BenchmarkSpec[]): Record<string, unknown> {
  const { promptLossWeight: _p, seed: _s, out: _o, resume: _r, device: _d, overwrite: _w, ...rest } = base
  return benchmarks.length > 0 ? { ...rest, benchmarks: benchmarks.map((b) => ({ name: b.name, file: path.resolve(b.file), shots: b.shots })) } : rest
}

/** Creates sweep.json, or checks that the runs already there were made with the same configuration. */
export function checkSweepFile(spec: SweepSpec): void {
  const file = path.join(spec.out, 'sweep.json')
  const shared = spec.datasets.length > 1
    // the directory of several datasets' sweeps: their shared settings and the list
    ? { ...sharedConfig({ ...spec.base, data: null }, spec.benchmarks), datasets: spec.datasets.map((d) => ({ name: d.name, data: d.data && path.resolve(d.data) })) }
    : sharedConfig(spec.base, spec.benchmarks)
  if (fs.existsSync(file)) {
    const sweepFile = readJsonObject(file, 'sweep file', (m) => new ConfigError(m))
    const saved = sweepFile.config as Record<string, unknown>
    if (typeof saved !== 'object' || saved === null || Array.isArray(saved)) throw new ConfigError(`${file}: expected {"config": {…}}`)
    const keys = new Set([...Object.keys(saved), ...Object.keys(shared)])
    // a key the saved sweep predates counts as its default there (own keys only: ts/json-keys.ts)
    const value = (o: Record<string, unknown>, k: string) => JSON.stringify(Object.hasOwn(o, k) ? o[k] : (DEFAULTS as unknown as Record<string, unknown>)[k])
    const differ = [...keys].filter((k) => value(saved, k) !== value(shared, k))
    if (differ.length > 0) {
      throw new ConfigError(`${spec.out} holds a sweep with other settings (${differ.map((k) =>
        `${k}: ${JSON.stringify(saved[k])} there, ${JSON.stringify(shared[k])} now`).join('; ')}); use another --out, or the same settings to continue it`)
    }
    return
  }
  if (fs.existsSync(spec.out) && fs.statSync(spec.out).isDirectory() && fs.readdirSync(spec.out).length > 0) {
    throw new ConfigError(`--out ${spec.out} holds files but no sweep.json (not a plwtune sweep); a sweep is written only into a new or ` +
      'empty directory, or continued in its own: choose another --out')
  }
  prepareOutputDir(spec.out, '--out')
  replaceFile(file, JSON.stringify({ config: shared }, null, 2) + '\n')
}
