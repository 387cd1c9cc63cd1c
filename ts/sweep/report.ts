/**
 * The sweep's reports, rewritten after every finished run: results.md (the metric per seed, mean
 * and spread, the best λ, the verdict, every metric's means), results.csv (one row per run) and
 * sweep.svg (the metric against λ).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile } from '../atomic-write'
import { TrainConfig } from '../train/config'
import { formatDuration } from '../train/progress'
import { lambdaLabel, renderSweepPlot } from './plot'
import { MetricInfo, metricInfo, RunResult, runDirOf, SweepSpec } from './spec'
import { describeSpread, formatDelta, formatSpread, formatValue, summarize, SweepSummary } from './summary'

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
