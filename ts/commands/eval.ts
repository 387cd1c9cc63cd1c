/**
 * `plwtune eval`: how good a trained model is on a dataset split (docs/eval.md).
 *
 * - Instruction records: the weighted loss with λ (default: the λ the model was trained with),
 *   the completion and prompt losses, and the completion perplexity exp(completion loss);
 *   with --generate, exact-match and contains-match of greedy responses.
 * - Multiple-choice records ({context, choices, answer} or {contexts, continuation, answer},
 *   detected from the first record or forced with --choices): acc and acc_norm by
 *   log-likelihood, as lm-evaluation-harness computes them.
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
import { checkTokenizerFits, loadTokenizer } from '../model-dir'
import { Model } from '../model'
import { choiceRequests, scoreChoices } from '../eval/choices'
import { matchRates } from '../eval/match'
import { evaluateLoss } from '../train/evaluate'
import { Progress } from '../train/progress'
import {
  chooseSplit, CommandIO, fail, loadData, modelRefOf, num, pct, pickTemplate, readRun, readRunValData, RunInfo, selectSplit, SPLIT_FLAGS, MODEL_FLAGS, DEVICE_FLAGS,
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
  out: { kind: 'string', group: 'output', placeholder: 'FILE',
    help: 'per-record results: the responses JSONL (judge scores kept and reused) or the choices\' scores' },
  json: { kind: 'boolean', group: 'output', help: 'print one JSON object (progress goes to stderr)' },
  ...DEVICE_FLAGS,
  parallel: { kind: 'integer', group: 'other', default: 1, help: 'model copies generating at once' },
} satisfies FlagTable

export const EVAL_USAGE = commandHelp({
  usage: 'plwtune eval --model DIR --data FILE [split flags] [flags]',
  summary: `Instruction records: the weighted loss (λ), completion loss, prompt loss and completion perplexity;
with --generate, exact-match and contains-match of greedy responses; with --judge, an LLM judge's mean
score. Multiple-choice records ({context, choices, answer}): acc and acc_norm by log-likelihood, as
lm-evaluation-harness. docs/eval.md.`,
  table: FLAGS,
  examples: [
    'plwtune eval --run runs/alpaca --generate',
    'plwtune eval --model runs/demo/final --data hellaswag.jsonl --limit 500 --json',
    'plwtune eval --run runs/alpaca --judge http://localhost:11434/v1 --judge-model llama3:8b --out responses.jsonl',
  ],
})

/** What --json prints: every key always present, null when it does not apply. */
export interface EvalReport {
  model: string
  data: string
  kind: 'instruction' | 'multiple_choice'
  split: string
  val_split: number
  test_split: number
  /** The split's seed (train's dataSeed). */
  data_seed: number
  records: number
  template: string | null
  prompt_loss_weight: number | null
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
}

function emptyReport(model: string, data: string, kind: EvalReport['kind'], split: SplitChoice, records: number): EvalReport {
  return {
    model, data, kind, split: split.split, val_split: split.val, test_split: split.test, data_seed: split.seed, records,
    template: null, prompt_loss_weight: null, loss: null, completion_loss: null, prompt_loss: null, completion_perplexity: null,
    completion_tokens: null, prompt_tokens: null,
    skipped_too_long: null, responses: null, exact_match: null, exact_match_stderr: null, contains_match: null, contains_match_stderr: null,
    acc: null, acc_stderr: null, acc_norm: null, acc_norm_stderr: null, choices_truncated: null,
    judge_model: null, judge_prompt: null, judge_score: null, judge_score_stderr: null, judge_scored: null, judge_unparsed: null, judge_failed: null,
  }
}

export async function evalCommand(argv: string[], io: CommandIO = STD_IO): Promise<number> {
  const models: Model[] = []
  try {
    const { values: v, positional } = parseFlags(argv, FLAGS)
    if (v.help) { io.out.write(EVAL_USAGE + '\n'); return 0 }
    if (positional.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positional[0])} (flags start with --; see --help)`)
    const run: RunInfo | null = v.run !== undefined ? readRun(v.run as string) : null
    if (v.data === undefined && run === null) throw new UsageError('--data FILE is required (or --run RUN_DIR, whose data is used); see --help')
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
    const ref = modelRefOf(v.model as string | undefined, v.adapter as string | undefined, run)
    const modelDir = ref.files
    const tokenizer = await loadTokenizer(modelDir)
    const modelConfig = readConfig(baseDirOf(ref.dir))
    checkTokenizerFits(tokenizer, modelDir, baseDirOf(ref.dir), modelConfig)
    const nPositions = maxPositions(modelConfig)
    const data = await loadData({ data: v.data as string | undefined, run, format: v.format as string | undefined, choices: v.choices ? true : 'auto' })
    const split = chooseSplit({ split: v.split as string | undefined, valSplit: v['val-split'] as number | undefined,
      testSplit: v['test-split'] as number | undefined, dataSeed: v['data-seed'] as number | undefined, run })
    const limit = v.limit as number | undefined
    const out = v.out as string | undefined
    if (out === '-') throw new UsageError('--out -: stdout carries the report; give --out a file')
    if (out !== undefined && !fs.existsSync(path.dirname(path.resolve(out)))) {
      throw new UsageError(`--out ${out}: no such directory ${path.dirname(out)}`)
    }
    const progressFor = (total: number, label: string) => {
      const p = new Progress({ total, stream: io.err, label })
      p.update(0, {})
      return p
    }
    if (out !== undefined && data.kind === 'instruction' && !generate) {
      throw new UsageError('--out writes per-record results: responses (with --generate) or multiple-choice scores')
    }
    let report: EvalReport
    let lines: string[] = []

    if (data.kind === 'choices') {
      if (generate) throw new UsageError(`${judged.settings ? '--judge' : '--generate'} needs instruction records; multiple-choice records are scored by log-likelihood`)
      if (v.template !== undefined) throw new UsageError('--template does not apply to multiple-choice records (their text is scored as it is)')
      const records = await selectSplit<ChoiceRecord>(data.records, split, { run, limit })
      const requests = choiceRequests(tokenizer, records, nPositions)
      const longest = requests.reduce((m, q) => Math.max(m, q.input.length), 1)
      models.push(await loadModel(ref.dir, { adapter: ref.adapter, device: gen.device, precision: EVAL_PRECISION, maxBatch: batchSize,
        maxSeqLen: longest }))
      const progress = progressFor(requests.length, 'choices')
      const r = await scoreChoices(models[0], records, requests, { maxBatch: batchSize, padId: tokenizer.eosId,
        onProgress: (done) => progress.update(done, {}) })
      progress.finish()
      report = { ...emptyReport(modelDir, data.name, 'multiple_choice', split, records.length),
        acc: r.acc, acc_stderr: r.accStderr, acc_norm: r.accNorm, acc_norm_stderr: r.accNormStderr,
        choices_truncated: r.scores.filter((s) => s.truncated).length }
      lines = r.scores.map((s, i) => JSON.stringify({ source: formatSource(records[i].source), answer: s.answer, pred: s.pred, pred_norm: s.predNorm,
        acc: s.pred === s.answer, acc_norm: s.predNorm === s.answer, loglikelihoods: s.logLikelihoods, norm_lengths: s.normLengths }) + '\n')
    } else {
      const records = await selectSplit<DataRecord>(data.records, split, { run, limit, readValData: run ? () => readRunValData(run) : undefined })
      const { meta } = trainingMeta(modelDir, run)
      const template = pickTemplate({ flag: v.template as string | undefined, meta, modelDir, format: data.format, tokenizer,
        warn: (line) => io.err.write(line + '\n') })
      const lambda = lambdaFlag ?? meta?.promptLossWeight ?? 0.1
      const maxLength = meta !== null && meta.maxLength > 0 ? Math.min(meta.maxLength, nPositions) : nPositions
      const encoded = encodeDataset(records, template, tokenizer, { maxLength, skipTooLong: true })
      if (encoded.stats.tooLong > 0) {
        io.err.write(`warning: ${encoded.stats.tooLong} of ${records.length} examples left out of the loss: their completion does not fit ` +
          `maxLength ${maxLength}\n`)
      }
      report = { ...emptyReport(modelDir, data.name, 'instruction', split, records.length), template: template.name,
        prompt_loss_weight: lambda, skipped_too_long: encoded.stats.tooLong }
      if (encoded.examples.length > 0) {
        models.push(await loadModel(ref.dir, { adapter: ref.adapter, device: gen.device, precision: EVAL_PRECISION, maxBatch: batchSize,
          maxSeqLen: maxLength - 1 }))
        const progress = progressFor(encoded.examples.length, 'loss')
        const l = await evaluateLoss(models[0], encoded.examples, { promptLossWeight: lambda, microBatchSize: batchSize,
          padId: tokenizer.eosId, packing: true, maxLength, onProgress: (done) => progress.update(done, {}) })
        progress.finish()
        Object.assign(report, { loss: l.loss, completion_loss: l.completionLoss, prompt_loss: l.promptLoss,
          completion_perplexity: l.completionLoss !== null ? Math.exp(l.completionLoss) : null, completion_tokens: l.completionTargets,
          prompt_tokens: l.promptTargets })
      }
      if (generate) {
        if (models.length === 0) models.push(...await loadForGeneration(ref, 1, nPositions, gen.device))
        if (gen.parallel > 1) models.push(...await loadForGeneration(ref, gen.parallel - 1, nPositions, gen.device))
        const progress = progressFor(records.length, 'generate')
        const responses: ResponseLine[] = await answerRecords({ models, tokenizer, template, records, options: gen, write: null, progress })
        progress.finish()
        const rates = matchRates(responses)
        Object.assign(report, { responses: rates.responses, exact_match: rates.exactMatch, exact_match_stderr: rates.exactMatchStderr,
          contains_match: rates.containsMatch, contains_match_stderr: rates.containsMatchStderr })
        if (judged.settings !== null) {
          const j = await judgeResponses(responses, judged.settings, { out, err: io.err })
          Object.assign(report, { judge_model: j.model, judge_prompt: j.prompt, judge_score: j.mean, judge_score_stderr: j.stderr,
            judge_scored: j.scored, judge_unparsed: j.unparsed, judge_failed: j.failed })
        }
        lines = responses.map((l) => JSON.stringify(l) + '\n')
      }
    }
    if (out !== undefined) replaceFile(out, lines.join(''))
    io.out.write(v.json ? JSON.stringify(report) + '\n' : describeReport(report) + '\n')
    return 0
  } catch (err) {
    return fail(io, 'eval', err)
  } finally {
    for (const m of models) m.dispose()
  }
}

/** The human-readable summary of an EvalReport. */
export function describeReport(r: EvalReport): string {
  const where = r.split === 'all' ? `all ${r.records} records` : `the ${r.split} split (${r.records} records; val ${r.val_split}, test ${r.test_split}, data seed ${r.data_seed})`
  const lines = [`eval ${r.model} on ${where} of ${r.data}`]
  const row = (name: string, value: string) => lines.push(`  ${name.padEnd(26)}${value}`)
  const se = (x: number | null) => (x !== null ? ` ± ${(100 * x).toFixed(1)}` : '')
  if (r.kind === 'instruction') {
    row('template', String(r.template))
    row(`loss (weighted, λ = ${r.prompt_loss_weight})`, num(r.loss))
    row('completion loss', num(r.completion_loss))
    row('prompt loss', num(r.prompt_loss))
    row('completion perplexity', num(r.completion_perplexity))
    row('tokens scored', r.completion_tokens !== null ? `${r.completion_tokens} completion + ${r.prompt_tokens} prompt` : '—')
    if (r.skipped_too_long) row('left out (too long)', String(r.skipped_too_long))
    if (r.responses !== null) {
      row('exact match', `${pct(r.exact_match)}${se(r.exact_match_stderr)}  (${Math.round((r.exact_match ?? 0) * r.responses)}/${r.responses})`)
      row('contains match', `${pct(r.contains_match)}${se(r.contains_match_stderr)}  (${Math.round((r.contains_match ?? 0) * r.responses)}/${r.responses})`)
    }
    if (r.judge_model !== null) {
      row(`judge (${r.judge_model})`, `${r.judge_score !== null ? r.judge_score.toFixed(1) : '—'}${r.judge_score_stderr !== null ? ` ± ${r.judge_score_stderr.toFixed(1)}` : ''}` +
        ` / 100  (${r.judge_scored} scored, ${r.judge_unparsed} unparsed, ${r.judge_failed} failed)`)
    }
  } else {
    row('acc', `${pct(r.acc)}${se(r.acc_stderr)}`)
    row('acc_norm', `${pct(r.acc_norm)}${se(r.acc_norm_stderr)}`)
    if (r.choices_truncated) row('contexts cut to fit', String(r.choices_truncated))
  }
  return lines.join('\n')
}
