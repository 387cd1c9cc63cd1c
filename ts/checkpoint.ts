/**
 * Hugging Face GPT-2 model directories: config.json + model.safetensors in, and out again
 * in a form `GPT2LMHeadModel.from_pretrained` loads unchanged (real vocabulary, f32,
 * "transformer." key prefix, the head tied to wte).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { GPT2Config } from './native'
import { GPT2Model, ModelOptions } from './model'
import { openSafetensors, writeSafetensors } from './safetensors'

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'CheckpointError'
  }
}

/** Reads and checks a Hugging Face GPT-2 config.json. */
export function readConfig(dir: string): GPT2Config {
  const file = path.join(dir, 'config.json')
  if (!fs.existsSync(file)) throw new CheckpointError(`${dir}: no config.json (expected a Hugging Face GPT-2 model directory)`)
  let json: Record<string, unknown>
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new CheckpointError(`${file}: not valid JSON (${(err as Error).message})`)
  }
  if (json.model_type !== undefined && json.model_type !== 'gpt2') {
    throw new CheckpointError(`${file}: model_type "${String(json.model_type)}" is not supported (gpt2)`)
  }
  const act = json.activation_function
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new CheckpointError(`${file}: activation_function "${String(act)}" is not supported (gelu_new, the tanh GELU)`)
  }
  const int = (key: string): number => {
    const v = json[key]
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new CheckpointError(`${file}: field "${key}": expected a positive integer, received ${JSON.stringify(v)}`)
    }
    return v
  }
  return { nLayer: int('n_layer'), nHead: int('n_head'), nEmbd: int('n_embd'), nPositions: int('n_positions'), vocabSize: int('vocab_size') }
}

export function configJson(c: GPT2Config, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    activation_function: 'gelu_new',
    layer_norm_epsilon: 1e-5,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_embd: c.nEmbd,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    vocab_size: c.vocabSize,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    ...extra,
  }
}

// Buffers some GPT-2 checkpoints carry that are not parameters.
const IGNORED = /(^|\.)attn\.(bias|masked_bias)$/

/** Loads a Hugging Face GPT-2 directory onto a device. */
export async function loadModel(dir: string, options: ModelOptions = {}): Promise<GPT2Model> {
  const config = readConfig(dir)
  const file = path.join(dir, 'model.safetensors')
  if (!fs.existsSync(file)) {
    const bin = fs.existsSync(path.join(dir, 'pytorch_model.bin'))
    throw new CheckpointError(`${dir}: no model.safetensors${bin ? ' (pytorch_model.bin is not read: convert it with safetensors' +
      "' convert script or `model.save_pretrained(dir, safe_serialization=True)`)" : ''}`)
  }
  const st = openSafetensors(file)
  const model = await GPT2Model.create(config, options)
  try {
    const byName = new Map<string, string>() // engine name -> file key
    for (const key of st.tensors.keys()) {
      const name = key.startsWith('transformer.') ? key.slice('transformer.'.length) : key
      if (IGNORED.test(name) || name === 'lm_head.weight') continue // lm_head is tied to wte
      byName.set(name, key)
    }
    const expected = model.parameters()
    const known = new Set(expected.map((p) => p.name))
    const unexpected = [...byName.keys()].filter((n) => !known.has(n))
    if (unexpected.length) throw new CheckpointError(`${file}: unexpected tensors for GPT-2: ${unexpected.slice(0, 5).join(', ')}`)
    for (const p of expected) {
      const key = byName.get(p.name)
      if (!key) throw new CheckpointError(`${file}: missing tensor "${p.name}" (shape [${p.shape}])`)
      const entry = st.tensors.get(key)!
      if (entry.shape.join(',') !== p.shape.join(',')) {
        throw new CheckpointError(`${file}: tensor "${key}" has shape [${entry.shape}], expected [${p.shape}] for this config.json`)
      }
      model.write(p.name, st.read(key))
    }
    return model
  } catch (err) {
    model.dispose()
    throw err
  } finally {
    st.close()
  }
}

/**
 * Writes config.json and model.safetensors into dir, each atomically (a temporary file in
 * the same directory, fsynced, then renamed over the old one).
 */
export function saveModel(model: GPT2Model, dir: string, extraConfig: Record<string, unknown> = {}): void {
  fs.mkdirSync(dir, { recursive: true })
  const tensors = model.parameters().map((p) => ({ name: `transformer.${p.name}`, shape: p.shape, data: model.read(p.name) }))
  const stTmp = path.join(dir, `.model.safetensors.${process.pid}.tmp`)
  writeSafetensors(stTmp, tensors)
  fs.renameSync(stTmp, path.join(dir, 'model.safetensors'))
  const cfgTmp = path.join(dir, `.config.json.${process.pid}.tmp`)
  fs.writeFileSync(cfgTmp, JSON.stringify(configJson(model.config, extraConfig), null, 2) + '\n')
  fs.renameSync(cfgTmp, path.join(dir, 'config.json'))
}
