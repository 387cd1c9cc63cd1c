/**
 * One whole training step of the engine (GPT-2 and Llama-family shapes): model.step() with one micro-batch (forward,
 * backward, global-norm clipping at 1.0 and AdamW over every parameter), random tokens, loss
 * weights 1 except the first quarter of each row, a prompt at lambda = 0.1 (kinds 1/2), so the
 * weighted loss is what runs.
 *
 * FLOPs per token, the standard estimate (Kaplan et al.; PaLM appendix B; nanoGPT's
 * estimate_mfu): 6 * N + 12 * L * T * Q, with N the parameters without the position table
 * (the token table stays in once: it is the LM head's GEMM, tied or not; an untied model's
 * embedding lookup does no FLOPs, so its embed_tokens is left out and lm_head counted), Q the
 * width of the attention (heads x head_dim; = C for GPT-2) and the second term the attention
 * score and value GEMMs at sequence length T (counted in full, as the estimate does, although
 * causal attention needs half). The floor is B*T tokens at that many FLOPs: on CUDA at the dense
 * bf16 tensor-core peak, so "% of floor" is the MFU as it is usually quoted, whatever the
 * engine's precision (bf16 mixed precision by default on CUDA; the f32 case, TF32 GEMMs, also
 * gets the fraction of the TF32 peak); on the CPU at the fp32 peak.
 *
 * The PyTorch peer (torch_peer.py, kind 'train') trains the same config on the same batch
 * shape: a nanoGPT-style GPT-2, or a Llama-family model written in plain torch as
 * transformers computes it, in f32 (TF32 allowed on CUDA), eager; on CUDA also
 * torch.compile, bf16 autocast, and both together.
 */
import type { Device, ModelInfo, OptimizerSettings, Batch, Precision } from '../ts/native'
import { initModel } from '../ts/model'
import { ModelConfig, llamaConfig } from '../ts/arch'
import { LINEAR_MODULES } from '../ts/lora/settings'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import type { CpuCeilings, GpuCeilings } from './ceilings'
import type { PeerResult } from './peer'
import { BenchCase, PeerSpec, rng, Timing } from './harness'

export const GPT2_124M = MODEL_SHAPES['gpt2']
export const GPT2_MEDIUM = MODEL_SHAPES['gpt2-medium']
/** The GPT-2 issue's small CPU config. */
export const GPT2_SMALL_CPU: ModelConfig = { arch: 'gpt2', nLayer: 4, nHead: 4, nEmbd: 128, nPositions: 256, vocabSize: 512 }
/** The Llama issue's CPU configs: SmolLM2-135M's shape, and a tiny Llama (GQA 4/2) of the small GPT-2's size. */
export const SMOLLM2_135M = MODEL_SHAPES['SmolLM2-135M']
export const LLAMA_SMALL_CPU = llamaConfig({ vocabSize: 512, hiddenSize: 128, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 32,
  intermediateSize: 344, maxPositions: 256, tieWordEmbeddings: true })
export const LLAMA_32_1B = MODEL_SHAPES['Llama-3.2-1B']
export const QWEN25_05B = MODEL_SHAPES['Qwen2.5-0.5B']

/** torch.optim.AdamW's defaults except weight decay (0.1 on the >= 2-D tensors), clipping at 1.0. */
export const TRAIN_OPT: OptimizerSettings = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0 }
const LAMBDA = 0.1
const PROMPT_FRACTION = 0.25
const GIB = 2 ** 30

/** Parameters in Hugging Face layout (real vocabulary; a tied head counted once). */
export function paramCount(cfg: ModelConfig): number {
  if (cfg.arch === 'gpt2') {
    const C = cfg.nEmbd
    return cfg.vocabSize * C + cfg.nPositions * C + cfg.nLayer * (12 * C * C + 13 * C) + 2 * C
  }
  const C = cfg.hiddenSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim, F = cfg.intermediateSize
  const attn = C * Q * 2 + C * KV * 2 + (cfg.qkvBias ? Q + 2 * KV : 0) + (cfg.oBias ? C : 0) + (cfg.qkNorm ? 2 * cfg.headDim : 0)
  const mlp = 3 * C * F + (cfg.mlpBias ? 2 * F + C : 0)
  return cfg.vocabSize * C * (cfg.tieWordEmbeddings ? 1 : 2) + cfg.numLayers * (attn + mlp + 2 * C) + C
}

/** The parameters that do no FLOPs per token: GPT-2's position table, an untied model's embedding lookup. */
function lookupOnly(cfg: ModelConfig): number {
  if (cfg.arch === 'gpt2') return cfg.nPositions * cfg.nEmbd
  return cfg.tieWordEmbeddings ? 0 : cfg.vocabSize * cfg.hiddenSize
}

/** The LoRA adapters' parameter count for rank r on every linear layer (r·(in + out) each). */
export function adapterCount(cfg: ModelConfig, r: number): number {
  if (cfg.arch === 'gpt2') return cfg.nLayer * r * ((cfg.nEmbd + 3 * cfg.nEmbd) + 2 * cfg.nEmbd + 5 * cfg.nEmbd + 5 * cfg.nEmbd)
  const C = cfg.hiddenSize, Q = cfg.numHeads * cfg.headDim, KV = cfg.numKvHeads * cfg.headDim, F = cfg.intermediateSize
  return cfg.numLayers * r * ((C + Q) + 2 * (C + KV) + (Q + C) + 3 * (C + F))
}

/**
 * 6 * (parameters - lookup-only tables) + 12 * L * T * Q. With LoRA rank r the frozen base
 * does its forward and input gradient only (4 per parameter, no weight gradient), and the
 * adapters the full 6.
 */
export function flopsPerToken(cfg: ModelConfig, T: number, loraRank = 0): number {
  const L = cfg.arch === 'gpt2' ? cfg.nLayer : cfg.numLayers
  const Q = cfg.arch === 'gpt2' ? cfg.nEmbd : cfg.numHeads * cfg.headDim
  const dense = paramCount(cfg) - lookupOnly(cfg)
  if (loraRank > 0) return 4 * dense + 6 * adapterCount(cfg, loraRank) + 12 * L * T * Q
  return 6 * dense + 12 * L * T * Q
}

/** What the train summary needs beyond a BenchCase; prepare() fills in memory. */
export interface TrainMeta {
  label: string
  precision: Precision
  config: ModelConfig
  B: number
  T: number
  params: number
  /** LoRA rank on every linear layer; 0: full fine-tuning. */
  loraRank: number
  flopsPerToken: number
  /** The case checks model.info.memory.total against this (GPT-2 medium: 24 GiB). */
  memoryLimitBytes: number | null
  memory: ModelInfo['memory'] | null
  /** The last step's loss (Σ w·CE / Σ w), a sanity check that the step computed something. */
  lastLoss: number | null
}

export interface TrainCase extends BenchCase {
  train: TrainMeta
}

export function isTrainCase(c: BenchCase): c is TrainCase {
  return c.family === 'train' && (c as Partial<TrainCase>).train !== undefined
}

/** The peer's spec. harness.ts's PeerSpec union does not list 'train' (see trainCase). */
type TrainPeerSpec = OptimizerSettings & PeerModelSpec & {
  kind: 'train'
  B: number
  T: number
  promptLen: number
  lambda: number
  /** CUDA: also time torch.compile and bf16 autocast + torch.compile (slow to compile). */
  compile: boolean
  /** LoRA on every linear layer (plain torch adapters as PEFT computes them), base frozen; absent: full fine-tuning. */
  lora?: { r: number; alpha: number }
}

/** The model as torch_peer.py reads it: GPT-2's fields, or arch 'llama' with LlamaRefSpec's fields (test/support/llama-reference.ts). */
type PeerModelSpec = { arch: 'gpt2'; nLayer: number; nHead: number; nEmbd: number; nPositions: number; vocabSize: number } | {
  arch: 'llama'; vocabSize: number; hidden: number; layers: number; heads: number; kvHeads: number; headDim: number;
  intermediate: number; rmsEps: number; ropeTheta: number; tied: boolean; qkvBias: boolean; oBias: boolean; mlpBias: boolean;
  qkNorm: boolean; ropeScaling?: { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
}

function peerModel(cfg: ModelConfig): PeerModelSpec {
  if (cfg.arch === 'gpt2') return { arch: 'gpt2', nLayer: cfg.nLayer, nHead: cfg.nHead, nEmbd: cfg.nEmbd, nPositions: cfg.nPositions, vocabSize: cfg.vocabSize }
  return {
    arch: 'llama', vocabSize: cfg.vocabSize, hidden: cfg.hiddenSize, layers: cfg.numLayers, heads: cfg.numHeads, kvHeads: cfg.numKvHeads,
    headDim: cfg.headDim, intermediate: cfg.intermediateSize, rmsEps: cfg.rmsNormEps, ropeTheta: cfg.ropeTheta, tied: cfg.tieWordEmbeddings,
    qkvBias: cfg.qkvBias, oBias: cfg.oBias, mlpBias: cfg.mlpBias, qkNorm: cfg.qkNorm,
    ...(cfg.ropeScaling ? { ropeScaling: { type: 'llama3' as const, factor: cfg.ropeScaling.factor, lowFreqFactor: cfg.ropeScaling.lowFreqFactor,
      highFreqFactor: cfg.ropeScaling.highFreqFactor, originalMaxPositionEmbeddings: cfg.ropeScaling.originalMaxPositions } } : {}),
  }
}

/** B rows of T random tokens; the first quarter of each row is prompt (weight lambda). */
export function trainBatch(cfg: ModelConfig, B: number, T: number, seed: number): Batch {
  const r = rng(seed)
  const N = B * T
  const promptLen = Math.floor(T * PROMPT_FRACTION)
  const tokens = new Int32Array(N)
  const targets = new Int32Array(N)
  const weights = new Float32Array(N)
  const kinds = new Uint8Array(N)
  for (let i = 0; i < N; i++) {
    tokens[i] = Math.floor(r() * cfg.vocabSize)
    targets[i] = Math.floor(r() * cfg.vocabSize)
    const prompt = i % T < promptLen
    weights[i] = prompt ? LAMBDA : 1
    kinds[i] = prompt ? 1 : 2
  }
  return { B, T, tokens, targets, weights, kinds }
}

function trainCase(device: Device, cfg: ModelConfig, label: string, slug: string, B: number, T: number,
  o: { minIterations: number; memoryLimitBytes?: number; compile?: boolean; precision?: Precision; lora?: number }): TrainCase {
  const precision: Precision = o.precision ?? (device === 'cuda' ? 'bf16' : 'f32')
  const r = o.lora ?? 0
  if (r > 0) {
    label = `${label} LoRA r${r}`
    slug = `${slug}-lora${r}`
  }
  const meta: TrainMeta = {
    label: device === 'cuda' ? `${label} ${precision}` : label, precision, config: cfg, B, T, params: paramCount(cfg), loraRank: r, flopsPerToken: flopsPerToken(cfg, T, r),
    memoryLimitBytes: o.memoryLimitBytes ?? null, memory: null, lastLoss: null,
  }
  const peer: TrainPeerSpec = {
    kind: 'train', ...peerModel(cfg), B, T, promptLen: Math.floor(T * PROMPT_FRACTION), lambda: LAMBDA,
    ...TRAIN_OPT, compile: o.compile ?? true, ...(r > 0 ? { lora: { r, alpha: 2 * r } } : {}),
  }
  return {
    family: 'train',
    id: `train/${device}/${slug}${device === 'cuda' ? `-${precision}` : ''}/B${B}xT${T}`,
    name: 'train step (fwd+bwd+AdamW)',
    shape: `${label} B=${B} T=${T}`,
    dtype: precision === 'bf16' ? 'bfloat16' : 'float32',
    device,
    // MFU: on CUDA against the bf16 dense peak (the usual basis), on the CPU the fp32 peak.
    floor: { kind: 'flops', flops: B * T * meta.flopsPerToken, precision: device === 'cpu' ? 'fp32' : 'bf16' },
    minIterations: o.minIterations,
    // harness.ts's PeerSpec does not list 'train'; peer.ts only spreads the object into the
    // JSON it sends torch_peer.py, which reads the fields above.
    peer: peer as unknown as PeerSpec,
    train: meta,
    prepare: async () => {
      const batch = trainBatch(cfg, B, T, 7)
      const lora = r > 0 ? { r, alpha: 2 * r, dropout: 0, rslora: false, targets: LINEAR_MODULES[cfg.arch] } : undefined
      const model = await initModel(cfg, { seed: 1, device, precision, maxBatch: B, maxSeqLen: T, lora })
      meta.memory = model.info.memory
      const counted = model.baseParameters().reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0)
      if (counted !== meta.params) {
        model.dispose()
        throw new Error(`bench: the engine has ${counted} parameters, the FLOP estimate assumed ${meta.params}`)
      }
      return {
        run: async () => {
          const r = await model.step(batch, TRAIN_OPT)
          const loss = r.lossSum / r.weightSum
          if (!Number.isFinite(loss)) throw new Error(`bench: ${label} step gave a non-finite loss (${loss})`)
          meta.lastLoss = loss
          return r
        },
        dispose: () => model.dispose(),
      }
    },
  }
}

/**
 * CPU: GPT-2 124M at B=4 T=64 and the small config (L=4 NH=4 C=128 V=512) at B=8 T=256, the
 * GPT-2 issue's two CPU targets; SmolLM2-135M's shape at B=4 T=64 and a tiny Llama (L4 C128,
 * GQA 4/2, V512) at B=8 T=256, the Llama issue's; --quick: the two small configs only.
 * CUDA, bf16 mixed precision (the engine's default there): GPT-2 124M at B=8 and B=16, T=1024,
 * and GPT-2 medium at B=8 T=1024 (its memory against 24 GiB; the peer runs it eager only, to
 * keep the run short); plus 124M B=8 in f32 (TF32), the engine's other precision, with the
 * peer eager only; Llama-3.2-1B's and Qwen2.5-0.5B's shapes at B=1 T=2048 (the Llama issue's
 * GPU targets); --quick: 124M at B=4 T=256 in bf16.
 */
export function trainStepCases(device: Device, quick: boolean): BenchCase[] {
  if (device === 'cpu') {
    const small = trainCase('cpu', GPT2_SMALL_CPU, 'L4 NH4 C128 V512', 'l4-c128-v512', 8, 256, { minIterations: 10 })
    const llamaSmall = trainCase('cpu', LLAMA_SMALL_CPU, 'Llama L4 C128 GQA4/2 V512', 'llama-l4-c128-v512', 8, 256, { minIterations: 10 })
    if (quick) return [small, llamaSmall]
    return [trainCase('cpu', GPT2_124M, 'GPT-2 124M', 'gpt2-124m', 4, 64, { minIterations: 3 }), small,
      trainCase('cpu', SMOLLM2_135M, 'SmolLM2-135M shape', 'smollm2-135m', 4, 64, { minIterations: 3 }),
      trainCase('cpu', SMOLLM2_135M, 'SmolLM2-135M shape', 'smollm2-135m', 4, 64, { minIterations: 3, lora: 16 }), llamaSmall]
  }
  if (quick) return [trainCase('cuda', GPT2_124M, 'GPT-2 124M', 'gpt2-124m', 4, 256, { minIterations: 5 })]
  return [
    trainCase('cuda', LLAMA_32_1B, 'Llama-3.2-1B shape', 'llama-3.2-1b', 1, 2048, { minIterations: 3 }),
    trainCase('cuda', LLAMA_32_1B, 'Llama-3.2-1B shape', 'llama-3.2-1b', 1, 2048, { minIterations: 3, lora: 16 }),
    trainCase('cuda', QWEN25_05B, 'Qwen2.5-0.5B shape', 'qwen2.5-0.5b', 1, 2048, { minIterations: 3 }),
    trainCase('cuda', GPT2_124M, 'GPT-2 124M', 'gpt2-124m', 8, 1024, { minIterations: 5 }),
    trainCase('cuda', GPT2_124M, 'GPT-2 124M', 'gpt2-124m', 8, 1024, { minIterations: 5, precision: 'f32', compile: false }),
    trainCase('cuda', GPT2_124M, 'GPT-2 124M', 'gpt2-124m', 16, 1024, { minIterations: 5 }),
    trainCase('cuda', GPT2_MEDIUM, 'GPT-2 medium', 'gpt2-medium', 8, 1024,
      { minIterations: 3, memoryLimitBytes: 24 * GIB, compile: false }),
  ]
}

/** What the train summary reads of a result row (run.ts's Row has these fields). */
export interface TrainRowView {
  id: string
  timing: Timing | null
  torch: PeerResult | null
  torchError: string | null
  error: string | null
}

/** Extra fields of the peer's train results (torch_peer.py's run_train). */
interface TrainPeerResult extends PeerResult {
  peak_mem_bytes?: number
  compile_ms?: number
  compile_warmup_s?: number
  compile_error?: string
  bf16_ms?: number
  bf16_error?: string
  bf16_compile_ms?: number
  bf16_compile_warmup_s?: number
  bf16_compile_error?: string
  blas?: string
}

function fmt(ms: number): string {
  return ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3)
}

function tokS(tokens: number, ms: number): string {
  const t = tokens / (ms / 1e3)
  return t >= 1e5 ? `${(t / 1e3).toFixed(0)}k` : t >= 1e4 ? `${(t / 1e3).toFixed(1)}k` : t.toFixed(0)
}

function pad(cells: string[][], right: boolean[]): string[] {
  const widths = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)))
  const line = (c: string[]): string => '| ' + c.map((x, i) => (right[i] ? x.padStart(widths[i]) : x.padEnd(widths[i]))).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => (right[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'
  return [line(cells[0]), sep, ...cells.slice(1).map(line)]
}

/** JSON-ready figures of one train row (for --json). */
export function trainFigures(c: TrainCase, row: TrainRowView, cpu?: CpuCeilings, gpu?: GpuCeilings): Record<string, unknown> {
  const m = c.train
  const tokens = m.B * m.T
  const out: Record<string, unknown> = { ...m, tokensPerStep: tokens }
  if (row.timing) {
    const s = row.timing.medianMs / 1e3
    const flops = tokens * m.flopsPerToken / s
    out.tokensPerSecond = tokens / s
    out.flopsPerSecond = flops
    if (c.device === 'cpu' && cpu) out.fractionOfFp32Peak = flops / (cpu.peakGflops * 1e9)
    if (c.device === 'cuda' && gpu) {
      out.mfuBf16 = flops / (gpu.bf16Tflops * 1e12)
      out.fractionOfTf32Peak = flops / (gpu.tf32Tflops * 1e12)
    }
  }
  if (m.memory && m.memoryLimitBytes !== null) out.fitsMemoryLimit = m.memory.total <= m.memoryLimitBytes
  return out
}

/** The fastest step time among the torch variants the peer ran. */
function fastestTorch(t: TrainPeerResult): number {
  return Math.min(...[t.ms, t.compile_ms, t.bf16_ms, t.bf16_compile_ms].filter((x): x is number => x !== undefined))
}

/**
 * The training-step summary printed under the device's table: tokens/s, FLOP rate against
 * the peaks, memory, and every torch variant the peer timed.
 */
export function trainSummary(device: Device, items: Array<{ c: TrainCase; row: TrainRowView }>,
  cpu?: CpuCeilings, gpu?: GpuCeilings): string {
  if (items.length === 0) return ''
  const lines: string[] = []
  const basis = (fpt: number, T: number, cfg: ModelConfig, rank: number): string => {
    const L = cfg.arch === 'gpt2' ? cfg.nLayer : cfg.numLayers
    const Q = cfg.arch === 'gpt2' ? cfg.nEmbd : cfg.numHeads * cfg.headDim
    const dense = ((paramCount(cfg) - lookupOnly(cfg)) / 1e6).toFixed(2)
    const params = rank > 0 ? `4 x ${dense}M + 6 x ${(adapterCount(cfg, rank) / 1e6).toFixed(2)}M (LoRA r${rank})` : `6 x ${dense}M`
    return `${(fpt / 1e6).toFixed(1)} MFLOP/token = ${params} + 12 x ${L} x ${T} x ${Q}`
  }

  if (device === 'cpu') {
    const cells = [['training step', 'B x T', 'ms/step', 'tokens/s', 'GFLOP/s', '% fp32 peak', 'torch eager ms', 'torch tokens/s', 'ours/torch']]
    for (const { c, row } of items) {
      const m = c.train
      const tokens = m.B * m.T
      const f = trainFigures(c, row, cpu)
      const t = row.torch as TrainPeerResult | null
      cells.push([
        m.label, `${m.B} x ${m.T}`,
        row.timing ? fmt(row.timing.medianMs) : 'FAILED',
        row.timing ? tokS(tokens, row.timing.medianMs) : '-',
        f.flopsPerSecond !== undefined ? ((f.flopsPerSecond as number) / 1e9).toFixed(1) : '-',
        f.fractionOfFp32Peak !== undefined ? `${((f.fractionOfFp32Peak as number) * 100).toFixed(1)}%` : '-',
        t ? fmt(t.ms) : row.torchError ? 'error' : '-',
        t ? tokS(tokens, t.ms) : '-',
        t && row.timing ? (row.timing.medianMs / t.ms).toFixed(2) : '-',
      ])
    }
    lines.push(...pad(cells, [false, false, true, true, true, true, true, true, true]))
  } else {
    const cells = [['training step', 'B x T', 'ms/step', 'tokens/s', 'TFLOP/s', 'MFU (bf16)', '% TF32 peak', 'memory',
      'torch f32', 'f32+compile', 'bf16', 'bf16+compile', 'ours/fastest torch']]
    const v = (ms: number | undefined, err: string | undefined): string => (ms !== undefined ? fmt(ms) : err !== undefined ? 'error' : '-')
    for (const { c, row } of items) {
      const m = c.train
      const tokens = m.B * m.T
      const f = trainFigures(c, row, undefined, gpu)
      const t = row.torch as TrainPeerResult | null
      const mem = m.memory ? `${(m.memory.total / GIB).toFixed(2)} GiB` +
        (m.memoryLimitBytes !== null ? (m.memory.total <= m.memoryLimitBytes ? ' (<= 24 GiB)' : ' (> 24 GiB!)') : '') : '-'
      cells.push([
        m.label, `${m.B} x ${m.T}`,
        row.timing ? fmt(row.timing.medianMs) : 'FAILED',
        row.timing ? tokS(tokens, row.timing.medianMs) : '-',
        f.flopsPerSecond !== undefined ? ((f.flopsPerSecond as number) / 1e12).toFixed(1) : '-',
        f.mfuBf16 !== undefined && Number.isFinite(f.mfuBf16) ? `${((f.mfuBf16 as number) * 100).toFixed(1)}%` : '-',
        f.fractionOfTf32Peak !== undefined && Number.isFinite(f.fractionOfTf32Peak) ? `${((f.fractionOfTf32Peak as number) * 100).toFixed(1)}%` : '-',
        mem,
        t ? fmt(t.ms) : row.torchError ? 'error' : '-',
        t ? v(t.compile_ms, t.compile_error) : '-',
        t ? v(t.bf16_ms, t.bf16_error) : '-',
        t ? v(t.bf16_compile_ms, t.bf16_compile_error) : '-',
        t && row.timing ? (row.timing.medianMs / fastestTorch(t)).toFixed(2) : '-',
      ])
    }
    lines.push(...pad(cells, [false, false, true, true, true, true, true, false, true, true, true, true, true]))
    lines.push('', 'MFU = tokens/s x FLOPs/token / the dense bf16 peak, for either precision; "% TF32 peak" is the same rate ' +
      'against the TF32 dense peak (the f32 engine\'s GEMMs). torch columns: ms per step (torch.cuda.Event); ' +
      '"ours/fastest torch" divides by the fastest variant the peer ran (below 1: we are faster).')
  }
  lines.push('')
  for (const { c, row } of items) {
    const m = c.train
    const tokens = m.B * m.T
    const notes: string[] = [`${basis(m.flopsPerToken, m.T, m.config, m.loraRank)} (${(m.params / 1e6).toFixed(2)}M params)`]
    if (m.memory) {
      const mm = m.memory
      notes.push(`engine memory ${(mm.total / GIB).toFixed(2)} GiB (params ${(mm.parameters / GIB).toFixed(2)}, grads ` +
        `${(mm.gradients / GIB).toFixed(2)}, AdamW ${(mm.optimizer / GIB).toFixed(2)}, activations ${(mm.activations / GIB).toFixed(2)}, ` +
        `scratch ${(mm.scratch / GIB).toFixed(2)})` +
        (m.memoryLimitBytes !== null ? `: ${mm.total <= m.memoryLimitBytes ? 'fits' : 'does NOT fit'} in ${(m.memoryLimitBytes / GIB).toFixed(0)} GiB` : ''))
    }
    if (m.lastLoss !== null) notes.push(`last loss ${m.lastLoss.toFixed(4)}`)
    const t = row.torch as TrainPeerResult | null
    if (t) {
      const ratio = (ms: number | undefined): string => (ms !== undefined && row.timing ? ` (ours/this ${(row.timing.medianMs / ms).toFixed(2)})` : '')
      const parts = [`torch eager f32 ${fmt(t.ms)} ms = ${tokS(tokens, t.ms)} tokens/s (n=${t.n}${t.blas ? `, BLAS ${t.blas}` : ''})`]
      if (t.peak_mem_bytes !== undefined) parts.push(`torch peak memory (eager f32) ${(t.peak_mem_bytes / GIB).toFixed(2)} GiB`)
      if (t.compile_ms !== undefined) {
        parts.push(`torch.compile f32 ${fmt(t.compile_ms)} ms = ${tokS(tokens, t.compile_ms)} tokens/s${ratio(t.compile_ms)}` +
          (t.compile_warmup_s !== undefined ? `, compiled in ${t.compile_warmup_s.toFixed(0)} s` : ''))
      }
      if (t.compile_error !== undefined) parts.push(`torch.compile f32 FAILED: ${t.compile_error}`)
      if (t.bf16_ms !== undefined) parts.push(`bf16 autocast eager ${fmt(t.bf16_ms)} ms${ratio(t.bf16_ms)}`)
      if (t.bf16_error !== undefined) parts.push(`bf16 autocast FAILED: ${t.bf16_error}`)
      if (t.bf16_compile_ms !== undefined) {
        parts.push(`bf16 autocast + torch.compile ${fmt(t.bf16_compile_ms)} ms = ${tokS(tokens, t.bf16_compile_ms)} tokens/s` +
          `${ratio(t.bf16_compile_ms)}` +
          (t.bf16_compile_warmup_s !== undefined ? `, recompiled in ${t.bf16_compile_warmup_s.toFixed(0)} s` : ''))
      }
      if (t.bf16_compile_error !== undefined) parts.push(`bf16 autocast + torch.compile FAILED: ${t.bf16_compile_error}`)
      notes.push(...parts)
    }
    if (row.torchError) notes.push(`torch error: ${row.torchError}`)
    if (row.error) notes.push(`error: ${row.error}`)
    lines.push(`  ${c.id}: ${notes.join('; ')}`)
  }
  return lines.join('\n') + '\n'
}
