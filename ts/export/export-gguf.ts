/**
 * A plwtune / Hugging Face model directory (and optionally a LoRA adapter merged in on the
 * way) as one GGUF file for llama.cpp, node-llama-cpp, Ollama and LM Studio.
 *
 * Weights are read straight from the safetensors files (f32, f16 or bf16 on disk), one tensor
 * at a time, never onto the engine: exporting a model needs about one tensor's memory, not
 * the 16 bytes per parameter of a trainable model. An adapter's layers are merged as
 * `plwtune merge` does (W + scaling·B·A, ts/lora/merge.ts), after checking the base is the
 * one the adapter was trained on (plwtune_base.json, when there is one).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { engineName } from '../arch'
import { readConfig } from '../checkpoint'
import { baseDirOf } from '../model'
import { isAdapterDir, readAdapterDir } from '../lora/adapter-dir'
import { checkBase } from '../lora/fingerprint'
import { mergeDelta } from '../lora/merge'
import { loraScaling } from '../lora/settings'
import { openTensorDir } from '../tensor-dir'
import { archPlan, WeightSource } from './gguf-arch'
import { FILE_TYPE, GgufDtype, GgufWriter, gguf } from './gguf-writer'
import { vocabPlan } from './gguf-vocab'
import { chatTemplateFor } from './gguf-chat-template'
import { readMeta } from '../model-dir'
import { resolveTemplate } from '../data/resolve-template'

export interface ExportGgufOptions {
  /** A model directory, or a LoRA adapter directory that records its base. */
  model: string
  /** A PEFT LoRA adapter directory merged into `model`. */
  adapter?: string
  out: string
  /** Default f32. */
  dtype?: GgufDtype
  /** general.name (default: the model directory's name). */
  name?: string
  /** Progress lines ("writing 12/98 tensors, 1.2 GiB of 4.8 GiB"), throttled by the caller. */
  onProgress?: (done: number, total: number, bytesDone: number, bytesTotal: number) => void
}

export interface ExportGgufReport {
  out: string
  arch: string
  dtype: GgufDtype
  tensors: number
  bytes: number
  vocab: string
  chatTemplate: boolean
  /** Layers an adapter was merged into (0 without one). */
  mergedLayers: number
}

/** The weights of `baseDir` (by engine name), with an adapter's deltas added when given. */
function weightSource(baseDir: string, adapterDir: string | undefined, config: ReturnType<typeof readConfig>):
  { src: WeightSource; merged: number; close: () => void } {
  const files = openTensorDir(baseDir)
  const keyOf = new Map<string, string>()
  for (const key of files.keys()) {
    const name = engineName(config, key)
    if (name !== null) keyOf.set(name, key)
  }
  let adapter: ReturnType<typeof readAdapterDir> | null = null
  if (adapterDir !== undefined) {
    adapter = readAdapterDir(adapterDir, config.arch, config)
    if (adapter.base) checkBase(baseDir, adapter.base, adapterDir)
  }
  const scaling = adapter ? loraScaling(adapter.settings) : 0
  const layout = config.arch === 'gpt2' ? 'InOut' : 'OutIn'
  const src: WeightSource = {
    shape(name) {
      const key = keyOf.get(name)
      return key === undefined ? null : files.info(key).shape
    },
    read(name) {
      const key = keyOf.get(name)
      if (key === undefined) throw new Error(`${baseDir}: no tensor for ${name}`)
      const w = files.read(key)
      if (!adapter) return w
      const module = name.replace(/\.weight$/, '')
      const A = adapter.tensors.get(`${module}.lora_A.weight`)
      const B = adapter.tensors.get(`${module}.lora_B.weight`)
      if (!A || !B || !name.endsWith('.weight')) return w
      const [r, IC] = A.shape
      const OC = B.shape[0]
      return mergeDelta(layout, w, A.data, B.data, IC, OC, r, scaling)
    },
  }
  const merged = adapter ? [...adapter.tensors.keys()].filter((k) => k.endsWith('.lora_A.weight')).length : 0
  return { src, merged, close: () => files.close() }
}

/** A chat template from the template the model was trained with (plwtune.json), or null. */
function trainedChatTemplate(dir: string): string | null {
  const meta = readMeta(dir)
  if (meta === null || typeof meta.template !== 'string' || meta.template === 'chat_template') return null
  try {
    return chatTemplateFor(resolveTemplate(meta.template, { format: meta.format }))
  } catch {
    return null
  }
}

/** Writes `o.out` (atomically); returns what was written. */
export async function exportGguf(o: ExportGgufOptions): Promise<ExportGgufReport> {
  const dtype = o.dtype ?? 'f32'
  let adapterDir = o.adapter
  let baseDir = o.model
  if (adapterDir === undefined && isAdapterDir(o.model)) {
    adapterDir = o.model
    baseDir = baseDirOf(o.model)
  }
  const config = readConfig(baseDir)
  // Tokenizer (and chat template) from the adapter's directory when it has one, as the other commands read it.
  const tokDir = adapterDir !== undefined && fs.existsSync(path.join(adapterDir, 'tokenizer.json')) ? adapterDir : baseDir
  const vocab = await vocabPlan(tokDir, config.vocabSize, trainedChatTemplate(tokDir))
  const { src, merged, close } = weightSource(baseDir, adapterDir, config)
  try {
    const plan = archPlan(config, src, dtype)
    const w = new GgufWriter()
    w.set('general.architecture', gguf.str(plan.arch))
    w.set('general.name', gguf.str(o.name ?? path.basename(path.resolve(adapterDir ?? baseDir))))
    w.set('general.file_type', gguf.u32(FILE_TYPE[dtype]))
    if (dtype === 'q8_0') w.set('general.quantization_version', gguf.u32(2))
    for (const [k, v] of plan.kv) w.set(k, v)
    for (const [k, v] of vocab.kv) w.set(k, v)
    for (const t of plan.tensors) w.addTensor(t)
    w.write(o.out, { onTensor: o.onProgress, what: `the GGUF file (${dtype})` })
    const bytes = fs.statSync(o.out).size
    return {
      out: o.out, arch: plan.arch, dtype, tensors: plan.tensors.length, bytes, vocab: vocab.summary,
      chatTemplate: vocab.kv.some(([k]) => k === 'tokenizer.chat_template'), mergedLayers: merged,
    }
  } finally {
    close()
  }
}
