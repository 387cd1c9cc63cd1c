/**
 * The sweep's statistics (pure): per λ the metric per seed, mean and spread, the best λ, and the
 * verdict on whether its lead exceeds the seed spread (the rules: ts/commands/sweep.ts).
 */
import { lambdaLabel } from './plot'
import { MetricInfo, RunResult } from './spec'

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
export function m100(x: number, m: MetricInfo): string {
  return m.percent ? (100 * x).toFixed(1) : x.toFixed(4)
}

/** A difference of two values in the metric's units ("+0.0123", "−2.5 pts"). */
export function formatDelta(d: number, m: MetricInfo): string {
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

export function describeSpread(kind: SpreadKind, seeds: number): string {
  return kind === 'std' ? `mean ± std over ${seeds} seeds` : kind === 'range' ? 'mean (min–max) over 2 seeds' : 'one seed: no spread'
}

export const list = (xs: string[]): string => (xs.length <= 1 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`)

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
