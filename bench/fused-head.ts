/**
 * The tied LM head fused with the weighted CE, backward call: logits = hidden [N,C] . wte^T
 * chunk by chunk, the loss and its gradient in place, then dhidden = dlogits . wte and
 * dwte += dlogits^T . hidden. Floor: the three GEMMs, 3 * 2*N*C*V FLOPs, at the peak of the
 * precision they run in (CUDA: TF32 for f32 inputs, bf16 for bf16; CPU: fp32).
 */
import { tensor, fusedHeadCrossEntropyBackward, Device, DType } from '../ts/native'
import { BenchCase, randomUniform, targetsAndWeights } from './harness'

const C = 768
const V = 50304

function headCase(device: Device, N: number, dtype: 'float32' | 'bfloat16'): BenchCase {
  return {
    family: 'head',
    id: `head/${device}/${N}x${C}x${V}/${dtype}`,
    name: 'fused head CE bwd (3 GEMMs + CE)',
    shape: `N=${N} C=${C} V=${V}`,
    dtype,
    device,
    floor: {
      kind: 'flops',
      flops: 3 * 2 * N * C * V,
      precision: device === 'cpu' ? 'fp32' : dtype === 'bfloat16' ? 'bf16' : 'tf32',
    },
    minIterations: device === 'cpu' ? 3 : 5,
    peer: { kind: 'head', N, C, V, dtype },
    prepare: async () => {
      const hidden = tensor([N, C], { dtype: dtype as DType, device })
      hidden.copyFrom(randomUniform(N * C, 1, 3))
      const wte = tensor([V, C], { dtype: dtype as DType, device })
      wte.copyFrom(randomUniform(V * C, 0.05, 4))
      const tw = targetsAndWeights(N, V, 5)
      const targets = tensor([N], { dtype: 'int32', device, data: tw.targets })
      const weights = tensor([N], { device, data: tw.weights })
      const dhidden = tensor([N, C], { device })
      const dwte = tensor([V, C], { device }) // accumulated into, as over micro-batches
      return {
        run: () => fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, tw.norm, dhidden, dwte),
        dispose: () => { for (const t of [hidden, wte, targets, weights, dhidden, dwte]) t.dispose() },
      }
    },
  }
}

/**
 * CUDA: N = 8192 (4 x 2048 tokens), f32 and bf16 inputs. CPU: N = 256 (one chunk; 59 GFLOP,
 * ~0.35 s a call on 2 cores), f32 only (the CPU backend takes f32 hidden/wte). --quick: N = 32 on CPU, 1024 on CUDA.
 */
export function fusedHeadCases(device: Device, quick: boolean): BenchCase[] {
  if (device === 'cpu') return [headCase('cpu', quick ? 32 : 256, 'float32')]
  const N = quick ? 1024 : 8192
  return [headCase('cuda', N, 'float32'), headCase('cuda', N, 'bfloat16')]
}
