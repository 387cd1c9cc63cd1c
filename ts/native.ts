/**
 * The typed face of the native addon: the only module that touches the raw binding.
 *
 * Every computing call returns a Promise and runs off the event loop. Argument errors are
 * thrown (TypeError for a wrong type/shape/dtype/device, RangeError for a value out of
 * range) with a message of the shape "op: Expected X for name but received Y"; errors from
 * the worker thread are re-thrown with the caller's stack.
 */
import * as path from 'node:path'
import * as fs from 'node:fs'
import { createRequire } from 'node:module'

export type Device = 'cpu' | 'cuda'
export type DType = 'float32' | 'bfloat16' | 'int32'

/** A block of host or CUDA memory with a dtype and a shape. */
export interface Tensor {
  readonly shape: number[]
  readonly dtype: DType
  readonly device: Device
  readonly disposed: boolean
  readonly byteLength: number
  /** A copy of the contents: Float32Array for float32/bfloat16, Int32Array for int32. */
  toArray(): Float32Array | Int32Array
  /** Overwrites the whole tensor (bfloat16 rounds to nearest even). */
  copyFrom(data: Float32Array | Int32Array): void
  fill(value: number): void
  /** Frees the memory now (idempotent); otherwise the garbage collector frees it. */
  dispose(): void
}

export interface LossSums {
  /** Σ w·CE over the rows, in double. Divide by the step's normalizer for the loss. */
  lossSum: number
  /** Σ w over the rows. */
  weightSum: number
}

export interface BackendInfo {
  /** simd: what the CPU kernels were compiled for; kernel: the SGEMM kernel chosen at run time
   * ('avx512 14x32', 'avx2 6x16' or 'generic 6x16'; PLW_CPU_KERNEL=avx2 forces the AVX2 one). */
  cpu: { threads: number; simd: string; kernel: string }
  cuda: { built: boolean; cublasLt: boolean; available: boolean; reason: string | null; device: string | null }
}

/** The CPU's fp32 peak as measured by cpuPeak(): the clock with every thread busy (a chain of
 * dependent adds) and the flops per cycle per thread of register-only FMA loops at each vector
 * width (0 where the CPU lacks it). See native/cpu/cpu_info.h. */
export interface CpuPeak {
  ghz: number
  flopsPerCycle256: number
  flopsPerCycle512: number
  kernel: string
}

export interface MemoryStats {
  liveTensors: number
  cpuBytes: number
  cudaBytes: number
}

export interface AdamWHyper {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** 1-based step count after incrementing, as torch.optim.AdamW counts. */
  step: number
  /** Global-norm clipping threshold; 0 turns clipping off (the norm is still reported). */
  maxGradNorm: number
}

export interface AdamWGroup {
  param: Tensor
  grad: Tensor
  m: Tensor
  v: Tensor
  /** Apply weight decay to this tensor (by convention ≥2-D weights only). */
  decay: boolean
}

/** Hugging Face GPT-2 config.json fields, camel-cased. */
export interface GPT2Config {
  nLayer: number
  nHead: number
  nEmbd: number
  nPositions: number
  vocabSize: number
}

/**
 * What the engine needs to know of a model (native/engine/spec.h): the architecture and its
 * dimensions. ts/arch/ builds it from a model config; the llama fields are ignored for gpt2.
 */
export interface NativeSpec {
  arch: 'gpt2' | 'llama'
  vocabSize: number
  hidden: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  intermediate: number
  maxPositions: number
  normEps?: number
  ropeTheta?: number
  ropeScaling?: { factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number } | null
  tiedHead?: boolean
  qkvBias?: boolean
  oBias?: boolean
  mlpBias?: boolean
  qkNorm?: boolean
  /** 0: none. */
  slidingWindow?: number
  /** LoRA adapters on the linear layers named in targets (the base is then frozen); null: full fine-tuning. */
  lora?: NativeLora | null
  /** Training's memory/compute trade (docs/memory.md); default 'none'. */
  recompute?: Recompute
}

/**
 * How training trades compute for memory: 'none' keeps every activation and the attention
 * probabilities; 'attention' fuses attention (memory linear in T); 'block' also keeps only
 * each layer's output and recomputes the layer in the backward; 'auto' takes the first that
 * fits the free memory of: attention, block on the CPU; none, attention, block on CUDA
 * (docs/memory.md).
 */
export type Recompute = 'none' | 'attention' | 'block' | 'auto'
export const RECOMPUTE_MODES: readonly Recompute[] = ['none', 'attention', 'block', 'auto']

/** The engine's LoRA settings (PEFT's LoraConfig; targets are module leaf names, all-linear expanded). */
export interface NativeLora {
  r: number
  alpha: number
  dropout: number
  targets: string[]
  rslora: boolean
  /** The dropout masks' stream. */
  seed: number
}

/** A parameter tensor of a model, by its Hugging Face name. */
export interface ParameterInfo {
  name: string
  shape: number[]
  /** AdamW's weight decay applies (≥2-D weights). */
  decay: boolean
  /** Has a gradient and AdamW moments (false: frozen). */
  trainable: boolean
  /** A LoRA adapter tensor (lora_A / lora_B), not part of the base model. */
  adapter: boolean
}

/** One micro-batch: B rows of T tokens, each array B*T long, row-major. */
export interface Batch {
  B: number
  T: number
  tokens: Int32Array
  /** Next-token ids; any value where the weight is 0. */
  targets: Int32Array
  /** Loss weight per target: λ for prompt tokens, 1 for completion tokens, 0 for padding. */
  weights: Float32Array
  /** Per target: 0 padding, 1 prompt, 2 completion (default: weight > 0 means completion). */
  kinds?: Uint8Array
  /** Position ids, restarting per packed example (default 0..T-1 per row). */
  positions?: Int32Array
  /** Packed example id per token (default: one example per row). */
  segments?: Int32Array
}

/** Sums over a micro-batch (divide by the step's normalizer, or by the counts). */
export interface LossReport {
  lossSum: number
  weightSum: number
  completionLossSum: number
  completionCount: number
  promptLossSum: number
  promptCount: number
}

/** One optimizer step: its micro-batches' summed report and AdamW's outcome. */
export interface TrainStepReport extends LossReport {
  gradNorm: number
  clipCoefficient: number
  /** AdamW's step count after this step. */
  step: number
  /** The loss was not finite: the gradients were dropped and no update was made. */
  skipped: boolean
}

export interface OptimizerSettings {
  lr: number
  beta1: number
  beta2: number
  eps: number
  weightDecay: number
  /** 0 turns clipping off. */
  maxGradNorm: number
}

/**
 * Arithmetic of a model's activations: 'f32' everywhere (TF32 matmuls on CUDA), or 'bf16'
 * mixed precision (CUDA only: f32 master weights, gradients and AdamW moments; bf16
 * activations and GEMM inputs). See docs/precision.md.
 */
export type Precision = 'f32' | 'bf16'

export interface ModelInfo {
  /** The engine's view of the model: architecture and dimensions. */
  spec: Pick<NativeSpec, 'arch' | 'vocabSize' | 'hidden' | 'layers' | 'heads' | 'kvHeads' | 'headDim' | 'intermediate' | 'maxPositions'> &
    { recompute: Exclude<Recompute, 'auto'> }
  device: Device
  precision: Precision
  maxBatch: number
  maxSeqLen: number
  memory: { parameters: number; gradients: number; optimizer: number; activations: number; scratch: number; total: number }
}

export type ModelBuffer = 'param' | 'grad' | 'm' | 'v'

export interface GenerateOptions {
  /** Default 32. */
  maxNewTokens?: number
  /** 0 (default) is greedy. */
  temperature?: number
  /** Keep the k most likely tokens (0, default: all). */
  topK?: number
  /** Keep the smallest set of tokens with this much probability (1, default: all). */
  topP?: number
  /** Sampling seed (default 0): the same seed gives the same tokens. */
  seed?: number
  /** Token ids that end generation (not included in the output). */
  stopIds?: number[]
  /** Use the KV cache (default true); false recomputes every step, for checking. */
  useCache?: boolean
  /**
   * Keep what the KV cache holds of this model's previous generation (its prompt and the tokens
   * it fed back) when the prompt starts with it: a chat's next turn then runs only its new
   * tokens (Generation.reusedTokens says how many were kept). Default false: each call is then
   * a function of its prompt alone; with it, the kept rows were computed by the decode path
   * rather than the batched prefill, so a near-tie between two tokens may come out the other way.
   */
  reuseCache?: boolean
}

/** The engine instance as the binding exposes it; ts/model.ts wraps it. */
export interface NativeModel {
  info(): ModelInfo
  parameters(): ParameterInfo[]
  read(buffer: ModelBuffer, name: string): Float32Array
  write(buffer: ModelBuffer, name: string, data: Float32Array): void
  getAdamStep(): number
  setAdamStep(step: number): void
  zeroGrad(): void
  initRandom(seed: number): Promise<void>
  initAdapters(seed: number): Promise<void>
  accumulate(batch: Batch, normalizer: number): Promise<LossReport>
  optimizerStep(options: OptimizerSettings): Promise<{ gradNorm: number; clipCoefficient: number; step: number }>
  trainStep(microBatches: Batch[], normalizer: number, options: OptimizerSettings): Promise<TrainStepReport>
  evaluate(batch: Batch, tokenLosses?: boolean): Promise<LossReport & { tokenLosses?: Float32Array }>
  logits(batch: Batch): Promise<Float32Array>
  /** `onToken(index, token)` runs as tokens are made; returning false stops at the next one ('cancelled'). */
  generate(prompt: Int32Array, options: Required<Omit<GenerateOptions, 'stopIds'>> & { stopIds: Int32Array },
    onToken?: (index: number, token: number) => boolean):
    Promise<{ tokens: Int32Array; stopReason: 'stop' | 'max_tokens' | 'length' | 'cancelled'; reused: number }>
  dispose(): void
}

interface RawBinding {
  createModel(spec: NativeSpec, device: Device, maxBatch: number, maxSeqLen: number, precision?: Precision): Promise<NativeModel>
  planMemory(spec: NativeSpec, device: Device, maxBatch: number, maxSeqLen: number, precision?: Precision): ModelInfo['memory']
  Tensor: new (shape: number[], dtype: DType, device: Device, data?: Float32Array | Int32Array) => Tensor
  backendInfo(): BackendInfo
  cpuPeak(): CpuPeak
  cpuBandwidth(bytes: number): number
  memoryStats(): MemoryStats
  weightedCrossEntropyForward(logits: Tensor, targets: Tensor, weights: Tensor, vocabSize?: number, losses?: Tensor): Promise<LossSums>
  weightedCrossEntropyBackward(logits: Tensor, targets: Tensor, weights: Tensor, normalizer: number, dlogits: Tensor,
    vocabSize?: number, losses?: Tensor): Promise<LossSums>
  fusedHeadCrossEntropyForward(hidden: Tensor, wte: Tensor, targets: Tensor, weights: Tensor, vocabSize?: number,
    chunk?: number, losses?: Tensor): Promise<LossSums>
  fusedHeadCrossEntropyBackward(hidden: Tensor, wte: Tensor, targets: Tensor, weights: Tensor, normalizer: number,
    dhidden: Tensor, dwte: Tensor, vocabSize?: number, chunk?: number, losses?: Tensor): Promise<LossSums>
  embeddingForward(out: Tensor, tokens: Tensor, positions: Tensor, wte: Tensor, wpe: Tensor): Promise<void>
  embeddingBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: Tensor, positions: Tensor): Promise<void>
  adamw(params: Tensor[], grads: Tensor[], m: Tensor[], v: Tensor[], decay: boolean[], hyper: AdamWHyper):
    Promise<{ gradNorm: number; clipCoefficient: number }>
  matmul(out: Tensor, a: Tensor, b: Tensor, transA: boolean, transB: boolean, alpha: number, beta: number): Promise<void>
  flashAttentionForward(out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor, nHeads: number, nKvHeads: number,
    segments: Tensor | null): Promise<void>
  flashAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dout: Tensor, out: Tensor, lse: Tensor, q: Tensor, k: Tensor,
    v: Tensor, nHeads: number, nKvHeads: number, segments: Tensor | null): Promise<void>
}

/** PLW_CPU_KERNEL's values (native/cpu/matmul.cpp): checked here so a typo is an error, not the default. */
const CPU_KERNELS = ['auto', 'avx2', 'avx512']

function loadBinding(): RawBinding {
  const kernel = process.env.PLW_CPU_KERNEL
  if (kernel !== undefined && kernel !== '' && !CPU_KERNELS.includes(kernel)) {
    throw new Error(`plwtune: PLW_CPU_KERNEL=${JSON.stringify(kernel)} is not one of ${CPU_KERNELS.join(', ')} (the CPU's SGEMM path; unset means auto)`)
  }
  // ts/native.ts runs from ts/ (jest) or dist/ts/ (compiled): look upwards for build/.
  const candidates = [
    path.join(__dirname, '..', 'build', 'Release', 'plwtune.node'),
    path.join(__dirname, '..', '..', 'build', 'Release', 'plwtune.node'),
    path.join(__dirname, '..', 'build', 'Debug', 'plwtune.node'),
    path.join(__dirname, '..', '..', 'build', 'Debug', 'plwtune.node'),
  ]
  const found = candidates.find((p) => fs.existsSync(p))
  if (!found) {
    throw new Error(
      `plwtune: the native addon is not built (looked for ${candidates[0]}).\n` +
        '  Build it with `npm run build:native` (needs cmake >= 3.18 and a C++17 compiler with OpenMP;\n' +
        '  nvcc adds the CUDA backend). See docs/building.md.',
    )
  }
  try {
    // Node's own loader for a .node file found at run time (an import names a module, not a path we find).
    return createRequire(__filename)(found) as RawBinding
  } catch (err) {
    throw new Error(
      `plwtune: the native addon at ${found} failed to load: ${(err as Error).message}\n` +
        '  Rebuild it for this machine and Node version with `npm run build:native`. See docs/building.md.',
      { cause: err },
    )
  }
}

const raw: RawBinding = loadBinding()

/**
 * Runs a native call. Its error (thrown at once, or rejected from the worker thread) is
 * re-created here with the caller's stack: a rejection from a worker has no JS stack of its
 * own, and re-creating it makes `instanceof TypeError` hold in any realm (jest's sandbox).
 */
async function call<T>(run: () => Promise<T>): Promise<T> {
  const site = new Error()
  try {
    return await run()
  } catch (err) {
    if (typeof err !== 'object' || err === null || typeof (err as Error).message !== 'string') throw err
    const { name, message } = err as Error
    const Ctor = name === 'TypeError' ? TypeError : name === 'RangeError' ? RangeError : Error
    const local = new Ctor(message)
    local.stack = `${local.name}: ${message}\n${(site.stack ?? '').split('\n').slice(2).join('\n')}`
    throw local
  }
}

/** The synchronous twin of call(): native errors re-created in the caller's realm. */
function callSync<T>(run: () => T): T {
  try {
    return run()
  } catch (err) {
    if (typeof err !== 'object' || err === null || typeof (err as Error).message !== 'string') throw err
    const { name, message } = err as Error
    const Ctor = name === 'TypeError' ? TypeError : name === 'RangeError' ? RangeError : Error
    throw new Ctor(message)
  }
}

/** Creates a tensor; with data it is a copy of it, without it is zero-filled. */
export function tensor(
  shape: number[],
  options: { dtype?: DType; device?: Device; data?: Float32Array | Int32Array | number[] } = {},
): Tensor {
  const dtype = options.dtype ?? 'float32'
  let data = options.data
  if (Array.isArray(data)) data = dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data)
  return callSync(() => new raw.Tensor(shape, dtype, options.device ?? 'cpu', data as Float32Array | Int32Array | undefined))
}

export const backendInfo = (): BackendInfo => raw.backendInfo()
/** Measures the CPU's clock and FMA throughput now (~0.5 s, all threads): for benchmarks. */
export const cpuPeak = (): CpuPeak => raw.cpuPeak()
/** Measures the CPU's memory bandwidth now: GB/s (read + write) of a memcpy of `bytes`, every thread
 * copying its own slice at once, best of 5 (native/cpu/cpu_info.h). For benchmarks. */
export const cpuBandwidth = (bytes: number): number => raw.cpuBandwidth(bytes)
export const memoryStats = (): MemoryStats => raw.memoryStats()

/** True when tensors can be placed on CUDA on this machine. */
export function cudaAvailable(): boolean {
  return raw.backendInfo().cuda.available
}

export interface CrossEntropyOptions {
  /** Real vocabulary size V when logits rows are padded (default: the row length). */
  vocabSize?: number
  /** Receives CE per row (0 where the weight is 0). */
  losses?: Tensor
}

/** Σ w·CE over logits [N,Vp] (f32, or bf16) with int32 targets [N] and f32 weights [N]. */
export function weightedCrossEntropyForward(logits: Tensor, targets: Tensor, weights: Tensor,
  options: CrossEntropyOptions = {}): Promise<LossSums> {
  return call(() => raw.weightedCrossEntropyForward(logits, targets, weights, options.vocabSize, options.losses))
}

/**
 * Loss and gradient in one pass: dlogits = w/normalizer · (softmax − onehot). The gradient
 * goes to options.dlogits, by default over the logits themselves (in place).
 * `normalizer` is Σw over the whole optimizer step (all micro-batches).
 */
export function weightedCrossEntropyBackward(logits: Tensor, targets: Tensor, weights: Tensor, normalizer: number,
  options: CrossEntropyOptions & { dlogits?: Tensor } = {}): Promise<LossSums> {
  return call(() => raw.weightedCrossEntropyBackward(logits, targets, weights, normalizer, options.dlogits ?? logits,
    options.vocabSize, options.losses))
}

export interface FusedHeadOptions extends CrossEntropyOptions {
  /** Rows of logits computed at a time: memory is chunk × V (default 256 on cpu, 2048 on cuda). */
  chunk?: number
}

/** Σ w·CE of the tied LM head: logits = hidden [N,C] · wte[:V]^T, never all materialized. */
export function fusedHeadCrossEntropyForward(hidden: Tensor, wte: Tensor, targets: Tensor, weights: Tensor,
  options: FusedHeadOptions = {}): Promise<LossSums> {
  return call(() => raw.fusedHeadCrossEntropyForward(hidden, wte, targets, weights, options.vocabSize, options.chunk,
    options.losses))
}

/** Loss plus dhidden [N,C] (overwritten) and dwte [Vp,C] (accumulated, f32). */
export function fusedHeadCrossEntropyBackward(hidden: Tensor, wte: Tensor, targets: Tensor, weights: Tensor,
  normalizer: number, dhidden: Tensor, dwte: Tensor, options: FusedHeadOptions = {}): Promise<LossSums> {
  return call(() => raw.fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, normalizer, dhidden, dwte,
    options.vocabSize, options.chunk, options.losses))
}

/** out[n] = wte[tokens[n]] + wpe[positions[n]]. */
export function embeddingForward(out: Tensor, tokens: Tensor, positions: Tensor, wte: Tensor, wpe: Tensor): Promise<void> {
  return call(() => raw.embeddingForward(out, tokens, positions, wte, wpe))
}

/** dwte[tokens[n]] += dout[n]; dwpe[positions[n]] += dout[n] (deterministic). */
export function embeddingBackward(dwte: Tensor, dwpe: Tensor, dout: Tensor, tokens: Tensor, positions: Tensor): Promise<void> {
  return call(() => raw.embeddingBackward(dwte, dwpe, dout, tokens, positions))
}

/** Global-norm clipping then one torch.optim.AdamW step over every group. */
export function adamw(groups: AdamWGroup[], hyper: AdamWHyper): Promise<{ gradNorm: number; clipCoefficient: number }> {
  return call(() => raw.adamw(groups.map((g) => g.param), groups.map((g) => g.grad), groups.map((g) => g.m),
    groups.map((g) => g.v), groups.map((g) => g.decay), hyper))
}

/** Allocates an engine (parameters, gradients, AdamW state, activations for maxBatch × maxSeqLen). */
export function createNativeModel(spec: NativeSpec, device: Device, maxBatch: number, maxSeqLen: number,
  precision: Precision = 'f32'): Promise<NativeModel> {
  return call(() => raw.createModel(spec, device, maxBatch, maxSeqLen, precision))
}

/** The memory bill createNativeModel would allocate (bytes), computed without allocating or needing the device. */
export function planNativeMemory(spec: NativeSpec, device: Device, maxBatch: number, maxSeqLen: number,
  precision: Precision = 'f32'): ModelInfo['memory'] {
  return callSync(() => raw.planMemory(spec, device, maxBatch, maxSeqLen, precision))
}

/** Wraps a native model so its errors carry the caller's stack and realm, like the kernels'. */
export function guardNative<T>(run: () => Promise<T>): Promise<T> {
  return call(run)
}

/** out = alpha · op(a) · op(b) + beta · out (CPU, float32). */
export function matmul(out: Tensor, a: Tensor, b: Tensor,
  options: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {}): Promise<void> {
  return call(() => raw.matmul(out, a, b, options.transA ?? false, options.transB ?? false, options.alpha ?? 1,
    options.beta ?? 0))
}

/** Heads of a fused attention call: nKvHeads < nHeads is grouped-query attention; segments [B,T] int32 isolate packed examples. */
export interface AttentionHeads {
  nHeads: number
  nKvHeads?: number
  segments?: Tensor
}

/**
 * Causal attention computed tile by tile (the engine's fused kernels): out [B,T,nHeads*hs] and
 * lse [B,nHeads,T] (float32, the per-row log-sum-exp the backward needs) from q [B,T,nHeads*hs]
 * and k, v [B,T,nKvHeads*hs]. float32 on the CPU (any head size); float32 or bfloat16 on CUDA
 * (head sizes 64, 80, 96, 128).
 */
export function flashAttentionForward(out: Tensor, lse: Tensor, q: Tensor, k: Tensor, v: Tensor, heads: AttentionHeads): Promise<void> {
  return call(() => raw.flashAttentionForward(out, lse, q, k, v, heads.nHeads, heads.nKvHeads ?? heads.nHeads, heads.segments ?? null))
}

/** The backward of flashAttentionForward: accumulates (+=) into dq, dk, dv (shapes of q, k, v). */
export function flashAttentionBackward(dq: Tensor, dk: Tensor, dv: Tensor, dout: Tensor, out: Tensor, lse: Tensor,
  q: Tensor, k: Tensor, v: Tensor, heads: AttentionHeads): Promise<void> {
  return call(() => raw.flashAttentionBackward(dq, dk, dv, dout, out, lse, q, k, v, heads.nHeads, heads.nKvHeads ?? heads.nHeads,
    heads.segments ?? null))
}
