/**
 * CPU SGEMM via matmul() at GPT-2 124M shapes, out [M,N] = a [M,K] . op(b):
 * the attention output projection (768 -> 768) and the MLP up-projection (768 -> 3072) over
 * 1024 tokens, Conv1D layout b = W [K,N]; and the LM head over 256 tokens, b = wte [V,K]
 * transposed (transB). Floor: 2*M*N*K FLOPs at the fp32 peak. CPU only: matmul() on CUDA
 * arrives with the engine's cuBLASLt path.
 */
import { tensor, matmul, Device } from '../ts/native'
import { BenchCase, randomUniform } from './harness'

function sgemmCase(M: number, N: number, K: number, transB: boolean, what: string): BenchCase {
  return {
    family: 'sgemm',
    id: `sgemm/cpu/${M}x${N}x${K}${transB ? '/nt' : '/nn'}`,
    name: `sgemm ${what}`,
    shape: `M=${M} N=${N} K=${K} ${transB ? 'a.b^T' : 'a.b'}`,
    dtype: 'float32',
    device: 'cpu',
    floor: { kind: 'flops', flops: 2 * M * N * K, precision: 'fp32' },
    minIterations: 5,
    peer: { kind: 'sgemm', M, N, K, transB },
    prepare: async () => {
      const a = tensor([M, K], { data: randomUniform(M * K, 1, 20) })
      const b = tensor(transB ? [N, K] : [K, N], { data: randomUniform(N * K, 0.05, 21) })
      const out = tensor([M, N])
      return {
        run: () => matmul(out, a, b, { transB }),
        dispose: () => { a.dispose(); b.dispose(); out.dispose() },
      }
    },
  }
}

export function sgemmCases(device: Device, quick: boolean): BenchCase[] {
  if (device !== 'cpu') return []
  const M = quick ? 128 : 1024
  return [
    sgemmCase(M, 768, 768, false, '(attn proj)'),
    sgemmCase(M, 3072, 768, false, '(MLP c_fc)'),
    sgemmCase(quick ? 32 : 256, 50304, 768, true, '(LM head)'),
  ]
}
