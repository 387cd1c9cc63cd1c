/**
 * `plwtune sweep analyze`: the study's analysis (ts/sweep/analysis.ts) of a table of scores —
 * does λ matter for each dataset, corrected together over all datasets.
 *
 *   plwtune sweep analyze --results FILE.csv [--alpha 0.05] [--json]
 *
 * The table: `dataset,plw,seed,benchmark,score` (ts/sweep/results-csv.ts), scores higher-is-better.
 * Output: the paper's Table 3 form per dataset, the fitted curve's maximum and a verdict, or with
 * --json one object (ts/sweep/analysis-report.ts).
 *
 * Sweep directories (RUN_DIR arguments) are not read yet: a sweep's runs do not record
 * benchmark scores today, so there is nothing of the table's form in them to analyse; an
 * argument is a usage error that says so.
 *
 * Exit status: 0; 1 for a table that cannot be read or analysed (bad rows, rank-deficient
 * design); 2 for bad flags.
 */
import { DataError } from '../data/errors'
import { AnalysisError, analyzeStudy } from '../sweep/analysis'
import { analysisJson, analysisReport } from '../sweep/analysis-report'
import { readResultsCsv } from '../sweep/results-csv'
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
  usage: 'plwtune sweep analyze --results FILE.csv [--alpha 0.05] [--json]',
  summary: 'The prompt-loss-weight study\'s analysis: per dataset, λ mapped by rank to [−1, 1] and an OLS fit of\n' +
    'score ~ weight² + weight + C(benchmark); each term\'s p-value from the t distribution; Holm–Bonferroni over\n' +
    'every p-value of every dataset. Prints the paper\'s Table 3 form per dataset, the fitted curve\'s best λ and a\n' +
    'verdict ("λ matters here: …" or "no significant effect of λ"). Every (λ, seed, benchmark) score is one\n' +
    'observation; scores must be higher-is-better (accuracy). See docs/plw-study.md.',
  table: SWEEP_ANALYZE_FLAGS,
  notes: 'Sweep directories are not read yet (their runs record no benchmark scores): write the scores as CSV.\n' +
    'Exit status: 0; 1 for a table that cannot be read or analysed; 2 for bad flags.',
  examples: [
    'plwtune sweep analyze --results scores.csv',
    'plwtune sweep analyze --results scores.csv --alpha 0.01 --json',
  ],
})

/** `plwtune sweep analyze` (argv without "sweep analyze"). */
export async function sweepAnalyzeCommand(argv: string[], io: CommandIO = { out: process.stdout, err: process.stderr }): Promise<number> {
  let results: string
  let alpha: number
  let json: boolean
  try {
    const { values: v, positional } = parseFlags(argv, SWEEP_ANALYZE_FLAGS)
    if (v.help) { io.out.write(SWEEP_ANALYZE_HELP + '\n'); return 0 }
    if (positional.length > 0) {
      throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])}: sweep directories cannot be analysed yet ` +
        '(their runs record no benchmark scores); pass the scores with --results FILE.csv')
    }
    if (v.results === undefined) throw new UsageError('--results FILE.csv is required (columns dataset,plw,seed,benchmark,score)')
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
    const analysis = analyzeStudy(readResultsCsv(results), alpha)
    io.out.write((json ? JSON.stringify(analysisJson(analysis)) : analysisReport(analysis)) + '\n')
    return 0
  } catch (err) {
    if (!(err instanceof DataError || err instanceof AnalysisError)) throw err
    io.err.write(`plwtune sweep analyze: ${err instanceof AnalysisError ? `${results}: ` : ''}${err.message}\n`)
    return 1
  }
}
