/**
 * The CUDA backend against the CPU backend, on fresh random inputs each run (the seed is
 * printed so a failure reproduces). Skipped, with the reason printed, where CUDA cannot run.
 *
 * Error measure: relative error of the whole tensor, ‖cuda − cpu‖ / ‖cpu‖; NaN or Inf in
 * either gives Infinity, so it never passes. Tolerances, by what differs between the two:
 * - same f32 math in another order (expf vs our exp, reduction trees, FMA contraction):
 *   1e-5 (a few ulp of f32 over a well-conditioned sum);
 * - bf16 outputs: both round an f32 value to 8 bits of mantissa, one ulp is 2^-8 = 3.9e-3,
 *   so a whole-tensor error of 5e-3 allows last-bit differences but not a wrong value;
 * - TF32 GEMMs (10-bit mantissa inputs) in the fused head: logits carry ~5e-4 relative
 *   error, hence 2e-3 on the losses and 1e-2 on the gradients;
 * - bf16 GEMMs: bf16 inputs (the CPU gets the same rounded values) and bf16 logits:
 *   1e-2 on the losses and 3e-2 on the gradients.
 * - fused attention (tensor cores on sm_80+): bf16 (P and dS rounded to bf16 before their
 *   products, outputs rounded once) 1e-2 on out and 3e-2 on the gradients, the unfused bf16
 *   path's bounds; lse is f32 from f32 scores: 1e-5. f32 runs as TF32 (Q, K, V, dO, P and dS
 *   rounded to 10-bit mantissas, u = 2^-11, where the CPU keeps f32): the bf16 bounds scaled
 *   by u_tf32 / u_bf16 = 1/8 and doubled for the inputs the CPU sees unrounded (bf16's are
 *   rounded on both sides): 2.5e-3 on out, 7.5e-3 on the gradients; lse from tf32 q.k: each
 *   score moves by ~u sqrt(2/3 hs) scale = 0.8 u, so 2 u = 1e-3 relative.
 */
import {
  tensor, Tensor, Device, DType, weightedCrossEntropyForward, weightedCrossEntropyBackward, fusedHeadCrossEntropyForward,
  fusedHeadCrossEntropyBackward, embeddingForward, embeddingBackward, adamw, flashAttentionForward, flashAttentionBackward,
} from '../ts/native'
import { announceCudaSkip, describeCuda } from './support/devices'
import { rng, randn, randInt, relError, bf16Round } from './support/reference'

announceCudaSkip('cuda.test.ts')

const seed = Date.now() % 1_000_000
const pair = (shape: number[], dtype: DType, data: Float32Array | Int32Array): Record<Device, Tensor> => ({
  cpu: tensor(shape, { dtype, data }),
  cuda: tensor(shape, { dtype, data, device: 'cuda' }),
})

describeCuda(`CUDA matches CPU (seed ${seed})`, () => {
  const r = rng(seed)

  test.each([
    ['float32', 64, 50257, 50304, 1e-5, 1e-5],
    ['float32', 7, 3, 3, 1e-5, 1e-5],
    ['bfloat16', 256, 50257, 50304, 1e-5, 5e-3],
    ['bfloat16', 33, 32000, 32000, 1e-5, 5e-3],
    ['float32', 4, 200000, 200064, 1e-5, 1e-5], // beyond what one block keeps in registers
  ] as Array<[DType, number, number, number, number, number]>)('weighted CE %s N=%d V=%d Vp=%d', async (dtype, N, V, Vp, tolLoss, tolGrad) => {
    const raw = randn(N * Vp, r, 4)
    const logits = dtype === 'bfloat16' ? raw.map(bf16Round) : raw
    const targets = randInt(N, V, r)
    const weights = Float32Array.from({ length: N }, (_, i) => (i % 6 === 0 ? 0 : i % 2 ? 0.1 : 1))
    const norm = 17.25
    const out: Record<string, { sums: { lossSum: number; weightSum: number }; losses: Float32Array; grad: Float32Array; fwd: number }> = {}
    for (const d of ['cpu', 'cuda'] as Device[]) {
      const x = tensor([N, Vp], { dtype, data: logits, device: d })
      const t = tensor([N], { dtype: 'int32', data: targets, device: d })
      const w = tensor([N], { data: weights, device: d })
      const losses = tensor([N], { device: d })
      const fwd = await weightedCrossEntropyForward(x, t, w, { vocabSize: V })
      const sums = await weightedCrossEntropyBackward(x, t, w, norm, { vocabSize: V, losses })
      out[d] = { sums, losses: losses.toArray() as Float32Array, grad: x.toArray() as Float32Array, fwd: fwd.lossSum }
    }
    expect(relError(out.cuda.losses, out.cpu.losses)).toBeLessThan(tolLoss)
    expect(Math.abs(out.cuda.sums.lossSum - out.cpu.sums.lossSum)).toBeLessThan(tolLoss * Math.abs(out.cpu.sums.lossSum))
    expect(out.cuda.fwd).toBeCloseTo(out.cuda.sums.lossSum, 3)
    expect(out.cuda.sums.weightSum).toBe(out.cpu.sums.weightSum)
    expect(relError(out.cuda.grad, out.cpu.grad)).toBeLessThan(tolGrad)
  })

  test('weighted CE on CUDA rejects a bad target with a RangeError naming the row', async () => {
    const x = tensor([3, 5], { device: 'cuda' })
    const t = tensor([3], { dtype: 'int32', data: [0, 5, 1], device: 'cuda' })
    const w = tensor([3], { data: [1, 1, 1], device: 'cuda' })
    await expect(weightedCrossEntropyBackward(x, t, w, 3)).rejects.toThrow(/targets\[1\] = 5/)
    await expect(weightedCrossEntropyForward(x, t, w)).rejects.toThrow(RangeError)
  })

  test('mixed devices are a TypeError', async () => {
    const x = tensor([3, 5], { device: 'cuda' })
    await expect(weightedCrossEntropyForward(x, tensor([3], { dtype: 'int32' }), tensor([3], { device: 'cuda' })))
      .rejects.toThrow(/mixed devices/)
  })

  test.each([
    ['float32', 512, 256, 5000, 5120, 128, 2e-3, 1e-2],
    ['bfloat16', 512, 256, 5000, 5120, 200, 1e-2, 3e-2],
    ['float32', 100, 64, 1000, 1000, 1000, 2e-3, 1e-2],
  ] as Array<[DType, number, number, number, number, number, number, number]>)(
    'fused head %s N=%d C=%d V=%d Vp=%d chunk=%d', async (dtype, N, C, V, Vp, chunk, tolLoss, tolGrad) => {
      const round = (a: Float32Array) => (dtype === 'bfloat16' ? a.map(bf16Round) : a)
      const hidden = round(randn(N * C, r, 1))
      const wte = round(randn(Vp * C, r, 0.05))
      const targets = randInt(N, V, r)
      const weights = Float32Array.from({ length: N }, (_, i) => (i % 5 === 0 ? 0 : i % 3 ? 1 : 0.1))
      const prior = randn(Vp * C, r, 0.01)
      const res: Record<string, { loss: number; losses: Float32Array; dh: Float32Array; dw: Float32Array }> = {}
      for (const d of ['cpu', 'cuda'] as Device[]) {
        // The CPU computes in f32 on the same (rounded) values.
        const dt: DType = d === 'cpu' ? 'float32' : dtype
        const h = tensor([N, C], { dtype: dt, data: hidden, device: d })
        const w = tensor([Vp, C], { dtype: dt, data: wte, device: d })
        const t = tensor([N], { dtype: 'int32', data: targets, device: d })
        const wt = tensor([N], { data: weights, device: d })
        const losses = tensor([N], { device: d })
        const dh = tensor([N, C], { device: d })
        const dw = tensor([Vp, C], { data: prior, device: d })
        const s = await fusedHeadCrossEntropyBackward(h, w, t, wt, 31, dh, dw, { vocabSize: V, chunk, losses })
        const f = await fusedHeadCrossEntropyForward(h, w, t, wt, { vocabSize: V, chunk })
        expect(Math.abs(f.lossSum - s.lossSum)).toBeLessThan(tolLoss * Math.abs(s.lossSum))
        res[d] = { loss: s.lossSum, losses: losses.toArray() as Float32Array, dh: dh.toArray() as Float32Array, dw: dw.toArray() as Float32Array }
      }
      expect(Math.abs(res.cuda.loss - res.cpu.loss)).toBeLessThan(tolLoss * Math.abs(res.cpu.loss))
      expect(relError(res.cuda.losses, res.cpu.losses)).toBeLessThan(tolLoss)
      expect(relError(res.cuda.dh, res.cpu.dh)).toBeLessThan(tolGrad)
      const delta = (a: Float32Array) => a.map((x, i) => x - prior[i])
      expect(relError(delta(res.cuda.dw), delta(res.cpu.dw))).toBeLessThan(tolGrad)
      for (let i = V * C; i < Vp * C; i += 97) expect(res.cuda.dw[i]).toBe(prior[i]) // padded rows untouched
    })

  test('embedding forward is exact and backward matches (deterministic on CUDA too)', async () => {
    const V = 5000, T = 1024, C = 768, N = 4096
    const wte = randn(V * C, r), wpe = randn(T * C, r), dout = randn(N * C, r)
    const tokens = randInt(N, 300, r) // many repeats
    const positions = Int32Array.from({ length: N }, (_, i) => i % T)
    const res: Record<string, Float32Array[]> = {}
    for (const d of ['cpu', 'cuda'] as Device[]) {
      const out = tensor([N, C], { device: d })
      const tt = tensor([N], { dtype: 'int32', data: tokens, device: d })
      const pp = tensor([N], { dtype: 'int32', data: positions, device: d })
      await embeddingForward(out, tt, pp, tensor([V, C], { data: wte, device: d }), tensor([T, C], { data: wpe, device: d }))
      const runs: Float32Array[] = []
      for (let k = 0; k < 2; k++) {
        const dwte = tensor([V, C], { device: d }), dwpe = tensor([T, C], { device: d })
        await embeddingBackward(dwte, dwpe, tensor([N, C], { data: dout, device: d }), tt, pp)
        runs.push(dwte.toArray() as Float32Array, dwpe.toArray() as Float32Array)
      }
      expect(Buffer.from(runs[0].buffer).equals(Buffer.from(runs[2].buffer))).toBe(true)
      res[d] = [out.toArray() as Float32Array, runs[0], runs[1]]
    }
    expect(relError(res.cuda[0], res.cpu[0])).toBe(0)
    expect(relError(res.cuda[1], res.cpu[1])).toBeLessThan(1e-6)
    expect(relError(res.cuda[2], res.cpu[2])).toBeLessThan(1e-6)
  })

  test('adamw over several tensors and steps, with clipping', async () => {
    const sizes = [1, 7, 4096, 1_000_003]
    const params = sizes.map((n) => randn(n, r))
    const hyper = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, maxGradNorm: 1 }
    const state: Record<string, { p: Tensor; g: Tensor; m: Tensor; v: Tensor }[]> = {}
    for (const d of ['cpu', 'cuda'] as Device[]) {
      state[d] = sizes.map((n, i) => ({ p: tensor([n], { data: params[i], device: d }), g: tensor([n], { device: d }),
        m: tensor([n], { device: d }), v: tensor([n], { device: d }) }))
    }
    for (let step = 1; step <= 5; step++) {
      const grads = sizes.map((n) => randn(n, r, 0.01))
      const norms: Record<string, { gradNorm: number; clipCoefficient: number }> = {}
      for (const d of ['cpu', 'cuda'] as Device[]) {
        state[d].forEach((s, i) => s.g.copyFrom(grads[i]))
        norms[d] = await adamw(state[d].map((s, i) => ({ param: s.p, grad: s.g, m: s.m, v: s.v, decay: i % 2 === 0 })),
          { ...hyper, step })
      }
      expect(Math.abs(norms.cuda.gradNorm - norms.cpu.gradNorm)).toBeLessThan(1e-9 * norms.cpu.gradNorm)
      expect(norms.cuda.clipCoefficient).toBe(norms.cpu.clipCoefficient)
    }
    sizes.forEach((_, i) => {
      expect(relError(state.cuda[i].p.toArray(), state.cpu[i].p.toArray())).toBeLessThan(1e-6)
      expect(relError(state.cuda[i].m.toArray(), state.cpu[i].m.toArray())).toBeLessThan(1e-6)
      expect(relError(state.cuda[i].v.toArray(), state.cpu[i].v.toArray())).toBeLessThan(1e-6)
    })
  })

  test.each([
    ['float32', 2, 77, 4, 4, 64, false, 2.5e-3, 7.5e-3], // TF32 on sm_80+ (header)
    ['float32', 1, 130, 8, 2, 128, true, 2.5e-3, 7.5e-3],
    ['bfloat16', 2, 77, 4, 4, 64, false, 1e-2, 3e-2],
    ['bfloat16', 1, 150, 14, 2, 80, true, 1e-2, 3e-2], // GQA 7, packed segments
    ['bfloat16', 1, 64, 2, 1, 96, false, 1e-2, 3e-2],
    ['bfloat16', 2, 129, 4, 2, 128, false, 1e-2, 3e-2],
  ] as Array<[DType, number, number, number, number, number, boolean, number, number]>)(
    'fused attention %s B=%d T=%d NH=%d NKV=%d hs=%d segments=%s', async (dtype, B, T, NH, NKV, hs, packed, tolOut, tolGrad) => {
      const round = (x: Float32Array) => (dtype === 'bfloat16' ? x.map(bf16Round) : x)
      const q = round(randn(B * T * NH * hs, r)), k = round(randn(B * T * NKV * hs, r)), v = round(randn(B * T * NKV * hs, r))
      const dout = round(randn(B * T * NH * hs, r, 0.1))
      const seg = packed ? Int32Array.from({ length: B * T }, (_, i) => Math.floor((i % T) / 37)) : null
      const got: Record<string, Record<string, Float32Array>> = {}
      for (const d of ['cpu', 'cuda'] as Device[]) {
        const dt: DType = d === 'cpu' ? 'float32' : dtype // the CPU takes f32: the same bf16-rounded values
        const t = (shape: number[], data?: Float32Array) => tensor(shape, { dtype: dt, device: d, ...(data ? { data } : {}) })
        const [tq, tk, tv, tdo] = [t([B, T, NH * hs], q), t([B, T, NKV * hs], k), t([B, T, NKV * hs], v), t([B, T, NH * hs], dout)]
        const [out, dq, dk, dv] = [t([B, T, NH * hs]), t([B, T, NH * hs]), t([B, T, NKV * hs]), t([B, T, NKV * hs])]
        const lse = tensor([B, NH, T], { device: d })
        const segments = seg ? tensor([B, T], { dtype: 'int32', data: seg, device: d }) : undefined
        const heads = { nHeads: NH, nKvHeads: NKV, segments }
        await flashAttentionForward(out, lse, tq, tk, tv, heads)
        await flashAttentionBackward(dq, dk, dv, tdo, out, lse, tq, tk, tv, heads)
        got[d] = { out: out.toArray() as Float32Array, lse: lse.toArray() as Float32Array, dq: dq.toArray() as Float32Array,
          dk: dk.toArray() as Float32Array, dv: dv.toArray() as Float32Array }
        for (const x of [tq, tk, tv, tdo, out, dq, dk, dv, lse, ...(segments ? [segments] : [])]) x.dispose()
      }
      expect(relError(got.cuda.out, got.cpu.out)).toBeLessThan(tolOut)
      expect(relError(got.cuda.lse, got.cpu.lse)).toBeLessThan(dtype === 'float32' ? 1e-3 : 1e-5) // TF32 scores
      for (const g of ['dq', 'dk', 'dv']) expect(relError(got.cuda[g], got.cpu[g])).toBeLessThan(tolGrad)
    })

  test('device tensors round trip, and dispose returns the memory', () => {
    const { cpu, cuda } = pair([3, 4], 'float32', randn(12, r))
    expect(Array.from(cuda.toArray())).toEqual(Array.from(cpu.toArray()))
    cuda.dispose()
    expect(cuda.disposed).toBe(true)
  })
})
