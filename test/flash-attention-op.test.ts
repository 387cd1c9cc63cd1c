/**
 * The fused attention op as JS calls it (flashAttentionForward/Backward, the benchmarks' entry):
 * against a float64 attention written here (scores, masked softmax, the backward through it),
 * with GQA and packed segments, on the CPU; CUDA in cuda.test.ts's way when a GPU is present.
 * Tolerance: 1e-5 relative to the largest reference value. The kernels' own tests (finite
 * differences, thread counts, tile edges) are in test/native and test/emulator.
 */
import { flashAttentionBackward, flashAttentionForward, tensor, Tensor } from '../ts/native'
import { maxAbsDiff, randn, rng } from './support/reference'

interface Shape { B: number; T: number; NH: number; NKV: number; hs: number }

/** out, lse and the gradients of sum(out * dout), in float64, the textbook way. */
function reference(s: Shape, q: Float32Array, k: Float32Array, v: Float32Array, dout: Float32Array, seg: Int32Array | null) {
  const { B, T, NH, NKV, hs } = s
  const rep = NH / NKV
  const qi = (b: number, t: number, h: number, d: number) => ((b * T + t) * NH + h) * hs + d
  const ki = (b: number, t: number, j: number, d: number) => ((b * T + t) * NKV + j) * hs + d
  const out = new Float64Array(q.length), dq = new Float64Array(q.length)
  const dk = new Float64Array(k.length), dv = new Float64Array(v.length)
  const lse = new Float64Array(B * NH * T)
  const scale = 1 / Math.sqrt(hs)
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < NH; h++) {
      const j = Math.floor(h / rep)
      for (let t = 0; t < T; t++) {
        const keys: number[] = []
        for (let u = 0; u <= t; u++) if (seg === null || seg[b * T + u] === seg[b * T + t]) keys.push(u)
        const sc = keys.map((u) => {
          let d = 0
          for (let c = 0; c < hs; c++) d += q[qi(b, t, h, c)] * k[ki(b, u, j, c)]
          return d * scale
        })
        const m = Math.max(...sc)
        const e = sc.map((x) => Math.exp(x - m))
        const z = e.reduce((a, x) => a + x, 0)
        lse[(b * NH + h) * T + t] = Math.log(z) + m
        const p = e.map((x) => x / z)
        for (let c = 0; c < hs; c++) out[qi(b, t, h, c)] = keys.reduce((a, u, n) => a + p[n] * v[ki(b, u, j, c)], 0)
        // dP = dout . v, dS = P * (dP - sum(P * dP)), dq = dS . k * scale, dk += dS * q * scale, dv += P * dout
        const dp = keys.map((u) => {
          let d = 0
          for (let c = 0; c < hs; c++) d += dout[qi(b, t, h, c)] * v[ki(b, u, j, c)]
          return d
        })
        const dsum = p.reduce((a, x, n) => a + x * dp[n], 0)
        keys.forEach((u, n) => {
          const ds = p[n] * (dp[n] - dsum)
          for (let c = 0; c < hs; c++) {
            dq[qi(b, t, h, c)] += ds * k[ki(b, u, j, c)] * scale
            dk[ki(b, u, j, c)] += ds * q[qi(b, t, h, c)] * scale
            dv[ki(b, u, j, c)] += p[n] * dout[qi(b, t, h, c)]
          }
        })
      }
    }
  }
  return { out, lse, dq, dk, dv }
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]))
  return m
}

function expectClose(got: Float32Array, want: Float64Array, what: string): void {
  const err = maxAbsDiff(got, want) / Math.max(maxAbs(want), 1e-30)
  if (!(err <= 1e-5)) throw new Error(`${what}: relative error ${err.toExponential(2)} > 1e-5`)
}

describe('flashAttentionForward / flashAttentionBackward (CPU)', () => {
  const cases: Array<Shape & { segments: boolean }> = [
    { B: 2, T: 19, NH: 2, NKV: 2, hs: 16, segments: false },
    { B: 1, T: 37, NH: 4, NKV: 2, hs: 64, segments: false }, // GQA, T past one 32-row tile
    { B: 2, T: 23, NH: 3, NKV: 1, hs: 8, segments: true }, // multi-query, packed examples
  ]
  test.each(cases)('B=$B T=$T NH=$NH NKV=$NKV hs=$hs segments=$segments: out, lse, dq, dk, dv as a float64 attention', async (c) => {
    const r = rng(c.T * 31 + c.hs)
    const { B, T, NH, NKV, hs } = c
    const qd = randn(B * T * NH * hs, r), kd = randn(B * T * NKV * hs, r), vd = randn(B * T * NKV * hs, r)
    const doutd = randn(B * T * NH * hs, r)
    const segd = c.segments ? Int32Array.from({ length: B * T }, (_, i) => Math.floor((i % T) / 7) + (i >= T ? 10 : 0)) : null
    const tensors: Tensor[] = []
    const make = (shape: number[], data?: Float32Array) => {
      const t = tensor(shape, data ? { data } : {})
      tensors.push(t)
      return t
    }
    try {
      const q = make([B, T, NH * hs], qd), k = make([B, T, NKV * hs], kd), v = make([B, T, NKV * hs], vd)
      const out = make([B, T, NH * hs]), lse = make([B, NH, T]), dout = make([B, T, NH * hs], doutd)
      const segments = segd ? tensor([B, T], { dtype: 'int32', data: segd }) : undefined
      if (segments) tensors.push(segments)
      const heads = { nHeads: NH, nKvHeads: NKV, segments }
      await flashAttentionForward(out, lse, q, k, v, heads)
      // the gradients accumulate: start from ones, expect ones + gradient
      const ones = (n: number) => new Float32Array(n).fill(1)
      const dq = make([B, T, NH * hs], ones(qd.length)), dk = make([B, T, NKV * hs], ones(kd.length))
      const dv = make([B, T, NKV * hs], ones(vd.length))
      await flashAttentionBackward(dq, dk, dv, dout, out, lse, q, k, v, heads)
      const want = reference(c, qd, kd, vd, doutd, segd)
      expectClose(out.toArray() as Float32Array, want.out, 'out')
      expectClose(lse.toArray() as Float32Array, want.lse, 'lse')
      const minusOne = (t: Tensor) => Float32Array.from(t.toArray() as Float32Array, (x) => x - 1)
      expectClose(minusOne(dq), want.dq, 'dq')
      expectClose(minusOne(dk), want.dk, 'dk')
      expectClose(minusOne(dv), want.dv, 'dv')
    } finally {
      for (const t of tensors) t.dispose()
    }
  })

  test('shapes are checked before anything runs, with the argument named', async () => {
    const q = tensor([1, 4, 2 * 8]), k = tensor([1, 4, 8]), v = tensor([1, 4, 8]), out = tensor([1, 4, 16])
    const lse = tensor([1, 2, 4]), badLse = tensor([1, 2, 5]), floatSegments = tensor([1, 4])
    try {
      await expect(flashAttentionForward(out, lse, q, k, v, { nHeads: 2, nKvHeads: 2 }))
        .rejects.toThrow(/\(nKvHeads \* headSize\) for k/)
      await expect(flashAttentionForward(out, lse, q, k, v, { nHeads: 2, nKvHeads: 3 }))
        .rejects.toThrow(/nKvHeads to divide nHeads/)
      await expect(flashAttentionForward(out, badLse, q, k, v, { nHeads: 2, nKvHeads: 1 }))
        .rejects.toThrow(/for lse/)
      await expect(flashAttentionForward(out, lse, q, k, v, { nHeads: 2, nKvHeads: 1, segments: floatSegments }))
        .rejects.toThrow(/segments/)
    } finally {
      for (const t of [q, k, v, out, lse, badLse, floatSegments]) t.dispose()
    }
  })
})
