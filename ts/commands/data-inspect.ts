/**
 * `plwtune data inspect`: the first N examples of a dataset as training sees them, token by
 * token, with each token's kind and loss weight — so a user can check what is trained, and at
 * which weight, before spending a GPU on it. Needs only a tokenizer (no weights).
 *
 *   plwtune data inspect [--model DIR] [--data FILE] [-n N] [--json]
 *                        [--template T] [--prompt-loss-weight X] [--max-length N] [--format F]
 *                        [--skip-invalid] [--config FILE] [--demo-records N] [--data-seed N]
 *
 * `argv` is what follows `plwtune data inspect`.
 *
 * - The training flags are train's own (same names, types and checks: TrainConfig's keys through
 *   resolveConfig), and so are their defaults and precedence: flags over --config FILE over the
 *   model directory's plwtune.json (a model plwtune trained: its template, λ and max length) over
 *   train's defaults; with neither --model nor --data, the demo preset over the built-in demo set,
 *   as `plwtune train` with no flags.
 * - The examples are encoded as the trainer encodes them (template, tokenization, BOS, eos,
 *   truncation to the max length keeping the completion); they are the first N records of the
 *   file, whatever the train/val/test split would make of them.
 * - A token's weight is the loss weight of predicting it (the target at position t is token t,
 *   predicted from the tokens before it): λ for prompt tokens, 1 for completion tokens and the
 *   eos, a chat message's own `weight` where it has one; the first token is never predicted: 0.
 * - On a terminal, prompt tokens are one colour, completion tokens another, weight-0 tokens dim;
 *   NO_COLOR turns colour off, FORCE_COLOR on, and a pipe or file gets none.
 * - --json: one JSON object per example and line: {source, ids, tokens, weights, kinds,
 *   truncated}, `tokens` the text each token decodes to (in context: their concatenation is the
 *   decoded example), `kinds` "prompt" | "completion".
 * Exit status: 0, 1 (bad data, unreadable tokenizer), 2 (bad flags).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { maxPositions } from '../arch'
import { readConfig } from '../checkpoint'
import { generateDemoRecords } from '../demo/tasks'
import { describeEncode, encodeDataset } from '../data/encode'
import { formatSource } from '../data/errors'
import { EncodedExample, KIND_COMPLETION, tokenWeight } from '../data/example'
import { ReadResult, describeRead, readDataset, recordsFromObjects } from '../data/read'
import { resolveTemplate } from '../data/resolve-template'
import { Template } from '../data/template'
import { ByteTokenizer, Tokenizer } from '../data/tokenizer'
import { loadTokenizer, readMeta } from '../model-dir'
import { ConfigError, DEMO, TrainConfig, kebab, resolveConfig } from '../train/config'
import { CommandIO, STD_IO } from './common'
import { commandHelp, FlagDef, FlagTable, UsageError, parseFlags } from './flags'
import { describeTokenizer } from './stats'
import { trainFlag } from './train'

/** The TrainConfig keys data inspect reads, taken as train takes them. */
const TRAIN_KEYS = ['model', 'data', 'format', 'template', 'promptLossWeight', 'maxLength', 'skipInvalid', 'demoRecords', 'dataSeed'] as const

/** Examples shown without -n. */
export const DEFAULT_COUNT = 3

const FLAGS = {
  // Integers parsed as numbers: resolveConfig then refuses 1.5 with train's own message.
  ...Object.fromEntries(TRAIN_KEYS.map((k) => {
    const def = trainFlag(k)
    return [kebab(k), def.kind === 'integer' ? { ...def, kind: 'number' } : def]
  })) as Record<string, FlagDef>,
  limit: { kind: 'integer', group: 'output', default: DEFAULT_COUNT, help: 'examples to show (also -n N)' },
  json: { kind: 'boolean', group: 'output', help: 'one JSON object per example and line: {source, ids, tokens, weights, kinds, truncated}' },
  config: { kind: 'string', group: 'other', placeholder: 'FILE', help: 'a train config (JSON); the flags above override it' },
} satisfies FlagTable

export const DATA_INSPECT_USAGE = commandHelp({
  usage: 'plwtune data inspect [--model DIR] [--data FILE] [-n N] [--json] [train\'s data flags]',
  summary: `Prints the first N examples as training sees them, token by token: each token's id, the text it
decodes to, its kind (prompt or completion) and its loss weight (λ for prompt tokens, 1 for
completion tokens and the eos, a chat message's own weight; 0 for the first token, which is never
predicted). On a terminal prompt and completion tokens are coloured apart and weight-0 tokens dim.
The train flags below are train's own (same checks and defaults; a model plwtune trained supplies
its template, λ and max length).`,
  table: FLAGS,
  examples: [
    'plwtune data inspect                            # the built-in demo set',
    'plwtune data inspect --model Qwen2.5-0.5B --data chats.jsonl --template chat_template -n 2',
    'plwtune data inspect --data alpaca.json --prompt-loss-weight 0 --json',
  ],
})

/** One example as data inspect shows it. */
export interface InspectedExample {
  /** file:line (or file[index]) of its record. */
  source: string
  ids: number[]
  /** The text each token decodes to, in context. */
  tokens: string[]
  /** The loss weight of predicting each token (0 for the first). */
  weights: number[]
  kinds: Array<'prompt' | 'completion'>
  /** Prompt tokens dropped from the start to fit the max length. */
  truncated: number
}

interface InspectOptions {
  config: TrainConfig
  count: number
  json: boolean
}

export async function dataInspectCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let opts: InspectOptions | null
  try {
    opts = parseInspectArgs(argv)
  } catch (err) {
    if (!(err instanceof UsageError) && !(err instanceof ConfigError)) throw err
    io.err.write(`plwtune data inspect: ${err.message} (see plwtune data inspect --help)\n`)
    return 2
  }
  if (opts === null) {
    io.out.write(DATA_INSPECT_USAGE + '\n')
    return 0
  }
  const c = opts.config
  try {
    const read: ReadResult = c.data !== null
      ? await readDataset(c.data, { format: c.format, skipInvalid: c.skipInvalid })
      : recordsFromObjects(generateDemoRecords(c.demoRecords, c.dataSeed), { name: 'built-in demo set' })
    const format = read.summary.format
    const spec = c.template === 'auto' ? undefined : c.template
    let tokenizer: Tokenizer
    let template: Template
    if (c.model !== null) {
      // The template flag (or config), else the one the model was trained with, else auto for the data's format.
      tokenizer = await loadTokenizer(c.model)
      const trained = spec ?? readMeta(c.model)?.template
      template = resolveTemplate(trained === undefined || trained === 'auto' ? undefined : trained, { format, tokenizer })
    } else {
      tokenizer = new ByteTokenizer()
      template = resolveTemplate(spec, { format, tokenizer })
    }
    const positions = c.model !== null ? modelPositions(c.model) : c.init.nPositions
    const maxLength = c.maxLength > 0 ? Math.min(c.maxLength, positions) : positions
    const positionsFrom = c.model !== null ? path.join(c.model, 'config.json') : '--init-n-positions'
    if (c.maxLength > positions) {
      io.err.write(`note: --max-length ${c.maxLength} is more than the model's ${positions} positions (${positionsFrom}); using ${positions}, as training does\n`)
    }
    const records = read.records.slice(0, opts.count)
    const { examples, stats, warnings } = encodeDataset(records, template, tokenizer, {
      maxLength: Number.isFinite(maxLength) ? maxLength : undefined, skipTooLong: c.skipInvalid, skipInvalid: c.skipInvalid,
      positions: Number.isFinite(positions) ? { count: positions, from: positionsFrom } : undefined,
    })
    const shown = examples.map((ex) => inspectExample(ex, tokenizer, c.promptLossWeight))
    if (opts.json) {
      for (const e of shown) io.out.write(JSON.stringify(e) + '\n')
    } else {
      const color = useColor(io.out)
      const lines = [
        `data: ${describeRead(read.summary)}`,
        `tokenizer: ${describeTokenizer(c.model)}${describeSpecials(tokenizer)}`,
        `template: ${template.name}${spec !== undefined && spec !== template.name ? ` (${JSON.stringify(spec)})` : ''}; ` +
          `prompt loss weight λ = ${c.promptLossWeight}; max length ${Number.isFinite(maxLength) ? maxLength : 'none'}`,
      ]
      if (color) lines.push(`colours: ${paint('prompt', 'prompt', 1, true)}, ${paint('completion', 'completion', 1, true)}, ${paint('weight 0', 'prompt', 0, true)}`)
      io.out.write(lines.join('\n') + '\n')
      shown.forEach((e, i) => io.out.write('\n' + renderExample(e, { index: i, color }) + '\n'))
      io.out.write(`\n${shown.length} of ${read.records.length} records shown: ${describeEncode(stats)}\n`)
    }
    for (const line of warnings.format()) io.err.write(`warning: ${line}\n`)
    return 0
  } catch (err) {
    io.err.write(`plwtune data inspect: ${(err as Error).message}\n`)
    return 1
  }
}

function parseInspectArgs(argv: string[]): InspectOptions | null {
  const args = argv.flatMap((a) => (a === '-n' ? ['--limit'] : /^-n\d+$/.test(a) ? ['--limit', a.slice(2)] : [a]))
  const { values, positional } = parseFlags(args, FLAGS)
  if (values.help === true) return null
  if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --)`)
  const count = (values.limit as number | undefined) ?? DEFAULT_COUNT
  if (count < 1) throw new UsageError(`-n: expected an integer ≥ 1, received ${count}`)
  const flags: Record<string, unknown> = {}
  const given = values as Record<string, unknown>
  for (const k of TRAIN_KEYS) if (given[kebab(k)] !== undefined) flags[k] = given[kebab(k)]
  const file = typeof values.config === 'string' ? readConfigFile(values.config) : null
  // Layers as train has them: the demo preset without model and data, else what a trained model recorded; then --config; then flags.
  const model = (flags.model ?? file?.model ?? null) as string | null
  const data = (flags.data ?? file?.data ?? null) as string | null
  const layers: Array<{ source: string; values: Record<string, unknown> }> = []
  if (model === null && data === null) layers.push({ source: 'the demo preset', values: DEMO as Record<string, unknown> })
  const meta = model !== null && fs.existsSync(model) ? readMeta(model) : null
  if (meta !== null) {
    layers.push({ source: path.join(model as string, 'plwtune.json'),
      values: { template: meta.template, promptLossWeight: meta.promptLossWeight, maxLength: meta.maxLength } })
  }
  if (file !== null) layers.push({ source: values.config as string, values: file })
  layers.push({ source: 'command line', values: flags })
  return { config: resolveConfig(...layers), count, json: values.json === true }
}

function readConfigFile(file: string): Record<string, unknown> {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    throw new UsageError(`--config ${file}: ${(err as Error).message}`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new UsageError(`--config ${file}: expected a JSON object`)
  return json as Record<string, unknown>
}

/** Positions of the model in DIR (its config.json), as the trainer bounds maxLength; unbounded for a directory with a tokenizer only. */
function modelPositions(dir: string): number {
  return fs.existsSync(path.join(dir, 'config.json')) ? maxPositions(readConfig(dir)) : Infinity
}

function describeSpecials(tokenizer: Tokenizer): string {
  const prefix = tokenizer.specialPrefix ?? []
  if (prefix.length === 0) return ''
  return `; puts ${prefix.map((id) => `${JSON.stringify(tokenizer.decode([id]))} (${id})`).join(' ')} before each example`
}

/** An encoded example with each token's text, kind and weight under λ. */
export function inspectExample(ex: EncodedExample, tokenizer: Tokenizer, lambda: number): InspectedExample {
  const ids = [...ex.ids]
  return {
    source: formatSource(ex.source),
    ids,
    tokens: tokenTexts(tokenizer, ids),
    weights: ids.map((_, i) => (i === 0 ? 0 : tokenWeight(ex, i, lambda))),
    kinds: ids.map((_, i) => (ex.kinds[i] === KIND_COMPLETION ? 'completion' : 'prompt')),
    truncated: ex.truncated,
  }
}

/** Tokens of left context decoded with each token, so that a decoder's start-of-text rules (a stripped "▁") apply only where they would. */
const CONTEXT = 8

/**
 * The text each token adds to the decoded text: decode(ids[w..i]) after its common prefix with
 * decode(ids[w..i-1]), over a short window w. A token that completes a character others began
 * carries that character; they show what their bytes decode to alone (U+FFFD) or nothing.
 */
export function tokenTexts(tokenizer: Tokenizer, ids: readonly number[]): string[] {
  const out: string[] = []
  for (let i = 0; i < ids.length; i++) {
    const w = Math.max(0, i - CONTEXT)
    const before = i > w ? tokenizer.decode(ids.slice(w, i)) : ''
    const upTo = tokenizer.decode(ids.slice(w, i + 1))
    let k = 0
    while (k < before.length && k < upTo.length && before.charCodeAt(k) === upTo.charCodeAt(k)) k++
    out.push(upTo.slice(k))
  }
  return out
}

// ---------------------------------------------------------------------------------------
// the terminal view

const SGR = { reset: '\x1b[0m', dim: '\x1b[2m', prompt: '\x1b[36m', completion: '\x1b[32m' } as const

/** Colour for a stream: off with NO_COLOR, on with FORCE_COLOR (not "0"), else whether it is a terminal. */
export function useColor(stream: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false'
  return (stream as NodeJS.WriteStream).isTTY === true
}

function paint(text: string, kind: 'prompt' | 'completion', weight: number, color: boolean): string {
  if (!color) return text
  return `${weight === 0 ? SGR.dim : ''}${SGR[kind]}${text}${SGR.reset}`
}

const formatWeight = (w: number): string => (w === 0 ? '0' : w === 1 ? '1' : String(Number(w.toPrecision(4))))

/**
 * One example as a table: a header (source, token counts by kind, Σ weight) and a row per token:
 * position, id, kind, weight, and the token's text as a JSON string (escapes show "\n", spaces).
 */
export function renderExample(e: InspectedExample, o: { index: number; color: boolean }): string {
  const prompt = e.kinds.filter((k) => k === 'prompt').length
  const total = e.weights.reduce((s, w) => s + w, 0)
  const header = `example ${o.index + 1} · ${e.source} · ${e.ids.length} tokens: ${prompt} prompt, ${e.ids.length - prompt} completion · ` +
    `Σ weight ${Number(total.toFixed(4))}${e.truncated > 0 ? ` · truncated: ${e.truncated} prompt tokens dropped from the start` : ''}`
  const idWidth = Math.max(2, ...e.ids.map((id) => String(id).length))
  const posWidth = Math.max(1, String(e.ids.length - 1).length)
  const weights = e.weights.map((w, i) => (i === 0 ? '–' : formatWeight(w)))
  const weightWidth = Math.max(6, ...weights.map((w) => w.length))
  const rows = e.ids.map((id, i) => {
    const cells = `${String(i).padStart(posWidth)}  ${String(id).padStart(idWidth)}  ${e.kinds[i].padEnd(10)}  ` +
      `${weights[i].padStart(weightWidth)}  ${JSON.stringify(e.tokens[i])}`
    return '  ' + paint(cells, e.kinds[i], e.weights[i], o.color)
  })
  const title = `  ${'#'.padStart(posWidth)}  ${'id'.padStart(idWidth)}  ${'kind'.padEnd(10)}  ${'weight'.padStart(weightWidth)}  token`
  return [header, title, ...rows].join('\n')
}
