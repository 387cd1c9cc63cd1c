/**
 * Every architecture plwtune runs, behind one discriminated union (`arch`): reading a
 * config.json, writing one back, the engine spec, and the tensor-name map. Adding a family
 * means a file here and one in native/engine/arch/.
 */
import type { GPT2Config, NativeSpec } from '../native'
import { ConfigError } from './config-reader'
import { GPT2_ARCHITECTURES, Gpt2ModelConfig, gpt2FromHf, gpt2Keys, gpt2Spec, gpt2ToHf } from './gpt2'
import { LLAMA_ARCHITECTURES, LlamaModelConfig, llamaFromHf, llamaKeys, llamaSpec, llamaToHf } from './llama'

export { ConfigError } from './config-reader'
export type { Gpt2ModelConfig } from './gpt2'
export type { LlamaModelConfig, LlamaFamily, Llama3RopeScaling } from './llama'
export { llamaConfig } from './llama'

export type ModelConfig = Gpt2ModelConfig | LlamaModelConfig

/** config.json `architectures` values plwtune loads. */
export const SUPPORTED_ARCHITECTURES = [...GPT2_ARCHITECTURES, ...Object.keys(LLAMA_ARCHITECTURES)]

const MODEL_TYPE_ARCH: Record<string, string> = {
  gpt2: 'GPT2LMHeadModel', llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM',
  mistral: 'MistralForCausalLM',
}

/** A GPT2Config without `arch` (the API before Llama) is a GPT-2. */
export function normalizeConfig(c: ModelConfig | GPT2Config): ModelConfig {
  return 'arch' in c && c.arch !== undefined ? c : { ...c, arch: 'gpt2' }
}

/** The model config of a parsed config.json; an unsupported architecture is refused by name. */
export function configFromHf(json: Record<string, unknown>, file: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`)
  const listed = Array.isArray(json.architectures) ? json.architectures as unknown[] : []
  const byType = typeof json.model_type === 'string' && Object.hasOwn(MODEL_TYPE_ARCH, json.model_type) ? MODEL_TYPE_ARCH[json.model_type] : undefined
  const name = listed.length > 0 ? String(listed[0]) : byType ?? (json.model_type === undefined ? 'GPT2LMHeadModel' : undefined)
  if (name === undefined || !SUPPORTED_ARCHITECTURES.includes(name)) {
    const what = listed.length > 0 ? `architectures ${JSON.stringify(listed)}` : `model_type "${String(json.model_type)}"`
    throw new ConfigError(`${file}: ${what} is not supported; plwtune loads ${SUPPORTED_ARCHITECTURES.join(', ')}`)
  }
  if (GPT2_ARCHITECTURES.includes(name)) return gpt2FromHf(json, file)
  return llamaFromHf(json, LLAMA_ARCHITECTURES[name], file)
}

/** config.json for a model: every field it was loaded with, its dimensions, and `extra`. */
export function configToHf(c: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return c.arch === 'gpt2' ? gpt2ToHf(c, extra) : llamaToHf(c, extra)
}

export function nativeSpec(c: ModelConfig): NativeSpec {
  return c.arch === 'gpt2' ? gpt2Spec(c) : llamaSpec(c)
}

/** Positions the model was trained for (n_positions / max_position_embeddings, and no more than a sliding window). */
export function maxPositions(c: ModelConfig): number {
  if (c.arch === 'gpt2') return c.nPositions
  return c.slidingWindow > 0 ? Math.min(c.maxPositions, c.slidingWindow) : c.maxPositions
}

export function vocabSize(c: ModelConfig): number {
  return c.vocabSize
}

/** "GPT-2, 4 layers, 4 heads, 128 channels" — for logs. */
export function describeConfig(c: ModelConfig): string {
  if (c.arch === 'gpt2') return `GPT-2, ${c.nLayer} layers, ${c.nHead} heads, ${c.nEmbd} channels`
  const heads = c.numKvHeads === c.numHeads ? `${c.numHeads} heads` : `${c.numHeads} heads (${c.numKvHeads} KV)`
  return `${c.family}, ${c.numLayers} layers, ${heads}, ${c.hiddenSize} hidden, ${c.intermediateSize} MLP` +
    `${c.tieWordEmbeddings ? ', tied head' : ''}`
}

/** The engine's name for a checkpoint key, or null when the key is not a parameter (buffers, a tied head). */
export function engineName(c: ModelConfig, fileKey: string): string | null {
  return c.arch === 'gpt2' ? gpt2Keys.engineName(fileKey) : llamaKeys.engineName(fileKey, c)
}

/** The checkpoint key plwtune writes for an engine name. */
export function fileKey(c: ModelConfig, name: string): string {
  return c.arch === 'gpt2' ? gpt2Keys.fileKey(name) : llamaKeys.fileKey(name)
}
