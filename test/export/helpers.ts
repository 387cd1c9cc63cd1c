/**
 * Shared by the GGUF suites: tiny trained models of each architecture, and running GGUF files
 * in node-llama-cpp 3.21.1 (a child process: the package is ESM only, jest runs CommonJS).
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { collate, encodeDataset, recordsFromObjects } from '../../ts/data'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { initModel, Model } from '../../ts/model'
import { ModelConfig } from '../../ts/arch'
import { writeMeta } from '../../ts/model-dir'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'
import { FACTS, QA_TEMPLATE } from '../commands/tiny-model'

export interface LlamaRun {
  continuations: number[][]
  tokenized: number[][]
  detokenized: string[]
  /** LlamaChatSession's answers to `chat` (the file's chat template applied by node-llama-cpp). */
  chats: Array<{ wrapper: string | null; answer: string }>
  info: { bos: number | null; eos: number | null; trainContextSize: number; chatTemplate: string | null; architecture: string | null }
}

export interface LlamaJob { file: string; prompts: number[][]; maxTokens: number; texts?: string[]; chat?: string[]; contextSize?: number }

/** For each job: greedy continuations (up to maxTokens, ending early at an end-of-generation token) and tokenizations. */
export function runLlama(jobs: LlamaJob[]): LlamaRun[] {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-llama-'))
  const req = path.join(dir, 'request.json')
  fs.writeFileSync(req, JSON.stringify({ jobs }))
  const script = path.join(__dirname, 'llama-run.mjs')
  const r = spawnSync(process.execPath, [script, req], { encoding: 'utf8', timeout: 120_000 })
  fs.rmSync(dir, { recursive: true, force: true })
  if (r.status !== 0) throw new Error(`node-llama-cpp failed (${r.status ?? r.signal}):\n${r.stderr}\n${r.stdout}`)
  const line = r.stdout.trim().split('\n').pop() as string
  return JSON.parse(line) as LlamaRun[]
}

/** plwtune's greedy continuation cut where node-llama-cpp's ends: at the first end-of-generation id (not included). */
export function untilEog(tokens: number[], eog: number[], max: number): number[] {
  const out: number[] = []
  for (const t of tokens) {
    if (eog.includes(t) || out.length >= max) break
    out.push(t)
  }
  return out
}

/**
 * A model directory (byte tokenizer files, plwtune.json) of `config` trained `steps` AdamW
 * steps on FACTS under QA_TEMPLATE, so that its greedy answers are confident (no near-ties
 * for two implementations' rounding to break differently).
 */
export async function trainedDir(config: ModelConfig, o: { steps?: number; seed?: number; lr?: number } = {}): Promise<{ dir: string; model: Model }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-gguf-model-'))
  const tok = new ByteTokenizer()
  const records = recordsFromObjects(FACTS.map(([instruction, output]) => ({ instruction, input: '', output }))).records
  const examples = encodeDataset(records, resolveTemplate(QA_TEMPLATE), tok).examples
  const model = await initModel(config, { seed: o.seed ?? 1, maxBatch: examples.length, maxSeqLen: 48, device: 'cpu' })
  const batch = collate(examples, { promptLossWeight: 0.1, padId: tok.eosId })
  for (let s = 0; s < (o.steps ?? 60); s++) {
    await model.step(batch, { lr: o.lr ?? 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
  }
  await model.save(dir)
  writeTokenizerFiles(dir, { byte: { specialTokens: tok.specialTokens, maxLength: 64 } })
  writeMeta(dir, { template: QA_TEMPLATE, format: 'alpaca', promptLossWeight: 0.1, maxLength: 64 })
  return { dir, model }
}
