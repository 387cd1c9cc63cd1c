/**
 * The study's side of a sweep (docs/plw-study.md): every run's benchmark scores as the analysis's
 * observations (scores.csv), the base model's scores (base.json) and each run's change against
 * them, the λ × benchmark tables with the unweighted aggregate (the paper's Figure 3), one plot
 * per benchmark (Figure 2) and one of the aggregate, and the analysis itself (ts/sweep/analysis.ts).
 *
 * Decisions a reader would otherwise rediscover:
 * - The score of a benchmark is acc_norm (length-normalized accuracy), except for
 *   truthfulqa_mc1 and winogrande, where it is acc: lm-evaluation-harness reports only acc for
 *   those two (their choices are scored as whole answers or by a shared continuation), and the
 *   study read its numbers from the harness. Generation exact match on the test split joins as
 *   the "benchmark" exact_match when the runs generate test answers.
 * - The aggregate is the unweighted mean of a run's scores over the multiple-choice benchmarks
 *   (the paper's Figure 3 averages its four), per run, then averaged over seeds like every other
 *   column; exact match joins it only in a sweep without --benchmarks. So the base model, which
 *   has no exact match, has an aggregate too, and the aggregate's change against it is shown.
 * - The base model is scored once per sweep (all datasets share it) on the same benchmarks with
 *   the same few-shot draws; without --model there is no base (the runs start from a fresh
 *   initialization) and forgetting is not measured, which the report says.
 * - Plots use the study's rank scale: the λ evenly spaced in their order, labelled with their
 *   real values, which is the x the regression fits.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile } from '../atomic-write'
import { BenchmarkScore } from '../eval/benchmarks'
import { AnalysisError, analyzeStudy, Observation, StudyAnalysis } from './analysis'
import { analysisJson, analysisReport } from './analysis-report'
import { lambdaLabel, renderSweepPlot } from './plot'
import { RunResult } from './spec'

/** Benchmarks whose study score is acc (lm-evaluation-harness reports no acc_norm for them). */
export const ACC_ONLY = new Set(['truthfulqa_mc1', 'winogrande'])
export const EXACT_MATCH = 'exact_match'

/** The study's score of one benchmark result: acc_norm, or acc for ACC_ONLY. */
export function studyScore(name: string, s: Pick<BenchmarkScore, 'acc' | 'acc_norm'>): number {
  return ACC_ONLY.has(name) ? s.acc : s.acc_norm
}

/** The base model's scores, as base.json keeps them. */
export interface BaseScores {
  model: string
  benchmarks: Record<string, BenchmarkScore>
}

/** A run's scores by benchmark name (exact match included), the study's rule applied. */
export function runScores(r: RunResult): Record<string, number> {
  const out: Record<string, number> = {}
  if (r.stop_reason === 'non_finite') return out
  for (const [name, s] of Object.entries(r.benchmarks ?? {})) out[name] = studyScore(name, s)
  if (typeof r.test_exact_match === 'number') out[EXACT_MATCH] = r.test_exact_match
  return out
}

/** The analysis's rows: one per (run, benchmark). */
export function observationsOf(dataset: string, results: readonly RunResult[]): Observation[] {
  const obs: Observation[] = []
  for (const r of [...results].sort((a, b) => a.lambda - b.lambda || a.seed - b.seed)) {
    for (const [benchmark, score] of Object.entries(runScores(r)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      obs.push({ dataset, plw: r.lambda, seed: String(r.seed), benchmark, score })
    }
  }
  return obs
}

const csvCell = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s)

/** scores.csv: `dataset,plw,seed,benchmark,score`, the table `plwtune sweep analyze --results` reads. */
export function scoresCsv(obs: readonly Observation[]): string {
  return ['dataset,plw,seed,benchmark,score', ...obs.map((o) => [csvCell(o.dataset), o.plw, o.seed, csvCell(o.benchmark), o.score].join(','))].join('\n') + '\n'
}

/** The base model's study score per benchmark (no exact match: the base is not fine-tuned on the template). */
export function baseScores(base: BaseScores | null): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [name, s] of Object.entries(base?.benchmarks ?? {})) out[name] = studyScore(name, s)
  return out
}

/** Per λ and seed, one benchmark's score (null where missing), and the aggregate as a benchmark named "aggregate". */
export interface BenchmarkGrid {
  benchmarks: string[]
  /** The benchmarks the aggregate averages: the multiple-choice ones (all, without any). */
  aggregated: string[]
  /** values.get(name)[i][j]: λ i, seed j. */
  values: Map<string, Array<Array<number | null>>>
}

export function benchmarkGrid(results: readonly RunResult[], lambdas: readonly number[], seeds: readonly number[]): BenchmarkGrid {
  const byRun = new Map(results.map((r) => [`${r.lambda}/${r.seed}`, runScores(r)]))
  const names = [...new Set([...byRun.values()].flatMap((s) => Object.keys(s)))].sort()
  const values = new Map<string, Array<Array<number | null>>>()
  for (const name of names) values.set(name, lambdas.map((l) => seeds.map((s) => byRun.get(`${l}/${s}`)?.[name] ?? null)))
  const mc = names.filter((n) => n !== EXACT_MATCH)
  const aggregated = mc.length > 0 ? mc : names
  if (names.length > 0) {
    values.set('aggregate', lambdas.map((l) => seeds.map((s) => {
      const sc = byRun.get(`${l}/${s}`)
      if (sc === undefined || aggregated.some((n) => sc[n] === undefined)) return null
      return aggregated.reduce((a, n) => a + sc[n], 0) / aggregated.length
    })))
  }
  return { benchmarks: names, aggregated, values }
}

function stats(xs: ReadonlyArray<number | null>): { mean: number; min: number; max: number; n: number } | null {
  const v = xs.filter((x): x is number => x !== null)
  if (v.length === 0) return null
  return { mean: v.reduce((a, b) => a + b, 0) / v.length, min: Math.min(...v), max: Math.max(...v), n: v.length }
}

/** The base model's aggregate over the grid's aggregated benchmarks, when it has them all. */
function baseAggregate(grid: BenchmarkGrid, base: Record<string, number>): number | undefined {
  const names = grid.aggregated
  return names.length > 0 && names.every((n) => base[n] !== undefined) ? names.reduce((a, n) => a + base[n], 0) / names.length : undefined
}

const pct = (x: number) => (100 * x).toFixed(1)
const signed = (d: number) => `${d > 0 ? '+' : d < 0 ? '−' : '±'}${Math.abs(100 * d).toFixed(1)}`

/** The markdown λ × benchmark table: mean % (seed range), the change against the base, the aggregate last. */
export function benchmarkTable(grid: BenchmarkGrid, lambdas: readonly number[], base: Record<string, number>): string {
  const cols = [...grid.benchmarks, 'aggregate']
  const baseAgg = baseAggregate(grid, base)
  const baseOf = (n: string) => (n === 'aggregate' ? baseAgg : base[n])
  const lines = [`| λ | ${cols.map((c) => (c === 'aggregate' ? '**aggregate**' : c)).join(' | ')} |`, `|---:|${cols.map(() => '---:|').join('')}`]
  if (Object.keys(base).length > 0) {
    lines.push(`| base model | ${cols.map((c) => { const b = baseOf(c); return b === undefined ? '—' : `${pct(b)}%` }).join(' | ')} |`)
  }
  lambdas.forEach((l, i) => {
    const cells = cols.map((c) => {
      const s = stats(grid.values.get(c)?.[i] ?? [])
      if (s === null) return '—'
      const range = s.n >= 2 ? ` (${pct(s.min)}–${pct(s.max)})` : ''
      const b = baseOf(c)
      return `${pct(s.mean)}%${range}${b === undefined ? '' : ` ${signed(s.mean - b)} pts`}`
    })
    lines.push(`| ${lambdaLabel(l)} | ${cells.join(' | ')} |`)
  })
  return lines.join('\n')
}

/** The file name of a benchmark's plot: bench-<name>.svg (aggregate.svg for the aggregate). */
export function plotFile(name: string): string {
  return name === 'aggregate' ? 'aggregate.svg' : `bench-${name.replace(/[^\w.+-]/g, '_')}.svg`
}

/** One benchmark's (or the aggregate's) score against λ on the rank scale, the base model as a dashed line. */
export function benchmarkSvg(name: string, grid: BenchmarkGrid, lambdas: readonly number[], seeds: readonly number[],
  base: Record<string, number>, dataset: string): string {
  const values = grid.values.get(name) ?? lambdas.map(() => seeds.map(() => null))
  const rows = values.map(stats)
  const means = rows.map((r) => r?.mean ?? null)
  let best: number | null = null
  means.forEach((m, i) => { if (m !== null && (best === null || m > (means[best] as number))) best = i })
  const ref = name === 'aggregate' ? baseAggregate(grid, base) : base[name]
  const label = name === 'aggregate' ? `aggregate score (mean over ${grid.aggregated.length} benchmarks)` : `${name} score`
  return renderSweepPlot({
    lambdas: [...lambdas], seeds: [...seeds], values, means, best,
    spread: seeds.length >= 2 ? rows.map((r) => (r !== null && r.n >= 2 ? [r.min, r.max] as [number, number] : null)) : undefined,
    spreadLabel: seeds.length >= 2 ? `min–max over ${seeds.length} seeds` : undefined,
    metricLabel: label, higherIsBetter: true, percent: true,
    title: `${dataset}: ${label} against the prompt loss weight λ`,
    xLabel: 'prompt loss weight λ (the study\'s rank scale: evenly spaced, real values as labels)',
    reference: ref === undefined ? undefined : { value: ref, label: 'base model' },
  })
}

/** The analysis over every dataset's observations, or the reason it could not be done. */
export function runAnalysis(obs: readonly Observation[], alpha: number): { analysis: StudyAnalysis | null; error: string | null } {
  if (obs.length === 0) return { analysis: null, error: 'no scores yet (no finished run with benchmark scores or test exact match)' }
  try {
    return { analysis: analyzeStudy(obs, alpha), error: null }
  } catch (err) {
    if (!(err instanceof AnalysisError)) throw err
    return { analysis: null, error: err.message }
  }
}

/** One dataset's part of the study: its results, its base scores; drawn into `dir`. */
export interface StudyDataset {
  name: string
  dir: string
  results: RunResult[]
  /** `plwtune stats`'s line for the dataset (ratio, verdict). */
  statsLine: string | null
}

/**
 * Writes each dataset's plots (into its directory), scores.csv and analysis.json (into `out`),
 * and returns the markdown of the study's sections (benchmark tables, aggregate, analysis).
 */
export function writeStudy(out: string, datasets: readonly StudyDataset[], lambdas: readonly number[], seeds: readonly number[],
  base: BaseScores | null, alpha: number, baseNote: string): { markdown: string; analysis: StudyAnalysis | null; obs: Observation[] } {
  const baseS = baseScores(base)
  const obs = datasets.flatMap((d) => observationsOf(d.name, d.results))
  replaceFile(path.join(out, 'scores.csv'), scoresCsv(obs))
  const lines: string[] = []
  const several = datasets.length > 1
  for (const d of datasets) {
    const grid = benchmarkGrid(d.results, lambdas, seeds)
    const rel = (f: string) => path.relative(out, path.join(d.dir, f)) || f
    lines.push(several ? `## ${d.name}` : '## Benchmarks', '')
    if (d.statsLine !== null) lines.push(`\`plwtune stats\`: ${d.statsLine}`, '')
    if (several) lines.push(`Per-run metrics: [${rel('results.md')}](${rel('results.md')}).`, '')
    if (grid.benchmarks.length === 0) {
      lines.push('No benchmark scores yet.', '')
      continue
    }
    lines.push(`Score per benchmark, % (mean over seeds, min–max across seeds${Object.keys(baseS).length > 0 ? ', change against the base model in points' : ''}); ` +
      `the aggregate is the unweighted mean over ${grid.aggregated.join(', ')} (the paper's Figure 3). Scores: acc_norm, acc for ` +
      `${[...ACC_ONLY].join(' and ')}; exact_match is the test split's generation exact match.`, '')
    lines.push(benchmarkTable(grid, lambdas, baseS), '')
    for (const name of [...grid.benchmarks, 'aggregate']) {
      fs.mkdirSync(d.dir, { recursive: true })
      replaceFile(path.join(d.dir, plotFile(name)), benchmarkSvg(name, grid, lambdas, seeds, baseS, d.name))
    }
    lines.push(`![aggregate against λ](${rel('aggregate.svg')})`, '')
    lines.push(`Per benchmark: ${grid.benchmarks.map((n) => `[${n}](${rel(plotFile(n))})`).join(', ')}.`, '')
  }
  lines.push(`Forgetting: ${baseNote}`, '')
  const { analysis, error } = runAnalysis(obs, alpha)
  if (analysis !== null) {
    replaceFile(path.join(out, 'analysis.json'), JSON.stringify(analysisJson(analysis), null, 2) + '\n')
    lines.push(analysisReport(analysis).replace(/^#/gm, '##'), '')
  } else {
    fs.rmSync(path.join(out, 'analysis.json'), { force: true })
    lines.push('## Does λ matter? The study\'s analysis', '', `Not run: ${error}.`, '')
  }
  return { markdown: lines.join('\n'), analysis, obs }
}
