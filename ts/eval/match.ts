/**
 * Scores of generated answers against the records' answers: exact match and contains-match,
 * with lm-evaluation-harness's standard error of a mean.
 */

/** Exact match: the trimmed texts are equal (case-sensitive). */
export function exactMatch(response: string, expected: string): boolean {
  return response.trim() === expected.trim()
}

/**
 * Contains-match: the trimmed response contains the trimmed expected answer, ignoring case
 * (String.prototype.toLowerCase, locale-independent). An empty expected answer matches only
 * an empty response.
 */
export function containsMatch(response: string, expected: string): boolean {
  const e = expected.trim().toLowerCase()
  const r = response.trim().toLowerCase()
  return e === '' ? r === '' : r.includes(e)
}

/** lm-eval's standard error of a mean: sample standard deviation (n − 1) / √n; null below 2 values. */
export function meanStderr(xs: readonly number[]): number | null {
  const n = xs.length
  if (n < 2) return null
  const mean = xs.reduce((s, x) => s + x, 0) / n
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1)
  return Math.sqrt(variance / n)
}

export interface MatchRates {
  responses: number
  exactMatch: number | null
  exactMatchStderr: number | null
  containsMatch: number | null
  containsMatchStderr: number | null
}

/** Exact- and contains-match rates of responses against expected answers, with lm-eval's standard errors. */
export function matchRates(pairs: ReadonlyArray<{ response: string; expected: string }>): MatchRates {
  const em = pairs.map((p) => (exactMatch(p.response, p.expected) ? 1 : 0))
  const cm = pairs.map((p) => (containsMatch(p.response, p.expected) ? 1 : 0))
  const mean = (xs: number[]) => (xs.length > 0 ? xs.reduce((s, x) => s + x, 0) / xs.length : null)
  return { responses: pairs.length, exactMatch: mean(em), exactMatchStderr: meanStderr(em), containsMatch: mean(cm), containsMatchStderr: meanStderr(cm) }
}
