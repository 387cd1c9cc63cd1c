/** Tiny byte-level model directories for the generate and eval suites (CPU, well under a second each). */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { collate, encodeDataset, recordsFromObjects } from '../../ts/data'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { ByteTokenizer } from '../../ts/data/tokenizer'
import { writeMeta } from '../../ts/model-dir'
import { GPT2Config } from '../../ts/native'
import { initModel } from '../../ts/model'
import { writeTokenizerFiles } from '../../ts/train/tokenizer-files'

export const tmp = (prefix = 'plw-cmd-') => fs.mkdtempSync(path.join(os.tmpdir(), prefix))

/** A template whose completion ends with the stop string " END". */
export const QA_TEMPLATE = 'Q: {instruction}\nA: {output} END'

/** What the memorizing model answers. */
export const FACTS: Array<[string, string]> = [['red', 'apple'], ['blue', 'sky'], ['green', 'grass'], ['white', 'snow'],
  ['black', 'night'], ['pink', 'rose']]

export const TINY: GPT2Config = { nLayer: 1, nHead: 2, nEmbd: 32, nPositions: 64, vocabSize: 257 }

export function writeJsonl(file: string, items: unknown[]): string {
  fs.writeFileSync(file, items.map((x) => JSON.stringify(x)).join('\n') + '\n')
  return file
}

/**
 * A model directory: byte tokenizer files, plwtune.json (unless `meta: false`), and a tiny
 * GPT-2 that has memorized `FACTS` under QA_TEMPLATE (`steps` AdamW steps; 0: random weights,
 * scaled by `scale` for confident, well-separated predictions).
 */
export async function tinyModelDir(o: { steps?: number; meta?: boolean; promptLossWeight?: number; scale?: number; seed?: number } = {}): Promise<string> {
  const dir = tmp('plw-model-')
  const tok = new ByteTokenizer()
  const template = resolveTemplate(QA_TEMPLATE)
  const records = recordsFromObjects(FACTS.map(([instruction, output]) => ({ instruction, input: '', output }))).records
  const examples = encodeDataset(records, template, tok).examples
  const model = await initModel(TINY, { seed: o.seed ?? 1, maxBatch: examples.length, maxSeqLen: TINY.nPositions - 1 })
  if (o.scale !== undefined) {
    for (const p of model.parameters()) if (!p.name.includes('ln_')) model.write(p.name, model.read(p.name).map((x) => x * (o.scale as number)))
  }
  const batch = collate(examples, { promptLossWeight: 0.1, padId: tok.eosId })
  for (let s = 0; s < (o.steps ?? 0); s++) {
    await model.step(batch, { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
  }
  await model.save(dir)
  model.dispose()
  writeTokenizerFiles(dir, { byte: { specialTokens: tok.specialTokens, maxLength: TINY.nPositions } })
  if (o.meta !== false) {
    writeMeta(dir, { template: QA_TEMPLATE, format: 'alpaca', promptLossWeight: o.promptLossWeight ?? 0.1, maxLength: TINY.nPositions })
  }
  return dir
}
