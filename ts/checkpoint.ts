/**
 * Hugging Face model directories, the file side: config.json ↔ a model config (ts/arch/),
 * and the weights in model.safetensors or sharded model-0000i-of-0000N.safetensors with
 * model.safetensors.index.json (ts/tensor-dir.ts). Written so that
 * `AutoModelForCausalLM.from_pretrained` loads them unchanged: real vocabulary, transformers'
 * key names, no lm_head when tied, every config.json field kept. Knows nothing of ts/model.ts:
 * it moves tensors through the read/write callbacks it is given.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ConfigError, ModelConfig, configFromHf, configToHf, engineName, fileKey } from './arch'
import type { GPT2Config, ParameterInfo } from './native'
import { openTensorDir, writeTensorDir, TensorDtype } from './tensor-dir'
import { replaceFile } from './atomic-write'

export type SaveDtype = TensorDtype

/** A model directory that cannot be read: the message names the file, key or field. */
export class CheckpointError extends ConfigError {}

/** Reads and checks config.json; an unsupported architecture is refused, naming the supported ones. */
export function readConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json')
  if (!fs.existsSync(file)) throw new CheckpointError(`${dir}: no config.json (expected a Hugging Face model directory)`)
  let json: Record<string, unknown>
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new CheckpointError(`${file}: not valid JSON (${(err as Error).message})`)
  }
  return configFromHf(json, file)
}

/** config.json's object for a model config (GPT2Config without `arch`: a GPT-2). */
export function configJson(c: ModelConfig | GPT2Config, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return configToHf('arch' in c && c.arch !== undefined ? c : { ...c, arch: 'gpt2' }, extra)
}

const TORCH_DTYPE: Record<SaveDtype, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }

/**
 * Reads every expected parameter of `dir` into `write`, checking names and shapes (extra
 * tensors that are not buffers are an error, as is a missing or misshapen one). Returns the
 * checkpoint's dominant tensor dtype (what a save writes back by default).
 */
export function readWeights(dir: string, config: ModelConfig, expected: ParameterInfo[],
  write: (name: string, data: Float32Array) => void): SaveDtype {
  const single = path.join(dir, 'model.safetensors')
  if (!fs.existsSync(single) && !fs.existsSync(path.join(dir, 'model.safetensors.index.json'))) {
    const bin = fs.existsSync(path.join(dir, 'pytorch_model.bin')) || fs.existsSync(path.join(dir, 'pytorch_model.bin.index.json'))
    throw new CheckpointError(`${dir}: no model.safetensors or model.safetensors.index.json${bin ? ' (pytorch_model.bin is not read: ' +
      'convert it with `model.save_pretrained(dir, safe_serialization=True)`)' : ''}`)
  }
  const files = openTensorDir(dir)
  try {
    const byName = new Map<string, string>() // engine name -> file key
    for (const key of files.keys()) {
      const name = engineName(config, key)
      if (name !== null) byName.set(name, key)
    }
    const known = new Set(expected.map((p) => p.name))
    const unexpected = [...byName.keys()].filter((n) => !known.has(n))
    if (unexpected.length) {
      throw new CheckpointError(`${dir}: tensors this ${config.arch === 'gpt2' ? 'GPT-2' : config.family} config has no place for: ` +
        `${unexpected.slice(0, 5).join(', ')}${unexpected.length > 5 ? `, … (${unexpected.length} in all)` : ''}`)
    }
    for (const p of expected) {
      const key = byName.get(p.name)
      if (!key) throw new CheckpointError(`${dir}: missing tensor "${fileKey(config, p.name)}" (shape [${p.shape}])`)
      const info = files.info(key)
      if (info.shape.join(',') !== p.shape.join(',')) {
        throw new CheckpointError(`${info.file}: tensor "${key}" has shape [${info.shape}], expected [${p.shape}] for this config.json`)
      }
      write(p.name, files.read(key))
    }
    return files.dominantDtype()
  } finally {
    files.close()
  }
}

/**
 * Writes config.json and the weights into dir (sharded above maxShardBytes), each file
 * atomically (temporary name, fsync, rename); config.json's torch_dtype says the dtype written.
 */
export function writeWeights(dir: string, config: ModelConfig, params: ParameterInfo[], read: (name: string) => Float32Array,
  o: { dtype?: SaveDtype; maxShardBytes?: number; extraConfig?: Record<string, unknown> } = {}): void {
  const dtype = o.dtype ?? 'F32'
  writeTensorDir(dir, params.map((p) => ({ name: fileKey(config, p.name), shape: p.shape, read: () => read(p.name) })), {
    dtype, maxShardBytes: o.maxShardBytes,
  })
  const json = configToHf(config, { ...o.extraConfig })
  json.torch_dtype = TORCH_DTYPE[dtype]
  if ('dtype' in json) json.dtype = TORCH_DTYPE[dtype] // transformers >= 5 names it dtype
  replaceFile(path.join(dir, 'config.json'), JSON.stringify(json, null, 2) + '\n')
}
