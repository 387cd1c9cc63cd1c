/**
 * `plwtune sweep analyze`: the study's analysis (ts/sweep/analysis.ts) of a table of scores —
 * does λ matter for each dataset, corrected together over all datasets.
 *
 *   plwtune sweep analyze RUN_DIR… | --results FILE.csv [--alpha 0.05] [--json]
 *
 * The table: `dataset,plw,seed,benchmark,score` (ts/sweep/results-csv.ts), scores higher-is-better.
 * Output: the paper's Table 3 form per dataset, the fitted curve's maximum and a verdict, or with
 * --json one object (ts/sweep/analysis-report.ts).
 *
 * A sweep directory (RUN_DIR) is read through its scores.csv, which `plwtune sweep` writes in the
 * same form (ts/sweep/study.ts); several directories (several datasets, or a sweep of several)
 * are analysed together, their p-values corrected together. A dataset name found in two
 * directories is an error (the two would be fitted as one dataset).
 *
 * Exit status: 0; 1 for a table that cannot be read or analysed (bad rows, rank-deficient
 * design); 2 for bad flags.
 */
import { DataError } from '../data/errors'
import { AnalysisError, analyzeStudy } from '../sweep/analysis'
import { analysisJson, analysisReport } from '../sweep/analysis-report'
import { readResultsCsv } from '../sweep/results-csv'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Observation } from '../sweep/analysis'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'

export const DEFAULT_ALPHA = 0.05

/** Where the report and the errors go. (Not ./common's: that module loads the native addon, which this command does not need.) */
export interface CommandIO {
  out: NodeJS.WritableStream
  err: NodeJS.WritableStream
}

export const SWEEP_ANALYZE_FLAGS = {
  results: { kind: 'string', group: 'data', placeholder: 'FILE.csv',
    help: 'the scores: CSV with a header and the columns dataset,plw,seed,benchmark,score (others ignored)' },
  alpha: { kind: 'number', group: 'evaluation', help: 'the family-wise significance level of the Holm–Bonferroni correction', default: DEFAULT_ALPHA },
  json: { kind: 'boolean', group: 'output', help: 'print one JSON object instead of the tables' },
} satisfies FlagTable

export const SWEEP_ANALYZE_HELP = commandHelp({
  usage: 'plwtune sweep analyze RUN_DIR… | --results FILE.csv [--alpha 0.05] [--json]',
  summary: 'The prompt-loss-weight study\'s analysis: per dataset, λ mapped by rank to [−1, 1] and an OLS fit of\n' +
    'score ~ weight² + weight + C(benchmark); each term\'s p-value from the t distribution; Holm–Bonferroni over\n' +
    'every p-value of every dataset. Prints the paper\'s Table 3 form per dataset, the fitted curve\'s best λ and a\n' +
    'verdict ("λ matters here: …" or "no significant effect of λ"). Every (λ, seed, benchmark) score is one\n' +
    'observation; scores must be higher-is-better (accuracy). See docs/plw-study.md.',
  table: SWEEP_ANALYZE_FLAGS,
  notes: 'RUN_DIR: a plwtune sweep directory, read through its scores.csv (written by sweeps with --benchmarks or\n' +
    'generated test answers); several are analysed together.\n' +
    'Exit status: 0; 1 for a table that cannot be read or analysed; 2 for bad flags.',
  examples: [
    'plwtune sweep analyze runs/sweep-alpaca runs/sweep-alpaca-short',
    'plwtune sweep analyze --results scores.csv',
    'plwtune sweep analyze --results scores.csv --alpha 0.01 --json',
  ],
})

/** `plwtune sweep analyze` (argv without "sweep analyze"). */
export async function sweepAnalyzeCommand(argv: string[], io: CommandIO = { out: process.stdout, err: process.stderr }): Promise<number> {
  let results: string | undefined
  let dirs: string[]
  let alpha: number
  let json: boolean
  try {
    const { values: v, positional } = parseFlags(argv, SWEEP_ANALYZE_FLAGS)
    if (v.help) { io.out.write(SWEEP_ANALYZE_HELP + '\n'); return 0 }
    dirs = positional
    if (dirs.length > 0 && v.results !== undefined) throw new UsageError('give sweep directories or --results FILE.csv, not both')
    if (dirs.length === 0 && v.results === undefined) {
      throw new UsageError('expected sweep directories (RUN_DIR…) or --results FILE.csv (columns dataset,plw,seed,benchmark,score)')
    }
    for (const d of dirs) {
      if (!fs.existsSync(path.join(d, 'scores.csv'))) {
        throw new UsageError(`${d}: no scores.csv (not a plwtune sweep directory, or one whose runs were not scored yet: ` +
          'its sweep needs --benchmarks or generated test answers)')
      }
    }
    results = v.results
    alpha = v.alpha ?? DEFAULT_ALPHA
    if (!(alpha > 0 && alpha < 1)) throw new UsageError(`--alpha: expected a number in (0, 1), received ${alpha}`)
    json = v.json === true
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.err.write(`plwtune sweep analyze: ${err.message} (see plwtune sweep analyze --help)\n`)
    return 2
  }
  try {
    let obs: Observation[]
    if (results !== undefined) {
      obs = readResultsCsv(results)
    } else {
      obs = []
      const from = new Map<string, string>()
      for (const d of dirs) {
        const rows = readResultsCsv(path.join(d, 'scores.csv'))
        for (const name of new Set(rows.map((o) => o.dataset))) {
          const other = from.get(name)
          if (other !== undefined) throw new DataError(`dataset ${JSON.stringify(name)} is in both ${other} and ${d}: analyse them apart, or rename one`, [])
          from.set(name, d)
        }
        obs.push(...rows)
      }
    }
    const analysis = analyzeStudy(obs, alpha)
    io.out.write((json ? JSON.stringify(analysisJson(analysis)) : analysisReport(analysis)) + '\n')
    return 0
  } catch (err) {
    if (!(err instanceof DataError || err instanceof AnalysisError)) throw err
    io.err.write(`plwtune sweep analyze: ${err instanceof AnalysisError ? `${results ?? dirs.join(', ')}: ` : ''}${err.message}\n`)
    return 1
  }
}
