/**
 * A trained model directory as the commands use it: its tokenizer and what it was trained
 * with. plwtune writes `plwtune.json` into every model directory it
 * saves ({ template, format, promptLossWeight, maxLength }), so generation and evaluation
 * render prompts exactly as training did; a plain Hugging Face directory has none, and the
 * template then comes from the caller (or `auto`).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { ModelConfig, vocabSize } from './arch'
import { readConfig } from './checkpoint'
import { writeFileSynced } from './atomic-write'
import { HfTokenizer } from './data/hf-tokenizer'
import { readJsonObject } from './json-keys'
import { DataFormat } from './data/records'
import { ByteTokenizer, Tokenizer } from './data/tokenizer'

export interface TrainingMeta {
  /** The template spec: a built-in name or a template string. */
  template: string
  format: DataFormat
  promptLossWeight: number
  maxLength: number
}

export const META_FILE = 'plwtune.json'

export function writeMeta(dir: string, meta: TrainingMeta): void {
  writeFileSynced(path.join(dir, META_FILE), JSON.stringify(meta, null, 2) + '\n')
}

export function readMeta(dir: string): TrainingMeta | null {
  const file = path.join(dir, META_FILE)
  return fs.existsSync(file) ? (readJsonObject(file, 'training record') as unknown as TrainingMeta) : null
}

/** A model and a tokenizer that cannot go together. */
export class TokenizerMismatchError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TokenizerMismatchError'
  }
}

/**
 * Refuses a tokenizer whose ids reach past the model's embedding: every id the tokenizer can
 * produce needs a row, so config.json's vocab_size (the rows in the weights) must be at least
 * its largest id + 1 (a larger vocab_size is fine: Qwen pads its table). Checked wherever a
 * model and a tokenizer are paired (train, generate, eval), before anything is written; the
 * engine would otherwise stop at the first out-of-range id of the first step, naming neither file.
 * `tokenizerDir` null: the built-in byte tokenizer.
 */
export function checkTokenizerFits(tokenizer: Tokenizer, tokenizerDir: string | null, modelDir: string, config: ModelConfig = readConfig(modelDir)): void {
  const rows = vocabSize(config)
  if (tokenizer.vocabSize <= rows) return
  const tok = tokenizerDir === null ? 'the built-in byte tokenizer' : path.join(tokenizerDir, 'tokenizer.json')
  throw new TokenizerMismatchError(`${path.join(modelDir, 'config.json')}: vocab_size ${rows} is smaller than the tokenizer's ids ` +
    `(${tok}: largest id ${tokenizer.vocabSize - 1}): ids ${rows} to ${tokenizer.vocabSize - 1} have no row in the model's embedding; ` +
    'use the tokenizer the model was trained with (its own tokenizer.json)')
}

/** The tokenizer of a model directory (tokenizer.json), or the built-in byte tokenizer for `null`. */
export async function loadTokenizer(dir: string | null): Promise<Tokenizer> {
  if (dir === null) return new ByteTokenizer()
  if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) {
    throw new Error(`${dir}: no tokenizer.json (a model directory needs its Hugging Face tokenizer files)`)
  }
  return HfTokenizer.fromDir(dir)
}
