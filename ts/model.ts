/**
 * Models of every supported architecture (ts/arch/): creation, training steps, evaluation,
 * generation, and loading/saving Hugging Face model directories (the file format itself is
 * ts/checkpoint.ts's business, which knows nothing of this module).
 */
import {
  Batch, createNativeModel, Device, GenerateOptions, GPT2Config, guardNative, LossReport, ModelBuffer, ModelInfo,
  NativeModel, OptimizerSettings, ParameterInfo, Precision, Recompute, TrainStepReport, cudaAvailable, planNativeMemory,
} from './native'
import { ModelConfig, describeConfig, maxPositions, nativeSpec, normalizeConfig } from './arch'
import { SaveDtype, readConfig, readWeights, writeWeights } from './checkpoint'
import { LoraSettings, loraScaling, validateLoraSettings } from './lora/settings'
import { isAdapterDir, readAdapterDir, writeAdapterDir } from './lora/adapter-dir'
import { BaseFingerprint, baseFingerprint, checkBase } from './lora/fingerprint'
import { mergeDelta } from './lora/merge'
import { GenerationStream, StreamTextOptions } from './generate-stream'
import * as fs from 'node:fs'
import * as path from 'node:path'

export type { Batch, GenerateOptions, GPT2Config, LossReport, OptimizerSettings, ModelInfo, Precision, TrainStepReport }
export type { ModelConfig } from './arch'

export interface Generation {
  /** The new token ids (without the prompt and without a stop id). */
  tokens: number[]
  stopReason: 'stop' | 'max_tokens' | 'length'
  /**
   * Prompt tokens whose keys and values the KV cache still held from this model's previous
   * generation (the prompt started with that generation's prompt and output): only the rest
   * was run through the model. 0 without the cache.
   */
  reusedTokens: number
}

export interface ModelOptions {
  /** 'auto' picks cuda when it can run here, else cpu. */
  device?: Device | 'auto'
  /** Rows per micro-batch the model is sized for (activations are allocated once). */
  maxBatch?: number
  /** Tokens per row the model is sized for (≤ the model's positions; default all of them). */
  maxSeqLen?: number
  /** 'auto' (default): bf16 mixed precision on cuda, f32 on cpu (the only one it has). */
  precision?: Precision | 'auto'
  /**
   * LoRA adapters (docs/lora.md): the base is frozen and only the adapters train. `seed`
   * seeds the adapters' init (loadModel) and the dropout masks (default 0).
   */
  lora?: LoraSettings & { seed?: number }
  /** Training's memory/compute trade (docs/memory.md): default 'auto', the first that fits of the device's order. */
  recompute?: Recompute
}

/** Where a LoRA model's frozen base came from: recorded in its adapter directories. */
export interface BaseModelRef {
  dir: string
  fingerprint: BaseFingerprint
}

export interface SaveOptions {
  /** config.json fields to add or override. */
  extraConfig?: Record<string, unknown>
  /** Tensor dtype on disk: the loaded checkpoint's (default; f32 for a fresh model) or as given. */
  dtype?: SaveDtype | 'auto'
  /** Shard above this many bytes (default 5 GB, as transformers). */
  maxShardBytes?: number
}

/** @deprecated since 0.2: the report of `Model.step`, now `TrainStepReport`. */
export type StepReport = TrainStepReport

export function resolveDevice(device: Device | 'auto' = 'auto'): Device {
  return device === 'auto' ? (cudaAvailable() ? 'cuda' : 'cpu') : device
}

export function resolvePrecision(precision: Precision | 'auto' = 'auto', device: Device): Precision {
  return precision === 'auto' ? (device === 'cuda' ? 'bf16' : 'f32') : precision
}

export class Model {
  /** The dtype tensors are saved in by default: the loaded checkpoint's, f32 for a fresh model. */
  sourceDtype: SaveDtype = 'F32'
  /** A LoRA model's base directory (set by loadModel): save() writes adapter directories that point to it. */
  base: BaseModelRef | null = null

  private constructor(private readonly native: NativeModel, readonly config: ModelConfig,
    /** The adapters' settings, or null for a full model. */
    readonly lora: LoraSettings | null) {}

  /** A model with its weights zero (load or init them next). A GPT2Config without `arch` is a GPT-2. */
  static async create(config: ModelConfig | GPT2Config, options: ModelOptions = {}): Promise<Model> {
    const c = normalizeConfig(config)
    const device = resolveDevice(options.device)
    let lora: LoraSettings | null = null
    if (options.lora) {
      const { seed: _seed, ...settings } = options.lora
      validateLoraSettings(settings, 'lora')
      lora = settings
    }
    const spec = { ...nativeSpec(c), lora: lora ? { ...lora, seed: options.lora?.seed ?? 0 } : null, recompute: options.recompute ?? 'auto' }
    const native = await createNativeModel(spec, device, options.maxBatch ?? 1, options.maxSeqLen ?? maxPositions(c),
      resolvePrecision(options.precision, device))
    return new Model(native, { ...c }, lora)
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

  /** Positions the model can attend over (n_positions / max_position_embeddings, capped by a sliding window). */
  get maxPositions(): number {
    return maxPositions(this.config)
  }

  get vocabSize(): number {
    return this.config.vocabSize
  }

  /** "llama, 16 layers, 32 heads (8 KV), …" */
  describe(): string {
    return describeConfig(this.config)
  }

  parameters(): ParameterInfo[] {
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

  /** The architecture's initialization, deterministic for the seed. */
  initRandom(seed: number): Promise<void> {
    return guardNative(() => this.native.initRandom(seed))
  }

  /** Only the LoRA adapters' init (A Kaiming-uniform, B zeros: the output is the base model's). */
  initAdapters(seed: number): Promise<void> {
    return guardNative(() => this.native.initAdapters(seed))
  }

  /** Parameters of the base model (everything but LoRA adapters). */
  baseParameters(): ParameterInfo[] {
    return this.parameters().filter((p) => !p.adapter)
  }

  /** The LoRA adapter tensors (empty for a full model). */
  adapterParameters(): ParameterInfo[] {
    return this.parameters().filter((p) => p.adapter)
  }

  /** Forward + backward of one micro-batch; gradients accumulate with scale 1/normalizer. */
  accumulate(batch: Batch, normalizer: number): Promise<LossReport> {
    return guardNative(() => this.native.accumulate(batch, normalizer))
  }

  /** Global-norm clipping, one AdamW step over every trainable parameter, then zeroed gradients. */
  optimizerStep(options: OptimizerSettings): Promise<{ gradNorm: number; clipCoefficient: number; step: number }> {
    return guardNative(() => this.native.optimizerStep(options))
  }

  /**
   * One optimizer step in one native call: every micro-batch's forward + backward with the
   * step's normalizer (Σw over all of them, computed here unless given), then AdamW. A
   * non-finite loss skips the update (`skipped`) and drops the gradients.
   */
  step(microBatches: Batch | Batch[], options: OptimizerSettings, normalizer?: number): Promise<TrainStepReport> {
    const batches = Array.isArray(microBatches) ? microBatches : [microBatches]
    const norm = normalizer ?? batches.reduce((s, b) => s + b.weights.reduce((x, w) => x + w, 0), 0)
    return guardNative(() => this.native.trainStep(batches, norm, options))
  }

  /**
   * Forward only: the weighted loss and, for every non-padding target, completion and prompt
   * CE; with `tokenLosses`, also −log p(target) per position (B·T, 0 at padding).
   */
  evaluate(batch: Batch): Promise<LossReport>
  evaluate(batch: Batch, options: { tokenLosses: true }): Promise<LossReport & { tokenLosses: Float32Array }>
  evaluate(batch: Batch, options: { tokenLosses?: boolean } = {}): Promise<LossReport & { tokenLosses?: Float32Array }> {
    return guardNative(() => this.native.evaluate(batch, options.tokenLosses ?? false))
  }

  /** Logits (B, T, V) as one Float32Array (a test path: it moves B·T·V floats to the host). */
  logits(batch: Batch): Promise<Float32Array> {
    return guardNative(() => this.native.logits(batch))
  }

  /**
   * Writes a Hugging Face model directory (config.json + model.safetensors, sharded above
   * 5 GB) that `AutoModelForCausalLM.from_pretrained` loads; each file is replaced atomically.
   */
  async save(dir: string, options: SaveOptions | Record<string, unknown> = {}): Promise<void> {
    const o: SaveOptions = 'extraConfig' in options || 'dtype' in options || 'maxShardBytes' in options
      ? options as SaveOptions : { extraConfig: options as Record<string, unknown> }
    if (this.lora) return this.saveAdapter(dir, o.dtype === 'auto' ? undefined : o.dtype)
    const dtype = o.dtype === undefined || o.dtype === 'auto' ? this.sourceDtype : o.dtype
    writeWeights(dir, this.config, this.parameters(), (name) => this.read(name), {
      dtype, maxShardBytes: o.maxShardBytes, extraConfig: o.extraConfig,
    })
  }

  /**
   * A LoRA model's save: a PEFT adapter directory (adapter_config.json, adapter_model.safetensors,
   * plwtune_base.json) naming the base it was trained on. Adapters are saved in f32 unless asked.
   */
  private saveAdapter(dir: string, dtype?: SaveDtype): void {
    if (!this.lora) throw new Error('saveAdapter: not a LoRA model')
    if (!this.base) throw new Error('a LoRA model made without a base directory cannot be saved as an adapter: load the base with loadModel(dir, { lora })')
    writeAdapterDir(dir, { arch: this.config.arch, config: this.config, settings: this.lora, baseModel: this.base.dir,
      base: this.base.fingerprint, tensors: this.adapterParameters(), read: (name) => this.read(name), dtype: dtype ?? 'F32' })
  }

  /**
   * The weights of base + adapter as one plain model (W + scaling·B·A for every adapted
   * layer), written as a Hugging Face directory in the base's dtype unless told otherwise.
   */
  async saveMerged(dir: string, options: SaveOptions = {}): Promise<void> {
    if (!this.lora) throw new Error('saveMerged: not a LoRA model (save() writes it as it is)')
    const scaling = loraScaling(this.lora)
    const layout = this.config.arch === 'gpt2' ? 'InOut' : 'OutIn'
    const dtype = options.dtype === undefined || options.dtype === 'auto' ? this.sourceDtype : options.dtype
    const adapters = new Set(this.adapterParameters().map((p) => p.name))
    const read = (name: string): Float32Array => {
      const module = name.replace(/\.weight$/, '')
      const a = `${module}.lora_A.weight`
      if (!adapters.has(a)) return this.read(name)
      const info = this.parameters().find((p) => p.name === a) as ParameterInfo
      const [r, IC] = info.shape
      const OC = this.parameters().find((p) => p.name === `${module}.lora_B.weight`)!.shape[0]
      return mergeDelta(layout, this.read(name), this.read(a), this.read(`${module}.lora_B.weight`), IC, OC, r, scaling)
    }
    writeWeights(dir, this.config, this.baseParameters(), read, { dtype, maxShardBytes: options.maxShardBytes,
      extraConfig: options.extraConfig })
  }

  /** Continues `prompt` (token ids) with a KV cache: greedy by default, or seeded sampling. */
  async generate(prompt: ArrayLike<number>, options: GenerateOptions = {}): Promise<Generation> {
    const args = generateArgs(prompt, options)
    const r = await guardNative(() => this.native.generate(args.prompt, args.options))
    return { tokens: Array.from(r.tokens), stopReason: r.stopReason as Generation['stopReason'], reusedTokens: r.reused }
  }

  /**
   * `generate` as an async iterator of tokens and their text (ts/generate-stream.ts): with
   * `decode`, text deltas that never split a character and stop strings; cancelled by
   * `signal` or by leaving the loop. `result` settles once the model is free again.
   */
  generateStream(prompt: ArrayLike<number>, options: GenerateOptions & StreamTextOptions = {}): GenerationStream {
    const args = generateArgs(prompt, options)
    return new GenerationStream((onToken) => guardNative(() => this.native.generate(args.prompt, args.options, onToken)), options)
  }

  zeroGrad(): void {
    this.native.zeroGrad()
  }

  dispose(): void {
    this.native.dispose()
  }
}

/** generate's arguments checked and shaped for the binding (shared by generate and generateStream). */
function generateArgs(prompt: ArrayLike<number>, options: GenerateOptions) {
  // Checked here: Int32Array.from would turn 1.5 into 1 and NaN into 0 without a word.
  for (let i = 0; i < prompt.length; i++) {
    if (!Number.isInteger(prompt[i])) throw new TypeError(`generate: prompt[${i}] = ${prompt[i]} is not an integer token id`)
  }
  for (const key of ['maxNewTokens', 'topK', 'seed'] as const) {
    const x = options[key]
    if (x !== undefined && !(Number.isSafeInteger(x) && x >= 0)) throw new TypeError(`generate: ${key} must be an integer >= 0, got ${x}`)
  }
  for (const id of options.stopIds ?? []) {
    if (!Number.isInteger(id)) throw new TypeError(`generate: stopIds holds ${id}, not an integer token id`)
  }
  return {
    prompt: Int32Array.from(prompt),
    options: {
      maxNewTokens: options.maxNewTokens ?? 32,
      temperature: options.temperature ?? 0,
      topK: options.topK ?? 0,
      topP: options.topP ?? 1,
      seed: options.seed ?? 0,
      stopIds: Int32Array.from(options.stopIds ?? []),
      useCache: options.useCache ?? true,
      reuseCache: options.reuseCache ?? false,
    },
  }
}

/** @deprecated since 0.2: every architecture is a `Model`; this alias goes in 0.3. */
export const GPT2Model = Model
/** @deprecated since 0.2: use `Model`. */
export type GPT2Model = Model

/**
 * The memory a model would take (bytes: parameters incl. a bf16 working copy, gradients,
 * AdamW moments, activations for maxBatch × maxSeqLen, scratch), computed by the engine from
 * its buffer list without allocating. `device` defaults to cuda: a build with the CUDA backend
 * can plan for a GPU it does not have.
 */
export function planMemory(config: ModelConfig | GPT2Config, options: { device?: Device; maxBatch?: number; maxSeqLen?: number;
  precision?: Precision | 'auto'; lora?: LoraSettings; recompute?: Recompute } = {}): ModelInfo['memory'] {
  const c = normalizeConfig(config)
  const device = options.device ?? 'cuda'
  const lora = options.lora ? { ...options.lora, seed: 0 } : null
  return planNativeMemory({ ...nativeSpec(c), lora, recompute: options.recompute ?? 'auto' }, device, options.maxBatch ?? 1, options.maxSeqLen ?? maxPositions(c),
    resolvePrecision(options.precision, device))
}

/** A freshly initialized model (the architecture's scheme), deterministic for the seed. */
export async function initModel(config: ModelConfig | GPT2Config, options: ModelOptions & { seed?: number } = {}): Promise<Model> {
  const model = await Model.create(config, options)
  await model.initRandom(options.seed ?? 0)
  return model
}

export interface LoadOptions extends ModelOptions {
  /** A PEFT LoRA adapter directory to apply to the model in `dir` (plwtune's or PEFT's own). */
  adapter?: string
  /** The adapters' dropout stream when an adapter is loaded (a resumed run passes its seed); default 0. */
  loraSeed?: number
}

/** The model directory behind `dir`: the base an adapter directory records, else `dir` itself. */
export function baseDirOf(dir: string): string {
  if (!isAdapterDir(dir)) return dir
  const base = readAdapterBase(dir)
  if (base === null) throw new Error(`${dir}: an adapter directory without base_model_name_or_path: give its base model too`)
  return base
}

/**
 * Loads a Hugging Face model directory (config.json + model.safetensors or a sharded
 * model.safetensors.index.json; f32, f16 or bf16 tensors) onto a device. An unsupported
 * architecture is refused before anything is allocated; a missing, unexpected or misshapen
 * tensor is an error naming the key and both shapes.
 *
 * LoRA: with `adapter` (or when `dir` itself is an adapter directory, whose base is the one it
 * records), the adapter is applied to the base, after checking the base is the one it was
 * trained on; with `lora`, fresh adapters are attached (A Kaiming-uniform, B zeros).
 */
export async function loadModel(dir: string, options: LoadOptions = {}): Promise<Model> {
  let adapterDir = options.adapter
  let baseDir = dir
  if (adapterDir === undefined && isAdapterDir(dir)) {
    adapterDir = dir
    baseDir = baseDirOf(dir)
  }
  const config = readConfig(baseDir)
  let adapter: ReturnType<typeof readAdapterDir> | null = null
  let lora = options.lora
  if (adapterDir !== undefined) {
    if (options.lora) throw new Error('loadModel: give either `adapter` (a trained adapter) or `lora` (new adapters), not both')
    adapter = readAdapterDir(adapterDir, config.arch, config)
    if (adapter.base) checkBase(baseDir, adapter.base, adapterDir)
    lora = { ...adapter.settings, seed: options.loraSeed ?? 0 }
  }
  const model = await Model.create(config, { ...options, lora })
  try {
    model.sourceDtype = readWeights(baseDir, config, model.baseParameters(), (name, data) => model.write(name, data))
    if (lora) model.base = { dir: path.resolve(baseDir), fingerprint: baseFingerprint(baseDir) }
    if (adapter) {
      for (const p of model.adapterParameters()) {
        const t = adapter.tensors.get(p.name)
        if (!t) throw new Error(`${adapterDir}: adapter_model.safetensors has no tensor for ${p.name}`)
        if (t.shape.join(',') !== p.shape.join(',')) {
          throw new Error(`${adapterDir}: ${p.name} has shape [${t.shape}] but the model expects [${p.shape}]`)
        }
        model.write(p.name, t.data)
      }
      const expected = new Set(model.adapterParameters().map((p) => p.name))
      const extra = [...adapter.tensors.keys()].filter((n) => !expected.has(n))
      if (extra.length > 0) throw new Error(`${adapterDir}: adapter tensors the model does not have: ${extra.slice(0, 5).join(', ')}`)
    } else if (lora) {
      await model.initAdapters(lora.seed ?? 0)
    }
    return model
  } catch (err) {
    model.dispose()
    throw err
  }
}

/** The base directory an adapter directory records (base_model_name_or_path), if any. */
function readAdapterBase(dir: string): string | null {
  const file = path.join(dir, 'adapter_config.json')
  const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { base_model_name_or_path?: unknown }
  return typeof json.base_model_name_or_path === 'string' && json.base_model_name_or_path !== '' ? json.base_model_name_or_path : null
}

