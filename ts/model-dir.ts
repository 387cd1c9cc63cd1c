/**
 * A trained model directory as the commands use it: weights (optional), tokenizer and the
 * template it was trained with. plwtune writes `plwtune.json` into every model directory it
 * saves ({ template, format, promptLossWeight, maxLength }), so generation and evaluation
 * render prompts exactly as training did; a plain Hugging Face directory has none, and the
 * template then comes from the caller (or `auto`).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { loadModel } from './model'
import { HfTokenizer } from './data/hf-tokenizer'
import { DataFormat } from './data/records'
import { resolveTemplate } from './data/resolve-template'
import { Template } from './data/template'
import { ByteTokenizer, Tokenizer } from './data/tokenizer'
import { Model, ModelOptions } from './model'

export interface TrainingMeta {
  /** The template spec: a built-in name or a template string. */
  template: string
  format: DataFormat
  promptLossWeight: number
  maxLength: number
}

export const META_FILE = 'plwtune.json'

export function writeMeta(dir: string, meta: TrainingMeta): void {
  fs.writeFileSync(path.join(dir, META_FILE), JSON.stringify(meta, null, 2) + '\n')
}

export function readMeta(dir: string): TrainingMeta | null {
  const file = path.join(dir, META_FILE)
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as TrainingMeta) : null
}

/** The tokenizer of a model directory (tokenizer.json), or the built-in byte tokenizer for `null`. */
export async function loadTokenizer(dir: string | null): Promise<Tokenizer> {
  if (dir === null) return new ByteTokenizer()
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    throw new Error(`${dir}: no tokenizer.json (a model directory needs its Hugging Face tokenizer files)`)
  }
  return HfTokenizer.fromDir(dir)
}

export interface OpenedModel {
  model: Model | null
  tokenizer: Tokenizer
  template: Template
  meta: TrainingMeta | null
}

/**
 * Opens `dir`: its tokenizer, the template (`template` overrides the one it was trained
 * with; default: the trained one, else `auto` for `format`), and, unless `weights` is false,
 * the model on `options.device`.
 */
export async function openModelDir(dir: string, o: { template?: string; format?: DataFormat; weights?: boolean } & ModelOptions = {}): Promise<OpenedModel> {
  const meta = readMeta(dir)
  const tokenizer = await loadTokenizer(dir)
  const spec = o.template ?? meta?.template
  const template = resolveTemplate(spec === undefined || spec === 'auto' ? undefined : spec, { format: o.format ?? meta?.format, tokenizer })
  const model = o.weights === false ? null : await loadModel(dir, o)
  return { model, tokenizer, template, meta }
}
