/**
 * The price of each --recompute mode: one training step (forward, backward, AdamW) of a small
 * GPT-2 and a small GQA Llama at T=256 and T=1024, per mode, best of 5 after a warm-up, in one
 * process (docs/memory.md). On cuda (bf16) the fused kernels against the cuBLASLt attention.
 *
 *   node dist/bench/recompute.js [--device cpu|cuda]
 */
import { Model } from '../ts/model'
import { ModelConfig, llamaConfig } from '../ts/arch'
import { Batch, Device, Recompute } from '../ts/native'

const V = 512
const CONFIGS: Array<[string, ModelConfig]> = [
  ['GPT-2 L4 C128 NH4', { arch: 'gpt2', vocabSize: V, nPositions: 1024, nEmbd: 128, nLayer: 4, nHead: 4 } as ModelConfig],
  ['Llama L4 C256 NH4/2 hs64', llamaConfig({ vocabSize: V, hiddenSize: 256, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 64,
    intermediateSize: 512, maxPositions: 2048 })],
]
const SHAPES: Array<[number, number]> = [[8, 256], [2, 1024]]
const MODES: Recompute[] = ['none', 'attention', 'block']
const device = (process.argv.includes('--device') ? process.argv[process.argv.indexOf('--device') + 1] : 'cpu') as Device
const opt = { lr: 1e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 }

async function stepMs(config: ModelConfig, recompute: Recompute, B: number, T: number): Promise<number> {
  const model = await Model.create(config, { device, recompute, maxBatch: B, maxSeqLen: T })
  await model.initRandom(1)
  const N = B * T
  const batch: Batch = { B, T, tokens: Int32Array.from({ length: N }, (_, i) => (i * 7) % V),
    targets: Int32Array.from({ length: N }, (_, i) => (i * 11) % V), weights: new Float32Array(N).fill(1) }
  await model.step([batch], opt, N)
  let best = Infinity
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint()
    await model.step([batch], opt, N)
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e6)
  }
  model.dispose()
  return best
}

async function main(): Promise<void> {
  console.log(`device ${device}`)
  console.log('| model | B × T | none | attention | block | attention / none | block / none |')
  console.log('|---|---|---:|---:|---:|---:|---:|')
  for (const [name, config] of CONFIGS) {
    for (const [B, T] of SHAPES) {
      const ms: number[] = []
      for (const mode of MODES) ms.push(await stepMs(config, mode, B, T))
      console.log(`| ${name} | ${B} × ${T} | ${ms.map((x) => `${x.toFixed(0)} ms`).join(' | ')} | ` +
        `${(ms[1] / ms[0]).toFixed(2)} | ${(ms[2] / ms[0]).toFixed(2)} |`)
    }
  }
}

main().catch((err) => { console.error(err); process.exit(1) })
