/**
 * `plwtune stats`: the study's Table 1 for the user's own data — mean and standard deviation
 * of instruction, input and completion tokens, total tokens, the completion/prompt ratio,
 * the short-/long-completion verdict and a recommended prompt loss weight with its reason.
 * Needs only a tokenizer (no weights). The computation is ts/data/stats.ts; the rules and
 * their sources are in docs/plw-study.md.
 *
 *   plwtune stats [--data FILE] [--model DIR] [--format auto|alpaca|prompt-completion|chat]
 *                 [--skip-invalid] [--demo-records N] [--json]
 *
 * Without --data: the built-in demo set (`--demo-records`, default 6000, seed 42: what
 * `plwtune train` uses by default). Without --model: the built-in byte tokenizer.
 * Exit status: 0, 1 (bad data, unreadable tokenizer), 2 (bad flags).
 */
import { generateDemoRecords } from '../demo/tasks'
import { DATA_FORMATS, DataFormat } from '../data/records'
import { ReadResult, describeRead, readDataset, recordsFromObjects } from '../data/read'
import { DatasetStats, FieldStats, SHORT_COMPLETION_RATIO, datasetStats } from '../data/stats'
import { loadTokenizer } from '../model-dir'
import { DEFAULTS } from '../train/config'
import { CommandIO, STD_IO } from './common'
import { commandHelp, FlagTable, UsageError, parseFlags } from './flags'
import { markdownTable } from '../markdown-table'

const FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR',
    help: 'count with DIR\'s tokenizer.json (no weights are loaded); default: the built-in byte tokenizer' },
  data: { kind: 'string', group: 'data', placeholder: 'FILE', help: 'JSON or JSONL dataset; default: the built-in demo set' },
  format: { kind: 'string', group: 'data', placeholder: 'FORMAT', default: 'auto',
    help: 'record format: auto (detected from the first record), alpaca, prompt-completion, chat' },
  'skip-invalid': { kind: 'boolean', group: 'data', help: 'skip bad records (counted) instead of failing' },
  'demo-records': { kind: 'integer', group: 'data', default: DEFAULTS.demoRecords, help: 'records of the built-in demo set (without --data)' },
  json: { kind: 'boolean', group: 'output', help: 'print one JSON object instead of the table' },
} satisfies FlagTable

export const STATS_USAGE = commandHelp({
  usage: 'plwtune stats [--data FILE] [--model DIR] [--format auto|alpaca|prompt-completion|chat] [--skip-invalid] [--json]',
  summary: `Token-length statistics of an instruction dataset and the prompt loss weight they suggest
(the study's Table 1 for your data). Counts are of the raw fields (no template, no eos);
the ratio is mean completion / (mean instruction + mean input); ratio < ${SHORT_COMPLETION_RATIO} is short-completion.`,
  table: FLAGS,
  examples: [
    'plwtune stats                                   # the built-in demo set',
    'plwtune stats --data alpaca.json --model gpt2',
    'plwtune stats --data chats.jsonl --model Qwen2.5-0.5B --json',
  ],
})

/** The demo set's seed: the training default, so stats describe what `plwtune train` trains on. */
const DEMO_SEED = DEFAULTS.seed

export async function statsCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let opts: ReturnType<typeof parseStatsArgs>
  try {
    opts = parseStatsArgs(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.err.write(`plwtune stats: ${err.message} (see plwtune stats --help)\n`)
    return 2
  }
  if (opts === null) {
    io.out.write(STATS_USAGE + '\n')
    return 0
  }
  try {
    const tokenizer = await loadTokenizer(opts.model)
    const read: ReadResult = opts.data !== null
      ? await readDataset(opts.data, { format: opts.format, skipInvalid: opts.skipInvalid })
      : recordsFromObjects(generateDemoRecords(opts.demoRecords, DEMO_SEED), { name: 'built-in demo set' })
    const stats = datasetStats(read.records, tokenizer)
    const tokenizerName = opts.model === null ? 'byte' : opts.model
    if (opts.json) io.out.write(JSON.stringify(statsJson(stats, tokenizerName)) + '\n')
    else io.out.write(formatStats(stats, { data: describeRead(read.summary), tokenizer: describeTokenizer(opts.model) }) + '\n')
    return 0
  } catch (err) {
    io.err.write(`plwtune stats: ${(err as Error).message}\n`)
    return 1
  }
}

function parseStatsArgs(argv: string[]): {
  data: string | null; model: string | null; format: DataFormat | 'auto'; skipInvalid: boolean; json: boolean; demoRecords: number
} | null {
  const { values, positional } = parseFlags(argv, FLAGS)
  if (values.help === true) return null
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --)`)
  const format = (values.format ?? 'auto') as string
  if (format !== 'auto' && !(DATA_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format: expected one of auto, ${DATA_FORMATS.join(', ')}, received ${JSON.stringify(format)}`)
  }
  const data = (values.data as string | undefined) ?? null
  if (data !== null && values['demo-records'] !== undefined) throw new UsageError('--demo-records applies to the built-in demo set, not with --data')
  const demoRecords = (values['demo-records'] as number | undefined) ?? DEFAULTS.demoRecords
  if (demoRecords < 1) throw new UsageError(`--demo-records: expected a positive integer, received ${demoRecords}`)
  return {
    data, model: (values.model as string | undefined) ?? null, format: format as DataFormat | 'auto',
    skipInvalid: values['skip-invalid'] === true, json: values.json === true, demoRecords,
  }
}

export function describeTokenizer(model: string | null): string {
  return model === null ? 'the built-in byte tokenizer (one token per UTF-8 byte)' : `${model}/tokenizer.json`
}

/** The `--json` object: the keys, plus `reason` and `tokenizer` ("byte" or the model directory). */
export function statsJson(s: DatasetStats, tokenizer: string): Record<string, unknown> {
  const ms = (f: FieldStats) => ({ mean: f.mean, std: f.std })
  return {
    records: s.records, instruction: ms(s.instruction), input: ms(s.input), completion: ms(s.completion),
    total_tokens: s.totalTokens, completion_prompt_ratio: s.completionPromptRatio, verdict: s.verdict,
    recommended_plw: s.recommendedPlw, reason: s.reason, tokenizer,
  }
}

const count = (x: number): string => x.toLocaleString('en-US')

/** The human report: where the numbers come from, the table, the ratio, the verdict and the advice. */
export function formatStats(s: DatasetStats, where: { data: string; tokenizer: string }): string {
  const row = (name: string, f: FieldStats) => [name, f.mean.toFixed(2), f.std.toFixed(2), count(f.total)]
  const prompt = s.instruction.mean + s.input.mean
  const table = markdownTable(['tokens per record', 'mean', 'std', 'total'], [
    row('instruction', s.instruction), row('input', s.input), row('completion', s.completion),
    ['all', (prompt + s.completion.mean).toFixed(2), '', count(s.totalTokens)],
  ], [false, true, true, true])
  const ratio = s.completionPromptRatio === null ? 'none (no prompt tokens)'
    : `${s.completionPromptRatio.toFixed(3)} = ${s.completion.mean.toFixed(2)} / (${s.instruction.mean.toFixed(2)} + ${s.input.mean.toFixed(2)})`
  return [
    `data: ${where.data}`,
    `tokenizer: ${where.tokenizer}`,
    '',
    table,
    '',
    'Raw fields, no template text, no eos; std is the sample standard deviation (n − 1).',
    `completion/prompt ratio: ${ratio}`,
    `verdict: ${s.verdict}`,
    `recommended prompt loss weight: ${s.recommendedPlw} (--prompt-loss-weight ${s.recommendedPlw})`,
    `reason: ${s.reason}`,
  ].join('\n')
}
