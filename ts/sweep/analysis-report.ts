/**
 * The study's analysis as the paper shows it (its Table 3): per dataset, each term's
 * coefficient, p-value, Holm-corrected p-value and sign, significance marked; then the fitted
 * curve's maximum and a plain verdict. Also the `--json` object of `plwtune sweep analyze`:
 *
 *   {"alpha": 0.05, "m": …, "datasets": {NAME: {"n": …, "terms": {"weight": T, "weight^2": T,
 *    "benchmark[piqa]": T, …}, "best_plw": …, "verdict": …}}}
 *
 * with each T `{"coef", "se", "t", "p", "p_holm", "significant"}` (numbers unrounded; a t of
 * ±Infinity, possible only for an exact fit, which the analysis refuses, would print as null).
 */
import { DatasetAnalysis, formatPlw, StudyAnalysis, TermResult } from './analysis'
import { markdownTable } from '../markdown-table'

/** The `--json` object. */
export function analysisJson(a: StudyAnalysis): Record<string, unknown> {
  const datasets: Record<string, unknown> = {}
  for (const d of a.datasets) {
    const terms: Record<string, TermResult> = {}
    for (const [name, t] of Object.entries(d.terms)) {
      terms[name] = { coef: t.coef, se: t.se, t: t.t, p: t.p, p_holm: t.p_holm, significant: t.significant }
    }
    datasets[d.dataset] = { n: d.n, terms, best_plw: d.best_plw, verdict: d.verdict }
  }
  return { alpha: a.alpha, m: a.m, datasets }
}

/** A p-value as shown: 3 decimals, or 2 significant digits in exponent form below 0.001. */
export function formatP(p: number): string {
  if (Number.isNaN(p)) return '—'
  if (p >= 0.001 || p === 0) return p.toFixed(3)
  return p.toExponential(1).replace(/e-0*/, 'e-')
}

function formatCoef(x: number): string {
  if (x === 0) return '0'
  const a = Math.abs(x)
  return a >= 1e-3 && a < 1e5 ? x.toFixed(4).replace(/^-/, '−') : x.toExponential(2).replace(/^-/, '−')
}

const termLabel = (name: string) => (name === 'weight^2' ? 'weight²' : name)

/** One dataset's table and lines. */
export function datasetReport(d: DatasetAnalysis): string {
  const rows = [['intercept', formatCoef(d.intercept.coef), formatCoef(d.intercept.se), '', '', '', '', '']]
  for (const [name, t] of Object.entries(d.terms)) {
    rows.push([termLabel(name), formatCoef(t.coef), formatCoef(t.se), t.t.toFixed(2).replace(/^-/, '−'), formatP(t.p), formatP(t.p_holm),
      t.coef > 0 ? '+' : t.coef < 0 ? '−' : '0', t.significant ? '*' : ''])
  }
  const table = markdownTable(['term', 'coef', 'se', 't', 'p', 'Holm p', 'sign', 'sig.'], rows,
    [false, true, true, true, true, true, false, false])
  const seeds = d.seeds.length
  const full = d.plws.length * seeds * d.benchmarks.length
  const where = d.best_inside ? 'inside the grid' : `the ${d.best_weight > 0 ? 'top' : 'bottom'} end of the grid`
  return [
    `## ${d.dataset}`,
    '',
    `${d.n} scores: ${d.plws.length} λ (${d.plws.join(', ')} → weight ${d.weights.map((w) => w.toFixed(2).replace(/^-/, '−')).join(', ')}) × ` +
    `${seeds} seed${seeds === 1 ? '' : 's'} × ${d.benchmarks.length} benchmark${d.benchmarks.length === 1 ? '' : 's'} ` +
    `(reference ${d.benchmarks[0]})${full === d.n ? '' : `, ${d.n} of the ${full} combinations`}; residual dof ${d.residual_dof}, R² ${d.r_squared.toFixed(3)}.`,
    '',
    table,
    '',
    `fitted curve's maximum: λ ≈ ${formatPlw(d.best_plw)} (weight ${d.best_weight.toFixed(2).replace(/^-/, '−')}, ${where})` +
    `${d.verdict_kind === 'none' ? '; not significant' : ''}`,
    `verdict: ${d.verdict}`,
  ].join('\n')
}

/** The whole analysis as markdown (also readable in a terminal). */
export function analysisReport(a: StudyAnalysis): string {
  const n = a.datasets.length
  const head = [
    '# Does λ matter? The study\'s analysis',
    '',
    `Per dataset, an ordinary least-squares fit of score ~ weight² + weight + C(benchmark) (treatment coding), λ mapped ` +
    `by rank to weight in [−1, 1]; two-sided p-values from the t distribution; Holm–Bonferroni over all m = ${a.m} p-values of ` +
    `${n} dataset${n === 1 ? '' : 's'} at α = ${a.alpha}, * marks a significant term.`,
  ]
  return [...head, ...a.datasets.flatMap((d) => ['', datasetReport(d)])].join('\n')
}
