/**
 * `plwtune data swap`: the study's AlpacaDataShort construction as a command. Every Alpaca
 * record whose completion is longer than its prompt (in tokens of --model's tokenizer, prompt
 * = instruction + input) becomes an instruction-prediction task; the others pass unchanged.
 * The transform is ts/data/swap.ts; docs/plw-study.md has the why.
 *
 *   plwtune data swap --data FILE --out FILE [--model DIR] [--skip-invalid]
 *
 * `argv` is what follows `plwtune data swap`.
 *
 * - Without --model the built-in byte tokenizer counts (bytes); pass the model you will train,
 *   since which records are "longer" depends on its tokenizer.
 * - --out ending in .json is written as a JSON array, .jsonl as JSON Lines; anything else is
 *   an error. It is written to a temporary file beside it and renamed, so a reader never sees
 *   half a file; --out may not be the input file.
 * - Records are written as they were read, keys the reader ignores (ids, categories) included;
 *   a swapped record gets its new instruction, input and output in place of the old ones.
 * - Alpaca records only: the swap is defined on (instruction, input, output).
 * Exit status: 0, 1 (bad data, unreadable tokenizer, write failure), 2 (bad flags).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { DataError } from '../data/errors'
import { describeRead, readDataset } from '../data/read'
import { AlpacaRecord, DataRecord } from '../data/records'
import { datasetStats } from '../data/stats'
import { swapLongCompletions } from '../data/swap'
import { loadTokenizer } from '../model-dir'
import { OutputPathError, prepareOutputFile } from '../output-path'
import { replaceFile } from '../atomic-write'
import { CommandIO, STD_IO } from './common'
import { commandHelp, FlagTable, UsageError, parseFlags } from './flags'
import { describeTokenizer } from './stats'

const FLAGS = {
  model: { kind: 'string', group: 'model', placeholder: 'DIR',
    help: 'count tokens with DIR\'s tokenizer.json (the model you will train); default: bytes' },
  data: { kind: 'string', group: 'data', placeholder: 'FILE', help: 'Alpaca records, JSON or JSONL' },
  'skip-invalid': { kind: 'boolean', group: 'data', help: 'skip bad records (counted) instead of failing' },
  out: { kind: 'string', group: 'output', placeholder: 'FILE', help: 'the new dataset: .json (a JSON array) or .jsonl (JSON Lines)' },
} satisfies FlagTable

export const DATA_SWAP_USAGE = commandHelp({
  usage: 'plwtune data swap --data FILE --out FILE.json|FILE.jsonl [--model DIR] [--skip-invalid]',
  summary: `The study's AlpacaDataShort construction: every Alpaca record whose completion is longer than
its prompt (instruction + input), in tokens, becomes "predict the prompt that generated this
output" (input = the old output, output = the old instruction; an old input goes into the
instruction as context). Other records pass unchanged, in order.`,
  table: FLAGS,
  examples: [
    'plwtune data swap --data alpaca.json --out alpaca-short.json --model gpt2',
    'plwtune data swap --data data.jsonl --out swapped.jsonl --skip-invalid',
  ],
})

type OutputKind = 'json' | 'jsonl'

export async function dataSwapCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let opts: ReturnType<typeof parseSwapArgs>
  try {
    opts = parseSwapArgs(argv)
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof OutputPathError)) throw err
    io.err.write(`plwtune data swap: ${err.message} (see plwtune data swap --help)\n`)
    return 2
  }
  if (opts === null) {
    io.out.write(DATA_SWAP_USAGE + '\n')
    return 0
  }
  try {
    const tokenizer = await loadTokenizer(opts.model)
    const { records, summary } = await readDataset(opts.data, { skipInvalid: opts.skipInvalid })
    if (summary.format !== 'alpaca') {
      throw new DataError(`${opts.data}: holds ${summary.format} records; data swap is defined on Alpaca records ` +
        '(instruction, input, output), as in the study', [])
    }
    const alpaca = records as AlpacaRecord[]
    const result = swapLongCompletions(alpaca, tokenizer)
    const raws = await rawObjects(opts.data, records)
    const out = result.records.map((r, i) => (result.swapped[i]
      ? { ...raws[i], instruction: r.instruction, input: r.input, output: r.output }
      : raws[i]))
    replaceFile(opts.out, opts.kind === 'json' ? JSON.stringify(out, null, 2) + '\n' : out.map((o) => JSON.stringify(o)).join('\n') + '\n')
    const before = datasetStats(alpaca, tokenizer)
    const after = datasetStats(result.records, tokenizer)
    const n = result.swapped.filter(Boolean).length
    const ratio = (s: typeof before) => `${s.completionPromptRatio === null ? 'none' : s.completionPromptRatio.toFixed(3)} (${s.verdict})`
    io.out.write([
      `data: ${describeRead(summary)}`,
      `tokenizer: ${describeTokenizer(opts.model)}`,
      `swapped ${n.toLocaleString('en-US')} of ${alpaca.length.toLocaleString('en-US')} records (completion longer than prompt); ` +
        `${(alpaca.length - n).toLocaleString('en-US')} unchanged`,
      `completion/prompt ratio: ${ratio(before)} → ${ratio(after)}`,
      `wrote ${opts.out} (${opts.kind === 'json' ? 'a JSON array' : 'JSON Lines'}, ${out.length.toLocaleString('en-US')} records)`,
    ].join('\n') + '\n')
    return 0
  } catch (err) {
    io.err.write(`plwtune data swap: ${(err as Error).message}\n`)
    return 1
  }
}

function parseSwapArgs(argv: string[]): { data: string; out: string; kind: OutputKind; model: string | null; skipInvalid: boolean } | null {
  const { values, positional } = parseFlags(argv, FLAGS)
  if (values.help === true) return null
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --)`)
  const data = values.data as string | undefined
  const out = values.out as string | undefined
  if (data === undefined) throw new UsageError('--data FILE is required (the Alpaca dataset to transform)')
  if (out === undefined) throw new UsageError('--out FILE is required (.json or .jsonl)')
  const ext = path.extname(out).toLowerCase()
  if (ext !== '.json' && ext !== '.jsonl') {
    throw new UsageError(`--out ${out}: expected a file ending in .json (a JSON array) or .jsonl (JSON Lines), received ${ext === '' ? 'no extension' : JSON.stringify(ext)}`)
  }
  if (path.resolve(out) === path.resolve(data)) throw new UsageError(`--out ${out} is the input file; write the new dataset elsewhere`)
  prepareOutputFile(out, '--out')
  return { data, out, kind: ext === '.json' ? 'json' : 'jsonl', model: (values.model as string | undefined) ?? null, skipInvalid: values['skip-invalid'] === true }
}

/**
 * The parsed objects behind `records`, by their source: the array element (`index`) of a JSON
 * file, the line of a JSONL file. readDataset has validated them; this keeps the keys it ignores.
 */
async function rawObjects(file: string, records: readonly DataRecord[]): Promise<Array<Record<string, unknown>>> {
  let text = await fs.promises.readFile(file, 'utf8')
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1)
  if (text.trimStart().startsWith('[')) {
    const items = JSON.parse(text) as Array<Record<string, unknown>>
    return records.map((r) => items[r.source.index])
  }
  const lines = text.split(/\r\n|\r|\n/) // readline's line ends (a raw CR cannot occur inside a JSON string)
  return records.map((r) => JSON.parse(lines[(r.source.line as number) - 1]) as Record<string, unknown>)
}

