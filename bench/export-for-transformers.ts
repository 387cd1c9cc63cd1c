/**
 * Writes small trained Llama-family models for a cross-check with transformers (run by
 * scripts/gpu/run.sh on the GPU machine, which has transformers but no Node build of its
 * own beyond dist/): for each of a tiny Llama-3-style (GQA, tied, llama3 RoPE) and a tiny
 * Qwen2-style (q/k/v biases, untied) model, a few AdamW steps on random data with plwtune,
 * then `save` into OUT/<name>/ and a case file OUT/<name>.json with the token ids and
 * plwtune's logits for them (scripts/gpu/llama_check.py's format), which that script checks
 * by loading the directory with AutoModelForCausalLM; and for each, a LoRA adapter trained on
 * it (OUT/<name>-lora/, with expected_logits.json) for scripts/gpu/peft_adapter_check.py.
 *
 *   node dist/bench/export-for-transformers.js OUT_DIR
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { initModel, loadModel } from '../ts/model'
import { Batch } from '../ts/native'
import { LINEAR_MODULES } from '../ts/lora/settings'
import { LlamaModelConfig, llamaConfig } from '../ts/arch'
import { rng } from './harness'

const MODELS: Record<string, LlamaModelConfig> = {
  'tiny-llama3': llamaConfig({ vocabSize: 97, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16,
    intermediateSize: 160, maxPositions: 64, ropeTheta: 500000, tieWordEmbeddings: true,
    ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } }),
  'tiny-qwen2': llamaConfig({ family: 'qwen2', vocabSize: 97, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 1, headDim: 16,
    intermediateSize: 160, maxPositions: 64, tieWordEmbeddings: false }),
  'tiny-qwen3': llamaConfig({ family: 'qwen3', vocabSize: 97, hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 24,
    intermediateSize: 160, maxPositions: 64, tieWordEmbeddings: false }),
}

async function main(): Promise<void> {
  const out = process.argv[2]
  if (!out) throw new Error('usage: node dist/bench/export-for-transformers.js OUT_DIR')
  for (const [name, config] of Object.entries(MODELS)) {
    const B = 2, T = 24
    const model = await initModel(config, { seed: 3, device: 'cpu', maxBatch: B, maxSeqLen: T })
    const r = rng(5)
    const ids = Int32Array.from({ length: B * T }, () => Math.floor(r() * config.vocabSize))
    const targets = Int32Array.from({ length: B * T }, () => Math.floor(r() * config.vocabSize))
    const batch = { B, T, tokens: ids, targets, weights: new Float32Array(B * T).fill(1) }
    for (let s = 0; s < 5; s++) await model.step(batch, { lr: 3e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
    const dir = path.join(out, name)
    await model.save(dir)
    const logits = await model.logits(batch)
    const tokens = Array.from({ length: B }, (_, b) => Array.from(ids.slice(b * T, (b + 1) * T)))
    fs.writeFileSync(path.join(out, `${name}.json`), JSON.stringify({ name, model_dir: name, tokens, logits: Array.from(logits) }))
    model.dispose()
    console.log(`${name}: saved to ${dir}`)
    await exportAdapter(dir, path.join(out, `${name}-lora`), config, batch, tokens)
  }
}

/**
 * A LoRA adapter on the model just saved (all linear layers, r 4, alpha 8, rsLoRA off), given
 * non-zero B by a few AdamW steps, saved as a PEFT adapter directory with plwtune's logits in
 * expected_logits.json (scripts/gpu/peft_adapter_check.py's format): PEFT loads it on the base
 * and compares its logits with plwtune's.
 */
async function exportAdapter(baseDir: string, dir: string, config: LlamaModelConfig, batch: Batch, tokens: number[][]): Promise<void> {
  const model = await loadModel(baseDir, { device: 'cpu', maxBatch: batch.B, maxSeqLen: batch.T,
    lora: { r: 4, alpha: 8, dropout: 0, rslora: false, targets: LINEAR_MODULES.llama, seed: 9 } })
  for (let s = 0; s < 5; s++) await model.step(batch, { lr: 3e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 })
  await model.save(dir)
  const logits = await model.logits(batch)
  fs.writeFileSync(path.join(dir, 'expected_logits.json'), JSON.stringify({ tokens, shape: [batch.B, batch.T, config.vocabSize],
    logits: Array.from(logits) }))
  model.dispose()
  console.log(`${path.basename(dir)}: adapter saved to ${dir}`)
}

main().catch((e) => {
  console.error((e as Error).message)
  process.exitCode = 1
})
