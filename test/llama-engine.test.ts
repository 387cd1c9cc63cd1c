/**
 * The Llama-family engine on the CPU, one tiny model per family flavour: logits against an
 * independent float64 forward (test/support/llama-reference.ts), every parameter tensor's
 * gradient against central finite differences, packed = padded, KV-cache generation =
 * recomputation, train steps in one native call, and refusals with their messages.
 */
import { Batch } from '../ts/native'
import { Model, initModel } from '../ts/model'
import { LlamaModelConfig, llamaConfig } from '../ts/arch'
import { LlamaRefSpec, llamaLogits } from './support/llama-reference'
import { rng, randInt, relError, crossEntropyRef } from './support/reference'

const V = 23
/** The flavours every test runs: each one exercises a different part of the architecture. */
const FLAVOURS: Array<[string, LlamaModelConfig]> = [
  // Llama 3: GQA with n_rep = 2, tied head, llama3 RoPE scaling (factor 8 over 8 original positions)
  ['llama3 GQA tied, llama3 rope', llamaConfig({ vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
    intermediateSize: 24, maxPositions: 32, ropeTheta: 500000, tieWordEmbeddings: true,
    ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8 } })],
  // Llama 2 / TinyLlama style: MHA, untied head, attention_bias and mlp_bias on
  ['llama untied, all biases', llamaConfig({ vocabSize: V, hiddenSize: 12, numLayers: 2, numHeads: 3, numKvHeads: 3, headDim: 4,
    intermediateSize: 20, maxPositions: 32, tieWordEmbeddings: false, qkvBias: true, oBias: true, mlpBias: true })],
  // Qwen2: q/k/v biases, no o bias, GQA 4/1, theta 1e6
  ['qwen2 q/k/v bias, GQA 4/1', llamaConfig({ family: 'qwen2', vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 1,
    headDim: 4, intermediateSize: 24, maxPositions: 32, tieWordEmbeddings: true })],
  // Qwen3: per-head q/k RMSNorm, head_dim (6) independent of hidden/heads (16/4), untied
  ['qwen3 q/k norm, head_dim 6', llamaConfig({ family: 'qwen3', vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2,
    headDim: 6, intermediateSize: 24, maxPositions: 32, tieWordEmbeddings: false })],
]

export function refSpec(c: LlamaModelConfig): LlamaRefSpec {
  return {
    vocabSize: c.vocabSize, hidden: c.hiddenSize, layers: c.numLayers, heads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim,
    intermediate: c.intermediateSize, rmsEps: c.rmsNormEps, ropeTheta: c.ropeTheta,
    ropeScaling: c.ropeScaling === null ? undefined : { type: 'llama3', ...c.ropeScaling,
      originalMaxPositionEmbeddings: c.ropeScaling.originalMaxPositions },
    tied: c.tieWordEmbeddings, qkvBias: c.qkvBias, oBias: c.oBias, mlpBias: c.mlpBias, qkNorm: c.qkNorm,
  }
}

const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

function batchOf(B: number, T: number, seed: number, lambda = 0.25): Batch {
  const r = rng(seed)
  const tokens = randInt(B * T, V, r)
  const targets = randInt(B * T, V, r)
  const kinds = Uint8Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : i % T < 0.4 * T ? 1 : 2))
  const weights = Float32Array.from(kinds, (k) => (k === 0 ? 0 : k === 1 ? lambda : 1))
  return { B, T, tokens, targets, weights, kinds }
}

/** Widen the weights so the loss surface is not flat (std 0.02 is nearly linear). */
function spread(model: Model, seed: number): void {
  const r = rng(seed)
  for (const p of model.parameters()) {
    const w = model.read(p.name)
    const norm = p.name.endsWith('norm.weight') || p.name.endsWith('layernorm.weight')
    model.write(p.name, w.map((x) => (norm ? x + 0.3 * (r() - 0.5) : p.name.endsWith('.bias') ? 0.2 * (r() - 0.5) : x * 15 + 0.05 * (r() - 0.5))))
  }
}

function rows(b: Batch): number[][] {
  return Array.from({ length: b.B }, (_, i) => Array.from(b.tokens.slice(i * b.T, (i + 1) * b.T)))
}

describe.each(FLAVOURS)('Llama-family engine (cpu): %s', (_label, config) => {
  test('parameters are the Hugging Face tensors of this flavour', async () => {
    const model = await initModel(config, { seed: 1 })
    const names = model.parameters().map((p) => p.name)
    expect(names).toContain('model.layers.1.mlp.down_proj.weight')
    expect(names.includes('lm_head.weight')).toBe(!config.tieWordEmbeddings)
    expect(names.includes('model.layers.0.self_attn.q_proj.bias')).toBe(config.qkvBias)
    expect(names.includes('model.layers.0.self_attn.o_proj.bias')).toBe(config.oBias)
    expect(names.includes('model.layers.0.mlp.up_proj.bias')).toBe(config.mlpBias)
    expect(names.includes('model.layers.0.self_attn.q_norm.weight')).toBe(config.qkNorm)
    const shape = (n: string) => model.parameters().find((p) => p.name === n)!.shape
    expect(shape('model.layers.0.self_attn.q_proj.weight')).toEqual([config.numHeads * config.headDim, config.hiddenSize])
    expect(shape('model.layers.0.self_attn.k_proj.weight')).toEqual([config.numKvHeads * config.headDim, config.hiddenSize])
    expect(shape('model.layers.0.self_attn.o_proj.weight')).toEqual([config.hiddenSize, config.numHeads * config.headDim])
    expect(model.read('model.norm.weight').every((x) => x === 1)).toBe(true)
    model.dispose()
  })

  test('logits match an independent float64 forward (packed rows with restarting positions too)', async () => {
    const model = await initModel(config, { seed: 2, maxBatch: 2, maxSeqLen: 9 })
    spread(model, 3)
    const b = batchOf(2, 9, 4)
    const logits = await model.logits(b)
    const ref = llamaLogits(refSpec(config), (n) => model.read(n), rows(b))
    // f32 through 2 layers of RMSNorm/RoPE/attention/SwiGLU: ~1e-6 relative; 2e-5 allowed.
    expect(relError(logits, ref)).toBeLessThan(2e-5)
    const ce = crossEntropyRef(ref, b.targets, b.weights, 18, V)
    expect((await model.evaluate(b)).lossSum).toBeCloseTo(ce.lossSum, 4)
    // A packed row: two examples, positions restarting at 0, segments isolating them.
    const packed: Batch = { ...b, positions: Int32Array.from({ length: 18 }, (_, i) => (i % 9) % 5),
      segments: Int32Array.from({ length: 18 }, (_, i) => ((i % 9) < 5 ? 0 : 1)) }
    const lp = await model.logits(packed)
    const refPacked = llamaLogits(refSpec(config), (n) => model.read(n), rows(b), {
      positions: [0, 1].map((r) => Array.from(packed.positions!.slice(r * 9, r * 9 + 9))),
      segments: [0, 1].map((r) => Array.from(packed.segments!.slice(r * 9, r * 9 + 9))),
    })
    expect(relError(lp, refPacked)).toBeLessThan(2e-5)
    model.dispose()
  })

  test('every parameter tensor\'s gradient matches central finite differences', async () => {
    const model = await initModel(config, { seed: 5, maxBatch: 2, maxSeqLen: 6 })
    spread(model, 6)
    const b = batchOf(2, 6, 7)
    const norm = b.weights.reduce((s, w) => s + w, 0)
    await model.accumulate(b, norm)
    const loss = async () => (await model.evaluate(b)).lossSum / norm
    const h = 1e-2
    const r = rng(8)
    for (const p of model.parameters()) {
      const grad = model.read(p.name, 'grad')
      const w = model.read(p.name)
      for (let k = 0; k < 4; k++) {
        const i = Math.floor(r() * w.length)
        const plus = Float32Array.from(w); plus[i] += h
        model.write(p.name, plus)
        const lp = await loss()
        const minus = Float32Array.from(w); minus[i] -= h
        model.write(p.name, minus)
        const lm = await loss()
        model.write(p.name, w)
        const fd = (lp - lm) / (2 * h)
        // f32 loss ~3 rounds at ~2e-7, so FD noise is ~2e-5; truncation O(h^2) ~1e-5.
        expect({ name: p.name, i, fd, grad: grad[i], ok: Math.abs(fd - grad[i]) <= 3e-4 + 2e-2 * Math.abs(fd) })
          .toEqual({ name: p.name, i, fd, grad: grad[i], ok: true })
      }
    }
    model.dispose()
  })

  test('packing isolation: two examples in one row give the loss and gradients of two padded rows', async () => {
    const model = await initModel(config, { seed: 9, maxBatch: 2, maxSeqLen: 10 })
    spread(model, 10)
    const r = rng(11)
    const e1 = randInt(4, V, r), e2 = randInt(6, V, r), t1 = randInt(4, V, r), t2 = randInt(6, V, r)
    const packed: Batch = {
      B: 1, T: 10, tokens: Int32Array.from([...e1, ...e2]), targets: Int32Array.from([...t1, ...t2]),
      weights: Float32Array.from([1, 1, 1, 0, 1, 1, 1, 1, 1, 1]),
      positions: Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3, 4, 5]), segments: Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    }
    const pad = (a: Int32Array, n: number) => Int32Array.from([...a, ...new Array(n - a.length).fill(0)])
    const separate: Batch = {
      B: 2, T: 6, tokens: Int32Array.from([...pad(e1, 6), ...e2]), targets: Int32Array.from([...pad(t1, 6), ...t2]),
      weights: Float32Array.from([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    }
    expect((await model.evaluate(packed)).lossSum).toBeCloseTo((await model.evaluate(separate)).lossSum, 5)
    await model.accumulate(packed, 9)
    const gp = model.parameters().map((p) => model.read(p.name, 'grad'))
    model.zeroGrad()
    await model.accumulate(separate, 9)
    model.parameters().forEach((p, i) => {
      expect({ name: p.name, ok: relError(model.read(p.name, 'grad'), gp[i]) < 1e-5 }).toEqual({ name: p.name, ok: true })
    })
    model.dispose()
  })

  test('generation: the KV cache gives the tokens of full recomputation, greedy and sampled', async () => {
    const model = await initModel(config, { seed: 12, maxBatch: 1, maxSeqLen: 32 })
    spread(model, 13)
    const prompt = [3, 1, 4, 1, 5]
    const cached = await model.generate(prompt, { maxNewTokens: 12 })
    const full = await model.generate(prompt, { maxNewTokens: 12, useCache: false })
    expect(cached.tokens).toEqual(full.tokens)
    expect(cached.tokens.length).toBe(12)
    const s1 = await model.generate(prompt, { maxNewTokens: 10, temperature: 0.9, topP: 0.95, seed: 4 })
    const s2 = await model.generate(prompt, { maxNewTokens: 10, temperature: 0.9, topP: 0.95, seed: 4, useCache: false })
    expect(s1.tokens).toEqual(s2.tokens)
    // The model stops at its positions.
    const long = await model.generate(Array.from({ length: 30 }, (_, i) => i % V), { maxNewTokens: 10 })
    expect(long).toMatchObject({ stopReason: 'length' })
    expect(long.tokens.length).toBe(2)
    model.dispose()
  })

  test("generation: a chat's next turn keeps the cache's prefix and gives full recomputation's tokens", async () => {
    const model = await initModel(config, { seed: 12, maxBatch: 1, maxSeqLen: 32 })
    spread(model, 13)
    const p1 = [3, 1, 4, 1, 5]
    const g1 = await model.generate(p1, { maxNewTokens: 6, reuseCache: true })
    const p2 = [...p1, ...g1.tokens, 2, 6, 5]
    const g2 = await model.generate(p2, { maxNewTokens: 6, reuseCache: true })
    expect(g2.reusedTokens).toBe(p1.length + g1.tokens.length - 1)
    expect(g2.tokens).toEqual((await model.generate(p2, { maxNewTokens: 6, useCache: false })).tokens)
    model.write('model.norm.weight', model.read('model.norm.weight').map((x) => x * 1.5))
    const g3 = await model.generate(p2, { maxNewTokens: 6, reuseCache: true })
    expect(g3.reusedTokens).toBe(0)
    expect(g3.tokens).toEqual((await model.generate(p2, { maxNewTokens: 6, useCache: false })).tokens)
    model.dispose()
  })

  test('one native call per step: micro-batches accumulate with the step normalizer; the loss falls', async () => {
    const a = await initModel(config, { seed: 14, maxBatch: 4, maxSeqLen: 6 })
    const b = await initModel(config, { seed: 14, maxBatch: 4, maxSeqLen: 6 })
    const whole = batchOf(4, 6, 15, 1)
    const half = (lo: number): Batch => ({ B: 2, T: 6, tokens: whole.tokens.slice(lo * 6, lo * 6 + 12),
      targets: whole.targets.slice(lo * 6, lo * 6 + 12), weights: whole.weights.slice(lo * 6, lo * 6 + 12),
      kinds: whole.kinds!.slice(lo * 6, lo * 6 + 12) })
    const one = await a.step(whole, opt)
    const two = await b.step([half(0), half(2)], opt)
    expect(two.lossSum).toBeCloseTo(one.lossSum, 5)
    expect(two.gradNorm).toBeCloseTo(one.gradNorm, 5)
    expect(two.skipped).toBe(false)
    let last = two
    for (let s = 0; s < 40; s++) last = await b.step(whole, { ...opt, lr: 3e-2 })
    expect(last.lossSum / last.weightSum).toBeLessThan(0.5 * (one.lossSum / one.weightSum))
    expect(last.step).toBe(41)
    a.dispose(); b.dispose()
  })
})

describe('Llama-family engine (cpu): refusals', () => {
  test('a sequence longer than a sliding window, GQA that does not divide, an odd head_dim', async () => {
    const base = llamaConfig({ family: 'mistral', vocabSize: V, hiddenSize: 16, numHeads: 4, maxPositions: 64, slidingWindow: 16 })
    await expect(initModel(base, { maxSeqLen: 32 })).rejects.toThrow(/exceed the model's sliding_window \(16\)/)
    const ok = await initModel(base, { maxSeqLen: 16 })
    expect(ok.maxPositions).toBe(16)
    ok.dispose()
    await expect(initModel({ ...base, slidingWindow: 0, numKvHeads: 3 })).rejects.toThrow(/multiple of num_key_value_heads/)
    await expect(initModel({ ...base, slidingWindow: 0, headDim: 5 })).rejects.toThrow(/head_dim \(5\) must be even/)
  })

  test('the step skips the update when the loss is not finite', async () => {
    const model = await initModel(FLAVOURS[0][1], { seed: 1, maxBatch: 1, maxSeqLen: 4 })
    const name = 'model.layers.0.mlp.up_proj.weight'
    const w = model.read(name)
    model.write(name, w.map(() => Infinity))
    const before = model.read('model.norm.weight')
    const r = await model.step(batchOf(1, 4, 1), opt)
    expect(r.skipped).toBe(true)
    expect(r.step).toBe(0)
    expect(model.read('model.norm.weight')).toEqual(before)
    expect(model.read(name, 'grad').every((x) => x === 0)).toBe(true)
    model.dispose()
  })
})
