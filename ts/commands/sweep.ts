/**
 * `plwtune sweep`: the same training over a grid of prompt loss weights λ × seeds, each run
 * evaluated, then one table and one plot that name the best λ with the spread across seeds.
 *
 *   plwtune sweep [--lambdas 0,0.01,0.05,0.1,0.5,1] [--seeds 1,2] [--metric completion_loss|exact_match]
 *                 [--out runs/sweep] [every train flag, passed to each run]
 *
 * The sweep directory:
 *   sweep.json                 the runs' shared configuration; running again with another one is an error
 *   lambda-<λ>/seed-<s>/       a normal run directory (ts/train/run-dir.ts) plus result.json
 *   results.md, results.csv    the table (per seed, mean and spread, best marked) and one CSV row per run
 *   sweep.svg                  the metric against λ (ts/commands/sweep-plot.ts)
 *
 * Decisions a reader would otherwise rediscover:
 * - A run is finished when its result.json exists (written atomically after fit and the test
 *   evaluation). Running the same command again skips finished runs, resumes an interrupted
 *   one from its newest checkpoint with its saved config (the trainer's --resume), and starts
 *   over a run that left no checkpoint. New λ or seeds may be added to a sweep; other
 *   settings may not (sweep.json), except the device.
 * - The metric: `completion_loss` is the best validation completion loss (the test completion
 *   loss when there is no validation split), lower is better; `exact_match` is the exact
 *   match of greedy answers to the test split, higher is better. The default is exact_match
 *   when the runs generate test answers (--generate-eval and --test-split above 0), else
 *   completion_loss. Every run's other metrics are in results.csv either way.
 * - The spread: with 3 or more seeds the sample standard deviation (n − 1), shown mean ± std;
 *   with 2 seeds their min–max (a std of two numbers says little); with 1 none. The best λ's
 *   lead "exceeds the seed spread" when its interval (mean ± std, or min–max) overlaps no
 *   other λ's; the verdict also counts, seed by seed, how often the best beat the runner-up
 *   (the runs of one seed share the data split and initialization, so that comparison is paired).
 * - The seed is the trainer's one seed: the weight initialization, the data order, the
 *   val/test split and, for the built-in demo set, the generated records themselves. The
 *   spread therefore includes data-sampling noise, as it would for a user drawing new splits.
 * - A run whose loss became non-finite is finished too (it would diverge again): it shows as
 *   "diverged" and is left out of the means.
 * - The tables are rewritten after every finished run, so a long sweep can be read while it
 *   runs; an interrupted sweep writes what it has and says how many runs are missing.
 */
import { abortOnSigint } from './interrupt'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile } from '../atomic-write'
import { loadConfig, parseTrainArgs } from './train'
import { ConfigError, DEFAULTS, kebab, resolveConfig, TrainConfig } from '../train/config'
import { formatDuration, Progress } from '../train/progress'
import { RunDir, TrainerState } from '../train/run-dir'
import { StepMetrics, StopReason, Trainer, TrainResult } from '../train/trainer'
import { prepareOutputDir } from '../output-path'
import { readJsonObject } from '../json-keys'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'
import { lambdaLabel, renderSweepPlot } from './sweep-plot'

// ---------------------------------------------------------------------------------------
// the sweep's definition

export type SweepMetric = 'completion_loss' | 'exact_match'

export const DEFAULT_LAMBDAS = [0, 0.01, 0.05, 0.1, 0.5, 1]
export const DEFAULT_SEEDS = [1, 2]
export const DEFAULT_OUT = 'runs/sweep'

export interface SweepSpec {
  /** Ascending, distinct, each in [0, 1]. */
  lambdas: number[]
  /** Ascending, distinct, integers ≥ 0. */
  seeds: number[]
  metric: SweepMetric
  /** The sweep directory. */
  out: string
  /** Every run's configuration but promptLossWeight, seed and out. */
  base: TrainConfig
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
const SWEEP_FLAGS = {
  lambdas: { kind: 'numbers', group: 'optimisation', placeholder: 'L,…', default: DEFAULT_LAMBDAS.join(','),
    help: 'prompt loss weights λ, each in [0, 1]' },
  seeds: { kind: 'numbers', group: 'optimisation', placeholder: 'S,…', default: DEFAULT_SEEDS.join(','),
    help: 'seeds (integers ≥ 0); the spread is over these' },
  metric: { kind: 'string', group: 'evaluation', placeholder: 'M',
    help: 'completion_loss (best val completion loss) or exact_match (test answers; the default when generated)' },
  out: { kind: 'string', group: 'output', placeholder: 'DIR', default: DEFAULT_OUT, help: 'the sweep directory' },
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
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i].startsWith('--') ? argv[i].slice(2).split('=')[0] : ''
    if (Object.hasOwn(SWEEP_FLAGS, flag)) {
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
  const base = loadConfig(train) as TrainConfig
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
  return { lambdas, seeds, metric, out: (values.out as string | undefined) ?? DEFAULT_OUT, base: { ...base, resume: null } }
}

/** The run directory of (λ, seed). */
export function runDirOf(out: string, lambda: number, seed: number): string {
  return path.join(out, `lambda-${lambdaLabel(lambda)}`, `seed-${seed}`)
}

// ---------------------------------------------------------------------------------------
// aggregation (pure)

export type SpreadKind = 'std' | 'range' | 'none'

export interface LambdaRow {
  lambda: number
  /** Per seed (in the sweep's seed order): the metric, or null (not finished, diverged, no value). */
  values: Array<number | null>
  /** Per seed: the run diverged. */
  diverged: boolean[]
  n: number
  mean: number | null
  /** Sample standard deviation (n − 1); null below 2 values. */
  std: number | null
  min: number | null
  max: number | null
  /** The interval the verdict compares: mean ± std, min–max, or the mean alone. */
  interval: [number, number] | null
}

export interface SweepSummary {
  metric: MetricInfo
  seeds: number[]
  spreadKind: SpreadKind
  rows: LambdaRow[]
  /** Index into rows of the best λ (the smallest of tied ones); null when no λ has a value. */
  best: number | null
  /** Indices of other λ whose mean equals the best's. */
  tied: number[]
  /** Indices of λ whose interval overlaps the best's (the best excluded). */
  overlapping: number[]
  /** The best's lead exceeds the seed spread (no overlap), or null when there is no spread to judge by. */
  separated: boolean | null
  /** Runs finished (diverged included) of all in the grid. */
  finished: number
  total: number
  /** Sentences naming the best λ with its spread and whether the differences exceed it. */
  verdict: string[]
}

export function spreadKindOf(seeds: number): SpreadKind {
  return seeds >= 3 ? 'std' : seeds === 2 ? 'range' : 'none'
}

/** A metric value as shown: 4 decimals for losses, a percentage with 1 decimal for exact match. */
export function formatValue(x: number | null, m: MetricInfo): string {
  if (x === null) return '—'
  return m.percent ? `${(100 * x).toFixed(1)}%` : x.toFixed(4)
}

/** A value without its unit: percentage points or the loss itself. */
function m100(x: number, m: MetricInfo): string {
  return m.percent ? (100 * x).toFixed(1) : x.toFixed(4)
}

/** A difference of two values in the metric's units ("+0.0123", "−2.5 pts"). */
function formatDelta(d: number, m: MetricInfo): string {
  const sign = d > 0 ? '+' : d < 0 ? '−' : '±'
  return m.percent ? `${sign}${Math.abs(100 * d).toFixed(1)} pts` : `${sign}${Math.abs(d).toFixed(4)}`
}

/** "1.2345 ± 0.0100", "47.5% (46.0–49.0%)", or the mean alone. */
export function formatSpread(row: LambdaRow, kind: SpreadKind, m: MetricInfo): string {
  if (row.mean === null) return '—'
  const mean = formatValue(row.mean, m)
  if (kind === 'std' && row.std !== null) return `${mean} ± ${m100(row.std, m)}`
  if (kind !== 'none' && row.n >= 2 && row.min !== null && row.max !== null) return `${mean} (${m100(row.min, m)}–${formatValue(row.max, m)})`
  return mean
}

function describeSpread(kind: SpreadKind, seeds: number): string {
  return kind === 'std' ? `mean ± std over ${seeds} seeds` : kind === 'range' ? 'mean (min–max) over 2 seeds' : 'one seed: no spread'
}

const list = (xs: string[]): string => (xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`)

/**
 * Per-λ means and spreads of the metric, the best λ, and the verdict. `results` may hold
 * runs outside the grid (ignored) and miss some of it (an unfinished sweep).
 */
export function summarize(results: readonly RunResult[], lambdas: readonly number[], seeds: readonly number[], metric: MetricInfo): SweepSummary {
  const kind = spreadKindOf(seeds.length)
  const byRun = new Map(results.map((r) => [`${r.lambda}/${r.seed}`, r]))
  let finished = 0
  const rows: LambdaRow[] = lambdas.map((lambda) => {
    const runs = seeds.map((s) => byRun.get(`${lambda}/${s}`))
    finished += runs.filter((r) => r !== undefined).length
    const diverged = runs.map((r) => r?.stop_reason === 'non_finite')
    const values = runs.map((r, j) => {
      const x = r === undefined || diverged[j] ? null : r[metric.key]
      return typeof x === 'number' && Number.isFinite(x) ? x : null
    })
    const xs = values.filter((x): x is number => x !== null)
    const n = xs.length
    const mean = n > 0 ? xs.reduce((a, b) => a + b, 0) / n : null
    const std = n >= 2 && mean !== null ? Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1)) : null
    const min = n > 0 ? Math.min(...xs) : null
    const max = n > 0 ? Math.max(...xs) : null
    const interval: [number, number] | null = mean === null ? null
      : kind === 'std' && std !== null ? [mean - std, mean + std]
        : kind === 'range' && min !== null && max !== null ? [min, max] : [mean, mean]
    return { lambda, values, diverged, n, mean, std, min, max, interval }
  })

  const better = (a: number, b: number) => (metric.higherIsBetter ? a > b : a < b)
  let best: number | null = null
  for (let i = 0; i < rows.length; i++) {
    const x = rows[i].mean
    if (x !== null && (best === null || better(x, rows[best].mean as number))) best = i
  }
  const total = lambdas.length * seeds.length
  const verdict: string[] = []
  let overlapping: number[] = []
  let separated: boolean | null = null
  if (best === null) {
    verdict.push('No run has finished yet.')
    return { metric, seeds: [...seeds], spreadKind: kind, rows, best, tied: [], overlapping, separated, finished, total, verdict }
  }
  const b = rows[best]
  const bestName = `λ = ${lambdaLabel(b.lambda)}`
  const spreadWords = kind === 'std' && b.std !== null ? ` (std ${m100(b.std, metric)})`
    : kind === 'range' && b.n >= 2 ? ` (min–max ${m100(b.min as number, metric)}–${formatValue(b.max, metric)})` : ''
  verdict.push(`Best: ${bestName}, mean ${metric.label} ${formatValue(b.mean, metric)} over ${b.n} seed${b.n === 1 ? '' : 's'}${spreadWords}` +
    `${b.n < seeds.length ? ` of ${seeds.length}` : ''}; the ${metric.higherIsBetter ? 'highest' : 'lowest'} of ${rows.filter((r) => r.mean !== null).length} λ.`)
  const others = rows.map((r, i) => ({ r, i })).filter(({ r, i }) => i !== best && r.mean !== null)
  const tied = others.filter(({ r }) => r.mean === b.mean).map(({ i }) => i)
  if (tied.length > 0) {
    verdict.push(`λ = ${list([b.lambda, ...tied.map((i) => rows[i].lambda)].map(lambdaLabel))} tie on the mean: the sweep does not separate them.`)
  }
  if (others.length === 0) {
    verdict.push('It is the only λ with a finished run: nothing to compare it with.')
  } else if (kind === 'none') {
    verdict.push(`With one seed there is no spread to judge the differences by: run more seeds (--seeds ${[...seeds, seeds[seeds.length - 1] + 1, seeds[seeds.length - 1] + 2].join(',')}).`)
  } else if (b.n < 2) {
    verdict.push('Only one of its seeds has finished: no spread to judge the differences by yet.')
  } else {
    const [lo, hi] = b.interval as [number, number]
    overlapping = others.filter(({ r }) => {
      const [a, z] = r.interval as [number, number]
      return a <= hi && lo <= z
    }).map(({ i }) => i)
    separated = overlapping.length === 0
    const spreadWord = kind === 'std' ? 'mean ± std' : 'min–max'
    // The runner-up, compared seed by seed (paired: a seed's runs share data and initialization).
    const runnerUp = others.reduce((p, q) => (better(q.r.mean as number, p.r.mean as number) ? q : p))
    let wins = 0, ties = 0, pairs = 0
    seeds.forEach((_, j) => {
      const x = b.values[j]
      const y = runnerUp.r.values[j]
      if (x !== null && y !== null) {
        pairs++
        if (better(x, y)) wins++
        else if (x === y) ties++
      }
    })
    const gap = formatDelta((runnerUp.r.mean as number) - (b.mean as number), metric)
    const paired = `Seed by seed, ${bestName} was better than the runner-up λ = ${lambdaLabel(runnerUp.r.lambda)} ` +
      `(mean ${formatValue(runnerUp.r.mean, metric)}, ${gap} from the best) ` +
      `in ${wins} of ${pairs} seeds${ties > 0 ? ` (${ties} tied)` : ''}`
    if (separated) {
      verdict.push(`The differences exceed the seed spread: no other λ's ${spreadWord} overlaps the best's. ${paired}.`)
    } else {
      const names = overlapping.map((i) => lambdaLabel(rows[i].lambda))
      const apart = others.filter(({ i }) => !overlapping.includes(i)).map(({ r }) => lambdaLabel(r.lambda))
      verdict.push(`The differences do not all exceed the seed spread: λ = ${list(names)} ${names.length === 1 ? 'overlaps' : 'overlap'} ` +
        `the best's ${spreadWord}, so ${names.length === 1 ? 'it is' : 'they are'} not distinguishable from it with ${seeds.length} seeds` +
        `${apart.length > 0 ? `; λ = ${list(apart)} ${apart.length === 1 ? 'is' : 'are'} clearly ${metric.higherIsBetter ? 'lower' : 'higher'}` : ''}. ${paired}.`)
    }
  }
  const diverged = rows.flatMap((r) => r.diverged.map((d, j) => (d ? `λ = ${lambdaLabel(r.lambda)} seed ${seeds[j]}` : ''))).filter((s) => s !== '')
  if (diverged.length > 0) verdict.push(`Diverged (non-finite loss, left out of the means): ${list(diverged)}.`)
  return { metric, seeds: [...seeds], spreadKind: kind, rows, best, tied, overlapping, separated, finished, total, verdict }
}

// ---------------------------------------------------------------------------------------
// the tables

function cell(x: number | null): string {
  return x === null ? '' : String(x)
}

export const CSV_HEADER = 'lambda,seed,val_completion_loss,test_completion_loss,test_exact_match,steps,seconds'

/** One row per finished run, by λ then seed. */
export function resultsCsv(results: readonly RunResult[]): string {
  const rows = [...results].sort((a, b) => a.lambda - b.lambda || a.seed - b.seed).map((r) =>
    [r.lambda, r.seed, cell(r.val_completion_loss), cell(r.test_completion_loss), cell(r.test_exact_match), r.steps, r.seconds.toFixed(1)].join(','))
  return [CSV_HEADER, ...rows].join('\n') + '\n'
}

function describeSetup(base: TrainConfig): string {
  const data = base.data === null ? `the built-in demo set (${base.demoRecords} records, generated from --data-seed ${base.dataSeed}; the same records and splits for every seed)` : `\`${base.data}\``
  const model = base.model === null
    ? `a fresh GPT-2 (${base.init.nLayer} layer${base.init.nLayer === 1 ? '' : 's'}, ${base.init.nEmbd} channels)` : `\`${base.model}\``
  const length = base.maxSteps > 0 ? `${base.maxSteps} steps` : `${base.epochs} epoch${base.epochs === 1 ? '' : 's'}`
  return `${model} on ${data}, ${length} of ${base.batchSize} examples, lr ${base.lr}, template \`${JSON.stringify(base.template).slice(1, -1)}\``
}

function describeMetric(m: MetricInfo, base: TrainConfig): string {
  if (m.key === 'test_exact_match') return `test exact match (greedy answers to up to ${base.generateEval} test records; higher is better)`
  if (m.key === 'val_completion_loss') return 'best validation completion loss (mean cross-entropy of completion tokens, nats; lower is better)'
  return 'test completion loss (mean cross-entropy of completion tokens, nats; lower is better)'
}

/** results.md: the metric per seed with mean and spread, the best marked, the verdict, and every metric's means. */
export function resultsMarkdown(s: SweepSummary, results: readonly RunResult[], base: TrainConfig, command?: string): string {
  const m = s.metric
  const lines = ['# Prompt loss weight sweep', '']
  if (s.finished < s.total) {
    lines.push(`**Partial: ${s.finished} of ${s.total} runs finished.** Run the same command again to finish the sweep.`, '')
  }
  lines.push(`${s.rows.length} λ × ${s.seeds.length} seed${s.seeds.length === 1 ? '' : 's'}: ${describeSetup(base)}.`)
  lines.push(`Metric: ${describeMetric(m, base)}. Spread: ${describeSpread(s.spreadKind, s.seeds.length)}.`)
  if (command) lines.push('', `\`${command}\``)
  lines.push('')
  const spreadHead = s.spreadKind === 'std' ? 'mean ± std' : s.spreadKind === 'range' ? 'mean (min–max)' : 'mean'
  lines.push(`| λ | ${s.seeds.map((x) => `seed ${x}`).join(' | ')} | ${spreadHead} | vs best |`)
  lines.push(`|---:|${s.seeds.map(() => '---:|').join('')}:---|---:|`)
  s.rows.forEach((r, i) => {
    const isBest = i === s.best
    const seedCells = r.values.map((x, j) => (r.diverged[j] ? 'diverged' : formatValue(x, m)))
    const bestMean = s.best !== null ? s.rows[s.best].mean : null
    const delta = isBest ? `**best**${s.tied.length > 0 ? ' (tied)' : ''}` : s.tied.includes(i) ? 'tied'
      : r.mean !== null && bestMean !== null ? formatDelta(r.mean - bestMean, m) : ''
    const lam = isBest ? `**${lambdaLabel(r.lambda)}**` : lambdaLabel(r.lambda)
    const mean = isBest ? `**${formatSpread(r, s.spreadKind, m)}**` : formatSpread(r, s.spreadKind, m)
    lines.push(`| ${lam} | ${seedCells.join(' | ')} | ${mean} | ${delta} |`)
  })
  lines.push('', ...s.verdict.map((v) => v), '')

  // Every metric's mean over the finished seeds.
  const cols: Array<{ key: keyof RunResult; head: string; fmt: (x: number) => string }> = [
    { key: 'val_completion_loss', head: 'val completion loss', fmt: (x) => x.toFixed(4) },
    { key: 'test_completion_loss', head: 'test completion loss', fmt: (x) => x.toFixed(4) },
    { key: 'test_exact_match', head: 'test exact match', fmt: (x) => `${(100 * x).toFixed(1)}%` },
    { key: 'steps', head: 'steps', fmt: (x) => String(Math.round(x)) },
    { key: 'seconds', head: 'time per run', fmt: (x) => formatDuration(x * 1000) },
  ]
  const inGrid = results.filter((r) => s.rows.some((row) => row.lambda === r.lambda) && s.seeds.includes(r.seed))
  const shown = cols.filter((c) => inGrid.some((r) => typeof r[c.key] === 'number'))
  if (inGrid.length > 0) {
    lines.push(`Every metric, mean over the finished seeds (per run: results.csv):`, '')
    lines.push(`| λ | ${shown.map((c) => c.head).join(' | ')} |`, `|---:|${shown.map(() => '---:|').join('')}`)
    for (const row of s.rows) {
      const runs = inGrid.filter((r) => r.lambda === row.lambda && r.stop_reason !== 'non_finite')
      const cells = shown.map((c) => {
        const xs = runs.map((r) => r[c.key]).filter((x): x is number => typeof x === 'number' && Number.isFinite(x))
        return xs.length > 0 ? c.fmt(xs.reduce((a, x) => a + x, 0) / xs.length) : '—'
      })
      lines.push(`| ${lambdaLabel(row.lambda)} | ${cells.join(' | ')} |`)
    }
    lines.push('')
  }
  lines.push('![metric against λ](sweep.svg)', '')
  return lines.join('\n')
}

export function sweepSvg(s: SweepSummary): string {
  const spreadLabel = s.spreadKind === 'std' ? `mean ± std over ${s.seeds.length} seeds` : s.spreadKind === 'range' ? 'min–max over 2 seeds' : undefined
  return renderSweepPlot({
    lambdas: s.rows.map((r) => r.lambda), seeds: s.seeds, values: s.rows.map((r) => r.values), means: s.rows.map((r) => r.mean),
    spread: spreadLabel ? s.rows.map((r) => (r.n >= 2 ? r.interval : null)) : undefined, spreadLabel,
    best: s.best, tied: s.tied, metricLabel: s.metric.label, unit: s.metric.percent ? undefined : 'nats', higherIsBetter: s.metric.higherIsBetter, percent: s.metric.percent,
  })
}

/** The finished runs of the grid, read from their result.json. */
export function readResults(spec: Pick<SweepSpec, 'out' | 'lambdas' | 'seeds'>): RunResult[] {
  const out: RunResult[] = []
  for (const lambda of spec.lambdas) {
    for (const seed of spec.seeds) {
      const file = path.join(runDirOf(spec.out, lambda, seed), 'result.json')
      if (fs.existsSync(file)) out.push(JSON.parse(fs.readFileSync(file, 'utf8')) as RunResult)
    }
  }
  return out
}

/** Writes results.md, results.csv and sweep.svg from the finished runs; returns the summary. */
export function writeReports(spec: SweepSpec, command?: string): SweepSummary {
  const results = readResults(spec)
  const s = summarize(results, spec.lambdas, spec.seeds, metricInfo(spec.metric, spec.base))
  replaceFile(path.join(spec.out, 'results.md'), resultsMarkdown(s, results, spec.base, command))
  replaceFile(path.join(spec.out, 'results.csv'), resultsCsv(results))
  replaceFile(path.join(spec.out, 'sweep.svg'), sweepSvg(s))
  return s
}

// ---------------------------------------------------------------------------------------
// running

/** The configuration the runs share, as sweep.json keeps it (the device may change between invocations). */
function sharedConfig(base: TrainConfig): Record<string, unknown> {
  const { promptLossWeight: _p, seed: _s, out: _o, resume: _r, device: _d, overwrite: _w, ...rest } = base
  return rest
}

/** Creates sweep.json, or checks that the runs already there were made with the same configuration. */
function checkSweepFile(spec: SweepSpec): void {
  const file = path.join(spec.out, 'sweep.json')
  const shared = sharedConfig(spec.base)
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

export type SweepEvent =
  | { type: 'skip'; index: number; total: number; lambda: number; seed: number; dir: string; result: RunResult }
  | { type: 'start'; index: number; total: number; lambda: number; seed: number; dir: string; resumeFrom: number | null }
  | { type: 'step'; lambda: number; seed: number; step: number }
  | { type: 'finish'; index: number; total: number; lambda: number; seed: number; dir: string; result: RunResult }
  | { type: 'interrupted'; lambda: number; seed: number; dir: string; step: number }

export interface SweepOptions {
  signal?: AbortSignal
  onEvent?: (e: SweepEvent) => void
  /** Where the lines and the trainer's progress bars go; default: nowhere. */
  stream?: NodeJS.WritableStream
  /** The command line, quoted in results.md. */
  command?: string
}

export interface SweepOutcome {
  interrupted: boolean
  summary: SweepSummary
}

function describeResult(r: RunResult): string {
  if (r.stop_reason === 'non_finite') return `diverged (non-finite loss at step ${r.steps})`
  const parts = [`val completion loss ${r.val_completion_loss === null ? '—' : r.val_completion_loss.toFixed(4)}`]
  if (r.test_completion_loss !== null) parts.push(`test completion loss ${r.test_completion_loss.toFixed(4)}`)
  if (r.test_exact_match !== null) parts.push(`test exact match ${(100 * r.test_exact_match).toFixed(1)}%`)
  if (r.stop_reason === 'early_stopping') parts.push(`early stop at step ${r.steps}`)
  return parts.join(', ')
}

/** Runs (or resumes, or skips) every run of the grid in order, λ then seed; writes the reports. */
export async function runSweep(spec: SweepSpec, options: SweepOptions = {}): Promise<SweepOutcome> {
  const stream = options.stream
  const say = (line: string) => stream?.write(line + '\n')
  const emit = (e: SweepEvent) => options.onEvent?.(e)
  checkSweepFile(spec)
  const m = metricInfo(spec.metric, spec.base)
  const grid = spec.lambdas.flatMap((lambda) => spec.seeds.map((seed) => ({ lambda, seed })))
  const total = grid.length
  const done = grid.filter(({ lambda, seed }) => fs.existsSync(path.join(runDirOf(spec.out, lambda, seed), 'result.json'))).length
  say(`sweep: ${spec.lambdas.length} λ (${spec.lambdas.map(lambdaLabel).join(', ')}) × ${spec.seeds.length} seed${spec.seeds.length === 1 ? '' : 's'} ` +
    `(${spec.seeds.join(', ')}) = ${total} runs in ${spec.out}; metric ${m.label}${done > 0 ? `; ${done} finished already` : ''}`)
  const timings: number[] = []

  for (let k = 0; k < total; k++) {
    const { lambda, seed } = grid[k]
    const dir = runDirOf(spec.out, lambda, seed)
    const tag = `[${k + 1}/${total}] λ = ${lambdaLabel(lambda)}, seed ${seed}`
    const resultFile = path.join(dir, 'result.json')
    if (fs.existsSync(resultFile)) {
      const result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as RunResult
      say(`${tag}: finished already: ${describeResult(result)}`)
      emit({ type: 'skip', index: k, total, lambda, seed, dir, result })
      continue
    }
    if (options.signal?.aborted) {
      emit({ type: 'interrupted', lambda, seed, dir, step: 0 })
      say(`sweep: interrupted before ${tag.slice(tag.indexOf(']') + 2)}; run the same command again to continue`)
      return { interrupted: true, summary: writeReports(spec, options.command) }
    }

    // A run with a complete checkpoint resumes with its saved config; one without starts over.
    const checkpoint = new RunDir(dir).checkpoints().pop()
    let config: TrainConfig
    let priorMs = 0
    if (checkpoint !== undefined) {
      const file = path.join(dir, 'config.json')
      const saved = readJsonObject(file, 'run configuration', (m) => new ConfigError(m))
      if (saved.promptLossWeight !== lambda || saved.seed !== seed) {
        throw new ConfigError(`${file}: a run of λ = ${saved.promptLossWeight}, seed ${saved.seed} in the place of λ = ${lambda}, seed ${seed}`)
      }
      config = resolveConfig({ source: file, values: { ...saved, device: spec.base.device, resume: dir, out: dir } })
      priorMs = (JSON.parse(fs.readFileSync(path.join(checkpoint.dir, 'trainer_state.json'), 'utf8')) as TrainerState).elapsedMs
      say(`${tag}: resuming ${dir} from step ${checkpoint.step}`)
    } else {
      fs.rmSync(dir, { recursive: true, force: true })
      config = resolveConfig({ source: 'the sweep', values: { ...spec.base, promptLossWeight: lambda, seed, out: dir, resume: null } })
      say(`${tag}: training → ${dir}`)
    }
    emit({ type: 'start', index: k, total, lambda, seed, dir, resumeFrom: checkpoint?.step ?? null })

    const trainer = new Trainer(config)
    let progress: Progress | null = null
    const label = `λ=${lambdaLabel(lambda)} s${seed}`
    trainer.on('log', (line: string) => {
      if (!line.startsWith('warning')) return
      if (progress) progress.log(`${tag}: ${line}`)
      else say(`${tag}: ${line}`)
    })
    if (stream) {
      trainer.on('start', (st: { totalSteps: number; startStep: number }) => {
        progress = new Progress({ total: st.totalSteps, stream, label })
        progress.update(st.startStep, {})
      })
      trainer.on('generate-start', (g: { total: number }) => {
        progress?.finish()
        progress = new Progress({ total: g.total, stream, label: `${label} test answers` })
      })
      trainer.on('generate-progress', (g: { done: number }) => progress?.update(g.done, {}))
    }
    trainer.on('step', (s: StepMetrics) => {
      progress?.update(s.step, { loss: s.loss.toFixed(4), compl: s.completion_loss === null ? '—' : s.completion_loss.toFixed(4) })
      emit({ type: 'step', lambda, seed, step: s.step })
    })
    const t0 = Date.now()
    let r: TrainResult
    try {
      r = await trainer.fit({ signal: options.signal })
    } finally {
      ;(progress as Progress | null)?.finish()
    }
    if (r.stopReason === 'interrupted') {
      emit({ type: 'interrupted', lambda, seed, dir, step: r.steps })
      say(`${tag}: interrupted at step ${r.steps} (checkpoint saved); run the same command again to continue`)
      return { interrupted: true, summary: writeReports(spec, options.command) }
    }
    const ms = Date.now() - t0
    const result: RunResult = {
      lambda, seed, stop_reason: r.stopReason,
      val_completion_loss: r.bestValCompletionLoss,
      test_completion_loss: r.test?.loss?.completionLoss ?? null,
      test_exact_match: r.test?.accuracy ?? null,
      steps: r.steps,
      seconds: Math.round((priorMs + ms) / 100) / 10,
    }
    replaceFile(resultFile, JSON.stringify(result, null, 2) + '\n')
    timings.push(ms)
    const left = grid.slice(k + 1).filter((g) => !fs.existsSync(path.join(runDirOf(spec.out, g.lambda, g.seed), 'result.json'))).length
    const mean = timings.reduce((a, b) => a + b, 0) / timings.length
    say(`${tag}: ${describeResult(result)} (${formatDuration(ms)}${left > 0 ? `; ${left} run${left === 1 ? '' : 's'} left, about ${formatDuration(left * mean)}` : ''})`)
    emit({ type: 'finish', index: k, total, lambda, seed, dir, result })
    writeReports(spec, options.command)
  }
  return { interrupted: false, summary: writeReports(spec, options.command) }
}

// ---------------------------------------------------------------------------------------
// the command

export function sweepHelp(): string {
  return commandHelp({
    usage: 'plwtune sweep [--lambdas 0,0.01,0.05,0.1,0.5,1] [--seeds 1,2] [--metric completion_loss|exact_match] [--out DIR] [train flags]',
    summary: `Trains the same configuration once per prompt loss weight λ and seed, evaluates each run, and writes
OUT/results.md (the metric per seed, mean and spread, the best λ), OUT/results.csv (one row per run)
and OUT/sweep.svg (the metric against λ). Each run is a normal run directory, OUT/lambda-<λ>/seed-<s>/.`,
    table: SWEEP_FLAGS,
    notes: `Every plwtune train flag (and --config FILE) is passed to each run (plwtune train --help), except
--prompt-loss-weight, --seed and --resume, which the sweep sets; without --model and --data the runs use
the demo preset. Running the same command again skips finished runs and resumes an interrupted one;
Ctrl-C stops the current run after its step with a checkpoint (exit status 130).`,
    examples: [
      'plwtune sweep --max-steps 300                   # the demo preset, 6 λ × 2 seeds',
      'plwtune sweep --model gpt2 --data alpaca.json --lambdas 0,0.1,1 --seeds 1,2,3 --test-split 0.05 --generate-eval 200',
      'plwtune sweep --config base.json --metric completion_loss --out runs/sweep-lr',
    ],
  })
}

/** `plwtune sweep`: 0 when every run finished, 130 when interrupted, 2 for a usage error, 1 for a failed run. */
export async function sweepCommand(argv: string[], io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream } = { out: process.stdout, err: process.stderr },
  options: { signal?: AbortSignal; onEvent?: (e: SweepEvent) => void } = {}): Promise<number> {
  let spec: SweepSpec | null
  try {
    spec = parseSweepArgs(argv)
  } catch (err) {
    io.err.write(`plwtune sweep: ${(err as Error).message}\n`)
    return 2
  }
  if (spec === null) {
    io.out.write(sweepHelp() + '\n')
    return 0
  }
  const controller = new AbortController()
  if (options.signal?.aborted) controller.abort()
  options.signal?.addEventListener('abort', () => controller.abort(), { once: true })
  const stopListening = abortOnSigint(controller, io.err, 'plwtune sweep')
  const command = ['plwtune sweep', ...argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))].join(' ')
  let outcome: SweepOutcome
  try {
    outcome = await runSweep(spec, { signal: controller.signal, onEvent: options.onEvent, stream: io.out, command })
  } catch (err) {
    io.err.write(`plwtune sweep: ${(err as Error).message}\n`)
    return err instanceof ConfigError || err instanceof UsageError ? 2 : 1
  } finally {
    stopListening()
  }
  const s = outcome.summary
  io.out.write(['', ...s.verdict, '', `results: ${path.join(spec.out, 'results.md')}, ${path.join(spec.out, 'results.csv')}, ` +
    `plot: ${path.join(spec.out, 'sweep.svg')}`].join('\n') + '\n')
  if (outcome.interrupted) {
    io.out.write(`${s.finished} of ${s.total} runs finished; run the same command again to continue\n`)
    return 130
  }
  return 0
}
