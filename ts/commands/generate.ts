/**
 * `plwtune generate`: a trained model's responses, to one prompt or to every record of a
 * dataset split, rendered with the model's training template and cut at its stop strings and
 * the eos (docs/eval.md).
 *
 *   plwtune generate --model runs/a/final --instruction "Reverse the word" --input "plant"
 *   plwtune generate --run runs/a --out responses.jsonl          # the run's test split
 *   plwtune generate --model DIR --data d.jsonl --split test --val-split 0.05 --test-split 0.05 --data-seed 42
 *
 * The engine generates one sequence at a time per model (a KV cache, one row): a dataset is
 * answered record by record; `--parallel N` loads N copies of the model, which generate
 * concurrently in the native thread pool (worth it on a GPU or many cores, not on 2).
 */
import { readConfig } from '../checkpoint'
import { maxPositions } from '../arch'
import { baseDirOf, loadModel } from '../model'
import { formatSource } from '../data/errors'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { checkTokenizerFits, loadTokenizer } from '../model-dir'
import { Model } from '../model'
import { Device } from '../native'
import { Generated, GenerationOptions, GenerationRequest, generateMany, generateOne, recordRequest, responseFields } from '../eval/generation'
import { containsMatch, exactMatch, matchRates } from '../eval/match'
import type { JudgeVerdict } from '../eval/judge'
import { Progress } from '../train/progress'
import {
  chooseSplit, CommandIO, fail, loadData, ModelRef, modelRefOf, pct, pickTemplate, readRun, readRunValData, RunInfo, selectSplit, SPLIT_FLAGS, STD_IO,
  MODEL_FLAGS, SAMPLING_FLAGS, DEVICE_FLAGS,
  trainingMeta,
} from './common'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'
import { prepareOutputFile } from '../output-path'
import { replaceFile } from '../atomic-write'

const FLAGS = {
  ...MODEL_FLAGS,
  prompt: { kind: 'string', group: 'data', placeholder: 'TEXT', help: 'one prompt, rendered as a prompt/completion record (--raw: as it is)' },
  raw: { kind: 'boolean', group: 'data', help: 'with --prompt: the prompt as it is, no template' },
  instruction: { kind: 'string', group: 'data', placeholder: 'TEXT', help: 'one instruction, rendered as an Alpaca record' },
  input: { kind: 'string', group: 'data', placeholder: 'TEXT', help: 'with --instruction: its input' },
  ...SPLIT_FLAGS,
  template: { kind: 'string', group: 'data', placeholder: 'SPEC',
    help: 'override the training template (alpaca, phi3, chatml, completion, chat_template, or a string)' },
  ...SAMPLING_FLAGS,
  out: { kind: 'string', group: 'output', placeholder: 'FILE', default: 'responses.jsonl', help: 'the responses JSONL of --data (- for stdout)' },
  ...DEVICE_FLAGS,
  parallel: { kind: 'integer', group: 'other', default: 1, help: 'model copies generating at once' },
} satisfies FlagTable

export const GENERATE_USAGE = commandHelp({
  usage: 'plwtune generate --model DIR (--prompt TEXT [--raw] | --instruction TEXT [--input TEXT] | --data FILE [split flags]) [flags]',
  summary: `Responses of a trained model, rendered with its training template (plwtune.json in DIR) and cut
at the template's stop strings and the eos. One prompt prints its response; a dataset writes a
responses JSONL (instruction, input, expected, response, exact_match, contains_match, ...).`,
  table: FLAGS,
  examples: [
    'plwtune generate --model runs/demo/final --instruction "Reverse the word" --input "lamp"',
    'plwtune generate --run runs/alpaca --split test --out responses.jsonl',
    'plwtune generate --model Qwen2.5-0.5B --adapter runs/lora/final --prompt "Hello" --temperature 0.7 --seed 1',
  ],
})

type Values = ReturnType<typeof parseFlags<typeof FLAGS>>['values']

function str(v: Values, k: keyof typeof FLAGS): string | undefined {
  return v[k] as string | undefined
}

function numberFlag(v: Values, k: keyof typeof FLAGS): number | undefined {
  return v[k] as number | undefined
}

/** Sampling and device flags, checked. */
export function generationFlags(v: Values | Record<string, unknown>, defaults: { maxNewTokens: number }):
  GenerationOptions & { device: Device | 'auto'; parallel: number } {
  const get = (k: string) => (v as Record<string, unknown>)[k] as number | string | undefined
  const maxNewTokens = (get('max-new-tokens') as number | undefined) ?? defaults.maxNewTokens
  const temperature = (get('temperature') as number | undefined) ?? 0
  const topK = (get('top-k') as number | undefined) ?? 0
  const topP = (get('top-p') as number | undefined) ?? 1
  const parallel = (get('parallel') as number | undefined) ?? 1
  const device = (get('device') as string | undefined) ?? 'auto'
  if (maxNewTokens < 1) throw new UsageError(`--max-new-tokens: expected an integer ≥ 1, received ${maxNewTokens}`)
  if (temperature < 0) throw new UsageError(`--temperature: expected a number ≥ 0, received ${temperature}`)
  if (topK < 0) throw new UsageError(`--top-k: expected an integer ≥ 0, received ${topK}`)
  if (!(topP > 0 && topP <= 1)) throw new UsageError(`--top-p: expected a number in (0, 1], received ${topP}`)
  if (parallel < 1) throw new UsageError(`--parallel: expected an integer ≥ 1, received ${parallel}`)
  if (!['cpu', 'cuda', 'auto'].includes(device)) throw new UsageError(`--device: expected cpu, cuda or auto, received ${JSON.stringify(device)}`)
  return { maxNewTokens, temperature, topK, topP, seed: get('seed') as number | undefined, device: device as Device | 'auto', parallel }
}

/** One line of a responses file. */
export interface ResponseLine {
  instruction: string
  input: string
  expected: string
  response: string
  exact_match: boolean
  contains_match: boolean
  stop_reason: string
  /** `file:line` of the record. */
  source: string
  /** Prompt tokens dropped from the start to leave room for the answer (only when some were). */
  prompt_truncated?: number
  /** Chat records: the conversation the response continues. */
  messages?: Array<{ role: string; content: string }>
  /** `eval --judge`: the judge's score or failure (ts/eval/judge.ts). */
  judge?: JudgeVerdict
}

export function responseLine(record: DataRecord, g: Generated): ResponseLine {
  const f = responseFields(record)
  const line: ResponseLine = {
    instruction: f.instruction, input: f.input, expected: f.expected, response: g.response,
    exact_match: exactMatch(g.response, f.expected), contains_match: containsMatch(g.response, f.expected),
    stop_reason: g.stopReason, source: formatSource(record.source),
  }
  if (g.promptTruncated > 0) line.prompt_truncated = g.promptTruncated
  if (f.messages !== undefined) line.messages = f.messages
  return line
}

/**
 * Loads `copies` copies of a model sized for generation: one row, prefill up to the longest prompt.
 * f32 on every device: decoding is f32 anyway (docs/precision.md), and an f32 prefill makes CUDA's
 * tokens the CPU's.
 */
export async function loadForGeneration(ref: ModelRef, copies: number, longestPrompt: number, device: Device | 'auto'): Promise<Model[]> {
  const n = maxPositions(readConfig(baseDirOf(ref.dir)))
  const models: Model[] = []
  for (let i = 0; i < copies; i++) {
    models.push(await loadModel(ref.dir, { adapter: ref.adapter, device, precision: 'f32', maxBatch: 1,
      maxSeqLen: Math.max(1, Math.min(n, longestPrompt)) }))
  }
  return models
}

/**
 * Answers records with their training template on a pool of models, writing the responses
 * JSONL in record order as answers come in (to `out`, or a stream), with a progress bar.
 */
export async function answerRecords(o: {
  models: Model[]; tokenizer: Tokenizer; template: Template; records: readonly DataRecord[]; options: GenerationOptions
  write: ((text: string) => void) | null; progress: Progress | null
}): Promise<ResponseLine[]> {
  const requests: GenerationRequest[] = o.records.map((r) => recordRequest(o.template, o.tokenizer, r))
  const lines = new Array<ResponseLine>(o.records.length)
  let flushed = 0
  let exact = 0
  await generateMany(o.models, o.tokenizer, requests, {
    ...o.options,
    onResult: (i, g, done) => {
      lines[i] = responseLine(o.records[i], g)
      if (lines[i].exact_match) exact++
      for (; flushed < lines.length && lines[flushed] !== undefined; flushed++) o.write?.(JSON.stringify(lines[flushed]) + '\n')
      o.progress?.update(done, { 'exact match': `${((100 * exact) / done).toFixed(1)}%` })
    },
  })
  return lines
}

export async function generateCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  let models: Model[] = []
  try {
    const { values: v, positional } = parseFlags(argv, FLAGS)
    if (v.help) { io.out.write(GENERATE_USAGE + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const prompt = str(v, 'prompt'), instruction = str(v, 'instruction'), input = str(v, 'input')
    const single = prompt !== undefined || instruction !== undefined
    if (prompt !== undefined && instruction !== undefined) throw new UsageError('give --prompt or --instruction, not both')
    if (input !== undefined && instruction === undefined) throw new UsageError('--input goes with --instruction')
    if (v.raw && prompt === undefined) throw new UsageError('--raw goes with --prompt')
    if (single && (v.data !== undefined || v.split !== undefined || v.limit !== undefined || v.out !== undefined)) {
      throw new UsageError('one prompt (--prompt/--instruction) takes no --data, --split, --limit or --out')
    }
    const run: RunInfo | null = v.run !== undefined ? readRun(v.run as string) : null
    if (!single && v.data === undefined && run === null) throw new UsageError('give --prompt, --instruction or --data FILE (or --run RUN_DIR); see --help')
    const gen = generationFlags(v, { maxNewTokens: run?.config.maxNewTokens ?? 128 })
    const ref = modelRefOf(str(v, 'model'), str(v, 'adapter'), run)
    const modelDir = ref.files
    const tokenizer = await loadTokenizer(modelDir)
    checkTokenizerFits(tokenizer, modelDir, baseDirOf(ref.dir))
    const { meta } = trainingMeta(modelDir, run)
    const warn = (line: string) => io.err.write(line + '\n')

    if (single) {
      let request: GenerationRequest
      if (v.raw) {
        const template = meta !== null || v.template !== undefined
          ? pickTemplate({ flag: str(v, 'template'), meta, modelDir, format: 'prompt-completion', tokenizer, warn }) : null
        request = { ids: tokenizer.encode(prompt as string), stops: template?.stop ?? [] }
      } else {
        const probe: DataRecord = prompt !== undefined
          ? { format: 'prompt-completion', prompt, completion: '', source: { file: '--prompt', index: 0 } }
          : { format: 'alpaca', instruction: instruction as string, input: input ?? '', output: '', source: { file: '--instruction', index: 0 } }
        const template = pickTemplate({ flag: str(v, 'template'), meta, modelDir, format: probe.format, tokenizer, warn })
        const record: DataRecord = template.formats.includes(probe.format) ? probe
          : { format: 'chat', messages: [{ role: 'user', content: prompt ?? (input ? `${instruction}\n\n${input}` : instruction as string) },
            { role: 'assistant', content: '' }], source: probe.source }
        request = recordRequest(template, tokenizer, record)
      }
      models = await loadForGeneration(ref, 1, request.ids.length, gen.device)
      if (request.ids.length >= models[0].maxPositions) {
        warn(`warning: the prompt is ${request.ids.length} tokens; its first ones are dropped to fit n_positions (${models[0].maxPositions})`)
      }
      // The answer is written as it is made; Ctrl-C ends it there.
      const controller = new AbortController()
      const onSigint = () => controller.abort()
      process.once('SIGINT', onSigint)
      try {
        const g = await generateOne(models[0], tokenizer, request, { ...gen, signal: controller.signal, onText: (t) => io.out.write(t) })
        io.out.write('\n')
        return g.stopReason === 'aborted' ? 130 : 0
      } finally {
        process.off('SIGINT', onSigint)
      }
    }

    const data = await loadData({ data: str(v, 'data'), run, format: str(v, 'format'), choices: 'auto' })
    if (data.kind === 'choices') {
      throw new UsageError(`${data.name} holds multiple-choice records ({context, choices, answer}): score them with plwtune eval`)
    }
    const split = chooseSplit({ split: str(v, 'split'), valSplit: numberFlag(v, 'val-split'), testSplit: numberFlag(v, 'test-split'),
      dataSeed: numberFlag(v, 'data-seed'), run })
    const records = await selectSplit(data.records, split, { run, limit: numberFlag(v, 'limit'), readValData: run ? () => readRunValData(run) : undefined })
    const template = pickTemplate({ flag: str(v, 'template'), meta, modelDir, format: data.format, tokenizer, warn })
    const out = str(v, 'out') ?? 'responses.jsonl'
    if (out !== '-') prepareOutputFile(out, '--out') // before generating: nothing is lost to an unwritable place at the end
    const longest = records.reduce((m, r) => Math.max(m, recordRequest(template, tokenizer, r).ids.length), 1)
    models = await loadForGeneration(ref, gen.parallel, longest, gen.device)
    const progress = new Progress({ total: records.length, stream: io.err, label: 'generate' })
    progress.update(0, {})
    const chunks: string[] = []
    const lines = await answerRecords({ models, tokenizer, template, records, options: gen, progress,
      write: out === '-' ? (text) => io.out.write(text) : (text) => chunks.push(text) })
    if (out !== '-') replaceFile(out, chunks.join(''))
    const rates = matchRates(lines.map((l) => ({ response: l.response, expected: l.expected })))
    const truncated = lines.filter((l) => (l.prompt_truncated ?? 0) > 0).length
    progress.finish()
    const where = `${split.split === 'all' ? 'all records' : `the ${split.split} split (${split.from})`} of ${data.name}`
    ;(out === '-' ? io.err : io.out).write(`wrote ${lines.length} responses${out === '-' ? '' : ` to ${out}`}: ${where}, template ` +
      `${template.name}; exact match ${pct(rates.exactMatch)}, contains match ${pct(rates.containsMatch)}` +
      `${truncated > 0 ? `; ${truncated} prompts cut to fit n_positions` : ''}\n`)
    return 0
  } catch (err) {
    return fail(io, 'generate', err)
  } finally {
    for (const m of models) m.dispose()
  }
}
