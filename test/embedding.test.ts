/** Token + position embedding (cpu): forward/backward against a direct float64 loop. */
import { tensor, embeddingForward, embeddingBackward } from '../ts/native'
import { rng, randn, randInt, relError } from './support/reference'

describe('embedding (cpu)', () => {
  const V = 50, T = 16, C = 24, B = 3
  const N = B * T
  const r = rng(12)
  const wteData = randn(V * C, r)
  const wpeData = randn(T * C, r)
  const tokensData = randInt(N, 6, r) // few distinct ids: many rows share a gradient row
  // Two packed examples per row: positions restart at 0 inside the row.
  const positionsData = Int32Array.from({ length: N }, (_, i) => (i % T) % 9)

  test('forward: out[n] = wte[token] + wpe[position]', async () => {
    const out = tensor([B, T, C])
    await embeddingForward(out, tensor([B, T], { dtype: 'int32', data: tokensData }),
      tensor([B, T], { dtype: 'int32', data: positionsData }), tensor([V, C], { data: wteData }), tensor([T, C], { data: wpeData }))
    const ref = new Float64Array(N * C)
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
      ref[n * C + c] = wteData[tokensData[n] * C + c] + wpeData[positionsData[n] * C + c]
    }
    expect(relError(out.toArray(), Float32Array.from(ref))).toBe(0) // one f32 add each: exact
  })

  test('backward accumulates into both tables, deterministically', async () => {
    const dout = randn(N * C, r)
    const priorTe = randn(V * C, r, 0.1)
    const run = async () => {
      const dwte = tensor([V, C], { data: priorTe })
      const dwpe = tensor([T, C])
      await embeddingBackward(dwte, dwpe, tensor([N, C], { data: dout }), tensor([N], { dtype: 'int32', data: tokensData }),
        tensor([N], { dtype: 'int32', data: positionsData }))
      return [dwte.toArray(), dwpe.toArray()]
    }
    const [te, pe] = await run()
    const refTe = Float64Array.from(priorTe)
    const refPe = new Float64Array(T * C)
    for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
      refTe[tokensData[n] * C + c] += dout[n * C + c]
      refPe[positionsData[n] * C + c] += dout[n * C + c]
    }
    expect(relError(te, refTe)).toBeLessThan(1e-6)
    expect(relError(pe, refPe)).toBeLessThan(1e-6)
    for (let p = 9; p < T; p++) expect(pe[p * C]).toBe(0) // positions never used stay zero
    const [te2, pe2] = await run()
    expect(Buffer.from(te2.buffer).equals(Buffer.from(te.buffer))).toBe(true)
    expect(Buffer.from(pe2.buffer).equals(Buffer.from(pe.buffer))).toBe(true)
  })

  test('ids out of range are RangeErrors naming the index', async () => {
    const out = tensor([2, C]), wte = tensor([V, C]), wpe = tensor([T, C])
    await expect(embeddingForward(out, tensor([2], { dtype: 'int32', data: [1, V] }), tensor([2], { dtype: 'int32', data: [0, 1] }), wte, wpe))
      .rejects.toThrow(/tokens\[1\] = 50/)
    await expect(embeddingForward(out, tensor([2], { dtype: 'int32', data: [1, 2] }), tensor([2], { dtype: 'int32', data: [0, -1] }), wte, wpe))
      .rejects.toThrow(RangeError)
    await expect(embeddingForward(tensor([3, C]), tensor([2], { dtype: 'int32' }), tensor([2], { dtype: 'int32' }), wte, wpe))
      .rejects.toThrow(/for out/)
    await expect(embeddingForward(out, tensor([2], { dtype: 'int32' }), tensor([2], { dtype: 'int32' }), wte, tensor([T, C + 1])))
      .rejects.toThrow(/wpe/)
  })
})
