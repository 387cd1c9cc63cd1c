/**
 * Recomputation (spec.recompute, docs/memory.md) on the CPU engine:
 * - 'block' gives bitwise the results of 'attention' (the same kernels on the same inputs:
 *   the backward runs each layer's forward again), with LoRA dropout on, and packed rows;
 * - 'attention' (fused, probabilities recomputed) matches 'none' (probabilities kept) within
 *   f32 rounding of a different summation order;
 * - generation's prefill fills the KV cache during the forward, so every mode generates the same;
 * - the bill: 'attention' drops exactly L·B·NH·T² probabilities for L·B·NH·T log-sum-exps,
 *   'block' keeps one layer's set plus each layer's output — computed here from the buffer
 *   list, a second count of what the engine carves; and the model really allocates its plan.
 * The targets (planned for CUDA bf16 without a GPU, when the build has the CUDA backend).
 */
import { Batch, backendInfo, Recompute } from '../ts/native'
import { Model, planMemory } from '../ts/model'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { ModelConfig, llamaConfig } from '../ts/arch'
import { LINEAR_MODULES } from '../ts/lora/settings'
import { rng, randInt, relError } from './support/reference'

const V = 29
const CONFIGS: Array<[string, ModelConfig]> = [
  ['gpt2', { arch: 'gpt2', vocabSize: V, nPositions: 16, nEmbd: 16, nLayer: 3, nHead: 2 } as ModelConfig],
  ['llama GQA', llamaConfig({ vocabSize: V, hiddenSize: 16, numLayers: 3, numHeads: 4, numKvHeads: 2, headDim: 4,
    intermediateSize: 24, maxPositions: 16, tieWordEmbeddings: true })],
  ['qwen3 q/k norm', llamaConfig({ family: 'qwen3', vocabSize: V, hiddenSize: 16, numLayers: 3, numHeads: 4, numKvHeads: 2,
    headDim: 6, intermediateSize: 24, maxPositions: 16, tieWordEmbeddings: false })],
]
const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

/** Two rows; the second packs two examples (segments, restarting positions). */
function batchOf(B: number, T: number, seed: number): Batch {
  const r = rng(seed)
  const segments = Int32Array.from({ length: B * T }, (_, i) => (Math.floor(i / T) === 1 && i % T >= T / 2 ? 1 : 0))
  const positions = Int32Array.from({ length: B * T }, (_, i) => (segments[i] === 1 ? i % T - T / 2 : i % T))
  const weights = Float32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : i % T < T / 3 ? 0.1 : 1))
  return { B, T, tokens: randInt(B * T, V, r), targets: randInt(B * T, V, r), weights, positions, segments }
}

async function modelFor(config: ModelConfig, recompute: Recompute, lora = false): Promise<Model> {
  const model = await Model.create(config, {
    recompute, maxBatch: 2, maxSeqLen: 16,
    lora: lora ? { r: 4, alpha: 8, dropout: 0.2, targets: LINEAR_MODULES[config.arch], rslora: false, seed: 5 } : undefined,
  })
  await model.initRandom(7)
  if (lora) { // non-zero B, so the adapters change the output and get gradients
    const r = rng(3)
    for (const p of model.adapterParameters()) {
      model.write(p.name, Float32Array.from({ length: p.shape.reduce((a, d) => a * d, 1) }, () => 0.3 * (r() - 0.5)))
    }
  }
  return model
}

/** Losses of two training steps and the weights after them. */
async function train(model: Model): Promise<{ losses: number[]; weights: Float32Array[] }> {
  const losses: number[] = []
  for (let step = 0; step < 2; step++) {
    const batches = [batchOf(2, 16, 10 + step), batchOf(2, 16, 20 + step)]
    const norm = batches.reduce((s, b) => s + b.weights.reduce((a, w) => a + w, 0), 0)
    losses.push((await model.step(batches, opt, norm)).lossSum)
  }
  const params = model.lora ? model.adapterParameters() : model.parameters()
  return { losses, weights: params.map((p) => model.read(p.name)) }
}

describe.each(CONFIGS)('recompute (cpu): %s', (_label, config) => {
  test.each([false, true])('block is bitwise attention (LoRA with dropout: %s)', async (lora) => {
    const a = await modelFor(config, 'attention', lora)
    const b = await modelFor(config, 'block', lora)
    expect(a.info.spec.recompute).toBe('attention')
    expect(b.info.spec.recompute).toBe('block')
    const ra = await train(a)
    const rb = await train(b)
    expect(rb.losses).toEqual(ra.losses)
    rb.weights.forEach((w, i) => expect(w).toEqual(ra.weights[i]))
    a.dispose()
    b.dispose()
  })

  test('fused attention matches the kept probabilities: loss and every gradient', async () => {
    const none = await modelFor(config, 'none')
    const fused = await modelFor(config, 'attention')
    const batch = batchOf(2, 16, 31)
    const norm = batch.weights.reduce((a, w) => a + w, 0)
    const ln = await none.accumulate(batch, norm)
    const lf = await fused.accumulate(batch, norm)
    // f32 with the softmax summed in another order (online, per key tile): ~1e-7 relative seen; 1e-5 allowed.
    expect(Math.abs(lf.lossSum - ln.lossSum) / Math.abs(ln.lossSum)).toBeLessThan(1e-5)
    for (const p of none.parameters()) expect(relError(fused.read(p.name, 'grad'), none.read(p.name, 'grad'))).toBeLessThan(1e-5)
    none.dispose()
    fused.dispose()
  })

  test('generation (KV cache filled during the prefill forward) is the same in every mode', async () => {
    const prompt = Int32Array.from([1, 5, 9, 2, 7])
    const outs: number[][] = []
    for (const recompute of ['none', 'attention', 'block'] as const) {
      const m = await modelFor(config, recompute)
      const cached = await m.generate(prompt, { maxNewTokens: 6 })
      const recomputed = await m.generate(prompt, { maxNewTokens: 6, useCache: false })
      expect(cached.tokens).toEqual(recomputed.tokens)
      outs.push(Array.from(cached.tokens))
      m.dispose()
    }
    expect(outs[1]).toEqual(outs[0])
    expect(outs[2]).toEqual(outs[0])
  })
})

describe('the memory bill', () => {
  // Sizes that are multiples of 16 floats, so the arena's 64-byte alignment adds nothing.
  const L = 3, NH = 4, C = 32, B = 2, T = 16, N = B * T
  const gpt2 = { arch: 'gpt2', vocabSize: 64, nPositions: 16, nEmbd: C, nLayer: L, nHead: NH } as ModelConfig
  const plan = (recompute: Recompute) => planMemory(gpt2, { device: 'cpu', maxBatch: B, maxSeqLen: T, recompute })

  test('attention drops the T×T probabilities; block keeps one layer\'s set and each layer\'s output', () => {
    const none = plan('none'), fused = plan('attention'), block = plan('block')
    expect(none.activations - fused.activations).toBe(4 * L * (B * NH * T * T - B * NH * T))
    // GPT-2's per-layer set besides res3: ln1, qkv (3), atty, attproj, res2, ln2, fch (4), fch_gelu (4), fcproj = 17 N·C;
    // two means and two rstds (4 N); the log-sum-exps (B·NH·T).
    expect(fused.activations - block.activations).toBe(4 * (L - 1) * (17 * N * C + 4 * N + B * NH * T))
    expect(block.parameters).toBe(none.parameters)
    expect(fused.scratch).toBeGreaterThan(none.scratch) // the fused op's tiles, held by the op, billed
    expect(plan('auto')).toEqual(fused)
  })

  test('a model allocates exactly its plan, in every mode', async () => {
    for (const recompute of ['none', 'attention', 'block'] as const) {
      const m = await Model.create(gpt2, { recompute, maxBatch: B, maxSeqLen: T })
      expect(m.info.memory).toEqual(plan(recompute))
      m.dispose()
    }
  })

  const GB = 1e9
  const cuda = (name: string, o: { B: number; T: number; recompute: Recompute; lora?: boolean }) =>
    planMemory(MODEL_SHAPES[name], { device: 'cuda', precision: 'bf16', maxBatch: o.B, maxSeqLen: o.T, recompute: o.recompute,
      lora: o.lora ? { r: 16, alpha: 32, dropout: 0.05, targets: LINEAR_MODULES.llama, rslora: false } : undefined })

  test('targets (CUDA bf16, planned): GPT-2 medium loses its 6.4 GB of probabilities', () => {
    if (!backendInfo().cuda.built) return // a build without nvcc cannot plan for CUDA
    const none = cuda('gpt2-medium', { B: 8, T: 1024, recompute: 'none' })
    const fused = cuda('gpt2-medium', { B: 8, T: 1024, recompute: 'attention' })
    expect(none.activations - fused.activations).toBeGreaterThan(6.4 * GB) // 24 layers × 8 × 16 heads × 1024² × 2 bytes
  })

  test('targets: Llama-3.2-1B full fine-tuning B=4 T=4096 within 40 GB with block recomputation', () => {
    if (!backendInfo().cuda.built) return
    expect(cuda('Llama-3.2-1B', { B: 4, T: 4096, recompute: 'block' }).total).toBeLessThan(40 * GB)
  })

  test('targets: Llama-2-7B LoRA r=16 all-linear B=1 T=2048 within 24 GB', () => {
    if (!backendInfo().cuda.built) return
    expect(cuda('Llama-2-7B', { B: 1, T: 2048, recompute: 'block', lora: true }).total).toBeLessThan(24 * GB)
  })
})
