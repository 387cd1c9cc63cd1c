/**
 * `plwtune eval`: how good a trained model is on a dataset split (docs/eval.md).
 *
 * - Instruction records: the weighted loss with λ (default: the λ the model was trained with),
 *   the completion and prompt losses, and the completion perplexity exp(completion loss);
 *   with --generate, exact-match and contains-match of greedy responses.
 * - Multiple-choice records ({context, choices, answer} or {contexts, continuation, answer},
 *   detected from the first record or forced with --choices): acc and acc_norm by
 *   log-likelihood, as lm-evaluation-harness computes them.
 * - --benchmarks NAME=FILE,…: multiple-choice benchmarks with few-shot contexts
 *   (ts/eval/benchmarks.ts), alone or beside the data's metrics.
 * - --baseline BASE_DIR: the base model scored the same way after the model, and every score's
 *   change against it (forgetting).
 *
 * --json prints exactly one JSON object (EvalReport) on stdout; progress goes to stderr.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { readConfig } from '../checkpoint'
import { maxPositions } from '../arch'
import { baseDirOf, loadModel } from '../model'
import { ChoiceRecord } from '../data/choices'
import { encodeDataset } from '../data/encode'
import { formatSource } from '../data/errors'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { checkTokenizerFits, loadTokenizer } from '../model-dir'
import { Model } from '../model'
import {
  Benchmark, DEFAULT_FEWSHOT_SEED, loadBenchmarks, parseBenchmarkFlags, PreparedBenchmark, prepareBenchmark, scorePreparedBenchmark,
} from '../eval/benchmarks'
import { choiceRequests, scoreChoices } from '../eval/choices'
import { markdownTable } from '../markdown-table'
import { matchRates } from '../eval/match'
import { evaluateLoss } from '../train/evaluate'
import { Progress } from '../train/progress'
import {
  chooseSplit, CommandIO, fail, loadData, ModelRef, modelRefOf, num, pct, pickTemplate, readRun, readRunValData, RunInfo, selectSplit, SPLIT_FLAGS, MODEL_FLAGS, DEVICE_FLAGS,
  SplitChoice, STD_IO, trainingMeta,
} from './common'
import { commandHelp, FlagTable, parseFlags, UsageError } from './flags'
import { replaceFile } from '../atomic-write'
import { answerRecords, generationFlags, loadForGeneration, ResponseLine } from './generate'
import { judgeResponses, judgeSettingsOf } from '../eval/judge'

/** Scores in f32 on every device: a forward pass is cheap, and reported losses should not carry bf16 rounding. */
const EVAL_PRECISION = 'f32'

const FLAGS = {
  ...MODEL_FLAGS,
  ...SPLIT_FLAGS,
  choices: { kind: 'boolean', group: 'data', help: 'read the data as multiple-choice records (detected from the first record otherwise)' },
  template: { kind: 'string', group: 'data', placeholder: 'SPEC', help: 'override the training template' },
  'prompt-loss-weight': { kind: 'number', group: 'evaluation', placeholder: 'λ',
    help: 'the weight of prompt tokens in the weighted loss (default: the model\'s, else 0.1)' },
  'batch-size': { kind: 'integer', group: 'evaluation', default: 8, help: 'rows per forward pass' },
  generate: { kind: 'boolean', group: 'evaluation', help: 'also generate greedy responses and score exact and contains match' },
  'max-new-tokens': { kind: 'integer', group: 'generation', default: 128, help: 'tokens generated per response at most (with --run: the run\'s)' },
  judge: { kind: 'string', group: 'evaluation', placeholder: 'URL',
    help: 'score the responses 0-100 with an LLM judge at this OpenAI-compatible API base; implies --generate' },
  'judge-model': { kind: 'string', group: 'evaluation', placeholder: 'NAME', help: 'the judge\'s model name, as the server knows it' },
  'judge-key': { kind: 'string', group: 'evaluation', placeholder: 'ENV_VAR', help: 'the environment variable holding the judge\'s API key (a Bearer token)' },
  'judge-concurrency': { kind: 'integer', group: 'evaluation', default: 4, help: 'judge requests at once' },
  benchmarks: { kind: 'string', group: 'evaluation', placeholder: 'NAME=FILE,…',
    help: 'also score multiple-choice benchmarks (JSONL as --data\'s), few-shot; without --data/--run, only them' },
  shots: { kind: 'string', group: 'evaluation', placeholder: 'NAME=K,…',
    help: 'few-shot examples per benchmark (default: the PLW study\'s: arc and arc_challenge 25, winogrande 5, others 0)' },
  seed: { kind: 'integer', group: 'evaluation', default: DEFAULT_FEWSHOT_SEED, help: 'the seed of the benchmarks\' few-shot draws' },
  baseline: { kind: 'string', group: 'evaluation', placeholder: 'BASE_DIR',
    help: 'also score this base model the same way and report each score\'s change against it (forgetting)' },
  out: { kind: 'string', group: 'output', placeholder: 'FILE',
    help: 'per-record results: the responses JSONL (judge scores kept and reused) or the choices\' scores' },
  json: { kind: 'boolean', group: 'output', help: 'print one JSON object (progress goes to stderr)' },
  ...DEVICE_FLAGS,
  parallel: { kind: 'integer', group: 'other', default: 1, help: 'model copies generating at once' },
} satisfies FlagTable

export const EVAL_USAGE = commandHelp({
  usage: 'plwtune eval --model DIR (--data FILE [split flags] | --benchmarks NAME=FILE,…) [flags]',
  summary: `Instruction records: the weighted loss (λ), completion loss, prompt loss and completion perplexity;
with --generate, exact-match and contains-match of greedy responses; with --judge, an LLM judge's mean
score. Multiple-choice records ({context, choices, answer}): acc and acc_norm by log-likelihood, as
lm-evaluation-harness. --benchmarks: multiple-choice benchmarks with few-shot contexts, as the PLW
study scored them; --baseline: the same for the base model, and every change against it. docs/eval.md.`,
  table: FLAGS,
  examples: [
    'plwtune eval --run runs/alpaca --generate',
    'plwtune eval --model runs/demo/final --data hellaswag.jsonl --limit 500 --json',
    'plwtune eval --model runs/a/final --benchmarks arc=arc_challenge.jsonl,piqa=piqa.jsonl --baseline models/base',
    'plwtune eval --run runs/alpaca --judge http://localhost:11434/v1 --judge-model llama3:8b --out responses.jsonl',
  ],
})

/** One benchmark's scores as --json prints them (BenchmarkScore less its name). */
export interface BenchmarkReport {
  acc: number
  acc_stderr: number
  acc_norm: number
  acc_norm_stderr: number
  n: number
  shots: number
  /** Records whose (few-shot) context lost tokens to the model's positions. */
  truncated: number
}

/** The metrics of one model: what --baseline repeats for the base model. */
export interface EvalMetrics {
  /** Σ w·CE / Σ w with λ. */
  loss: number | null
  completion_loss: number | null
  prompt_loss: number | null
  /** exp(completion_loss). */
  completion_perplexity: number | null
  /** Targets scored: completion tokens (eos included) and prompt tokens. */
  completion_tokens: number | null
  prompt_tokens: number | null
  /** Examples left out: their completion does not fit the model's maxLength. */
  skipped_too_long: number | null
  responses: number | null
  exact_match: number | null
  exact_match_stderr: number | null
  contains_match: number | null
  contains_match_stderr: number | null
  acc: number | null
  acc_stderr: number | null
  acc_norm: number | null
  acc_norm_stderr: number | null
  /** Multiple-choice records whose context lost tokens to n_positions. */
  choices_truncated: number | null
  /** --benchmarks: per benchmark name. */
  benchmarks: Record<string, BenchmarkReport> | null
}

/** The scores --baseline compares (model − base); stderrs and counts have no delta. */
export const DELTA_KEYS = ['loss', 'completion_loss', 'prompt_loss', 'completion_perplexity', 'exact_match', 'contains_match', 'acc', 'acc_norm'] as const
export type EvalDelta = { [K in typeof DELTA_KEYS[number]]: number | null } & { benchmarks: Record<string, { acc: number; acc_norm: number }> | null }

/** What --json prints: every key always present, null when it does not apply. */
export interface EvalReport extends EvalMetrics {
  model: string
  /** The data file, or null with --benchmarks alone (then the split keys and records are null too). */
  data: string | null
  kind: 'instruction' | 'multiple_choice' | null
  split: string | null
  val_split: number | null
  test_split: number | null
  /** The split's seed (train's dataSeed). */
  data_seed: number | null
  records: number | null
  template: string | null
  prompt_loss_weight: number | null
  /** --judge: the judge's model name and JUDGE_PROMPT_HASH (ts/eval/judge-prompt.ts). */
  judge_model: string | null
  judge_prompt: string | null
  /** Mean judge score (0–100) over the `judge_scored` replies that gave one, and its standard error. */
  judge_score: number | null
  judge_score_stderr: number | null
  judge_scored: number | null
  /** Replies without a readable score; requests that failed after their retries. */
  judge_unparsed: number | null
  judge_failed: number | null
  /** --benchmarks: the few-shot draws' seed. */
  benchmark_seed: number | null
  /** --baseline: the base model's metrics (the judge is not asked about the base). */
  baseline: (EvalMetrics & { model: string }) | null
  /** --baseline: model − base for each score both have. */
  delta: EvalDelta | null
}

function emptyMetrics(): EvalMetrics {
  return {
    loss: null, completion_loss: null, prompt_loss: null, completion_perplexity: null, completion_tokens: null, prompt_tokens: null,
    skipped_too_long: null, responses: null, exact_match: null, exact_match_stderr: null, contains_match: null, contains_match_stderr: null,
    acc: null, acc_stderr: null, acc_norm: null, acc_norm_stderr: null, choices_truncated: null, benchmarks: null,
  }
}

function emptyReport(model: string, data: string | null, kind: EvalReport['kind'], split: SplitChoice | null, records: number | null): EvalReport {
  return {
    model, data, kind, split: split?.split ?? null, val_split: split?.val ?? null, test_split: split?.test ?? null, data_seed: split?.seed ?? null,
    records, template: null, prompt_loss_weight: null, ...emptyMetrics(),
    judge_model: null, judge_prompt: null, judge_score: null, judge_score_stderr: null, judge_scored: null, judge_unparsed: null, judge_failed: null,
    benchmark_seed: null, baseline: null, delta: null,
  }
}

/** model − base for every score both have (null otherwise); benchmarks by name. */
export function evalDelta(model: EvalMetrics, base: EvalMetrics): EvalDelta {
  const d = (a: number | null, b: number | null) => (a !== null && b !== null ? a - b : null)
  const out = Object.fromEntries(DELTA_KEYS.map((k) => [k, d(model[k], base[k])])) as EvalDelta
  out.benchmarks = null
  if (model.benchmarks !== null && base.benchmarks !== null) {
    const mb = model.benchmarks, bb = base.benchmarks
    out.benchmarks = Object.fromEntries(Object.keys(mb).filter((k) => k in bb)
      .map((k) => [k, { acc: mb[k].acc - bb[k].acc, acc_norm: mb[k].acc_norm - bb[k].acc_norm }]))
  }
  return out
}

/** A model to score: its directories, tokenizer and positions. */
interface Target {
  ref: ModelRef
  tokenizer: Tokenizer
  nPositions: number
}

/** What is scored, the same for the model and its --baseline. */
interface Plan {
  choices: ChoiceRecord[] | null
  instruction: { records: DataRecord[]; template: Template; lambda: number; maxLength: number | null } | null
  generate: boolean
  gen: ReturnType<typeof generationFlags>
  benchmarks: Benchmark[] | null
  seed: number
  batchSize: number
}

interface Measured {
  metrics: EvalMetrics
  /** Instruction data: the responses (with --generate). */
  responses: ResponseLine[] | null
  /** Multiple-choice data: per-record lines for --out. */
  choiceLines: string[] | null
}

/**
 * Scores one model on the plan: the data (loss, generation, or multiple choice) and the
 * benchmarks. One scoring model (maxBatch = batch size, maxSeqLen = the longest need) plus the
 * generation copies; all disposed before it returns, so a --baseline loads into free memory.
 */
async function measure(t: Target, plan: Plan, io: CommandIO, label: string): Promise<Measured> {
  const models: Model[] = []
  const progressFor = (total: number, what: string) => {
    const p = new Progress({ total, stream: io.err, label: label === '' ? what : `${label} ${what}` })
    p.update(0, {})
    return p
  }
  try {
    const metrics = emptyMetrics()
    const needs: number[] = []
    const choiceReqs = plan.choices !== null ? choiceRequests(t.tokenizer, plan.choices, t.nPositions) : null
    if (choiceReqs !== null) needs.push(choiceReqs.reduce((m, q) => Math.max(m, q.input.length), 1))
    let encoded: ReturnType<typeof encodeDataset> | null = null
    let maxLength = t.nPositions
    if (plan.instruction !== null) {
      const ins = plan.instruction
      maxLength = ins.maxLength !== null ? Math.min(ins.maxLength, t.nPositions) : t.nPositions
      encoded = encodeDataset(ins.records, ins.template, t.tokenizer, { maxLength, skipTooLong: true })
      if (encoded.stats.tooLong > 0) {
        io.err.write(`warning: ${encoded.stats.tooLong} of ${ins.records.length} examples left out of the loss${label === '' ? '' : ` (${label})`}: ` +
          `their completion does not fit maxLength ${maxLength}\n`)
      }
      metrics.skipped_too_long = encoded.stats.tooLong
      if (encoded.examples.length > 0) needs.push(maxLength - 1)
    }
    const prepared = (plan.benchmarks ?? []).map((b) => prepareBenchmark(t.tokenizer, b, t.nPositions, plan.seed))
    for (const p of prepared) needs.push(p.longest)
    if (needs.length > 0) {
      models.push(await loadModel(t.ref.dir, { adapter: t.ref.adapter, device: plan.gen.device, precision: EVAL_PRECISION, maxBatch: plan.batchSize,
        maxSeqLen: Math.max(...needs) }))
    }

    if (plan.choices !== null && choiceReqs !== null) {
      const progress = progressFor(choiceReqs.length, 'choices')
      const r = await scoreChoices(models[0], plan.choices, choiceReqs, { maxBatch: plan.batchSize, padId: t.tokenizer.eosId,
        onProgress: (done) => progress.update(done, {}) })
      progress.finish()
      Object.assign(metrics, { acc: r.acc, acc_stderr: r.accStderr, acc_norm: r.accNorm, acc_norm_stderr: r.accNormStderr,
        choices_truncated: r.scores.filter((s) => s.truncated).length })
      const records = plan.choices
      return {
        metrics: { ...metrics, benchmarks: await scoreAll(models[0], t, prepared, plan, io, progressFor, label === 'base') }, responses: null,
        choiceLines: r.scores.map((s, i) => JSON.stringify({ source: formatSource(records[i].source), answer: s.answer, pred: s.pred, pred_norm: s.predNorm,
          acc: s.pred === s.answer, acc_norm: s.predNorm === s.answer, loglikelihoods: s.logLikelihoods, norm_lengths: s.normLengths }) + '\n'),
      }
    }
    let responses: ResponseLine[] | null = null
    if (plan.instruction !== null && encoded !== null) {
      if (encoded.examples.length > 0) {
        const progress = progressFor(encoded.examples.length, 'loss')
        const l = await evaluateLoss(models[0], encoded.examples, { promptLossWeight: plan.instruction.lambda, microBatchSize: plan.batchSize,
          padId: t.tokenizer.eosId, packing: true, maxLength, onProgress: (done) => progress.update(done, {}) })
        progress.finish()
        Object.assign(metrics, { loss: l.loss, completion_loss: l.completionLoss, prompt_loss: l.promptLoss,
          completion_perplexity: l.completionLoss !== null ? Math.exp(l.completionLoss) : null, completion_tokens: l.completionTargets,
          prompt_tokens: l.promptTargets })
      }
      if (plan.generate) {
        const gens = models.slice()
        if (gens.length === 0) gens.push(...await loadForGeneration(t.ref, 1, t.nPositions, plan.gen.device))
        if (plan.gen.parallel > 1) gens.push(...await loadForGeneration(t.ref, plan.gen.parallel - 1, t.nPositions, plan.gen.device))
        models.push(...gens.filter((m) => !models.includes(m)))
        const progress = progressFor(plan.instruction.records.length, 'generate')
        responses = await answerRecords({ models: gens, tokenizer: t.tokenizer, template: plan.instruction.template, records: plan.instruction.records,
          options: plan.gen, write: null, progress })
        progress.finish()
        const rates = matchRates(responses)
        Object.assign(metrics, { responses: rates.responses, exact_match: rates.exactMatch, exact_match_stderr: rates.exactMatchStderr,
          contains_match: rates.containsMatch, contains_match_stderr: rates.containsMatchStderr })
      }
    }
    if (prepared.length > 0) metrics.benchmarks = await scoreAll(models[0], t, prepared, plan, io, progressFor, label === 'base')
    return { metrics, responses, choiceLines: null }
  } finally {
    for (const m of models) m.dispose()
  }
}

async function scoreAll(model: Model, t: Target, prepared: PreparedBenchmark[], plan: Plan, io: CommandIO,
  progressFor: (total: number, what: string) => Progress, quiet: boolean): Promise<Record<string, BenchmarkReport> | null> {
  if (prepared.length === 0) return null
  const out: Record<string, BenchmarkReport> = {}
  for (const p of prepared) {
    const progress = progressFor(p.requests.length, p.benchmark.name)
    const s = await scorePreparedBenchmark(model, t.tokenizer, p, { maxBatch: plan.batchSize, onProgress: (done) => progress.update(done, {}),
      warn: (line) => { if (!quiet) io.err.write(`note: ${line}\n`) } })
    progress.finish()
    out[s.name] = { acc: s.acc, acc_stderr: s.acc_stderr, acc_norm: s.acc_norm, acc_norm_stderr: s.acc_norm_stderr, n: s.n, shots: s.shots,
      truncated: s.truncated }
  }
  return out
}

/** A model directory's tokenizer, checked against its embedding, and its positions. */
async function targetOf(ref: ModelRef): Promise<Target> {
  const tokenizer = await loadTokenizer(ref.files)
  const config = readConfig(baseDirOf(ref.dir))
  checkTokenizerFits(tokenizer, ref.files, baseDirOf(ref.dir), config)
  return { ref, tokenizer, nPositions: maxPositions(config) }
}

/** Flags that read the data: an error without --data/--run. */
const DATA_ONLY = ['choices', 'template', 'prompt-loss-weight', 'generate', 'judge', 'out', 'split', 'val-split', 'test-split', 'data-seed', 'limit',
  'format', 'max-new-tokens', 'parallel'] as const

export async function evalCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  try {
    const { values: v, positional } = parseFlags(argv, FLAGS)
    if (v.help) { io.out.write(EVAL_USAGE + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const specs = v.benchmarks !== undefined ? parseBenchmarkFlags(v.benchmarks as string, v.shots as string | undefined) : null
    if (specs === null && v.shots !== undefined) throw new UsageError('--shots goes with --benchmarks NAME=FILE,…')
    if (specs === null && v.seed !== undefined) throw new UsageError('--seed goes with --benchmarks (it seeds the few-shot draws)')
    const run: RunInfo | null = v.run !== undefined ? readRun(v.run as string) : null
    const hasData = v.data !== undefined || run !== null
    if (!hasData && specs === null) {
      throw new UsageError('--data FILE is required (or --run RUN_DIR, whose data is used, or --benchmarks NAME=FILE,…); see --help')
    }
    if (!hasData) {
      const given = DATA_ONLY.find((k) => v[k] !== undefined)
      if (given !== undefined) throw new UsageError(`--${given} goes with --data or --run (--benchmarks alone scores only the benchmarks)`)
    }
    const batchSize = (v['batch-size'] as number | undefined) ?? 8
    if (batchSize < 1) throw new UsageError(`--batch-size: expected an integer ≥ 1, received ${batchSize}`)
    const lambdaFlag = v['prompt-loss-weight'] as number | undefined
    if (lambdaFlag !== undefined && !(lambdaFlag >= 0 && lambdaFlag <= 1)) {
      throw new UsageError(`--prompt-loss-weight: expected a number in [0, 1], received ${lambdaFlag}`)
    }
    const gen = generationFlags(v, { maxNewTokens: run?.config.maxNewTokens ?? 128 })
    const judged = judgeSettingsOf(v)
    if (judged.error !== null) throw new UsageError(judged.error)
    const generate = v.generate === true || judged.settings !== null // --judge implies --generate
    if (!generate && (v['max-new-tokens'] !== undefined || v.parallel !== undefined)) {
      throw new UsageError(`${v['max-new-tokens'] !== undefined ? '--max-new-tokens' : '--parallel'} goes with --generate`)
    }
    const baseDir = v.baseline as string | undefined
    if (baseDir !== undefined && !fs.existsSync(path.join(baseDir, 'config.json'))) {
      throw new UsageError(`--baseline ${baseDir}: no config.json (expected the base model's Hugging Face directory)`)
    }
    const ref = modelRefOf(v.model as string | undefined, v.adapter as string | undefined, run)
    const modelDir = ref.files
    const target = await targetOf(ref)
    const base = baseDir !== undefined ? await targetOf({ dir: baseDir, files: baseDir }) : null
    const seed = (v.seed as number | undefined) ?? DEFAULT_FEWSHOT_SEED
    const benchmarks = specs !== null ? await loadBenchmarks(specs) : null
    const out = v.out as string | undefined
    if (out === '-') throw new UsageError('--out -: stdout carries the report; give --out a file')
    if (out !== undefined && !fs.existsSync(path.dirname(path.resolve(out)))) {
      throw new UsageError(`--out ${out}: no such directory ${path.dirname(out)}`)
    }

    let report: EvalReport
    const plan: Plan = { choices: null, instruction: null, generate, gen, benchmarks, seed, batchSize }
    if (!hasData) {
      report = emptyReport(modelDir, null, null, null, null)
    } else {
      const data = await loadData({ data: v.data as string | undefined, run, format: v.format as string | undefined, choices: v.choices ? true : 'auto' })
      const split = chooseSplit({ split: v.split as string | undefined, valSplit: v['val-split'] as number | undefined,
        testSplit: v['test-split'] as number | undefined, dataSeed: v['data-seed'] as number | undefined, run })
      const limit = v.limit as number | undefined
      if (out !== undefined && data.kind === 'instruction' && !generate) {
        throw new UsageError('--out writes per-record results: responses (with --generate) or multiple-choice scores')
      }
      if (data.kind === 'choices') {
        if (generate) throw new UsageError(`${judged.settings ? '--judge' : '--generate'} needs instruction records; multiple-choice records are scored by log-likelihood`)
        if (v.template !== undefined) throw new UsageError('--template does not apply to multiple-choice records (their text is scored as it is)')
        plan.choices = await selectSplit<ChoiceRecord>(data.records, split, { run, limit })
        report = emptyReport(modelDir, data.name, 'multiple_choice', split, plan.choices.length)
      } else {
        const records = await selectSplit<DataRecord>(data.records, split, { run, limit, readValData: run ? () => readRunValData(run) : undefined })
        const { meta } = trainingMeta(modelDir, run)
        const template = pickTemplate({ flag: v.template as string | undefined, meta, modelDir, format: data.format, tokenizer: target.tokenizer,
          warn: (line) => io.err.write(line + '\n') })
        const lambda = lambdaFlag ?? meta?.promptLossWeight ?? 0.1
        plan.instruction = { records, template, lambda, maxLength: meta !== null && meta.maxLength > 0 ? meta.maxLength : null }
        report = { ...emptyReport(modelDir, data.name, 'instruction', split, records.length), template: template.name, prompt_loss_weight: lambda }
      }
    }
    if (benchmarks !== null) report.benchmark_seed = seed

    const m = await measure(target, plan, io, base !== null ? 'model' : '')
    Object.assign(report, m.metrics)
    let lines: string[] = m.choiceLines ?? []
    if (m.responses !== null) {
      if (judged.settings !== null) {
        const j = await judgeResponses(m.responses, judged.settings, { out, err: io.err })
        Object.assign(report, { judge_model: j.model, judge_prompt: j.prompt, judge_score: j.mean, judge_score_stderr: j.stderr,
          judge_scored: j.scored, judge_unparsed: j.unparsed, judge_failed: j.failed })
      }
      lines = m.responses.map((l) => JSON.stringify(l) + '\n')
    }
    if (base !== null) { // after the model's copies are disposed: one model in memory at a time
      const b = await measure(base, plan, io, 'base')
      report.baseline = { model: baseDir as string, ...b.metrics }
      report.delta = evalDelta(m.metrics, b.metrics)
    }
    if (out !== undefined) replaceFile(out, lines.join(''))
    io.out.write(v.json ? JSON.stringify(report) + '\n' : describeReport(report) + '\n')
    return 0
  } catch (err) {
    return fail(io, 'eval', err)
  }
}

/** `+0.0123` / `−1.2 pts`: a delta, signed (0 unsigned). */
function signed(x: number | null, kind: 'num' | 'pct'): string {
  if (x === null) return '—'
  const text = kind === 'pct' ? (100 * Math.abs(x)).toFixed(1) + ' pts' : Math.abs(x).toFixed(4)
  if (x === 0 || Number(text.split(' ')[0]) === 0) return kind === 'pct' ? '0.0 pts' : '0.0000'
  return (x > 0 ? '+' : '−') + text
}

/** The human-readable summary of an EvalReport: one row per number; with --baseline, the base's and the change (Δ vs base). */
export function describeReport(r: EvalReport): string {
  const lines: string[] = []
  if (r.data === null) lines.push(`eval ${r.model} on benchmarks`)
  else {
    const where = r.split === 'all' ? `all ${r.records} records` : `the ${r.split} split (${r.records} records; val ${r.val_split}, test ${r.test_split}, data seed ${r.data_seed})`
    lines.push(`eval ${r.model} on ${where} of ${r.data}`)
  }
  const b = r.baseline
  if (b !== null) lines.push(`  against the base model ${b.model}`)
  /** [name, value, base value, Δ]: the last two only with a baseline, and only for rows that have them. */
  const rows: Array<[string, string, string?, string?]> = []
  const rowText = (name: string, value: string) => { rows.push([name, value]) }
  const row = (name: string, value: string, baseValue?: string, delta?: string) => {
    rows.push(b === null || baseValue === undefined ? [name, value] : [name, value, baseValue, delta ?? ''])
  }
  const se = (x: number | null) => (x !== null ? ` ± ${(100 * x).toFixed(1)}` : '')
  const d = r.delta
  if (r.kind === 'instruction') {
    rowText('template', String(r.template))
    row(`loss (weighted, λ = ${r.prompt_loss_weight})`, num(r.loss), num(b?.loss), signed(d?.loss ?? null, 'num'))
    row('completion loss', num(r.completion_loss), num(b?.completion_loss), signed(d?.completion_loss ?? null, 'num'))
    row('prompt loss', num(r.prompt_loss), num(b?.prompt_loss), signed(d?.prompt_loss ?? null, 'num'))
    row('completion perplexity', num(r.completion_perplexity), num(b?.completion_perplexity), signed(d?.completion_perplexity ?? null, 'num'))
    const tokens = (x: EvalMetrics) => (x.completion_tokens !== null ? `${x.completion_tokens} completion + ${x.prompt_tokens} prompt` : '—')
    row('tokens scored', tokens(r), b !== null ? tokens(b) : undefined, '')
    if (r.skipped_too_long) row('left out (too long)', String(r.skipped_too_long), b !== null ? String(b.skipped_too_long) : undefined, '')
    if (r.responses !== null) {
      const match = (x: number | null, s: number | null, n: number | null) => `${pct(x)}${se(s)}  (${Math.round((x ?? 0) * (n ?? 0))}/${n})`
      row('exact match', match(r.exact_match, r.exact_match_stderr, r.responses),
        b !== null ? match(b.exact_match, b.exact_match_stderr, b.responses) : undefined, signed(d?.exact_match ?? null, 'pct'))
      row('contains match', match(r.contains_match, r.contains_match_stderr, r.responses),
        b !== null ? match(b.contains_match, b.contains_match_stderr, b.responses) : undefined, signed(d?.contains_match ?? null, 'pct'))
    }
    if (r.judge_model !== null) {
      rowText(`judge (${r.judge_model})`, `${r.judge_score !== null ? r.judge_score.toFixed(1) : '—'}${r.judge_score_stderr !== null ? ` ± ${r.judge_score_stderr.toFixed(1)}` : ''}` +
        ` / 100  (${r.judge_scored} scored, ${r.judge_unparsed} unparsed, ${r.judge_failed} failed)`)
    }
  } else if (r.kind === 'multiple_choice') {
    row('acc', `${pct(r.acc)}${se(r.acc_stderr)}`, b !== null ? `${pct(b.acc)}${se(b.acc_stderr)}` : undefined, signed(d?.acc ?? null, 'pct'))
    row('acc_norm', `${pct(r.acc_norm)}${se(r.acc_norm_stderr)}`, b !== null ? `${pct(b.acc_norm)}${se(b.acc_norm_stderr)}` : undefined,
      signed(d?.acc_norm ?? null, 'pct'))
    if (r.choices_truncated) row('contexts cut to fit', String(r.choices_truncated), b !== null ? String(b.choices_truncated) : undefined, '')
  }
  if (rows.length > 0) {
    const W = Math.max(26, ...rows.map((x) => x[0].length + 2))
    const V = Math.max(...rows.map((x) => (x.length > 2 ? x[1].length + 2 : 0)), 'model'.length + 2)
    const B = Math.max(...rows.map((x) => (x.length > 2 ? (x[2] ?? '').length + 2 : 0)), 'base'.length + 2)
    if (b !== null) lines.push(`  ${''.padEnd(W)}${'model'.padEnd(V)}${'base'.padEnd(B)}Δ vs base`)
    for (const [name, value, baseValue, delta] of rows) {
      lines.push(baseValue === undefined ? `  ${name.padEnd(W)}${value}` : `  ${name.padEnd(W)}${value.padEnd(V)}${baseValue.padEnd(B)}${delta ?? ''}`.trimEnd())
    }
  }
  if (r.benchmarks !== null) {
    const names = Object.keys(r.benchmarks)
    const header = ['benchmark', 'shots', 'n', 'acc', 'acc_norm']
    const right = [false, true, true, true, true]
    if (b !== null) { header.push('base acc', 'Δ acc vs base', 'base acc_norm', 'Δ acc_norm vs base'); right.push(true, true, true, true) }
    header.push('cut to fit')
    right.push(true)
    const rows = names.map((name) => {
      const s = (r.benchmarks as Record<string, BenchmarkReport>)[name]
      const cells = [name, String(s.shots), String(s.n), `${pct(s.acc)}${se(s.acc_stderr)}`, `${pct(s.acc_norm)}${se(s.acc_norm_stderr)}`]
      if (b !== null) {
        const bs = b.benchmarks?.[name]
        const ds = d?.benchmarks?.[name]
        cells.push(bs ? `${pct(bs.acc)}${se(bs.acc_stderr)}` : '—', signed(ds?.acc ?? null, 'pct'),
          bs ? `${pct(bs.acc_norm)}${se(bs.acc_norm_stderr)}` : '—', signed(ds?.acc_norm ?? null, 'pct'))
      }
      cells.push(String(s.truncated))
      return cells
    })
    lines.push('', `benchmarks (few-shot seed ${r.benchmark_seed}; acc ± standard error)`, markdownTable(header, rows, right))
  }
  return lines.join('\n')
}
