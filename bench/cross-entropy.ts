/**
 * Weighted cross-entropy, forward + backward in the one pass the backward call makes: it
 * reads logits [N,V] once and writes dlogits = w/norm * (softmax - onehot) over them (in
 * place), returning the loss sums. Floor: N*V*elem bytes read + N*V*elem written, plus
 * targets, weights (read) and per-row losses (written), 12 bytes a row, at the memory bandwidth.
 */
import { tensor, weightedCrossEntropyBackward, Device, DType } from '../ts/native'
import { BenchCase, elemSize, randomUniform, targetsAndWeights } from './harness'

const V = 50304 // GPT-2's 50257 padded to a multiple of 128; every column is a real class here

function ceCase(device: Device, N: number, dtype: 'float32' | 'bfloat16'): BenchCase {
  return {
    family: 'ce',
    id: `ce/${device}/${N}x${V}/${dtype}`,
    name: 'weighted CE fwd+bwd (in place)',
    shape: `N=${N} V=${V}`,
    dtype,
    device,
    floor: { kind: 'bandwidth', bytes: 2 * N * V * elemSize(dtype) + 12 * N },
    minIterations: 5,
    peer: { kind: 'ce', N, V, dtype },
    prepare: async () => {
      const logits = tensor([N, V], { dtype: dtype as DType, device })
      logits.copyFrom(randomUniform(N * V, 4, 1)) // logits in [-4, 4]
      const tw = targetsAndWeights(N, V, 2)
      const targets = tensor([N], { dtype: 'int32', device, data: tw.targets })
      const weights = tensor([N], { device, data: tw.weights })
      // In place: from the second call on the "logits" are the previous gradient, which is
      // finite and just as expensive to process; the op's cost does not depend on the values.
      return {
        run: () => weightedCrossEntropyBackward(logits, targets, weights, tw.norm),
        dispose: () => { logits.dispose(); targets.dispose(); weights.dispose() },
      }
    },
  }
}

/**
 * CUDA: N = 2048 and 8192, f32 and bf16 logits (the sizes).
 * CPU: N = 2048 with f32 and bf16 (~0.3 s a call on 2 cores); --quick: N = 256 everywhere.
 */
export function crossEntropyCases(device: Device, quick: boolean): BenchCase[] {
  const sizes = quick ? [256] : device === 'cuda' ? [2048, 8192] : [2048]
  const out: BenchCase[] = []
  for (const N of sizes) for (const dtype of ['float32', 'bfloat16'] as const) out.push(ceCase(device, N, dtype))
  return out
}
