/**
 * GPT-2 models: creation, training micro-steps, evaluation and logits, over the native
 * engine (native/engine). Checkpoint files are ts/checkpoint.ts's business.
 */
import {
  Batch, createNativeModel, Device, GenerateOptions, GPT2Config, guardNative, LossReport, ModelBuffer, ModelInfo,
  NativeModel, OptimizerSettings, Precision, cudaAvailable,
} from './native'

export type { Batch, GenerateOptions, GPT2Config, LossReport, OptimizerSettings, ModelInfo, Precision }

export interface Generation {
  /** The new token ids (without the prompt and without a stop id). */
  tokens: number[]
  stopReason: 'stop' | 'max_tokens' | 'length'
}

export interface ModelOptions {
  /** 'auto' picks cuda when it can run here, else cpu. */
  device?: Device | 'auto'
  /** Rows per micro-batch the model is sized for (activations are allocated once). */
  maxBatch?: number
  /** Tokens per row the model is sized for (≤ nPositions; default nPositions). */
  maxSeqLen?: number
  /** 'auto' (default): bf16 mixed precision on cuda, f32 on cpu (the only one it has). */
  precision?: Precision | 'auto'
}

export interface StepReport extends LossReport {
  gradNorm: number
  clipCoefficient: number
  /** AdamW's step count after this step. */
  step: number
}

export function resolveDevice(device: Device | 'auto' = 'auto'): Device {
  return device === 'auto' ? (cudaAvailable() ? 'cuda' : 'cpu') : device
}

export function resolvePrecision(precision: Precision | 'auto' = 'auto', device: Device): Precision {
  return precision === 'auto' ? (device === 'cuda' ? 'bf16' : 'f32') : precision
}

function sum(a: LossReport, b: LossReport): LossReport {
  return {
    lossSum: a.lossSum + b.lossSum,
    weightSum: a.weightSum + b.weightSum,
    completionLossSum: a.completionLossSum + b.completionLossSum,
    completionCount: a.completionCount + b.completionCount,
    promptLossSum: a.promptLossSum + b.promptLossSum,
    promptCount: a.promptCount + b.promptCount,
  }
}

const zero: LossReport = { lossSum: 0, weightSum: 0, completionLossSum: 0, completionCount: 0, promptLossSum: 0, promptCount: 0 }

export class GPT2Model {
  private constructor(private readonly native: NativeModel, readonly config: GPT2Config) {}

  /** A model with its weights zero (load or init them next). */
  static async create(config: GPT2Config, options: ModelOptions = {}): Promise<GPT2Model> {
    const device = resolveDevice(options.device)
    const native = await createNativeModel(config, device, options.maxBatch ?? 1, options.maxSeqLen ?? config.nPositions,
      resolvePrecision(options.precision, device))
    return new GPT2Model(native, { ...config })
  }

  get info(): ModelInfo {
    return this.native.info()
  }

  get device(): Device {
    return this.native.info().device
  }

  get precision(): Precision {
    return this.native.info().precision
  }

  parameters(): Array<{ name: string; shape: number[]; decay: boolean }> {
    return this.native.parameters()
  }

  /** A copy of a tensor (Hugging Face name and shape) from the parameters, gradients or AdamW moments. */
  read(name: string, buffer: ModelBuffer = 'param'): Float32Array {
    return this.native.read(buffer, name)
  }

  write(name: string, data: Float32Array, buffer: ModelBuffer = 'param'): void {
    this.native.write(buffer, name, data)
  }

  get adamStep(): number {
    return this.native.getAdamStep()
  }

  set adamStep(step: number) {
    this.native.setAdamStep(step)
  }

  /** GPT-2's initialization, deterministic for the seed. */
  initRandom(seed: number): Promise<void> {
    return guardNative(() => this.native.initRandom(seed))
  }

  /** Forward + backward of one micro-batch; gradients accumulate with scale 1/normalizer. */
  accumulate(batch: Batch, normalizer: number): Promise<LossReport> {
    return guardNative(() => this.native.accumulate(batch, normalizer))
  }

  /** Global-norm clipping, one AdamW step over every parameter, then zeroed gradients. */
  optimizerStep(options: OptimizerSettings): Promise<{ gradNorm: number; clipCoefficient: number; step: number }> {
    return guardNative(() => this.native.optimizerStep(options))
  }

  /**
   * One optimizer step over its micro-batches: each is accumulated with the step's
   * normalizer (Σw over all of them, computed here unless given), then AdamW.
   */
  async step(microBatches: Batch | Batch[], options: OptimizerSettings, normalizer?: number): Promise<StepReport> {
    const batches = Array.isArray(microBatches) ? microBatches : [microBatches]
    const norm = normalizer ?? batches.reduce((s, b) => s + b.weights.reduce((x, w) => x + w, 0), 0)
    let total = zero
    for (const b of batches) total = sum(total, await this.accumulate(b, norm))
    const opt = await this.optimizerStep(options)
    return { ...total, ...opt }
  }

  /** Forward only: the weighted loss and, for every non-padding target, completion and prompt CE. */
  evaluate(batch: Batch): Promise<LossReport> {
    return guardNative(() => this.native.evaluate(batch))
  }

  /** Logits (B, T, V) as one Float32Array. */
  logits(batch: Batch): Promise<Float32Array> {
    return guardNative(() => this.native.logits(batch))
  }

  /**
   * Writes a Hugging Face model directory (config.json + model.safetensors, f32, real
   * vocabulary) that GPT2LMHeadModel.from_pretrained loads; each file is replaced atomically.
   */
  async save(dir: string, extraConfig: Record<string, unknown> = {}): Promise<void> {
    const { saveModel } = await import('./checkpoint') // checkpoint.ts imports this module
    saveModel(this, dir, extraConfig)
  }

  /** Continues `prompt` (token ids) with a KV cache: greedy by default, or seeded sampling. */
  async generate(prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<Generation> {
    const r = await guardNative(() => this.native.generate(Int32Array.from(prompt), {
      maxNewTokens: options.maxNewTokens ?? 32,
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
      seed: options.seed ?? 0,
      stopIds: Int32Array.from(options.stopIds ?? []),
      useCache: options.useCache ?? true,
    }))
    return { tokens: Array.from(r.tokens), stopReason: r.stopReason }
  }

  zeroGrad(): void {
    this.native.zeroGrad()
  }

  dispose(): void {
    this.native.dispose()
  }
}

/** A freshly initialized GPT-2 (GPT-2's scheme), deterministic for the seed. */
export async function initModel(config: GPT2Config, options: ModelOptions & { seed?: number } = {}): Promise<GPT2Model> {
  const model = await GPT2Model.create(config, options)
  await model.initRandom(options.seed ?? 0)
  return model
}
