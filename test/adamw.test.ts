/**
 * AdamW (cpu) against torch.optim.AdamW's documented update, written here in float64:
 * a closed form for constant gradients, a step-by-step reference for random ones, and the
 * global-norm clipping of torch.nn.utils.clip_grad_norm_.
 */
import { tensor, adamw, AdamWHyper } from '../ts/native'
import { rng, randn, relError } from './support/reference'

const base: AdamWHyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1, maxGradNorm: 0 }

function group(p: Float32Array, decay = true) {
  return { param: tensor([p.length], { data: p }), grad: tensor([p.length]), m: tensor([p.length]), v: tensor([p.length]), decay }
}

/** torch.optim.AdamW for one tensor, float64. */
function referenceStep(p: Float64Array, m: Float64Array, v: Float64Array, g: ArrayLike<number>, h: AdamWHyper, wd: number) {
  const bc1 = 1 - h.beta1 ** h.step
  const bc2 = 1 - h.beta2 ** h.step
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - h.lr * wd
    m[i] = h.beta1 * m[i] + (1 - h.beta1) * g[i]
    v[i] = h.beta2 * v[i] + (1 - h.beta2) * g[i] * g[i]
    p[i] -= (h.lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + h.eps)
  }
}

describe('adamw (cpu)', () => {
  test('constant gradient: the closed form p_t = p_{t-1}(1 − lr·wd) − lr·g/(|g| + eps)', async () => {
    // With g constant, m_t/(1−β1^t) = g and v_t/(1−β2^t) = g², so every step moves by
    // lr·g/(|g|+eps) after the decay: a scalar sequence independent of the betas.
    const p0 = Float32Array.from([1, -2, 0.5, 3, 0])
    const g = Float32Array.from([0.3, -0.01, 2, 1e-3, -5])
    const gr = group(p0)
    gr.grad.copyFrom(g)
    const expected = Float64Array.from(p0)
    for (let t = 1; t <= 25; t++) {
      await adamw([gr], { ...base, step: t })
      for (let i = 0; i < expected.length; i++) {
        expected[i] = expected[i] * (1 - base.lr * base.weightDecay) - (base.lr * g[i]) / (Math.abs(g[i]) + base.eps)
      }
    }
    expect(relError(gr.param.toArray(), expected)).toBeLessThan(2e-6)
  })

  test('random gradients over 20 steps match the float64 torch update; no decay where decay=false', async () => {
    const r = rng(5)
    const n = 1000
    const p0 = randn(n, r)
    const a = group(p0, true)
    const b = group(p0, false)
    const ref = [Float64Array.from(p0), Float64Array.from(p0)]
    const mm = [new Float64Array(n), new Float64Array(n)]
    const vv = [new Float64Array(n), new Float64Array(n)]
    for (let t = 1; t <= 20; t++) {
      const ga = randn(n, r, 0.1), gb = randn(n, r, 0.1)
      a.grad.copyFrom(ga); b.grad.copyFrom(gb)
      const h = { ...base, step: t }
      await adamw([a, b], h)
      referenceStep(ref[0], mm[0], vv[0], ga, h, base.weightDecay)
      referenceStep(ref[1], mm[1], vv[1], gb, h, 0)
    }
    // f32 state vs f64 reference over 20 steps: ~1e-6 relative.
    expect(relError(a.param.toArray(), ref[0])).toBeLessThan(1e-5)
    expect(relError(b.param.toArray(), ref[1])).toBeLessThan(1e-5)
    expect(relError(a.m.toArray(), mm[0])).toBeLessThan(1e-5)
    expect(relError(a.v.toArray(), vv[0])).toBeLessThan(1e-5)
  })

  test('global-norm clipping over all tensors, as clip_grad_norm_', async () => {
    const g1 = Float32Array.from([3, 0]), g2 = Float32Array.from([0, 4]) // global norm 5
    const a = group(new Float32Array(2)), b = group(new Float32Array(2))
    a.grad.copyFrom(g1); b.grad.copyFrom(g2)
    const out = await adamw([a, b], { ...base, weightDecay: 0, maxGradNorm: 1 })
    expect(out.gradNorm).toBeCloseTo(5, 10)
    expect(out.clipCoefficient).toBeCloseTo(1 / (5 + 1e-6), 7)
    // First step of Adam moves by lr·ĝ/(|ĝ|+eps): with clipping ĝ = 0.2·g, still ≈ lr·sign(g).
    const m = a.m.toArray()
    expect(m[0]).toBeCloseTo(0.1 * 3 * out.clipCoefficient, 6) // (1−β1)·g·coef
    const noClip = await adamw([a, b], { ...base, step: 2, maxGradNorm: 10 })
    expect(noClip.clipCoefficient).toBe(1)
    const off = await adamw([a, b], { ...base, step: 3, maxGradNorm: 0 })
    expect(off.gradNorm).toBeCloseTo(5, 10) // still reported when clipping is off
  })

  test('bad hyperparameters and mismatched tensors are rejected', async () => {
    const a = group(new Float32Array(3))
    await expect(adamw([a], { ...base, step: 0 })).rejects.toThrow(/options.step/)
    await expect(adamw([a], { ...base, beta1: 1 })).rejects.toThrow(RangeError)
    await expect(adamw([a], { ...base, lr: NaN })).rejects.toThrow(/options.lr/)
    await expect(adamw([{ ...a, m: tensor([4]) }], base)).rejects.toThrow(/m\[0\]/)
    await expect(adamw([{ ...a, grad: tensor([3], { dtype: 'int32' }) }], base)).rejects.toThrow(/grads\[0\]/)
    await expect(adamw([], base)).rejects.toThrow(/at least one/)
  })
})
