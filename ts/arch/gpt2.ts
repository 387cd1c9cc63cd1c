/**
 * GPT-2 (GPT2LMHeadModel) as plwtune reads and writes it: config.json ↔ config, the engine
 * spec, and the tensor names. Engine names are Hugging Face's without the "transformer."
 * prefix (which files may or may not carry); the head is tied to wte, so no lm_head is kept.
 */
import type { GPT2Config, NativeSpec } from '../native'
import { ConfigError, ConfigReader } from './config-reader'

export interface Gpt2ModelConfig extends GPT2Config {
  arch: 'gpt2'
  /** config.json as it was loaded (every field is written back on save). */
  hf?: Record<string, unknown>
}

export const GPT2_ARCHITECTURES = ['GPT2LMHeadModel']

export function gpt2FromHf(json: Record<string, unknown>, file: string): Gpt2ModelConfig {
  const r = new ConfigReader(json, file)
  const act = json.activation_function
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new ConfigError(`${file}: activation_function "${String(act)}" is not supported (gelu_new, the tanh GELU)`)
  }
  return {
    arch: 'gpt2',
    nLayer: r.int('n_layer'),
    nHead: r.int('n_head'),
    nEmbd: r.int('n_embd'),
    nPositions: r.int('n_positions'),
    vocabSize: r.int('vocab_size'),
    hf: json,
  }
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
