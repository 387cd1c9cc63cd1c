/**
 * The trainer: data → prompt-loss-weighted batches → optimizer steps on the engine, with
 * evaluation, early stopping on the validation completion loss, checkpoints, exact resume,
 * and events. The CLI (ts/commands/train.ts) is one user of it; a Node service is another:
 *
 *   const trainer = new Trainer(resolveConfig({ source: 'api', values: { data: 'a.jsonl', promptLossWeight: 0.1 } }))
 *   trainer.on('step', (m) => console.log(m.step, m.loss))
 *   const result = await trainer.fit({ signal: controller.signal })
 *
 * Everything heavy runs in native code off the event loop; between steps the loop yields, so
 * a server embedding the trainer stays responsive.
 */
import { EventEmitter } from 'node:events'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { generateDemoRecords } from '../demo/tasks'
import { BatchLoader, Step } from '../data/loader'
import { EncodedExample } from '../data/example'
import { describeEncode, encodeDataset } from '../data/encode'
import { readDataset, recordsFromObjects, describeRead } from '../data/read'
import { DataRecord } from '../data/records'
import { resolveTemplate } from '../data/resolve-template'
import { splitDataset } from '../data/split'
import { Template } from '../data/template'
import { ByteTokenizer, Tokenizer } from '../data/tokenizer'
import { HfTokenizer } from '../data/hf-tokenizer'
import { Model, baseDirOf, initModel, loadModel, planMemory, resolveDevice } from '../model'
import type { ParameterInfo } from '../native'
import { resolveLoraTargets } from '../lora/settings'
import { prepareOutputDir } from '../output-path'
import { ModelConfig, describeConfig, llamaConfig, maxPositions } from '../arch'
import { readConfig } from '../checkpoint'
import { TrainingMeta, checkTokenizerFits } from '../model-dir'
import { Answer, generateAnswers } from '../eval/generation'
import { evaluateLoss, SplitLoss } from './evaluate'
import { renderLossPlot } from './plot'
import { RunDir, RunDirError, TokenizerSource, TrainerState } from './run-dir'
import { learningRate, Schedule } from './schedule'
import { TrainConfig, parseSize } from './config'
import type { SaveDtype } from '../checkpoint'

const SAVE_DTYPES: Record<TrainConfig['saveDtype'], SaveDtype | 'auto'> = { auto: 'auto', float32: 'F32', bfloat16: 'BF16', float16: 'F16' }

export interface StepMetrics {
  step: number
  epoch: number
  loss: number
  completion_loss: number | null
  prompt_loss: number | null
  lr: number
  tokens: number
  tokens_total: number
  grad_norm: number
  tokens_per_s: number
  elapsed_s: number
  val_loss?: number | null
  val_completion_loss?: number | null
  val_prompt_loss?: number | null
}

export type StopReason = 'completed' | 'early_stopping' | 'interrupted' | 'non_finite'

export interface TrainResult {
  stopReason: StopReason
  steps: number
  totalSteps: number
  runDir: string
  finalDir: string | null
  bestDir: string | null
  bestValCompletionLoss: number | null
  lastCheckpoint: string | null
  test: { accuracy: number | null; answers: Answer[]; loss: SplitLoss | null } | null
  message: string
}

/**
 * A run's data as prepare() makes it: read, split and encoded, with its tokenizer and template.
 * A sweep hands one run's to the next (the constructor's `options.data`), so each dataset is read
 * and tokenized once; `key` names every setting the result depends on, and a trainer whose own
 * key differs reads the data itself.
 */
export interface PreparedData {
  key: string
  meta: TrainingMeta
  tokenizer: Tokenizer
  tokenizerSource: TokenizerSource
  template: Template
  train: EncodedExample[]
  val: EncodedExample[]
  testRecords: DataRecord[]
  test: EncodedExample[]
  maxLength: number
}
type Prepared = PreparedData

export class Trainer extends EventEmitter {
  readonly config: TrainConfig
  private shared: PreparedData | null
  /** The data of the latest prepare() (also fit's): what a sweep hands the next run. */
  prepared: PreparedData | null = null

  /** File paths (model, data, valData, out, resume) are made absolute: the run's config.json
   *  then names the same files whatever directory a resume is started from. */
  constructor(config: TrainConfig, options: { data?: PreparedData | null } = {}) {
    super()
    this.shared = options.data ?? null
    const abs = (p: string | null) => (p === null ? null : path.resolve(p))
    this.config = { ...config, model: abs(config.model), data: abs(config.data), valData: abs(config.valData),
      out: path.resolve(config.out), resume: abs(config.resume) }
  }

  private log(line: string): void {
    this.emit('log', line)
  }

  /** Reads, splits and tokenizes the data; picks the tokenizer and template. `positionsFrom` names where nPositions comes from. */
  async prepare(nPositions: number, positionsFrom = 'the model', startedAt?: Date): Promise<Prepared> {
    const c = this.config
    // Everything the result depends on but λ (only in meta) and the seed (the data's is dataSeed).
    // The start's date reaches a chat template's strftime_now; a day's difference reads anew.
    const key = JSON.stringify([c.data, c.valData, c.format, c.skipInvalid, c.valSplit, c.testSplit, c.dataSeed, c.demoRecords,
      c.template, c.model, c.maxLength, nPositions, positionsFrom, (startedAt ?? new Date()).toISOString().slice(0, 10)])
    if (this.shared !== null && this.shared.key === key) {
      const d = this.shared
      this.log(`data: shared with an earlier run (${d.train.length} train, ${d.val.length} val, ${d.test.length} test examples, read and encoded once)`)
      this.prepared = { ...d, meta: { ...d.meta, promptLossWeight: c.promptLossWeight } }
      return this.prepared
    }
    let tokenizer: Tokenizer
    let tokenizerSource: TokenizerSource
    if (c.model !== null) {
      if (!fs.existsSync(path.join(c.model, 'tokenizer.json'))) {
        throw new Error(`${c.model}: no tokenizer.json (the model directory needs its Hugging Face tokenizer files)`)
      }
      tokenizer = await HfTokenizer.fromDir(c.model)
      checkTokenizerFits(tokenizer, c.model, c.model) // before the run exists: every id needs an embedding row
      tokenizerSource = { modelDir: c.model }
    } else {
      tokenizer = new ByteTokenizer()
      tokenizerSource = { byte: { specialTokens: (tokenizer as ByteTokenizer).specialTokens, maxLength: c.init.nPositions } }
    }
    const read = async (file: string) => {
      const r = await readDataset(file, { format: c.format, skipInvalid: c.skipInvalid })
      this.log(describeRead(r.summary))
      return r
    }
    const main = c.data !== null ? await read(c.data)
      : recordsFromObjects(generateDemoRecords(c.demoRecords, c.dataSeed), { name: 'built-in demo set' })
    if (c.data === null) this.log(`data: the built-in demo set, ${main.records.length} records (${describeRead(main.summary)})`)
    const splits = splitDataset(main.records, { val: c.valData !== null ? 0 : c.valSplit, test: c.testSplit, seed: c.dataSeed })
    const valRecords = c.valData !== null ? (await read(c.valData)).records : splits.val
    const template = resolveTemplate(c.template === 'auto' ? undefined : c.template, { format: main.summary.format, tokenizer,
      now: startedAt })
    const maxLength = c.maxLength > 0 ? Math.min(c.maxLength, nPositions) : nPositions
    if (c.maxLength > nPositions) {
      this.log(`note: --max-length ${c.maxLength} is more than the model's ${nPositions} positions (${positionsFrom}); ` +
        `using ${nPositions}, which the run's config.json records`)
    }
    const encode = (records: DataRecord[], name: string) => {
      if (records.length === 0) return [] as EncodedExample[]
      const r = encodeDataset(records, template, tokenizer, { maxLength, skipTooLong: c.skipInvalid, skipInvalid: c.skipInvalid,
        positions: { count: nPositions, from: positionsFrom } })
      this.log(`${name}: ${describeEncode(r.stats)}`)
      for (const w of r.warnings.format()) this.log(`warning: ${w}`)
      return r.examples
    }
    const train = encode(splits.train, `train (template ${template.name}, λ = ${c.promptLossWeight})`)
    if (train.length === 0) throw new Error('no training examples left after splitting and encoding')
    const val = encode(valRecords, 'val')
    const test = encode(splits.test, 'test')
    const meta: TrainingMeta = { template: c.template === 'auto' ? template.name : c.template, format: main.summary.format,
      promptLossWeight: c.promptLossWeight, maxLength }
    this.prepared = { key, meta, tokenizer, tokenizerSource, template, train, val, testRecords: splits.test, test, maxLength }
    return this.prepared
  }

  /**
   * Runs the training to its end, an early stop, a non-finite loss, or the signal. A start that
   * fails before the run exists (a model, tokenizer or data the checks refuse) leaves no
   * directory behind: the --out directories this call made are removed again while empty.
   */
  async fit(options: { signal?: AbortSignal } = {}): Promise<TrainResult> {
    const made = missingDirs(this.config.out)
    try {
      return await this.fitRun(options)
    } catch (err) {
      for (const dir of made) { try { fs.rmdirSync(dir) } catch { break } } // innermost first; a non-empty one stays
      throw err
    }
  }

  private async fitRun(options: { signal?: AbortSignal }): Promise<TrainResult> {
    const c = this.config
    if (c.resume === null) RunDir.prepareFresh(c.out, c.overwrite) // a new run never mixes with another or with the user's files
    else checkResume(c)
    prepareOutputDir(c.out, '--out') // before any work: a bad path fails now, not after the data and the model
    const run = new RunDir(c.out)
    for (const left of run.cleanLeftovers()) this.log(`removed ${left}, left by an interrupted save`)
    const device = resolveDevice(c.device)
    const microBatch = c.microBatchSize > 0 ? c.microBatchSize : c.batchSize

    // The model first (its n_positions bounds the example length), then the data.
    let state: TrainerState = {
      globalStep: 0, position: { epoch: 0, step: 0 }, adamStep: 0, bestValCompletionLoss: null, bestStep: null,
      evalsWithoutImprovement: 0, tokensSeen: 0, elapsedMs: 0,
    }
    let model: Model
    const resumeFrom = c.resume !== null ? new RunDir(c.resume).checkpoints().pop() : undefined
    if (c.resume !== null && resumeFrom === undefined) throw new Error(`${c.resume}: no complete checkpoint to resume from`)
    const positions = resumeFrom !== undefined ? readPositions(baseDirOf(resumeFrom.dir))
      : c.model !== null ? readPositions(c.model) : c.init.nPositions
    const positionsFrom = resumeFrom !== undefined ? path.join(baseDirOf(resumeFrom.dir), 'config.json')
      : c.model !== null ? path.join(c.model, 'config.json') : '--init-n-positions'
    // A chat template's strftime_now renders the run's start, also when it is resumed another day.
    const startedAt = (c.resume !== null ? new RunDir(c.resume).createdAt() : null) ?? new Date()
    const data = await this.prepare(positions, positionsFrom, startedAt)
    run.meta = data.meta
    run.save = { dtype: SAVE_DTYPES[c.saveDtype], maxShardBytes: parseSize(c.maxShardSize) ?? undefined }
    const modelOptions = { device, precision: c.precision, recompute: c.recompute, maxBatch: microBatch, maxSeqLen: data.maxLength - 1,
      loraSeed: c.seed }
    if (resumeFrom !== undefined) {
      const loaded = await RunDir.loadCheckpoint(resumeFrom.dir, modelOptions)
      model = loaded.model
      state = loaded.state
      const changed = run.changedDataFiles()
      if (changed.length > 0 && !c.allowDataChange) {
        throw new RunDirError(`resume ${c.resume}: ${changed.join('; ')} since the run started, so the resumed run would not be ` +
          'the one it continues; restore the file, or pass --allow-data-change to continue anyway')
      }
      for (const line of changed) this.log(`warning: ${line} since the run started (--allow-data-change)`)
      run.truncateMetrics(state.globalStep)
      this.log(`resuming ${c.resume} from ${path.relative(process.cwd(), resumeFrom.dir) || resumeFrom.dir} (step ${state.globalStep})`)
    } else {
      const lora = c.loraR > 0 && c.model !== null ? { r: c.loraR, alpha: c.loraAlpha, dropout: c.loraDropout, rslora: c.useRslora,
        targets: resolveLoraTargets(readConfig(c.model).arch, c.loraTargets), seed: c.seed } : undefined
      model = c.model !== null ? await loadModel(c.model, { ...modelOptions, lora })
        : await initModel(freshConfig(c, data.tokenizer.vocabSize), { ...modelOptions, seed: c.seed })
      run.create({ ...c, maxLength: c.maxLength > 0 ? data.maxLength : 0, resume: null, allowDataChange: false }, startedAt) // the effective maxLength
      run.recordDataFiles([c.data, c.valData])
    }
    const info = model.info
    const count = (ps: ParameterInfo[]) => ps.reduce((s, p) => s + p.shape.reduce((a, d) => a * d, 1), 0)
    const params = count(model.baseParameters())
    this.log(`model: ${describeConfig(model.config)}, ` +
      `${(params / 1e6).toFixed(2)}M parameters on ${info.device} (${info.precision}); memory ${(info.memory.total / 2 ** 20).toFixed(0)} MiB ` +
      `(activations ${(info.memory.activations / 2 ** 20).toFixed(0)} MiB for ${microBatch} × ${data.maxLength - 1}, recompute ` +
      `${info.spec.recompute}${c.recompute === 'auto' ? ' (auto)' : ''})`)
    if (model.lora) {
      const trainable = count(model.adapterParameters())
      this.log(`LoRA r=${model.lora.r} alpha=${model.lora.alpha}${model.lora.rslora ? ' (rsLoRA)' : ''} dropout=${model.lora.dropout} on ` +
        `${model.lora.targets.join(',')}: ${(trainable / 1e6).toFixed(3)}M trainable (${(100 * trainable / params).toFixed(2)}% of the base, frozen); ` +
        `base ${model.base?.dir}`)
      const full = planMemory(model.config, { device: info.device, precision: info.precision, maxBatch: microBatch, maxSeqLen: data.maxLength - 1 })
      const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(bytes < 10 * 2 ** 20 ? 1 : 0)} MiB`
      const state = (m: typeof full) => m.parameters + m.gradients + m.optimizer
      this.log(`memory with LoRA ${mib(info.memory.total)} (state ${mib(state(info.memory))}); full fine-tuning would need ` +
        `${mib(full.total)} (state ${mib(state(full))})`)
    }

    const loader = new BatchLoader(data.train, {
      batchSize: c.batchSize, microBatchSize: microBatch, promptLossWeight: c.promptLossWeight, seed: c.seed,
      shuffle: c.shuffle, groupByLength: c.groupByLength, packing: c.packing, maxLength: data.maxLength, padId: data.tokenizer.eosId,
    })
    const totalSteps = c.maxSteps > 0 ? c.maxSteps : c.epochs * loader.stepsPerEpoch
    const schedule: Schedule = { lr: c.lr, warmupSteps: c.warmupSteps, totalSteps, kind: c.lrSchedule, minLrRatio: c.minLrRatio }
    const lossOptions = { promptLossWeight: c.promptLossWeight, microBatchSize: microBatch, padId: data.tokenizer.eosId,
      packing: c.packing, maxLength: data.maxLength }
    this.emit('start', { totalSteps, stepsPerEpoch: loader.stepsPerEpoch, startStep: state.globalStep, examples: data.train.length })

    const started = Date.now() - state.elapsedMs
    let stopReason: StopReason = 'completed'
    let message = ''
    let lastCheckpoint: string | null = resumeFrom?.dir ?? null
    const saveCheckpoint = async () => {
      state.elapsedMs = Date.now() - started
      state.adamStep = model.adamStep
      lastCheckpoint = await run.saveCheckpoint(model, data.tokenizerSource, state, c.keepCheckpoints)
      this.emit('checkpoint', { step: state.globalStep, dir: lastCheckpoint })
    }
    const plotPoints = rebuildPlot(run)

    // The next step is collated while the engine computes the current one (the native work
    // runs off the event loop), so batching costs the step no time.
    let prefetched: Step | null = null
    while (state.globalStep < totalSteps) {
      if (options.signal?.aborted) {
        stopReason = 'interrupted'
        break
      }
      const step: Step = prefetched ?? loader.step(state.position.epoch, state.position.step)
      prefetched = null
      const lr = learningRate(state.globalStep, schedule)
      if (step.normalizer === 0) { // only possible with chat weights of 0 everywhere: nothing to learn
        this.log(`warning: step ${state.globalStep + 1} has no weighted target (all weights 0); skipped`)
        state.globalStep++
        state.position = loader.next(state.position)
        continue
      }
      const t0 = Date.now()
      // One native call runs every micro-batch and AdamW; the next step is collated meanwhile.
      const pending = model.step(step.microBatches, { lr, beta1: c.adamBeta1, beta2: c.adamBeta2, eps: c.adamEps,
        weightDecay: c.weightDecay, maxGradNorm: c.maxGradNorm }, step.normalizer)
      let prefetchError: unknown = null
      if (state.globalStep + 1 < totalSteps) {
        try {
          const next = loader.next(state.position)
          prefetched = loader.step(next.epoch, next.step)
        } catch (err) {
          prefetchError = err // raised once the step in flight has settled, never left unhandled
        }
      }
      const r = await pending
      if (prefetchError !== null) throw prefetchError
      const loss = r.lossSum / step.normalizer
      if (r.skipped || !Number.isFinite(loss)) {
        stopReason = 'non_finite'
        message = `the loss became ${loss} at step ${state.globalStep + 1} (epoch ${step.epoch + 1}); stopped before ` +
          `updating the weights. ${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}.` : 'No checkpoint was saved yet.'} ` +
          'Try a lower --lr or --max-grad-norm.'
        break
      }
      const opt = r
      if (!Number.isFinite(opt.gradNorm)) {
        stopReason = 'non_finite'
        message = `the gradient norm became ${opt.gradNorm} at step ${state.globalStep + 1}; the weights of this run are ` +
          `no longer usable. ${lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}.` : 'No checkpoint was saved yet.'}`
        break
      }
      const [cSum, cCount, pSum, pCount] = [r.completionLossSum, r.completionCount, r.promptLossSum, r.promptCount]
      state.globalStep++
      state.tokensSeen += step.tokens
      const epochEnded = step.step === loader.stepsPerEpoch - 1
      state.position = loader.next(state.position)
      const seconds = (Date.now() - t0) / 1000
      const metrics: StepMetrics = {
        step: state.globalStep, epoch: step.epoch + 1, loss,
        completion_loss: cCount > 0 ? cSum / cCount : null, prompt_loss: pCount > 0 ? pSum / pCount : null,
        lr, tokens: step.tokens, tokens_total: state.tokensSeen, grad_norm: opt.gradNorm,
        tokens_per_s: step.tokens / Math.max(seconds, 1e-9), elapsed_s: (Date.now() - started) / 1000,
      }
      const last = state.globalStep === totalSteps
      const evalNow = data.val.length > 0 && (c.evalEvery > 0 ? state.globalStep % c.evalEvery === 0 || last : epochEnded || last)
      let improved = false
      if (evalNow) {
        const v = await evaluateLoss(model, data.val, lossOptions)
        metrics.val_loss = v.loss
        metrics.val_completion_loss = v.completionLoss
        metrics.val_prompt_loss = v.promptLoss
        if (v.completionLoss !== null && (state.bestValCompletionLoss === null || v.completionLoss < state.bestValCompletionLoss)) {
          state.bestValCompletionLoss = v.completionLoss
          state.bestStep = state.globalStep
          state.evalsWithoutImprovement = 0
          improved = true
        } else {
          state.evalsWithoutImprovement++
        }
        this.emit('eval', { step: state.globalStep, ...v, best: state.bestValCompletionLoss, improved })
      }
      if (state.globalStep % c.logEvery === 0 || evalNow || last) run.appendMetrics(metrics)
      this.emit('step', metrics)
      plotPoints.add(metrics)
      if (evalNow) run.writePlot(plotPoints.svg())
      if (improved) await run.saveModelDir('best', model, data.tokenizerSource)
      if (c.saveEvery > 0 && state.globalStep % c.saveEvery === 0 && !last) await saveCheckpoint()
      if (evalNow && c.earlyStoppingPatience > 0 && state.evalsWithoutImprovement >= c.earlyStoppingPatience) {
        stopReason = 'early_stopping'
        message = `validation completion loss did not improve for ${c.earlyStoppingPatience} evaluations; best ` +
          `${state.bestValCompletionLoss?.toFixed(4)} at step ${state.bestStep}`
        break
      }
      await new Promise((resolve) => setImmediate(resolve)) // let the event loop breathe between steps
    }

    if (stopReason === 'non_finite') {
      this.emit('stopped', { reason: stopReason, message })
      const result: TrainResult = { stopReason, steps: state.globalStep, totalSteps, runDir: c.out, finalDir: null,
        bestDir: fs.existsSync(path.join(c.out, 'best')) ? path.join(c.out, 'best') : null,
        bestValCompletionLoss: state.bestValCompletionLoss, lastCheckpoint, test: null, message }
      model.dispose()
      return result
    }
    await saveCheckpoint()
    run.writePlot(plotPoints.svg())
    let finalDir: string | null = null
    let test: TrainResult['test'] = null
    if (stopReason !== 'interrupted') {
      finalDir = await run.saveModelDir('final', model, data.tokenizerSource)
      if (data.testRecords.length > 0) {
        const loss = data.test.length > 0 ? await evaluateLoss(model, data.test, lossOptions) : null
        let answers: Answer[] = []
        let accuracy: number | null = null
        if (c.generateEval > 0) {
          const records = data.testRecords.slice(0, c.generateEval)
          this.emit('generate-start', { total: records.length })
          const g = await generateAnswers(model, data.tokenizer, data.template, records, {
            maxNewTokens: c.maxNewTokens, onProgress: (done) => this.emit('generate-progress', { done, total: records.length }),
          })
          answers = g.answers
          accuracy = g.accuracy
          run.writeFile('test_responses.jsonl', answers.map((a) => JSON.stringify(a) + '\n').join(''))
        }
        test = { accuracy, answers, loss }
      }
      if (message === '') message = `trained ${state.globalStep} steps`
    } else {
      message = `interrupted at step ${state.globalStep}; resume with --resume ${c.out}`
    }
    const bestDir = fs.existsSync(path.join(c.out, 'best')) ? path.join(c.out, 'best') : null
    const result: TrainResult = { stopReason, steps: state.globalStep, totalSteps, runDir: c.out, finalDir, bestDir,
      bestValCompletionLoss: state.bestValCompletionLoss, lastCheckpoint, test, message }
    model.dispose()
    return result
  }
}

/**
 * The one set of checks of a resume, whatever asked for it (--resume, a sweep, the library):
 * the run continues in its own directory, with its own saved configuration (only where the
 * work runs may differ), so the result is the uninterrupted run's.
 */
function checkResume(c: TrainConfig): void {
  const dir = c.resume as string
  if (path.resolve(c.out) !== path.resolve(dir)) {
    throw new RunDirError(`resume ${dir}: a resumed run continues in its own directory, but out is ${c.out}`)
  }
  if (!fs.existsSync(path.join(dir, 'config.json'))) throw new RunDirError(`resume ${dir}: no config.json there (not a plwtune run directory)`)
  const saved = new RunDir(dir).readConfig()
  const free = new Set(['resume', 'out', 'device', 'recompute', 'overwrite', 'allowDataChange'])
  // maxLength compares as the effective length (capped at the model's positions): runs record that one
  const newest = new RunDir(dir).checkpoints().pop()
  const positions = newest !== undefined ? readPositions(baseDirOf(newest.dir)) : null
  const effective = (x: unknown) => typeof x !== 'number' || positions === null ? x : x > 0 ? Math.min(x, positions) : positions
  // paths saved relative by older versions are compared as the resume's own (absolute) paths
  const same = (k: string) => {
    if (k === 'maxLength') return effective(c.maxLength) === effective(saved[k])
    const now = (c as unknown as Record<string, unknown>)[k]
    const then = typeof saved[k] === 'string' && ['model', 'data', 'valData'].includes(k) ? path.resolve(saved[k] as string) : saved[k]
    return JSON.stringify(now) === JSON.stringify(then)
  }
  const differ = Object.keys(c).filter((k) => !free.has(k) && k in saved && !same(k))
  if (differ.length > 0) {
    throw new RunDirError(`resume ${dir}: the run was started with other settings (${differ.map((k) =>
      `${k}: ${JSON.stringify(saved[k])} there, ${JSON.stringify((c as unknown as Record<string, unknown>)[k])} now`).join('; ')}); ` +
      'a resume continues the run as it was configured')
  }
}

function readPositions(modelDir: string): number {
  return maxPositions(readConfig(modelDir))
}

/** `dir` and its parents that do not exist yet, innermost first. */
function missingDirs(dir: string): string[] {
  const out: string[] = []
  for (let at = path.resolve(dir); !fs.existsSync(at) && path.dirname(at) !== at; at = path.dirname(at)) out.push(at)
  return out
}

/** The config of a fresh model (no --model): `init` sizes in the `initArch` architecture. */
export function freshConfig(c: Pick<TrainConfig, 'init' | 'initArch'>, vocabSize: number): ModelConfig {
  const { nLayer, nHead, nEmbd, nPositions, nKvHead } = c.init
  if (c.initArch === 'gpt2') return { arch: 'gpt2', nLayer, nHead, nEmbd, nPositions, vocabSize }
  return llamaConfig({ family: c.initArch, vocabSize, numLayers: nLayer, numHeads: nHead, numKvHeads: nKvHead !== undefined && nKvHead > 0 ? nKvHead : nHead,
    hiddenSize: nEmbd, headDim: Math.floor(nEmbd / nHead), maxPositions: nPositions })
}

/** The loss plot's series, rebuilt from metrics.jsonl on resume so the picture stays whole. */
function rebuildPlot(run: RunDir): { add(m: StepMetrics): void; svg(): string } {
  const train: Array<[number, number]> = []
  const val: Array<[number, number]> = []
  const valCompletion: Array<[number, number]> = []
  const add = (m: Partial<StepMetrics> & { step: number }) => {
    if (typeof m.loss === 'number') train.push([m.step, m.loss])
    if (typeof m.val_loss === 'number') val.push([m.step, m.val_loss])
    if (typeof m.val_completion_loss === 'number') valCompletion.push([m.step, m.val_completion_loss])
  }
  for (const m of run.readMetrics()) add(m as unknown as StepMetrics)
  return {
    add,
    svg: () => renderLossPlot([
      { name: 'train loss (weighted)', points: train },
      { name: 'val loss (weighted)', points: val },
      { name: 'val completion loss', points: valCompletion },
    ], { title: `plwtune — ${path.basename(path.resolve(run.dir))}`, xLabel: 'optimizer step', yLabel: 'cross-entropy (nats)' }),
  }
}
