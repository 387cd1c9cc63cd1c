/**
 * The study's analysis (Huerta-Enochian, "Prompt Weight Experiments for LLM Instruction
 * Fine-Tuning"): does the prompt loss weight λ matter for a dataset?
 *
 * Per dataset:
 *   1. the λ values are mapped to be uniform on [0, 1] by their rank (k distinct values → 0,
 *      1/(k−1), …, 1), then shifted and scaled to [−1, 1]: `weight` (rankScale);
 *   2. an ordinary least-squares fit of `score ~ weight² + weight + C(benchmark)`, the benchmark
 *      a categorical with treatment coding whose reference level is the first benchmark in
 *      sorted order (code-unit order, as Python sorts strings) — every (λ, seed, benchmark)
 *      score is one observation, so more seeds are more rows, not averaged ones;
 *   3. each coefficient's t statistic (coef / se, se from σ̂² (XᵀX)⁻¹ with σ̂² = RSS / (n − p))
 *      and its two-sided p-value from Student's t distribution with n − p degrees of freedom.
 * Then all p-values of all datasets (weight, weight² and the benchmark terms; not the
 * intercept, which is no hypothesis of the study) are corrected together with Holm–Bonferroni
 * at α (the paper: m = 15, five terms × three datasets, α = 0.05).
 *
 * Decisions a reader would otherwise rediscover:
 * - The fit is a Householder QR solve (no normal equations: XᵀX squares the condition number);
 *   a column whose QR diagonal vanishes relative to its own norm is a rank-deficient design,
 *   reported by the term's name with the likely cause.
 * - Holm: p-values sorted ascending, the i-th (1-based) of m rejected while p ≤ α/(m − i + 1);
 *   the first that is not stops the procedure (no later one is rejected). `p_holm` is the
 *   adjusted p-value min(1, max over j ≤ i of (m − j + 1) p_(j)); significant ⇔ p_holm ≤ α.
 * - The fitted curve's maximum is over weight ∈ [−1, 1]: the vertex of the quadratic when it
 *   opens downwards and lies inside, else the better end point; it is mapped back to λ through
 *   the rank scale, interpolating linearly between neighbouring λ of the grid. It is reported
 *   whether or not λ's terms are significant; the verdict says which.
 * - Scores must be higher-is-better (accuracy, exact match): a loss would make the "best" the worst.
 * - The t distribution's CDF is @stdlib/stats-base-dists-t-cdf (no hand-written special function).
 */
import tCdf from '@stdlib/stats-base-dists-t-cdf'

/** One score: a model trained on `dataset` with λ = `plw` and `seed`, measured on `benchmark`. */
export interface Observation {
  dataset: string
  plw: number
  /** A label: only used to tell observations apart. */
  seed: string
  benchmark: string
  score: number
}

/** The analysis cannot be done on these observations (rank-deficient design, too few rows…). */
export class AnalysisError extends Error {
  override readonly name = 'AnalysisError'
}

// ---------------------------------------------------------------------------------------
// the rank scale

/**
 * The study's λ scale: the distinct values sorted, the i-th of k mapped to −1 + 2i/(k − 1).
 * {0, 0.01, 0.05, 0.1, 0.5, 1} → {−1, −0.6, −0.2, 0.2, 0.6, 1}. Needs 2 or more distinct values.
 */
export function rankScale(plws: readonly number[]): Map<number, number> {
  const levels = [...new Set(plws)].sort((a, b) => a - b)
  if (levels.length < 2) throw new AnalysisError(`the rank scale needs at least 2 distinct λ values, received ${levels.length}`)
  return new Map(levels.map((x, i) => [x, -1 + (2 * i) / (levels.length - 1)]))
}

/**
 * Back from the rank scale to λ: weight w ∈ [−1, 1] is position (w + 1)/2 · (k − 1) among the
 * k sorted distinct λ; between two grid values, linear interpolation.
 */
export function plwOfWeight(w: number, levels: readonly number[]): number {
  const k = levels.length
  const pos = Math.min(Math.max((w + 1) / 2, 0), 1) * (k - 1)
  const lo = Math.floor(pos)
  if (lo >= k - 1) return levels[k - 1]
  const frac = pos - lo
  return levels[lo] + frac * (levels[lo + 1] - levels[lo])
}

// ---------------------------------------------------------------------------------------
// ordinary least squares

export interface OlsFit {
  /** n rows, p columns. */
  n: number
  p: number
  /** [p]: the least-squares coefficients. */
  coef: number[]
  /** [p]: standard errors, sqrt(σ̂² ((XᵀX)⁻¹)_jj), σ̂² = RSS / (n − p). */
  se: number[]
  /** [p]: coef / se (±Infinity when se is 0 and coef is not; 0 when both are). */
  t: number[]
  /** [p]: two-sided p-values, 2 · F_t(−|t|; n − p). */
  p_values: number[]
  /** Residual sum of squares. */
  rss: number
  /** Total sum of squares about the mean of y. */
  tss: number
  /** n − p. */
  dof: number
}

/** Two-sided p-value of a t statistic with `dof` degrees of freedom. */
export function twoSidedP(t: number, dof: number): number {
  if (Number.isNaN(t)) return NaN
  return Math.min(1, 2 * tCdf(-Math.abs(t), dof))
}

/**
 * Least squares by Householder QR, y ≈ X b.
 *
 * @param x [n][p] the design matrix, rows = observations
 * @param y [n] the response
 * @param names [p] the columns' names, for the rank-deficiency message
 * Throws AnalysisError when n ≤ p (no residual degrees of freedom) or a column is (numerically)
 * a combination of the earlier ones: |R_jj| ≤ 1e-10 · ‖X_j‖.
 */
export function olsFit(x: readonly (readonly number[])[], y: readonly number[], names?: readonly string[]): OlsFit {
  const n = x.length
  const p = n > 0 ? x[0].length : 0
  const name = (j: number) => names?.[j] ?? `column ${j}`
  if (y.length !== n) throw new RangeError(`olsFit: ${n} rows of X but ${y.length} values of y`)
  if (n <= p) throw new AnalysisError(`${n} observations for ${p} coefficients: a fit needs more observations than coefficients (no residual degrees of freedom left)`)
  // a: [p][n] the columns of X, overwritten by R above the diagonal and the Householder vectors below
  const a: number[][] = Array.from({ length: p }, (_, j) => x.map((row) => {
    if (row.length !== p) throw new RangeError('olsFit: rows of X differ in length')
    return row[j]
  }))
  const colNorm = a.map((c) => Math.sqrt(c.reduce((s, v) => s + v * v, 0)))
  const qty = [...y] // Qᵀy, built up reflection by reflection
  const rdiag = new Array<number>(p)
  for (let j = 0; j < p; j++) {
    const c = a[j]
    let norm = 0
    for (let i = j; i < n; i++) norm += c[i] * c[i]
    norm = Math.sqrt(norm)
    if (!(norm > 1e-10 * colNorm[j])) {
      throw new AnalysisError(`rank-deficient design: the term ${name(j)} is a combination of ` +
        `${j === 0 ? 'nothing (a column of zeros)' : `the terms before it (${Array.from({ length: j }, (_, k) => name(k)).join(', ')})`}`)
    }
    // v = c[j..] − α e1 with α = −sign(c_j) ‖c[j..]‖ (no cancellation); H = I − 2vvᵀ/vᵀv
    const alpha = c[j] > 0 ? -norm : norm
    c[j] -= alpha
    let vtv = 0
    for (let i = j; i < n; i++) vtv += c[i] * c[i]
    const reflect = (v: number[]) => {
      let dot = 0
      for (let i = j; i < n; i++) dot += c[i] * v[i]
      const f = (2 * dot) / vtv
      for (let i = j; i < n; i++) v[i] -= f * c[i]
    }
    for (let k = j + 1; k < p; k++) reflect(a[k])
    reflect(qty)
    rdiag[j] = alpha
  }
  const r = (i: number, j: number) => (i === j ? rdiag[i] : a[j][i]) // R, i ≤ j
  // R b = (Qᵀy)[0..p)
  const coef = new Array<number>(p).fill(0)
  for (let i = p - 1; i >= 0; i--) {
    let s = qty[i]
    for (let j = i + 1; j < p; j++) s -= r(i, j) * coef[j]
    coef[i] = s / r(i, i)
  }
  let rss = 0
  for (let i = p; i < n; i++) rss += qty[i] * qty[i]
  const mean = y.reduce((s, v) => s + v, 0) / n
  const tss = y.reduce((s, v) => s + (v - mean) ** 2, 0)
  const dof = n - p
  const sigma2 = rss / dof
  // (XᵀX)⁻¹ = R⁻¹ R⁻ᵀ: its diagonal is the squared row norms of R⁻¹ (upper triangular)
  const rinv: number[][] = Array.from({ length: p }, () => new Array<number>(p).fill(0))
  for (let j = 0; j < p; j++) {
    rinv[j][j] = 1 / r(j, j)
    for (let i = j - 1; i >= 0; i--) {
      let s = 0
      for (let k = i + 1; k <= j; k++) s += r(i, k) * rinv[k][j]
      rinv[i][j] = -s / r(i, i)
    }
  }
  const se = rinv.map((row) => Math.sqrt(sigma2 * row.reduce((s, v) => s + v * v, 0)))
  const t = coef.map((b, j) => (se[j] === 0 ? (b === 0 ? 0 : Math.sign(b) * Infinity) : b / se[j]))
  return { n, p, coef, se, t, p_values: t.map((v) => twoSidedP(v, dof)), rss, tss, dof }
}

// ---------------------------------------------------------------------------------------
// Holm–Bonferroni

export interface HolmResult {
  /** Per p-value, in the input order: the Holm-adjusted p-value. */
  adjusted: number[]
  /** Per p-value: rejected (significant) at α. */
  significant: boolean[]
}

/**
 * Holm's step-down procedure over m p-values at level α: sorted ascending, the i-th (1-based)
 * is rejected while p_(i) ≤ α/(m − i + 1); the first failure stops it. Adjusted p-values:
 * min(1, max_{j ≤ i} (m − j + 1) p_(j)). Ties keep their input order (either order gives the
 * same decisions and adjusted values).
 */
export function holm(pValues: readonly number[], alpha: number): HolmResult {
  const m = pValues.length
  const order = pValues.map((_, i) => i).sort((i, j) => pValues[i] - pValues[j] || i - j)
  const adjusted = new Array<number>(m)
  const significant = new Array<boolean>(m).fill(false)
  let running = 0
  let rejecting = true
  order.forEach((idx, rank) => {
    const p = pValues[idx]
    running = Math.max(running, Math.min(1, (m - rank) * p))
    adjusted[idx] = running
    if (rejecting && p <= alpha / (m - rank)) significant[idx] = true
    else rejecting = false
  })
  return { adjusted, significant }
}

// ---------------------------------------------------------------------------------------
// the study's analysis

export interface TermResult {
  coef: number
  se: number
  t: number
  p: number
  /** Holm-adjusted over every term of every dataset analysed together. */
  p_holm: number
  significant: boolean
}

export type VerdictKind = 'quadratic' | 'rises' | 'falls' | 'u-shaped' | 'none'

export interface DatasetAnalysis {
  dataset: string
  /** Observations (rows) fitted. */
  n: number
  /** The distinct λ, ascending, and their weights on the rank scale. */
  plws: number[]
  weights: number[]
  seeds: string[]
  /** Sorted; the first is the reference level. */
  benchmarks: string[]
  intercept: { coef: number; se: number }
  /** "weight", "weight^2", then "benchmark[NAME]" for every benchmark but the reference, in sorted order. */
  terms: Record<string, TermResult>
  /** The fitted curve b₂w² + b₁w at its maximum over w ∈ [−1, 1], and where. */
  best_weight: number
  best_plw: number
  /** The maximum lies strictly inside [−1, 1] (the vertex of a downward quadratic). */
  best_inside: boolean
  residual_dof: number
  r_squared: number
  verdict_kind: VerdictKind
  verdict: string
}

export interface StudyAnalysis {
  alpha: number
  /** p-values corrected together. */
  m: number
  /** By dataset name, sorted. */
  datasets: DatasetAnalysis[]
}

/** λ as shown in a verdict: two significant digits (0.0512 → 0.051, 0.05 → 0.05). */
export function formatPlw(x: number): string {
  return String(Number(x.toPrecision(2)))
}

interface RawFit {
  dataset: string
  n: number
  plws: number[]
  weights: number[]
  seeds: string[]
  benchmarks: string[]
  names: string[]
  fit: OlsFit
}

function fitDataset(dataset: string, rows: readonly Observation[]): RawFit {
  const where = `dataset ${JSON.stringify(dataset)}`
  const plws = [...new Set(rows.map((r) => r.plw))].sort((a, b) => a - b)
  if (plws.length < 3) {
    throw new AnalysisError(`${where}: ${plws.length} distinct λ value${plws.length === 1 ? '' : 's'} (${plws.join(', ')}); ` +
      'the fit of weight and weight² needs at least 3')
  }
  const scale = rankScale(plws)
  const benchmarks = [...new Set(rows.map((r) => r.benchmark))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const seeds = [...new Set(rows.map((r) => r.seed))].sort()
  const seen = new Map<string, Observation>()
  for (const r of rows) {
    const key = JSON.stringify([r.plw, r.seed, r.benchmark])
    if (seen.has(key)) throw new AnalysisError(`${where}: two scores for λ = ${r.plw}, seed ${r.seed}, benchmark ${r.benchmark}`)
    seen.set(key, r)
  }
  const names = ['intercept', 'weight^2', 'weight', ...benchmarks.slice(1).map((b) => `benchmark[${b}]`)]
  const p = names.length
  if (rows.length <= p) {
    throw new AnalysisError(`${where}: ${rows.length} scores for ${p} coefficients (intercept, weight², weight and ${benchmarks.length - 1} ` +
      `benchmark term${benchmarks.length === 2 ? '' : 's'}): the fit needs more scores than coefficients — more λ, seeds or benchmarks`)
  }
  const x = rows.map((r) => {
    const w = scale.get(r.plw) as number
    return [1, w * w, w, ...benchmarks.slice(1).map((b) => (r.benchmark === b ? 1 : 0))]
  })
  let fit: OlsFit
  try {
    fit = olsFit(x, rows.map((r) => r.score), names)
  } catch (err) {
    if (!(err instanceof AnalysisError)) throw err
    throw new AnalysisError(`${where}: ${err.message} (is every benchmark scored at several λ?)`)
  }
  if (!(fit.tss > 0)) throw new AnalysisError(`${where}: every score is the same (${rows[0].score}): nothing to fit`)
  if (!(fit.rss > 1e-24 * fit.tss)) {
    throw new AnalysisError(`${where}: the fit is exact (no residual variation), so there are no standard errors or p-values; ` +
      'are the scores duplicated or synthetic?')
  }
  return { dataset, n: rows.length, plws, weights: plws.map((v) => scale.get(v) as number), seeds, benchmarks, names, fit }
}

/** The maximum of b₂w² + b₁w over [−1, 1]: [w, inside]. Ties between the end points go to the smaller λ. */
export function curveMaximum(b2: number, b1: number): { w: number; inside: boolean } {
  if (b2 < 0) {
    const v = -b1 / (2 * b2)
    if (v > -1 && v < 1) return { w: v, inside: true }
  }
  const f = (w: number) => b2 * w * w + b1 * w
  return { w: f(1) > f(-1) ? 1 : -1, inside: false }
}

function verdictOf(terms: Record<string, TermResult>, b2: number, b1: number, best: { w: number; inside: boolean }, bestPlw: number): { kind: VerdictKind; text: string } {
  const quad = terms['weight^2'].significant
  const lin = terms.weight.significant
  if (!quad && !lin) return { kind: 'none', text: 'no significant effect of λ' }
  const at = formatPlw(bestPlw)
  if (quad && b2 < 0 && best.inside) return { kind: 'quadratic', text: `λ matters here: performance is quadratic in λ, best near ${at}` }
  if (quad && b2 > 0) {
    return { kind: 'u-shaped', text: `λ matters here: performance is quadratic in λ with a minimum in between, best at λ = ${at}` }
  }
  // monotone on the range: a downward quadratic with its vertex outside, or the linear term alone
  const rises = quad ? best.w === 1 : b1 > 0
  return rises ? { kind: 'rises', text: 'λ matters here: performance rises with λ' } : { kind: 'falls', text: 'λ matters here: performance falls with λ' }
}

/**
 * The study's analysis of every dataset in `observations`, corrected together at `alpha`.
 * Datasets in sorted order; AnalysisError names the dataset that cannot be fitted.
 */
export function analyzeStudy(observations: readonly Observation[], alpha = 0.05): StudyAnalysis {
  if (!(alpha > 0 && alpha < 1)) throw new AnalysisError(`α must be in (0, 1), received ${alpha}`)
  if (observations.length === 0) throw new AnalysisError('no scores to analyse')
  const byDataset = new Map<string, Observation[]>()
  for (const o of observations) {
    if (!Number.isFinite(o.plw) || !Number.isFinite(o.score)) throw new AnalysisError(`dataset ${JSON.stringify(o.dataset)}: a non-finite λ or score`)
    const list = byDataset.get(o.dataset) ?? []
    list.push(o)
    byDataset.set(o.dataset, list)
  }
  const names = [...byDataset.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  const fits = names.map((d) => fitDataset(d, byDataset.get(d) as Observation[]))
  // every tested term of every dataset (all but the intercept, column 0)
  const tested = fits.flatMap((f, fi) => f.names.slice(1).map((_, k) => ({ fi, j: k + 1 })))
  const { adjusted, significant } = holm(tested.map(({ fi, j }) => fits[fi].fit.p_values[j]), alpha)
  const datasets = fits.map((f, fi) => {
    const terms: Record<string, TermResult> = {}
    const order = ['weight', 'weight^2', ...f.names.slice(3)]
    for (const term of order) {
      const j = f.names.indexOf(term)
      const k = tested.findIndex((q) => q.fi === fi && q.j === j)
      terms[term] = { coef: f.fit.coef[j], se: f.fit.se[j], t: f.fit.t[j], p: f.fit.p_values[j], p_holm: adjusted[k], significant: significant[k] }
    }
    const b2 = f.fit.coef[1]
    const b1 = f.fit.coef[2]
    const best = curveMaximum(b2, b1)
    const bestPlw = plwOfWeight(best.w, f.plws)
    const v = verdictOf(terms, b2, b1, best, bestPlw)
    const result: DatasetAnalysis = {
      dataset: f.dataset, n: f.n, plws: f.plws, weights: f.weights, seeds: f.seeds, benchmarks: f.benchmarks,
      intercept: { coef: f.fit.coef[0], se: f.fit.se[0] }, terms,
      best_weight: best.w, best_plw: bestPlw, best_inside: best.inside,
      residual_dof: f.fit.dof, r_squared: 1 - f.fit.rss / f.fit.tss, verdict_kind: v.kind, verdict: v.text,
    }
    return result
  })
  return { alpha, m: tested.length, datasets }
}
