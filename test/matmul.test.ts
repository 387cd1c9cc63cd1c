/**
 * CPU SGEMM against a float64 triple loop: all four transpose combinations, sizes that are
 * not multiples of any tile, alpha/beta, and beta = 0 over a C full of NaN (never read).
 * Tolerance: f32 accumulation over K terms, ~sqrt(K)·6e-8 relative; we allow 1e-5.
 */
import { tensor, matmul } from '../ts/native'
import { rng, randn, matmulRef, relError } from './support/reference'

describe('matmul (cpu)', () => {
  const sizes: Array<[number, number, number]> = [[1, 1, 1], [7, 5, 3], [17, 33, 9], [64, 48, 130], [100, 257, 31]]
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      test.each(sizes)(`transA=${transA} transB=${transB} M=%d N=%d K=%d`, async (M, N, K) => {
        const r = rng(M * 1000 + N * 10 + K)
        const A = randn(M * K, r), B = randn(K * N, r), C0 = randn(M * N, r)
        const out = tensor([M, N], { data: C0 })
        await matmul(out, tensor(transA ? [K, M] : [M, K], { data: A }), tensor(transB ? [N, K] : [K, N], { data: B }),
          { transA, transB, alpha: 0.5, beta: 2 })
        const ab = matmulRef(A, B, M, N, K, transA, transB)
        const ref = ab.map((x, i) => 0.5 * x + 2 * C0[i])
        expect(relError(out.toArray(), ref)).toBeLessThan(1e-5)
      })
    }
  }

  test('beta = 0 never reads C (NaN in C does not leak)', async () => {
    const r = rng(2)
    const out = tensor([9, 11], { data: new Float32Array(99).fill(NaN) })
    const A = randn(9 * 13, r), B = randn(13 * 11, r)
    await matmul(out, tensor([9, 13], { data: A }), tensor([13, 11], { data: B }))
    expect(relError(out.toArray(), matmulRef(A, B, 9, 11, 13))).toBeLessThan(1e-5)
  })

  test('shape errors name the argument', async () => {
    await expect(matmul(tensor([2, 3]), tensor([2, 4]), tensor([5, 3]))).rejects.toThrow(/inner dimension/)
    await expect(matmul(tensor([2, 3]), tensor([3, 4]), tensor([4, 3]))).rejects.toThrow(/rows of out/)
  })
})
