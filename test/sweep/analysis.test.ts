/**
 * The study's analysis (ts/sweep/analysis.ts) against values computed independently here:
 * - the OLS fit (a Householder QR solve) against the normal equations XᵀX b = Xᵀy solved in
 *   float64 by Gaussian elimination with partial pivoting, (XᵀX)⁻¹ by Gauss–Jordan; noise-free
 *   data recovers the generating coefficients to 1e-12;
 * - p-values against tabulated two-sided t quantiles;
 * - Holm–Bonferroni on a list built around the paper's numbers (p = 0.002 at rank 10 of 15);
 * - the rank scale, the curve's maximum, the CSV reader's file:line errors, the rank-deficient
 *   designs, and `plwtune sweep analyze` end to end on a synthetic table of two datasets.
 */
import * as path from 'node:path'
import { main } from '../../ts/cli'
import { sweepAnalyzeCommand } from '../../ts/commands/sweep-analyze'
import { analyzeStudy, AnalysisError, curveMaximum, holm, Observation, olsFit, plwOfWeight, rankScale, twoSidedP } from '../../ts/sweep/analysis'
import { parseResultsCsv, splitCsvLine } from '../../ts/sweep/results-csv'
import { tempDir, writeFile } from '../data/fixtures'
import { capture } from '../commands/io'

// ---------------------------------------------------------------------------------------
// the independent computations

/** Solves A z = b (A square) by Gaussian elimination with partial pivoting, in float64. */
function gaussSolve(a: number[][], b: number[]): number[] {
  const n = a.length
  const m = a.map((row, i) => [...row, b[i]])
  for (let c = 0; c < n; c++) {
    let piv = c
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r][c]) > Math.abs(m[piv][c])) piv = r
    ;[m[c], m[piv]] = [m[piv], m[c]]
    for (let r = c + 1; r < n; r++) {
      const f = m[r][c] / m[c][c]
      for (let k = c; k <= n; k++) m[r][k] -= f * m[c][k]
    }
  }
  const z = new Array<number>(n).fill(0)
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r][n]
    for (let k = r + 1; k < n; k++) s -= m[r][k] * z[k]
    z[r] = s / m[r][r]
  }
  return z
}

/** Least squares by the normal equations: coefficients and standard errors. */
function normalEquations(x: number[][], y: number[]): { coef: number[]; se: number[]; dof: number } {
  const n = x.length
  const p = x[0].length
  const xtx = Array.from({ length: p }, (_, i) => Array.from({ length: p }, (_, j) => x.reduce((s, row) => s + row[i] * row[j], 0)))
  const xty = Array.from({ length: p }, (_, i) => x.reduce((s, row, k) => s + row[i] * y[k], 0))
  const coef = gaussSolve(xtx, xty)
  const rss = y.reduce((s, v, k) => s + (v - x[k].reduce((t, xv, j) => t + xv * coef[j], 0)) ** 2, 0)
  const sigma2 = rss / (n - p)
  // the diagonal of (XᵀX)⁻¹, one column of the inverse at a time
  const se = Array.from({ length: p }, (_, j) => {
    const e = new Array<number>(p).fill(0)
    e[j] = 1
    return Math.sqrt(sigma2 * gaussSolve(xtx, e)[j])
  })
  return { coef, se, dof: n - p }
}

/** A seeded uniform generator (mulberry32) and standard normals from it (Box–Muller). */
function rng(seed: number): { uniform: () => number; normal: () => number } {
  let a = seed >>> 0
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform())
  return { uniform, normal }
}

const STUDY_PLWS = [0, 0.01, 0.05, 0.1, 0.5, 1]
const BENCHMARKS = ['arc', 'piqa', 'truthfulqa_mc1', 'winogrande']
const OFFSETS: Record<string, number> = { arc: 0.45, piqa: 0.78, truthfulqa_mc1: 0.25, winogrande: 0.7 }

/** The study's design: rows [1, w², w, one dummy per benchmark but the first] for λ × seeds × benchmarks. */
function studyDesign(seeds: number): { x: number[][]; rows: Array<{ plw: number; w: number; seed: number; benchmark: string }> } {
  const scale = rankScale(STUDY_PLWS)
  const rows = STUDY_PLWS.flatMap((plw) => Array.from({ length: seeds }, (_, s) => BENCHMARKS.map((benchmark) => ({ plw, w: scale.get(plw) as number, seed: s + 1, benchmark })))).flat()
  const x = rows.map((r) => [1, r.w * r.w, r.w, ...BENCHMARKS.slice(1).map((b) => (r.benchmark === b ? 1 : 0))])
  return { x, rows }
}

// ---------------------------------------------------------------------------------------

describe('the rank scale', () => {
  test('the study\'s six λ map to −1, −0.6, −0.2, 0.2, 0.6, 1', () => {
    const s = rankScale([1, 0.5, 0, 0.1, 0.05, 0.01, 0.05])
    expect([...s.keys()]).toEqual(STUDY_PLWS)
    const w = STUDY_PLWS.map((x) => s.get(x) as number)
    ;[-1, -0.6, -0.2, 0.2, 0.6, 1].forEach((v, i) => expect(w[i]).toBeCloseTo(v, 14))
  })

  test('back to λ, interpolating between the grid values', () => {
    expect(plwOfWeight(-1, STUDY_PLWS)).toBe(0)
    expect(plwOfWeight(1, STUDY_PLWS)).toBe(1)
    expect(plwOfWeight(-0.2, STUDY_PLWS)).toBeCloseTo(0.05, 12)
    expect(plwOfWeight(-0.4, STUDY_PLWS)).toBeCloseTo(0.03, 12) // halfway between 0.01 and 0.05
    expect(plwOfWeight(0.8, STUDY_PLWS)).toBeCloseTo(0.75, 12)
  })

  test('one λ is no scale', () => {
    expect(() => rankScale([0.1, 0.1])).toThrow(/at least 2 distinct λ/)
  })
})

describe('OLS', () => {
  test('noise-free data: the generating coefficients, to 1e-12', () => {
    const { x } = studyDesign(2)
    const truth = [0.5, -0.08, 0.03, 0.3, -0.2, 0.25]
    const y = x.map((row) => row.reduce((s, v, j) => s + v * truth[j], 0))
    const fit = olsFit(x, y)
    fit.coef.forEach((b, j) => expect(Math.abs(b - truth[j])).toBeLessThan(1e-12))
    expect(fit.rss).toBeLessThan(1e-25)
    expect(fit.dof).toBe(48 - 6)
  })

  test('with noise: coefficients and standard errors equal the normal equations\' (relative 1e-9)', () => {
    const { x } = studyDesign(3)
    const g = rng(7)
    const y = x.map((row) => 0.5 - 0.05 * row[1] + 0.02 * row[2] + 0.1 * row[3] + 0.01 * g.normal())
    const fit = olsFit(x, y)
    const ne = normalEquations(x, y)
    expect(fit.dof).toBe(ne.dof)
    fit.coef.forEach((b, j) => expect(Math.abs(b - ne.coef[j])).toBeLessThan(1e-9 * Math.max(1, Math.abs(ne.coef[j]))))
    fit.se.forEach((s, j) => expect(Math.abs(s - ne.se[j]) / ne.se[j]).toBeLessThan(1e-9))
    fit.t.forEach((t, j) => expect(t).toBeCloseTo(ne.coef[j] / ne.se[j], 6))
    fit.p_values.forEach((p, j) => expect(p).toBeCloseTo(twoSidedP(ne.coef[j] / ne.se[j], ne.dof), 12))
  })

  test('a line worked by hand: y = 1, 3, 2, 5 at x = 0..3', () => {
    // x̄ = 1.5, ȳ = 2.75, Sxx = 5, Sxy = (−1.5)(−1.75) + (−0.5)(0.25) + (0.5)(−0.75) + (1.5)(2.25) = 5.5
    // slope 1.1, intercept 2.75 − 1.65 = 1.1; residuals −0.1, 0.8, −1.3, 0.6: RSS 2.7, σ̂² = 1.35
    // se(slope) = sqrt(1.35 / 5), se(intercept) = sqrt(1.35 (1/4 + 2.25/5))
    const fit = olsFit([[1, 0], [1, 1], [1, 2], [1, 3]], [1, 3, 2, 5])
    expect(fit.coef[0]).toBeCloseTo(1.1, 12)
    expect(fit.coef[1]).toBeCloseTo(1.1, 12)
    expect(fit.rss).toBeCloseTo(2.7, 12)
    expect(fit.se[1]).toBeCloseTo(Math.sqrt(1.35 / 5), 12)
    expect(fit.se[0]).toBeCloseTo(Math.sqrt(1.35 * (0.25 + 2.25 / 5)), 12)
    // t(slope) = 1.1 / 0.5196 = 2.117 at 2 dof: between the tabulated 1.886 (p 0.20) and 2.920 (p 0.10)
    expect(fit.p_values[1]).toBeGreaterThan(0.1)
    expect(fit.p_values[1]).toBeLessThan(0.2)
  })

  test('a column that is a combination of the others is named', () => {
    expect(() => olsFit([[1, 2], [1, 2], [1, 2], [1, 2]], [1, 2, 3, 4], ['intercept', 'x'])).toThrow(/rank-deficient design: the term x is a combination of the terms before it \(intercept\)/)
    expect(() => olsFit([[1, 0], [1, 1]], [1, 2])).toThrow(/2 observations for 2 coefficients/)
  })
})

describe('p-values from the t distribution, against tabulated quantiles', () => {
  // two-sided critical values of Student's t (any statistics table)
  test.each([
    [2.228, 10, 0.05], [3.169, 10, 0.01], [1.812, 10, 0.1], [2.086, 20, 0.05], [2.845, 20, 0.01], [12.706, 1, 0.05], [1.96, 1e6, 0.05],
  ])('t = %f at %d dof: p ≈ %f', (t, dof, p) => {
    expect(Math.abs(twoSidedP(t, dof) - p)).toBeLessThan(p * 0.003)
    expect(twoSidedP(-t, dof)).toBe(twoSidedP(t, dof))
  })

  test('t = 0 is p = 1', () => {
    expect(twoSidedP(0, 5)).toBe(1)
  })
})

describe('Holm–Bonferroni', () => {
  // 15 p-values (the paper's m: five terms × three datasets), 0.002 at rank 10: 0.002 ≤ 0.05/6
  const ps = [1e-20, 1e-15, 1e-12, 1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 5e-4, 0.002, 0.004, 0.02, 0.021, 0.024, 0.5]
  // a shuffled order: the procedure sorts
  const perm = [14, 3, 9, 0, 12, 6, 1, 10, 13, 4, 8, 2, 11, 7, 5]
  const shuffled = perm.map((i) => ps[i])

  test('the paper\'s 0.002 at rank 10 of 15 is significant; the step-down stops at the first non-rejection', () => {
    const { significant, adjusted } = holm(shuffled, 0.05)
    const sig = (p: number) => significant[shuffled.indexOf(p)]
    expect(sig(0.002)).toBe(true) // 0.002 ≤ 0.05/6 = 0.00833
    expect(sig(0.004)).toBe(true) // rank 11: ≤ 0.05/5 = 0.01
    expect(sig(0.02)).toBe(false) // rank 12: > 0.05/4 = 0.0125 — stops here
    expect(sig(0.021)).toBe(false) // rank 13: > 0.05/3
    expect(0.024 <= 0.05 / 2).toBe(true) // rank 14 alone would pass its threshold 0.025 …
    expect(sig(0.024)).toBe(false) // … but the procedure has stopped
    expect(sig(0.5)).toBe(false)
    expect(significant.filter(Boolean).length).toBe(11)
    // adjusted: max over the earlier ranks of (m − rank + 1) p, capped at 1
    const adj = (p: number) => adjusted[shuffled.indexOf(p)]
    expect(adj(0.002)).toBeCloseTo(6 * 0.002, 15)
    expect(adj(0.004)).toBeCloseTo(5 * 0.004, 15)
    expect(adj(0.02)).toBeCloseTo(4 * 0.02, 15)
    expect(adj(0.021)).toBeCloseTo(4 * 0.02, 15) // 3 × 0.021 = 0.063 < 0.08: the running maximum
    expect(adj(0.024)).toBeCloseTo(4 * 0.02, 15)
    expect(adj(0.5)).toBe(0.5)
    expect(adj(1e-20)).toBeCloseTo(15e-20, 30)
    // significant exactly when the adjusted p-value is ≤ α
    shuffled.forEach((_, i) => expect(significant[i]).toBe(adjusted[i] <= 0.05))
  })

  test('at a smaller α fewer survive; nothing is significant when the smallest fails', () => {
    // α = 0.01: rank 9 (5e-4 ≤ 0.01/7 = 0.00143) passes, rank 10 (0.002 > 0.01/6 = 0.00167) stops it
    expect(holm(ps, 0.01).significant.filter(Boolean).length).toBe(9)
    expect(holm([0.02, 0.03], 0.05).significant).toEqual([true, true]) // 0.02 ≤ 0.025, then 0.03 ≤ 0.05
    expect(holm([0.03, 0.04], 0.05).significant).toEqual([false, false]) // 0.03 > 0.025: 0.04 ≤ 0.05 is never reached
  })
})

describe('the fitted curve\'s maximum', () => {
  test('the vertex of a downward quadratic inside [−1, 1], else the better end', () => {
    const m = curveMaximum(-0.05, -0.02)
    expect(m.inside).toBe(true)
    expect(m.w).toBeCloseTo(-0.2, 14)
    expect(curveMaximum(-0.01, 0.1)).toEqual({ w: 1, inside: false }) // vertex at 5
    expect(curveMaximum(0.05, 0.01)).toEqual({ w: 1, inside: false }) // upward: the higher end
    expect(curveMaximum(0, -0.3)).toEqual({ w: -1, inside: false })
  })
})

describe('the results CSV', () => {
  test('header in any order, extra columns ignored, quotes, BOM and CRLF', () => {
    const text = '\uFEFFscore,seed,benchmark,notes,plw,dataset\r\n0.5,1,arc,"a, b",0.1,"alpaca ""short"""\r\n\r\n0.25,2,piqa,,1,x\r\n'
    expect(parseResultsCsv(text, 'r.csv')).toEqual([
      { dataset: 'alpaca "short"', plw: 0.1, seed: '1', benchmark: 'arc', score: 0.5 },
      { dataset: 'x', plw: 1, seed: '2', benchmark: 'piqa', score: 0.25 },
    ])
    expect(splitCsvLine('a,"b,c",')).toEqual(['a', 'b,c', ''])
    expect(splitCsvLine('a,"b')).toBeNull()
  })

  test('bad rows: every one as file:line: field, at once', () => {
    const text = [
      'dataset,plw,seed,benchmark,score',
      'a,0.1,1,arc,0.5',
      'a,zero,1,arc,0.5',
      ',0.1,1,arc,0.5',
      'a,0.1,1,arc',
      'a,0.1,1,arc,',
      'a,0.1,1,arc,0.7',
      'a,"0.1,1,arc,0.7',
    ].join('\n')
    let message = ''
    try { parseResultsCsv(text, 'r.csv') } catch (err) { message = (err as Error).message }
    expect(message).toMatch(/^r\.csv: 6 bad rows:/)
    expect(message).toContain('r.csv:3: field "plw": expected a number, received "zero"')
    expect(message).toContain('r.csv:4: field "dataset": empty')
    expect(message).toContain('r.csv:5: 4 fields, the header has 5')
    expect(message).toContain('r.csv:6: field "score": expected a number, received ""')
    expect(message).toContain('r.csv:7: a second score for dataset a, plw 0.1, seed "1", benchmark arc (the first is on line 2)')
    expect(message).toContain('r.csv:8: unterminated quote')
  })

  test('a missing header column, an empty file, a header alone', () => {
    expect(() => parseResultsCsv('0.1,1,arc,0.5\n', 'r.csv')).toThrow(/r\.csv:1: missing columns dataset, plw, seed, benchmark, score/)
    expect(() => parseResultsCsv('dataset,plw,seed,benchmark\n', 'r.csv')).toThrow(/r\.csv:1: missing column score/)
    expect(() => parseResultsCsv('\n\n', 'r.csv')).toThrow(/r\.csv: empty/)
    expect(() => parseResultsCsv('dataset,plw,seed,benchmark,score\n', 'r.csv')).toThrow(/r\.csv: no rows after the header/)
  })
})

// ---------------------------------------------------------------------------------------
// the study end to end

/** Two datasets, 6 λ × 3 seeds × 4 benchmarks: "short" peaks at λ = 0.05 (weight −0.2), "long" has no effect of λ. */
function syntheticStudy(): Observation[] {
  const g = rng(42)
  const scale = rankScale(STUDY_PLWS)
  const out: Observation[] = []
  for (const dataset of ['short', 'long']) {
    for (const plw of STUDY_PLWS) {
      const w = scale.get(plw) as number
      for (const seed of [1, 2, 3]) {
        for (const benchmark of BENCHMARKS) {
          const effect = dataset === 'short' ? -0.06 * (w + 0.2) ** 2 : 0
          out.push({ dataset, plw, seed: String(seed), benchmark, score: OFFSETS[benchmark] + effect + 0.004 * g.normal() })
        }
      }
    }
  }
  return out
}

describe('analyzeStudy', () => {
  test('rank-deficient designs are named', () => {
    const obs = (dataset: string, rows: Array<[number, string, string, number]>) => rows.map(([plw, seed, benchmark, score]) => ({ dataset, plw, seed, benchmark, score }))
    expect(() => analyzeStudy(obs('d', [[0, '1', 'a', 1], [1, '1', 'a', 2], [0, '2', 'a', 1.5], [1, '2', 'a', 2.5]])))
      .toThrow(/dataset "d": 2 distinct λ values \(0, 1\); the fit of weight and weight² needs at least 3/)
    expect(() => analyzeStudy(obs('d', [[0, '1', 'a', 1], [0.5, '1', 'a', 2], [1, '1', 'a', 1.5]])))
      .toThrow(/dataset "d": 3 scores for 3 coefficients/)
    // benchmark b only at λ = 1, a only at 0 and 0.5: b's dummy is (w² + w)/2
    expect(() => analyzeStudy(obs('d', [[0, '1', 'a', 1], [0.5, '1', 'a', 2], [0, '2', 'a', 1.2], [0.5, '2', 'a', 2.1], [1, '1', 'b', 3], [1, '2', 'b', 3.3]])))
      .toThrow(/dataset "d": rank-deficient design: the term benchmark\[b\] is a combination of the terms before it \(intercept, weight\^2, weight\) \(is every benchmark scored at several λ\?\)/)
    expect(() => analyzeStudy(obs('d', [[0, '1', 'a', 1], [0.5, '1', 'a', 1], [1, '1', 'a', 1], [1, '2', 'a', 1]]))).toThrow(/every score is the same/)
    expect(() => analyzeStudy([], 0.05)).toThrow(AnalysisError)
  })

  test('the synthetic study: quadratic on short, nothing on long, m = 10', () => {
    const a = analyzeStudy(syntheticStudy())
    expect(a.m).toBe(10)
    expect(a.datasets.map((d) => d.dataset)).toEqual(['long', 'short'])
    const [long, short] = a.datasets
    expect(short.n).toBe(72)
    expect(short.benchmarks[0]).toBe('arc')
    expect(Object.keys(short.terms)).toEqual(['weight', 'weight^2', 'benchmark[piqa]', 'benchmark[truthfulqa_mc1]', 'benchmark[winogrande]'])
    expect(short.terms['weight^2'].significant).toBe(true)
    expect(short.terms['weight^2'].coef).toBeLessThan(0)
    expect(short.terms.weight.significant).toBe(true)
    expect(short.terms.weight.coef).toBeLessThan(0)
    expect(short.terms['weight^2'].coef).toBeCloseTo(-0.06, 2)
    expect(short.best_inside).toBe(true)
    expect(short.best_weight).toBeGreaterThan(-0.3)
    expect(short.best_weight).toBeLessThan(-0.1)
    expect(short.best_plw).toBeGreaterThan(0.03)
    expect(short.best_plw).toBeLessThan(0.08)
    expect(short.verdict).toMatch(/^λ matters here: performance is quadratic in λ, best near 0\.0\d+$/)
    expect(long.terms.weight.significant).toBe(false)
    expect(long.terms['weight^2'].significant).toBe(false)
    expect(long.verdict).toBe('no significant effect of λ')
    expect(long.terms['benchmark[piqa]'].significant).toBe(true) // the benchmarks' offsets are real
  })

  /** One dataset, 6 λ × 2 seeds × 4 benchmarks, score = offset + effect(weight) + noise. */
  const withEffect = (effect: (w: number) => number) => {
    const scale = rankScale(STUDY_PLWS)
    const g = rng(3)
    const rows: Observation[] = STUDY_PLWS.flatMap((plw) => ['1', '2'].flatMap((seed) => BENCHMARKS.map((benchmark) =>
      ({ dataset: 'd', plw, seed, benchmark, score: OFFSETS[benchmark] + effect(scale.get(plw) as number) + 0.004 * g.normal() }))))
    return analyzeStudy(rows).datasets[0]
  }

  test('the other verdicts: rises, falls, a minimum in between, a downward parabola peaking outside the grid', () => {
    const rises = withEffect((w) => 0.05 * w)
    expect(rises.verdict).toBe('λ matters here: performance rises with λ')
    expect(rises.best_plw).toBe(1)
    const falls = withEffect((w) => -0.05 * w)
    expect(falls.verdict).toBe('λ matters here: performance falls with λ')
    expect(falls.best_plw).toBe(0)
    const u = withEffect((w) => 0.05 * w * w + 0.01 * w)
    expect(u.verdict).toBe('λ matters here: performance is quadratic in λ with a minimum in between, best at λ = 1')
    expect(u.verdict_kind).toBe('u-shaped')
    const outside = withEffect((w) => -0.02 * (w - 1.5) ** 2) // vertex at weight 1.5: rising over the grid
    expect(outside.terms['weight^2'].significant).toBe(true)
    expect(outside.verdict).toBe('λ matters here: performance rises with λ')
    expect(outside.best_inside).toBe(false)
  })
})

describe('plwtune sweep analyze', () => {
  const dir = tempDir()
  const csv = (rows: Observation[]) => ['dataset,plw,seed,benchmark,score', ...rows.map((r) => `${r.dataset},${r.plw},${r.seed},${r.benchmark},${r.score}`)].join('\n') + '\n'
  const file = writeFile(dir, 'scores.csv', csv(syntheticStudy()))
  const run = (argv: string[]) => capture(sweepAnalyzeCommand, argv)

  test('the tables and verdicts', async () => {
    const r = await run(['--results', file])
    expect(r.err).toBe('')
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/Holm–Bonferroni over all m = 10 p-values of 2 datasets at α = 0\.05/)
    expect(r.out).toContain('## long')
    expect(r.out).toContain('## short')
    expect(r.out).toMatch(/\| term\s+\|\s+coef \|\s+se \|\s+t \|\s+p \|\s+Holm p \| sign \| sig\. \|/)
    expect(r.out).toMatch(/\| weight²\s+\|\s+−0\.0\d+ \|.*\| − +\| \* +\|/)
    expect(r.out).toMatch(/verdict: λ matters here: performance is quadratic in λ, best near 0\.0\d+/)
    expect(r.out).toContain('verdict: no significant effect of λ')
    expect(r.out).toMatch(/fitted curve's maximum: λ ≈ [\d.]+ \(weight −0\.\d+, inside the grid\)/)
    expect(r.out).toContain("fitted curve's maximum: λ ≈ 1 (weight 1.00, the top end of the grid); not significant")
    expect(r.out).toContain('72 scores: 6 λ (0, 0.01, 0.05, 0.1, 0.5, 1 → weight −1.00, −0.60, −0.20, 0.20, 0.60, 1.00) × 3 seeds × 4 benchmarks (reference arc)')
  })

  test('--json: one object of the issue\'s shape', async () => {
    const r = await run(['--results', file, '--json', '--alpha', '0.01'])
    expect(r.code).toBe(0)
    const j = JSON.parse(r.out)
    expect(Object.keys(j)).toEqual(['alpha', 'm', 'datasets'])
    expect(j.alpha).toBe(0.01)
    expect(j.m).toBe(10)
    expect(Object.keys(j.datasets)).toEqual(['long', 'short'])
    for (const d of Object.values(j.datasets) as Array<Record<string, unknown>>) {
      expect(Object.keys(d)).toEqual(['n', 'terms', 'best_plw', 'verdict'])
      expect(Object.keys(d.terms as object)).toEqual(['weight', 'weight^2', 'benchmark[piqa]', 'benchmark[truthfulqa_mc1]', 'benchmark[winogrande]'])
      for (const t of Object.values(d.terms as object)) {
        expect(Object.keys(t)).toEqual(['coef', 'se', 't', 'p', 'p_holm', 'significant'])
        expect(t.p_holm).toBeGreaterThanOrEqual(t.p)
        expect(t.significant).toBe(t.p_holm <= 0.01)
      }
    }
    expect(j.datasets.short.n).toBe(72)
    expect(j.datasets.short.terms['weight^2'].significant).toBe(true)
    expect(j.datasets.short.best_plw).toBeGreaterThan(0.03)
    expect(j.datasets.short.best_plw).toBeLessThan(0.08)
    expect(j.datasets.long.verdict).toBe('no significant effect of λ')
  })

  test('errors: flags (2), the table (1)', async () => {
    expect((await run([])).err).toMatch(/expected sweep directories \(RUN_DIR…\) or --results FILE\.csv/)
    expect((await run([])).code).toBe(2)
    expect((await run(['--results', file, '--alpha', '1.5'])).err).toMatch(/--alpha: expected a number in \(0, 1\)/)
    const positional = await run([tempDir()])
    expect(positional.code).toBe(2)
    expect(positional.err).toMatch(/no scores\.csv \(not a plwtune sweep directory/)
    const bad = writeFile(dir, 'bad.csv', 'dataset,plw,seed,benchmark,score\nd,0.1,1,arc,high\n')
    const r = await run(['--results', bad])
    expect(r.code).toBe(1)
    expect(r.err).toContain(`${bad}:2: field "score": expected a number, received "high"`)
    const missing = await run(['--results', path.join(dir, 'nope.csv')])
    expect(missing.code).toBe(1)
    expect(missing.err).toMatch(/nope\.csv: cannot read \(ENOENT\)/)
    const deficient = writeFile(dir, 'two.csv', 'dataset,plw,seed,benchmark,score\nd,0,1,arc,0.5\nd,1,1,arc,0.6\nd,0,2,arc,0.55\nd,1,2,arc,0.65\n')
    const rd = await run(['--results', deficient])
    expect(rd.code).toBe(1)
    expect(rd.err).toMatch(/two\.csv: dataset "d": 2 distinct λ values/)
  })

  test('`plwtune sweep analyze` reaches it through the command line', async () => {
    const r = await capture((argv, io) => main(['sweep', ...argv], io), ['analyze', '--results', file, '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.out).m).toBe(10)
  })

  test('--help', async () => {
    const r = await run(['--help'])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^Usage: plwtune sweep analyze RUN_DIR… \| --results FILE\.csv/)
    expect(r.out).toContain('--alpha X')
  })
})
