/**
 * GPT-2 (GPT2LMHeadModel) as plwtune reads and writes it: config.json ↔ config, the engine
 * spec, and the tensor names. Engine names are Hugging Face's without the "transformer."
 * prefix (which files may or may not carry); the head is tied to wte, so no lm_head is kept.
 *
 * The engine's GPT-2 (native/engine/arch/gpt2.h) has its LayerNorm epsilon (1e-5) built into
 * the kernels, ties the head to wte, and has a 4·n_embd MLP with scaled dot-product attention.
 * config.json fields that would change any of that are refused by name, never ignored: a model
 * trained with them would silently compute something else here.
 */
import type { GPT2Config, NativeSpec } from '../native'
import { ConfigError, ConfigReader, MODEL_LIMITS } from './config-reader'

export interface Gpt2ModelConfig extends GPT2Config {
  arch: 'gpt2'
  /** config.json as it was loaded (every field is written back on save). */
  hf?: Record<string, unknown>
}

export const GPT2_ARCHITECTURES = ['GPT2LMHeadModel']

/** GPT-2's LayerNorm epsilon, fixed in the engine's kernels (native/cpu/layernorm.h). */
export const GPT2_LAYER_NORM_EPS = 1e-5

export function gpt2FromHf(json: Record<string, unknown>, file: string): Gpt2ModelConfig {
  const r = new ConfigReader(json, file)
  const act = r.has('activation_function') ? r.str('activation_function') : undefined
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new ConfigError(`${file}: activation_function "${String(act)}" is not supported (gelu_new, the tanh GELU)`)
  }
  const c: Gpt2ModelConfig = {
    arch: 'gpt2',
    nLayer: r.int('n_layer', undefined, MODEL_LIMITS.layers),
    nHead: r.int('n_head', undefined, MODEL_LIMITS.heads),
    nEmbd: r.int('n_embd', undefined, MODEL_LIMITS.hidden),
    nPositions: r.int('n_positions', undefined, MODEL_LIMITS.positions),
    vocabSize: r.int('vocab_size', undefined, MODEL_LIMITS.vocab),
    hf: json,
  }
  if (c.nEmbd % c.nHead !== 0) throw new ConfigError(`${file}: n_embd (${c.nEmbd}) must be a multiple of n_head (${c.nHead})`)
  const refuse = (field: string, value: unknown, why: string): never => {
    throw new ConfigError(`${file}: ${field} ${JSON.stringify(value)} is not supported: ${why}`)
  }
  // transformers' GPT2Config defaults: 1e-5, tied, n_inner null (4·n_embd), scaled attention.
  const eps = r.num('layer_norm_epsilon', GPT2_LAYER_NORM_EPS)
  if (Math.abs(eps - GPT2_LAYER_NORM_EPS) > 1e-12) {
    refuse('layer_norm_epsilon', eps, 'plwtune\'s GPT-2 LayerNorm uses 1e-5 (GPT-2\'s own), built into its kernels')
  }
  if (!r.bool('tie_word_embeddings', true)) {
    refuse('tie_word_embeddings', false, 'plwtune\'s GPT-2 ties the LM head to the token table (transformer.wte.weight); ' +
      'an untied lm_head.weight would be ignored. (The Llama-family models support an untied head.)')
  }
  if (r.has('n_inner') && r.int('n_inner', undefined, MODEL_LIMITS.intermediate) !== 4 * c.nEmbd) {
    refuse('n_inner', json.n_inner, `plwtune's GPT-2 MLP is 4 · n_embd = ${4 * c.nEmbd} wide`)
  }
  if (!r.bool('scale_attn_weights', true)) refuse('scale_attn_weights', false, 'plwtune\'s GPT-2 attention is scaled by 1/√head_dim')
  if (r.bool('scale_attn_by_inverse_layer_idx', false)) {
    refuse('scale_attn_by_inverse_layer_idx', true, 'plwtune\'s GPT-2 attention is scaled by 1/√head_dim only')
  }
  if (r.bool('add_cross_attention', false)) refuse('add_cross_attention', true, 'plwtune runs decoder-only GPT-2 (no cross-attention)')
  return c
}

export function gpt2ToHf(c: Gpt2ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const dims = { n_layer: c.nLayer, n_head: c.nHead, n_embd: c.nEmbd, n_positions: c.nPositions }
  const base = {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    ...dims,
    n_ctx: c.nPositions,
    vocab_size: c.vocabSize,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  }
  return { ...base, ...c.hf, ...dims, vocab_size: c.vocabSize, ...extra }
}

export function gpt2Spec(c: GPT2Config): NativeSpec {
  return {
    arch: 'gpt2', vocabSize: c.vocabSize, hidden: c.nEmbd, layers: c.nLayer, heads: c.nHead, kvHeads: c.nHead,
    headDim: Math.floor(c.nEmbd / c.nHead), intermediate: 4 * c.nEmbd, maxPositions: c.nPositions,
  }
}

// Buffers some GPT-2 checkpoints carry that are not parameters, and the tied head.
const IGNORED = /(^|\.)attn\.(bias|masked_bias)$|^lm_head\.weight$/

export const gpt2Keys = {
  /** The engine's name for a file key, or null for a key that is not a parameter. */
  engineName(fileKey: string): string | null {
    const name = fileKey.startsWith('transformer.') ? fileKey.slice('transformer.'.length) : fileKey
    return IGNORED.test(name) ? null : name
  },
  /** The key written to files (transformers' own layout). */
  fileKey(engineName: string): string {
    return `transformer.${engineName}`
  },
}
