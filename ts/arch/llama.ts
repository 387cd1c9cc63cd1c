/**
 * The Llama family as plwtune reads and writes it: Llama 2/3.x, TinyLlama, SmolLM2
 * (LlamaForCausalLM), Qwen2/2.5 (Qwen2ForCausalLM), Qwen3 (Qwen3ForCausalLM) and Mistral
 * (MistralForCausalLM) — one engine architecture (native/engine/arch/llama.h) with flags.
 * Field meanings and defaults follow transformers' configuration classes; docs/models.md
 * lists them. Tensor names are transformers' own (model.layers.N.self_attn.q_proj.weight, …).
 */
import type { NativeSpec } from '../native'
import { ConfigError, ConfigReader, MODEL_LIMITS } from './config-reader'

export type LlamaFamily = 'llama' | 'qwen2' | 'qwen3' | 'mistral'

export interface Llama3RopeScaling {
  factor: number
  lowFreqFactor: number
  highFreqFactor: number
  originalMaxPositions: number
}

export interface LlamaModelConfig {
  arch: 'llama'
  family: LlamaFamily
  vocabSize: number
  hiddenSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  /** head_dim; hidden/heads when config.json has none. */
  headDim: number
  intermediateSize: number
  maxPositions: number
  rmsNormEps: number
  ropeTheta: number
  /** The "llama3" rule, or null (plain RoPE). */
  ropeScaling: Llama3RopeScaling | null
  tieWordEmbeddings: boolean
  /** Bias on q_proj, k_proj, v_proj. */
  qkvBias: boolean
  /** Bias on o_proj. */
  oBias: boolean
  mlpBias: boolean
  /** Qwen3: RMSNorm of each query and key head before RoPE. */
  qkNorm: boolean
  /** Sequences longer than this are refused (0: no sliding window). */
  slidingWindow: number
  /** config.json as it was loaded (every field is written back on save). */
  hf?: Record<string, unknown>
}

export const LLAMA_ARCHITECTURES: Record<string, LlamaFamily> = {
  LlamaForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
  MistralForCausalLM: 'mistral',
}
const MODEL_TYPES: Record<LlamaFamily, string> = { llama: 'llama', qwen2: 'qwen2', qwen3: 'qwen3', mistral: 'mistral' }
const ARCH_OF: Record<LlamaFamily, string> = {
  llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM', mistral: 'MistralForCausalLM',
}

function ropeOf(json: Record<string, unknown>, file: string): { theta: number; scaling: Llama3RopeScaling | null } {
  // transformers >= 5 folds rope_theta and rope_scaling into rope_parameters.
  const params = (json.rope_parameters ?? json.rope_scaling) as Record<string, unknown> | null | undefined
  const thetaSource = json.rope_parameters && typeof json.rope_parameters === 'object'
    ? (json.rope_parameters as Record<string, unknown>).rope_theta : json.rope_theta
  const theta = thetaSource === undefined || thetaSource === null ? 10000 : thetaSource
  if (typeof theta !== 'number' || !(theta > 0)) throw new ConfigError(`${file}: field "rope_theta": expected a positive number, received ${JSON.stringify(theta)}`)
  if (params === undefined || params === null) return { theta, scaling: null }
  if (typeof params !== 'object') throw new ConfigError(`${file}: field "rope_scaling": expected an object or null, received ${JSON.stringify(params)}`)
  const type = params.rope_type ?? params.type ?? 'default'
  if (type === 'default') return { theta, scaling: null }
  if (type !== 'llama3') {
    throw new ConfigError(`${file}: rope_scaling type "${String(type)}" is not supported (supported: none, "default", "llama3")`)
  }
  const r = new ConfigReader(params, `${file} rope_scaling`)
  return {
    theta,
    scaling: {
      factor: r.num('factor'),
      lowFreqFactor: r.num('low_freq_factor'),
      highFreqFactor: r.num('high_freq_factor'),
      originalMaxPositions: r.int('original_max_position_embeddings', undefined, MODEL_LIMITS.positions),
    },
  }
}

export function llamaFromHf(json: Record<string, unknown>, family: LlamaFamily, file: string): LlamaModelConfig {
  const r = new ConfigReader(json, file)
  const act = r.str('hidden_act', 'silu')
  if (act !== 'silu') throw new ConfigError(`${file}: hidden_act "${act}" is not supported (silu, the SwiGLU MLP)`)
  const numHeads = r.int('num_attention_heads', undefined, MODEL_LIMITS.heads)
  const hiddenSize = r.int('hidden_size', undefined, MODEL_LIMITS.hidden)
  const { theta, scaling } = ropeOf(json, file)
  const attentionBias = r.bool('attention_bias', false)
  // Qwen2 and Qwen3 have a sliding window only when use_sliding_window is set; Mistral always when given.
  const windowed = family === 'mistral' || (family !== 'llama' && r.bool('use_sliding_window', false))
  const config: LlamaModelConfig = {
    arch: 'llama',
    family,
    vocabSize: r.int('vocab_size', undefined, MODEL_LIMITS.vocab),
    hiddenSize,
    numLayers: r.int('num_hidden_layers', undefined, MODEL_LIMITS.layers),
    numHeads,
    numKvHeads: r.int('num_key_value_heads', numHeads, MODEL_LIMITS.heads),
    headDim: r.int('head_dim', Math.floor(hiddenSize / numHeads), MODEL_LIMITS.headDim),
    intermediateSize: r.int('intermediate_size', undefined, MODEL_LIMITS.intermediate),
    maxPositions: r.int('max_position_embeddings', undefined, MODEL_LIMITS.positions),
    rmsNormEps: r.numIn('rms_norm_eps', 1e-30, 1, 1e-6), // the engine's range (native/binding/model.cpp)
    ropeTheta: theta,
    ropeScaling: scaling,
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    qkvBias: family === 'qwen2' ? true : attentionBias,
    oBias: family === 'qwen2' || family === 'mistral' ? false : attentionBias,
    mlpBias: family === 'llama' ? r.bool('mlp_bias', false) : false,
    qkNorm: family === 'qwen3',
    slidingWindow: windowed && r.has('sliding_window') ? r.int('sliding_window', undefined, MODEL_LIMITS.positions) : 0,
    hf: json,
  }
  if (config.numHeads % config.numKvHeads !== 0) {
    throw new ConfigError(`${file}: num_attention_heads (${config.numHeads}) must be a multiple of num_key_value_heads (${config.numKvHeads})`)
  }
  return config
}

export function llamaToHf(c: LlamaModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const dims: Record<string, unknown> = {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    max_position_embeddings: c.maxPositions,
    tie_word_embeddings: c.tieWordEmbeddings,
  }
  if (c.hf) return { ...c.hf, ...dims, ...extra }
  const fresh: Record<string, unknown> = {
    architectures: [ARCH_OF[c.family]],
    model_type: MODEL_TYPES[c.family],
    hidden_act: 'silu',
    ...dims,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling === null ? null : {
      rope_type: 'llama3', factor: c.ropeScaling.factor, low_freq_factor: c.ropeScaling.lowFreqFactor,
      high_freq_factor: c.ropeScaling.highFreqFactor, original_max_position_embeddings: c.ropeScaling.originalMaxPositions,
    },
    attention_dropout: 0.0,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: 'float32',
  }
  if (c.family === 'llama') Object.assign(fresh, { attention_bias: c.qkvBias, mlp_bias: c.mlpBias, pretraining_tp: 1 })
  if (c.family === 'qwen3') Object.assign(fresh, { attention_bias: c.qkvBias })
  if (c.family !== 'llama') {
    Object.assign(fresh, c.family === 'mistral' ? { sliding_window: c.slidingWindow || null }
      : { use_sliding_window: c.slidingWindow > 0, sliding_window: c.slidingWindow || null })
  }
  return { ...fresh, ...extra }
}

export function llamaSpec(c: LlamaModelConfig): NativeSpec {
  return {
    arch: 'llama',
    vocabSize: c.vocabSize,
    hidden: c.hiddenSize,
    layers: c.numLayers,
    heads: c.numHeads,
    kvHeads: c.numKvHeads,
    headDim: c.headDim,
    intermediate: c.intermediateSize,
    maxPositions: c.maxPositions,
    normEps: c.rmsNormEps,
    ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling,
    tiedHead: c.tieWordEmbeddings,
    qkvBias: c.qkvBias,
    oBias: c.oBias,
    mlpBias: c.mlpBias,
    qkNorm: c.qkNorm,
    slidingWindow: c.slidingWindow,
  }
}

/** A fresh Llama-family config for `initModel` (small experiments and tests). */
export function llamaConfig(o: Partial<LlamaModelConfig> & Pick<LlamaModelConfig, 'vocabSize'>): LlamaModelConfig {
  const family = o.family ?? 'llama'
  const hiddenSize = o.hiddenSize ?? 128
  const numHeads = o.numHeads ?? 4
  return {
    arch: 'llama',
    family,
    hiddenSize,
    numLayers: 4,
    numHeads,
    numKvHeads: numHeads,
    headDim: Math.floor(hiddenSize / numHeads),
    intermediateSize: Math.round((hiddenSize * 8) / 3 / 8) * 8,
    maxPositions: 256,
    rmsNormEps: 1e-5,
    ropeTheta: family === 'qwen2' || family === 'qwen3' ? 1e6 : 10000,
    ropeScaling: null,
    tieWordEmbeddings: true,
    qkvBias: family === 'qwen2',
    oBias: false,
    mlpBias: false,
    qkNorm: family === 'qwen3',
    slidingWindow: 0,
    ...o,
  }
}

export const llamaKeys = {
  engineName(fileKey: string, config: LlamaModelConfig): string | null {
    // Rotary tables some old checkpoints carry are buffers, not parameters; a tied head may be saved anyway.
    if (/\.rotary_emb\.inv_freq$/.test(fileKey)) return null
    if (fileKey === 'lm_head.weight' && config.tieWordEmbeddings) return null
    return fileKey
  },
  fileKey(engineName: string): string {
    return engineName
  },
}
