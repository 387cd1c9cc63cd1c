/**
 * Running the grid: every (λ, seed) in order, a finished run skipped, an interrupted one resumed
 * from its newest checkpoint, the reports rewritten after each (ts/commands/sweep.ts).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile } from '../atomic-write'
import { ConfigError, resolveConfig, TrainConfig } from '../train/config'
import { formatDuration, Progress } from '../train/progress'
import { RunDir, TrainerState } from '../train/run-dir'
import { PreparedData, StepMetrics, Trainer, TrainResult } from '../train/trainer'
import { readJsonObject } from '../json-keys'
import { Benchmark, BenchmarkScore, loadBenchmarks, scoreBenchmark } from '../eval/benchmarks'
import { Tokenizer } from '../data/tokenizer'
import { loadModel } from '../model'
import { loadTokenizer } from '../model-dir'
import { generateDemoRecords } from '../demo/tasks'
import { readDataset, recordsFromObjects } from '../data/read'
import { datasetStats } from '../data/stats'
import { StudyAnalysis } from './analysis'
import { lambdaLabel } from './plot'
import { AccPair, checkSweepFile, datasetSpec, metricInfo, RunResult, runDirOf, SweepSpec } from './spec'
import { SweepSummary } from './summary'
import { readResults, writeReports } from './report'
import { BaseScores, writeStudy } from './study'

/** Sequences per batch when scoring a benchmark. */
export const BENCHMARK_BATCH = 8

/** What the grids of one sweep share: the benchmarks, the base's scores, each dataset's prepared data, the stats lines. */
interface SweepContext {
  benchmarks: Benchmark[]
  base: BaseScores | null
  baseNote: string
  statsLines: Map<string, string>
  command?: string
}

/** Every event also names its dataset (`dataset`: the name, "demo" for the built-in set). */
export type SweepEvent = { dataset: string } & (
  | { type: 'skip'; index: number; total: number; lambda: number; seed: number; dir: string; result: RunResult }
  | { type: 'start'; index: number; total: number; lambda: number; seed: number; dir: string; resumeFrom: number | null }
  | { type: 'step'; lambda: number; seed: number; step: number }
  | { type: 'finish'; index: number; total: number; lambda: number; seed: number; dir: string; result: RunResult }
  | { type: 'scoring'; lambda: number; seed: number; dir: string }
  | { type: 'interrupted'; lambda: number; seed: number; dir: string; step: number })

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

export interface SweepOptions {
  signal?: AbortSignal
  onEvent?: (e: SweepEvent) => void
  /** Where the lines and the trainer's progress bars go; default: nowhere. */
  stream?: NodeJS.WritableStream
  /** The command line, quoted in results.md. */
  command?: string
}

export interface SweepOutcome {
  interrupted: boolean
  /** The first dataset's summary (the only one for a one-dataset sweep). */
  summary: SweepSummary
  /** Every dataset's summary, with its `plwtune stats` line. */
  datasets: Array<{ name: string; summary: SweepSummary; statsLine: string | null }>
  /** The study's analysis over every dataset, or null when it could not run (see results.md). */
  analysis: StudyAnalysis | null
}

function describeResult(r: RunResult): string {
  if (r.stop_reason === 'non_finite') return `diverged (non-finite loss at step ${r.steps})`
  const parts = [`val completion loss ${r.val_completion_loss === null ? '—' : r.val_completion_loss.toFixed(4)}`]
  if (r.test_completion_loss !== null) parts.push(`test completion loss ${r.test_completion_loss.toFixed(4)}`)
  if (r.test_exact_match !== null) parts.push(`test exact match ${(100 * r.test_exact_match).toFixed(1)}%`)
  if (r.stop_reason === 'early_stopping') parts.push(`early stop at step ${r.steps}`)
  return parts.join(', ')
}

/** Runs (or resumes, or skips) every run of one dataset's grid in order, λ then seed; `report` rewrites the reports. */
async function runGrid(spec: SweepSpec, options: SweepOptions, ctx: SweepContext, report: () => void): Promise<boolean> {
  const stream = options.stream
  const say = (line: string) => stream?.write(line + '\n')
  const dataset = spec.datasets[0].name
  const emit = (e: DistributiveOmit<SweepEvent, 'dataset'>) => options.onEvent?.({ dataset, ...e } as SweepEvent)
  let shared: PreparedData | null = null
  checkSweepFile(spec)
  const m = metricInfo(spec.metric, spec.base)
  const grid = spec.lambdas.flatMap((lambda) => spec.seeds.map((seed) => ({ lambda, seed })))
  const total = grid.length
  const done = grid.filter(({ lambda, seed }) => fs.existsSync(path.join(runDirOf(spec.out, lambda, seed), 'result.json'))).length
  say(`sweep: ${spec.lambdas.length} λ (${spec.lambdas.map(lambdaLabel).join(', ')}) × ${spec.seeds.length} seed${spec.seeds.length === 1 ? '' : 's'} ` +
    `(${spec.seeds.join(', ')}) = ${total} runs in ${spec.out}; metric ${m.label}${done > 0 ? `; ${done} finished already` : ''}`)
  const timings: number[] = []

  for (let k = 0; k < total; k++) {
    const { lambda, seed } = grid[k]
    const dir = runDirOf(spec.out, lambda, seed)
    const tag = `[${k + 1}/${total}] λ = ${lambdaLabel(lambda)}, seed ${seed}`
    const resultFile = path.join(dir, 'result.json')
    // A trained run waiting for its benchmark scores (scoring was interrupted): result.json less the scores.
    const unscoredFile = path.join(dir, 'result.unscored.json')
    if (fs.existsSync(resultFile)) {
      const result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as RunResult
      say(`${tag}: finished already: ${describeResult(result)}`)
      emit({ type: 'skip', index: k, total, lambda, seed, dir, result })
      continue
    }
    if (options.signal?.aborted) {
      emit({ type: 'interrupted', lambda, seed, dir, step: 0 })
      say(`sweep: interrupted before ${tag.slice(tag.indexOf(']') + 2)}; run the same command again to continue`)
      return true // runSweep writes the reports
    }

    const unscored = ctx.benchmarks.length > 0 && fs.existsSync(unscoredFile)
      ? readJsonObject(unscoredFile, 'unscored run result', (m) => new ConfigError(m)) as unknown as RunResult : null
    const t0 = Date.now()
    let result: RunResult
    let finalDir: string | null
    if (unscored !== null) {
      say(`${tag}: trained already; scoring it`)
      emit({ type: 'start', index: k, total, lambda, seed, dir, resumeFrom: unscored.steps })
      result = unscored
      finalDir = path.join(dir, 'final')
    } else {
      const trained = await trainRun(spec, options, { index: k, total, lambda, seed, dir, tag, emit, say, shared })
      if (trained.interrupted) return true // runSweep writes the reports
      shared = trained.shared
      result = trained.result
      finalDir = trained.finalDir
      if (ctx.benchmarks.length > 0 && finalDir !== null) replaceFile(unscoredFile, JSON.stringify(result, null, 2) + '\n')
    }
    const scoringStart = Date.now()
    if (ctx.benchmarks.length > 0 && finalDir !== null) {
      say(`${tag}: scoring the final model on ${ctx.benchmarks.map((b) => b.name).join(', ')}`)
      emit({ type: 'scoring', lambda, seed, dir })
      const tokenizer = shared?.tokenizer ?? await loadTokenizer(spec.base.model)
      let scores: Record<string, BenchmarkScore>
      try {
        scores = await scoreModel(finalDir, tokenizer, spec.base.device, ctx.benchmarks, options.signal)
      } catch (err) {
        if (!options.signal?.aborted) throw err
        emit({ type: 'interrupted', lambda, seed, dir, step: result.steps })
        say(`${tag}: interrupted while scoring (the training is saved); run the same command again to score it`)
        return true
      }
      result = { ...result, benchmarks: scores }
      if (ctx.base !== null) result.vs_base = changeAgainst(scores, ctx.base.benchmarks)
    }
    const ms = Date.now() - t0
    result.seconds = Math.round((result.seconds + (Date.now() - scoringStart) / 1000) * 10) / 10 // training + scoring
    replaceFile(resultFile, JSON.stringify(result, null, 2) + '\n')
    fs.rmSync(unscoredFile, { force: true })
    timings.push(ms)
    const left = grid.slice(k + 1).filter((g) => !fs.existsSync(path.join(runDirOf(spec.out, g.lambda, g.seed), 'result.json'))).length
    const mean = timings.reduce((a, b) => a + b, 0) / timings.length
    say(`${tag}: ${describeResult(result)} (${formatDuration(ms)}${left > 0 ? `; ${left} run${left === 1 ? '' : 's'} left, about ${formatDuration(left * mean)}` : ''})`)
    emit({ type: 'finish', index: k, total, lambda, seed, dir, result })
    report()
  }
  return false
}

interface RunPlace {
  index: number
  total: number
  lambda: number
  seed: number
  dir: string
  tag: string
  emit: (e: DistributiveOmit<SweepEvent, 'dataset'>) => void
  say: (line: string) => void
  shared: PreparedData | null
}

type Trained = { interrupted: true } | { interrupted: false; result: RunResult; shared: PreparedData | null; finalDir: string | null }

/** Trains one run (or resumes it from its last checkpoint); its result without benchmark scores. */
async function trainRun(spec: SweepSpec, options: SweepOptions, run: RunPlace): Promise<Trained> {
  const { index, total, lambda, seed, dir, tag, emit, say } = run
  const stream = options.stream
  // A run with a complete checkpoint resumes with its saved config; one without starts over.
  const checkpoint = new RunDir(dir).checkpoints().pop()
  let config: TrainConfig
  let priorMs = 0
  if (checkpoint !== undefined) {
    const file = path.join(dir, 'config.json')
    const saved = readJsonObject(file, 'run configuration', (m) => new ConfigError(m))
    if (saved.promptLossWeight !== lambda || saved.seed !== seed) {
      throw new ConfigError(`${file}: a run of λ = ${saved.promptLossWeight}, seed ${saved.seed} in the place of λ = ${lambda}, seed ${seed}`)
    }
    config = resolveConfig({ source: file, values: { ...saved, device: spec.base.device, resume: dir, out: dir } })
    priorMs = (JSON.parse(fs.readFileSync(path.join(checkpoint.dir, 'trainer_state.json'), 'utf8')) as TrainerState).elapsedMs
    say(`${tag}: resuming ${dir} from step ${checkpoint.step}`)
  } else {
    fs.rmSync(dir, { recursive: true, force: true })
    config = resolveConfig({ source: 'the sweep', values: { ...spec.base, promptLossWeight: lambda, seed, out: dir, resume: null } })
    say(`${tag}: training → ${dir}`)
  }
  emit({ type: 'start', index, total, lambda, seed, dir, resumeFrom: checkpoint?.step ?? null })

  const trainer: Trainer = new Trainer(config, { data: run.shared })
  let progress: Progress | null = null
  const label = `λ=${lambdaLabel(lambda)} s${seed}`
  trainer.on('log', (line: string) => {
    if (!line.startsWith('warning')) return
    if (progress) progress.log(`${tag}: ${line}`)
    else say(`${tag}: ${line}`)
  })
  if (stream) {
    trainer.on('start', (st: { totalSteps: number; startStep: number }) => {
      progress = new Progress({ total: st.totalSteps, stream, label })
      progress.update(st.startStep, {})
    })
    trainer.on('generate-start', (g: { total: number }) => {
      progress?.finish()
      progress = new Progress({ total: g.total, stream, label: `${label} test answers` })
    })
    trainer.on('generate-progress', (g: { done: number }) => progress?.update(g.done, {}))
  }
  trainer.on('step', (s: StepMetrics) => {
    progress?.update(s.step, { loss: s.loss.toFixed(4), compl: s.completion_loss === null ? '—' : s.completion_loss.toFixed(4) })
    emit({ type: 'step', lambda, seed, step: s.step })
  })
  const t0 = Date.now()
  let r: TrainResult
  try {
    r = await trainer.fit({ signal: options.signal })
  } finally {
    ;(progress as Progress | null)?.finish()
  }
  if (r.stopReason === 'interrupted') {
    emit({ type: 'interrupted', lambda, seed, dir, step: r.steps })
    say(`${tag}: interrupted at step ${r.steps} (checkpoint saved); run the same command again to continue`)
    return { interrupted: true }
  }
  const result: RunResult = {
    lambda, seed, stop_reason: r.stopReason,
    val_completion_loss: r.bestValCompletionLoss,
    test_completion_loss: r.test?.loss?.completionLoss ?? null,
    test_exact_match: r.test?.accuracy ?? null,
    steps: r.steps,
    seconds: Math.round((priorMs + Date.now() - t0) / 100) / 10,
  }
  return { interrupted: false, result, shared: trainer.prepared ?? run.shared, finalDir: r.finalDir }
}

/** A model directory's scores on every benchmark (f32, batched; the same few-shot draws for every model). */
async function scoreModel(dir: string, tokenizer: Tokenizer, device: TrainConfig['device'], benchmarks: readonly Benchmark[],
  signal?: AbortSignal): Promise<Record<string, BenchmarkScore>> {
  const model = await loadModel(dir, { device, precision: 'f32', maxBatch: BENCHMARK_BATCH })
  try {
    const out: Record<string, BenchmarkScore> = {}
    for (const b of benchmarks) out[b.name] = await scoreBenchmark(model, tokenizer, b, { maxBatch: BENCHMARK_BATCH, signal })
    return out
  } finally {
    model.dispose()
  }
}

/** run − base for each benchmark both have. */
export function changeAgainst(run: Record<string, BenchmarkScore>, base: Record<string, BenchmarkScore>): Record<string, AccPair> {
  const out: Record<string, AccPair> = {}
  for (const [name, s] of Object.entries(run)) {
    const b = base[name]
    if (b !== undefined) out[name] = { acc: s.acc - b.acc, acc_norm: s.acc_norm - b.acc_norm }
  }
  return out
}

/** `plwtune stats`'s verdict for a dataset in one line: its completion/prompt ratio and what it means (ts/data/stats.ts). */
async function statsLine(spec: SweepSpec): Promise<string> {
  const b = spec.base
  const tokenizer = await loadTokenizer(b.model)
  const read = b.data !== null ? await readDataset(b.data, { format: b.format, skipInvalid: b.skipInvalid })
    : recordsFromObjects(generateDemoRecords(b.demoRecords, b.dataSeed), { name: 'built-in demo set' })
  const s = datasetStats(read.records, tokenizer)
  const ratio = s.completionPromptRatio === null ? 'none (no prompt tokens)' : s.completionPromptRatio.toFixed(3)
  return `${s.records} records, completion/prompt ratio ${ratio}: ${s.verdict}, recommended λ ${s.recommendedPlw}`
}

/** The base model's scores: base.json when it holds these benchmarks, else scored now and saved. */
async function baseScoresOf(spec: SweepSpec, benchmarks: readonly Benchmark[], say: (l: string) => void,
  signal?: AbortSignal): Promise<BaseScores | null> {
  if (benchmarks.length === 0 || spec.base.model === null) return null
  const file = path.join(spec.out, 'base.json')
  if (fs.existsSync(file)) {
    const saved = JSON.parse(fs.readFileSync(file, 'utf8')) as BaseScores
    if (saved.model === spec.base.model && benchmarks.every((b) => saved.benchmarks[b.name]?.shots === b.shots)) return saved
  }
  say(`sweep: scoring the base model ${spec.base.model} on ${benchmarks.map((b) => b.name).join(', ')}`)
  const tokenizer = await loadTokenizer(spec.base.model)
  const base: BaseScores = { model: spec.base.model, benchmarks: await scoreModel(spec.base.model, tokenizer, spec.base.device, benchmarks, signal) }
  fs.mkdirSync(spec.out, { recursive: true })
  replaceFile(file, JSON.stringify(base, null, 2) + '\n')
  return base
}

/** Every dataset's reports, then the study's (scores.csv, plots, analysis) into results.md. */
function writeAll(spec: SweepSpec, ctx: SweepContext): Omit<SweepOutcome, 'interrupted'> {
  const several = spec.datasets.length > 1
  const started = spec.datasets.filter((d, i) => i === 0 || fs.existsSync(path.join(d.out, 'sweep.json')))
  const datasets = started.map((d) => {
    const ds = datasetSpec(spec, d)
    const summary = writeReports(ds, ctx.command)
    return { name: d.name, dir: d.out, summary, results: readResults(ds), statsLine: ctx.statsLines.get(d.name) ?? null }
  })
  const file = path.join(spec.out, 'results.md')
  // A sweep with nothing to analyse (no --benchmarks, no generated test answers) keeps its report as it was, with the stats line.
  const scored = ctx.benchmarks.length > 0 || datasets.some((d) => d.results.some((r) => typeof r.test_exact_match === 'number'))
  if (!scored && !several) {
    const d = datasets[0]
    if (d.statsLine !== null) replaceFile(file, fs.readFileSync(file, 'utf8').trimEnd() + `\n\n\`plwtune stats\` (${d.name}): ${d.statsLine}\n`)
    return { summary: d.summary, datasets: datasets.map(({ name, summary, statsLine }) => ({ name, summary, statsLine })), analysis: null }
  }
  const study = writeStudy(spec.out, datasets, spec.lambdas, spec.seeds, ctx.base, spec.alpha, ctx.baseNote)
  if (several) {
    const head = ['# Prompt loss weight study', '', `${spec.datasets.length} datasets (${spec.datasets.map((d) => d.name).join(', ')}), ` +
      `each ${spec.lambdas.length} λ × ${spec.seeds.length} seed${spec.seeds.length === 1 ? '' : 's'}; every dataset's sweep is in its own directory.`]
    if (ctx.command) head.push('', `\`${ctx.command}\``)
    replaceFile(file, [...head, '', study.markdown].join('\n'))
  } else {
    const stats = datasets[0].statsLine !== null ? `\n\`plwtune stats\` (${datasets[0].name}): ${datasets[0].statsLine}\n` : ''
    replaceFile(file, fs.readFileSync(file, 'utf8').trimEnd() + '\n' + stats + '\n' + study.markdown.replace(/^`plwtune stats`: .*\n\n/m, ''))
  }
  return { summary: datasets[0].summary, datasets: datasets.map(({ name, summary, statsLine }) => ({ name, summary, statsLine })), analysis: study.analysis }
}

/**
 * Runs the sweep: the base model scored once (with --benchmarks and --model), then each dataset's
 * grid (its data read and encoded once, shared by its runs); the reports and the study's
 * analysis are rewritten after every run and at the end.
 */
export async function runSweep(spec: SweepSpec, options: SweepOptions = {}): Promise<SweepOutcome> {
  const say = (line: string) => options.stream?.write(line + '\n')
  if (spec.datasets.length > 1) checkSweepFile(spec)
  else checkSweepFile(datasetSpec(spec, spec.datasets[0]))
  const benchmarks = spec.benchmarks.length > 0 ? await loadBenchmarks(spec.benchmarks) : []
  let base: BaseScores | null = null
  let baseInterrupted = false
  try {
    base = await baseScoresOf(spec, benchmarks, say, options.signal)
  } catch (err) {
    if (!options.signal?.aborted) throw err
    baseInterrupted = true // the grid below stops before its first run
    say('sweep: interrupted while scoring the base model')
  }
  const ctx: SweepContext = {
    benchmarks, base, statsLines: new Map(), command: options.command,
    baseNote: benchmarks.length === 0 ? 'not measured (no --benchmarks).'
      : baseInterrupted ? 'not measured yet: the sweep was interrupted while scoring the base model.'
      : base !== null ? `the base model ${base.model} scored on the same benchmarks (base.json); the tables show each λ's change against it.`
        : 'not measured: without --model the runs start from a fresh initialization, so there is no base model to compare with.',
  }
  for (const d of spec.datasets) {
    const ds = datasetSpec(spec, d)
    ctx.statsLines.set(d.name, await statsLine(ds))
    if (spec.datasets.length > 1) say(`dataset ${d.name} (${d.data ?? 'the built-in demo set'}): ${ctx.statsLines.get(d.name)}`)
    const interrupted = await runGrid(ds, options, ctx, () => writeAll(spec, ctx))
    if (interrupted) return { interrupted: true, ...writeAll(spec, ctx) }
  }
  return { interrupted: false, ...writeAll(spec, ctx) }
}
