/**
 * fused_head_cross_entropy (cpu) against a float64 reference of the unfused math
 * (logits = hidden · wteᵀ, then the weighted CE and its three gradients).
 *
 * Tolerances: the GEMMs accumulate C products in f32 (error ~ sqrt(C)·eps·|h||w|), then the
 * loss sees those logits: 1e-5 relative on losses and 1e-4 on gradients (whole-tensor
 * relative error), far below what any indexing or transpose mistake would give (O(1)).
 */
import { tensor, fusedHeadCrossEntropyForward, fusedHeadCrossEntropyBackward, weightedCrossEntropyBackward, matmul } from '../ts/native'
import { rng, randn, randInt, matmulRef, crossEntropyRef, crossEntropyGradRef, relError } from './support/reference'

function problem(N: number, C: number, V: number, Vp: number, seed: number) {
  const r = rng(seed)
  const hidden = randn(N * C, r, 1)
  const wte = randn(Vp * C, r, 0.3)
  const targets = randInt(N, V, r)
  const weights = Float32Array.from({ length: N }, (_, i) => (i % 4 === 0 ? 0.1 : i % 7 === 0 ? 0 : 1))
  return { N, C, V, Vp, hidden, wte, targets, weights }
}

function reference(p: ReturnType<typeof problem>, norm: number) {
  const logits = matmulRef(p.hidden, p.wte, p.N, p.V, p.C, false, true) // wte rows beyond V unused
  const ce = crossEntropyRef(logits, p.targets, p.weights, p.N, p.V)
  const dlogits = crossEntropyGradRef(logits, p.targets, p.weights, norm, p.N, p.V)
  const dhidden = matmulRef(dlogits, p.wte, p.N, p.C, p.V) // wte[:V] as (V,C)
  const dwte = matmulRef(dlogits, p.hidden, p.V, p.C, p.N, true) // (V,N)·(N,C)
  return { ...ce, dhidden, dwte }
}

describe('fused head cross-entropy (cpu) against float64', () => {
  test.each([
    [1, 1, 1, 1, 1],
    [13, 16, 40, 48, 5],
    [64, 48, 300, 320, 17],
    [64, 48, 300, 320, 64],
    [64, 48, 300, 320, 1000],
  ])('N=%d C=%d V=%d Vp=%d chunk=%d', async (N, C, V, Vp, chunk) => {
    const p = problem(N, C, V, Vp, N + C + V + chunk)
    const norm = 9
    const ref = reference(p, norm)
    const hidden = tensor([N, C], { data: p.hidden })
    const wte = tensor([Vp, C], { data: p.wte })
    const targets = tensor([N], { dtype: 'int32', data: p.targets })
    const weights = tensor([N], { data: p.weights })

    const losses = tensor([N])
    const fwd = await fusedHeadCrossEntropyForward(hidden, wte, targets, weights, { vocabSize: V, chunk, losses })
    expect(relError(losses.toArray(), ref.losses)).toBeLessThan(1e-5)
    expect(Math.abs(fwd.lossSum - ref.lossSum)).toBeLessThanOrEqual(1e-5 * Math.max(1, ref.lossSum))

    const dhidden = tensor([N, C])
    dhidden.fill(7) // overwritten
    const dwte = tensor([Vp, C])
    const prior = randn(Vp * C, rng(1), 0.01)
    dwte.copyFrom(prior) // accumulated into
    const bwd = await fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, norm, dhidden, dwte, { vocabSize: V, chunk })
    expect(bwd.lossSum).toBeCloseTo(fwd.lossSum, 10)
    expect(relError(dhidden.toArray(), ref.dhidden)).toBeLessThan(1e-4)
    const dw = dwte.toArray()
    const expected = Float64Array.from(prior, (x, i) => x + (i < V * C ? ref.dwte[i] : 0)) // padded rows untouched
    expect(relError(dw, expected)).toBeLessThan(1e-4)
    for (let i = V * C; i < Vp * C; i++) expect(dw[i]).toBe(prior[i])
  })

  test('equals the unfused path: matmul to logits, then the CE kernel', async () => {
    const p = problem(40, 32, 200, 200, 3)
    const hidden = tensor([40, 32], { data: p.hidden })
    const wte = tensor([200, 32], { data: p.wte })
    const targets = tensor([40], { dtype: 'int32', data: p.targets })
    const weights = tensor([40], { data: p.weights })
    const logits = tensor([40, 200])
    await matmul(logits, hidden, wte, { transB: true })
    const unfused = await weightedCrossEntropyBackward(logits, targets, weights, 5)
    const dhidden = tensor([40, 32]), dwte = tensor([200, 32])
    const fused = await fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, 5, dhidden, dwte, { chunk: 40 })
    expect(fused.lossSum).toBe(unfused.lossSum) // same GEMM, same loss kernel: same bits
    const dh = tensor([40, 32])
    await matmul(dh, logits, wte)
    expect(relError(dhidden.toArray(), dh.toArray())).toBe(0)
  })

  test('chunks whose weights are all zero give zero loss and zero dhidden and leave dwte alone', async () => {
    const p = problem(16, 8, 30, 30, 8)
    p.weights.fill(0, 0, 8) // the first chunk of 8 is all padding / masked prompt
    const dhidden = tensor([16, 8]); dhidden.fill(5)
    const dwte = tensor([30, 8])
    const losses = tensor([16]); losses.fill(3)
    const args = [tensor([16, 8], { data: p.hidden }), tensor([30, 8], { data: p.wte }),
      tensor([16], { dtype: 'int32', data: p.targets }), tensor([16], { data: p.weights })] as const
    await fusedHeadCrossEntropyBackward(...args, 2, dhidden, dwte, { chunk: 8, losses })
    const ref = reference(p, 2)
    expect(Array.from(dhidden.toArray().slice(0, 64)).every((x) => x === 0)).toBe(true)
    expect(Array.from(losses.toArray().slice(0, 8)).every((x) => x === 0)).toBe(true)
    expect(relError(dwte.toArray(), ref.dwte)).toBeLessThan(1e-4)
  })

  test('argument errors name what is wrong', async () => {
    const h = tensor([4, 8]), w = tensor([10, 8]), t = tensor([4], { dtype: 'int32' }), wt = tensor([4])
    await expect(fusedHeadCrossEntropyForward(h, tensor([10, 7]), t, wt)).rejects.toThrow(/channels, as hidden.*wte/)
    await expect(fusedHeadCrossEntropyForward(h, w, t, wt, { chunk: 0 })).rejects.toThrow(/chunk/)
    await expect(fusedHeadCrossEntropyBackward(h, w, t, wt, 1, tensor([4, 7]), tensor([10, 8]))).rejects.toThrow(/dhidden/)
    await expect(fusedHeadCrossEntropyBackward(h, w, t, wt, 1, tensor([4, 8]), tensor([9, 8]))).rejects.toThrow(/dwte/)
    await expect(fusedHeadCrossEntropyBackward(h, w, t, wt, 0, tensor([4, 8]), tensor([10, 8]))).rejects.toThrow(RangeError)
    const bad = tensor([4], { dtype: 'int32', data: [0, 1, 10, 2] })
    await expect(fusedHeadCrossEntropyForward(h, w, bad, tensor([4], { data: [1, 1, 1, 1] }))).rejects.toThrow(/targets\[2\] = 10/)
  })
})
