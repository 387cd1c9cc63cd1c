/**
 * The GPT-2 engine on the CPU: logits against an independent float64 forward, every
 * parameter's gradient against central finite differences, determinism, learning, packing
 * isolation, and argument errors.
 */
import { GPT2Config, Batch } from '../ts/native'
import { initModel, GPT2Model } from '../ts/model'
import { gpt2Logits } from './support/gpt2-reference'
import { rng, randInt, relError, crossEntropyRef } from './support/reference'

const tiny: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 8, nPositions: 16, vocabSize: 11 }
const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

function batchOf(B: number, T: number, seed: number, lambda = 0.25): Batch {
  const r = rng(seed)
  const tokens = randInt(B * T, tiny.vocabSize, r)
  const targets = randInt(B * T, tiny.vocabSize, r)
  // Per row: the first 40% prompt, the rest completion, the last position padding.
  const kinds = Uint8Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : i % T < 0.4 * T ? 1 : 2))
  const weights = Float32Array.from(kinds, (k) => (k === 0 ? 0 : k === 1 ? lambda : 1))
  return { B, T, tokens, targets, weights, kinds }
}

/** Widen the tiny model's weights so the loss surface is not flat (std 0.02 is nearly linear). */
async function spread(model: GPT2Model, seed: number): Promise<void> {
  const r = rng(seed)
  for (const p of model.parameters()) {
    const w = model.read(p.name)
    model.write(p.name, w.map((x) => (p.name.includes('ln_') ? x + 0.2 * (r() - 0.5) : x * 10 + 0.05 * (r() - 0.5))))
  }
}

describe('GPT-2 engine (cpu)', () => {
  test('logits match an independent float64 forward', async () => {
    const model = await initModel(tiny, { seed: 1, maxBatch: 2, maxSeqLen: 7 })
    await spread(model, 2)
    const b = batchOf(2, 7, 3)
    const logits = await model.logits(b)
    const ref = gpt2Logits(tiny, (n) => model.read(n), 2, 7, b.tokens)
    // f32 through 2 layers of LayerNorm/attention/MLP: ~1e-6 relative; 1e-5 allowed.
    expect(relError(logits, ref)).toBeLessThan(1e-5)
    // And the loss the engine reports is the CE of those logits.
    const ce = crossEntropyRef(ref, b.targets, b.weights, 14, tiny.vocabSize)
    const ev = await model.evaluate(b)
    expect(ev.lossSum).toBeCloseTo(ce.lossSum, 4)
    model.dispose()
  })

  test('every parameter tensor\'s gradient matches central finite differences', async () => {
    const model = await initModel(tiny, { seed: 4, maxBatch: 2, maxSeqLen: 6 })
    await spread(model, 5)
    const b = batchOf(2, 6, 6)
    const norm = b.weights.reduce((s, w) => s + w, 0)
    await model.accumulate(b, norm)
    const loss = async () => (await model.evaluate(b)).lossSum / norm
    const h = 1e-2
    const r = rng(7)
    for (const p of model.parameters()) {
      const grad = model.read(p.name, 'grad')
      const w = model.read(p.name)
      // A few entries per tensor, biased to ones with a gradient worth measuring.
      const picks = Array.from({ length: 4 }, () => Math.floor(r() * w.length))
      for (const i of picks) {
        const plus = Float32Array.from(w); plus[i] += h
        model.write(p.name, plus)
        const lp = await loss()
        const minus = Float32Array.from(w); minus[i] -= h
        model.write(p.name, minus)
        const lm = await loss()
        model.write(p.name, w)
        const fd = (lp - lm) / (2 * h)
        // f32 loss ~2.4 rounds at ~2e-7, so FD noise is ~2e-5; truncation O(h^2) ~1e-5.
        expect({ name: p.name, i, diff: Math.abs(fd - grad[i]) <= 2e-4 + 2e-2 * Math.abs(fd) })
          .toEqual({ name: p.name, i, diff: true })
      }
    }
    model.dispose()
  })

  test('deterministic: the same seed and data give bitwise the same losses and weights', async () => {
    const run = async () => {
      const model = await initModel(tiny, { seed: 9, maxBatch: 3, maxSeqLen: 8 })
      const losses: number[] = []
      for (let s = 0; s < 4; s++) losses.push((await model.step(batchOf(3, 8, 100 + s), opt)).lossSum)
      const w = model.read('h.1.mlp.c_fc.weight')
      model.dispose()
      return { losses, w }
    }
    const a = await run(), b = await run()
    expect(a.losses).toEqual(b.losses)
    expect(Buffer.from(a.w.buffer).equals(Buffer.from(b.w.buffer))).toBe(true)
  })

  test('learns: the loss on a fixed batch falls by more than half in 60 steps', async () => {
    const model = await initModel(tiny, { seed: 11, maxBatch: 4, maxSeqLen: 12 })
    const b = batchOf(4, 12, 12, 1)
    const first = await model.step(b, { ...opt, lr: 3e-2 })
    let last = first
    for (let s = 0; s < 59; s++) last = await model.step(b, { ...opt, lr: 3e-2 })
    expect(last.lossSum / last.weightSum).toBeLessThan(0.5 * (first.lossSum / first.weightSum))
    expect(last.step).toBe(60)
    model.dispose()
  })

  test('gradient accumulation: two micro-batches with the step normalizer equal one batch', async () => {
    const a = await initModel(tiny, { seed: 13, maxBatch: 4, maxSeqLen: 6 })
    const b = await initModel(tiny, { seed: 13, maxBatch: 4, maxSeqLen: 6 })
    const whole = batchOf(4, 6, 14)
    const half = (lo: number): Batch => ({ B: 2, T: 6, tokens: whole.tokens.slice(lo * 6, lo * 6 + 12),
      targets: whole.targets.slice(lo * 6, lo * 6 + 12), weights: whole.weights.slice(lo * 6, lo * 6 + 12),
      kinds: whole.kinds!.slice(lo * 6, lo * 6 + 12) })
    const one = await a.step(whole, opt)
    const two = await b.step([half(0), half(2)], opt)
    expect(two.lossSum).toBeCloseTo(one.lossSum, 5)
    expect(two.gradNorm).toBeCloseTo(one.gradNorm, 5)
    expect(relError(b.read('h.0.attn.c_attn.weight'), a.read('h.0.attn.c_attn.weight'))).toBeLessThan(1e-5)
    a.dispose(); b.dispose()
  })

  test('packing isolation: two examples packed in one row give the logits, loss and gradients of two rows', async () => {
    const model = await initModel(tiny, { seed: 15, maxBatch: 2, maxSeqLen: 10 })
    await spread(model, 16)
    const r = rng(17)
    const e1 = randInt(4, 11, r), e2 = randInt(6, 11, r), t1 = randInt(4, 11, r), t2 = randInt(6, 11, r)
    const packed: Batch = {
      B: 1, T: 10, tokens: Int32Array.from([...e1, ...e2]), targets: Int32Array.from([...t1, ...t2]),
      weights: Float32Array.from([1, 1, 1, 0, 1, 1, 1, 1, 1, 1]), // the boundary target is not scored
      positions: Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3, 4, 5]), segments: Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    }
    const pad = (a: Int32Array, n: number) => Int32Array.from([...a, ...new Array(n - a.length).fill(0)])
    const separate: Batch = {
      B: 2, T: 6, tokens: Int32Array.from([...pad(e1, 6), ...e2]), targets: Int32Array.from([...pad(t1, 6), ...t2]),
      weights: Float32Array.from([1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
    }
    const lp = await model.logits(packed)
    const ls = await model.logits(separate)
    const V = tiny.vocabSize
    expect(relError(lp.slice(0, 4 * V), ls.slice(0, 4 * V))).toBeLessThan(1e-6)
    expect(relError(lp.slice(4 * V), ls.slice(6 * V))).toBeLessThan(1e-6)
    const ep = await model.evaluate(packed), es = await model.evaluate(separate)
    expect(ep.lossSum).toBeCloseTo(es.lossSum, 5)
    // And the same gradients, for every parameter.
    await model.accumulate(packed, 9)
    const gp = model.parameters().map((p) => model.read(p.name, 'grad'))
    model.zeroGrad()
    await model.accumulate(separate, 9)
    model.parameters().forEach((p, i) => {
      expect({ name: p.name, ok: relError(model.read(p.name, 'grad'), gp[i]) < 1e-5 }).toEqual({ name: p.name, ok: true })
    })
    model.dispose()
  })

  test('errors name the problem and never crash', async () => {
    const model = await initModel(tiny, { maxBatch: 2, maxSeqLen: 4 })
    expect(model.info.memory.total).toBe(model.info.memory.parameters + model.info.memory.gradients +
      model.info.memory.optimizer + model.info.memory.activations + model.info.memory.scratch)
    const b = batchOf(2, 4, 1)
    await expect(model.accumulate({ ...b, B: 3, tokens: new Int32Array(12), targets: new Int32Array(12), weights: new Float32Array(12), kinds: undefined }, 1))
      .rejects.toThrow(/exceeds the model's batch capacity B=2 T=4/)
    const bad = Int32Array.from(b.tokens); bad[5] = 11
    await expect(model.evaluate({ ...b, tokens: bad })).rejects.toThrow(/tokens\[5\] = 11 is outside the vocabulary/)
    await expect(model.accumulate(b, 0)).rejects.toThrow(RangeError)
    await expect(model.evaluate({ ...b, weights: new Float32Array(3) })).rejects.toThrow(/Expected 8 elements \(B\*T\) for batch.weights/)
    const pending = model.evaluate(b)
    await expect(model.evaluate(b)).rejects.toThrow(/busy with evaluate/)
    await pending
    expect(() => model.read('h.9.ln_1.weight')).toThrow(/no parameter named|name of a parameter/)
    model.dispose()
    expect(() => model.parameters()).toThrow(/disposed/)
    await expect(initModel({ ...tiny, nHead: 3 })).rejects.toThrow(/multiple of n_head/)
    // Too big for this machine: refused with the bill, before anything is allocated or touched.
    const gpt2 = { nLayer: 12, nHead: 12, nEmbd: 768, nPositions: 1024, vocabSize: 50257 }
    await expect(initModel(gpt2, { maxBatch: 512, maxSeqLen: 1024 }))
      .rejects.toThrow(/does not fit on cpu: it needs about \d+ MiB \(parameters 475 MiB, gradients 475 MiB, AdamW 950 MiB, activations \d+ MiB/)
    await expect(initModel(tiny, { maxSeqLen: 17 })).rejects.toThrow(/maxSeqLen/)
  })

  test('precision: f32 on the cpu ("auto" resolves to it); bf16 is refused there with the reason', async () => {
    const auto = await initModel(tiny)
    expect(auto.info.precision).toBe('f32')
    expect(auto.precision).toBe('f32')
    auto.dispose()
    const f32 = await initModel(tiny, { device: 'cpu', precision: 'f32' })
    expect(f32.info.precision).toBe('f32')
    f32.dispose()
    await expect(initModel(tiny, { device: 'cpu', precision: 'bf16' })).rejects.toThrow(/bf16 mixed precision runs on CUDA only/)
    await expect(initModel(tiny, { precision: 'fp8' as 'f32' })).rejects.toThrow(/Expected 'f32' or 'bf16' for precision but received/)
  })
})
