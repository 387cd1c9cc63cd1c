/**
 * Fused causal attention, forward + backward (flashAttentionForward then flashAttentionBackward,
 * the engine's kernels under --recompute attention/block), against PyTorch's
 * F.scaled_dot_product_attention forward + backward at the same sizes (torch picks its backend:
 * flash or cuDNN on CUDA bf16, its fused CPU kernel on the CPU).
 *
 * Floor: the FLOPs of the five products a flash backward does plus the forward's two, causal
 * (half of the T x T pairs): forward 2 * 2*B*NH*T^2*hs / 2, backward 2.5x that, so
 * 7 * B*NH*T^2*hs in all, at the device's peak (bf16 or TF32 dense on CUDA, fp32 on the CPU);
 * the count FlashAttention's papers use.
 */
import { flashAttentionBackward, flashAttentionForward, tensor, Device, DType, Tensor } from '../ts/native'
import { BenchCase, randomUniform } from './harness'

interface AttentionSize { B: number; T: number; NH: number; NKV: number; hs: number; what: string }

function attentionCase(device: Device, s: AttentionSize, dtype: 'float32' | 'bfloat16'): BenchCase {
  const { B, T, NH, NKV, hs } = s
  return {
    family: 'attn',
    id: `attn/${device}/${B}x${T}x${NH}x${NKV}x${hs}/${dtype}`,
    name: `attention fwd+bwd ${s.what}`,
    shape: `B=${B} T=${T} NH=${NH}${NKV !== NH ? ` NKV=${NKV}` : ''} hs=${hs} causal`,
    dtype,
    device,
    floor: { kind: 'flops', flops: 7 * B * NH * T * T * hs, precision: device === 'cpu' ? 'fp32' : dtype === 'bfloat16' ? 'bf16' : 'tf32' },
    minIterations: 3,
    peer: { kind: 'attn', B, T, NH, NKV, hs, dtype },
    prepare: async () => {
      const made: Tensor[] = []
      const make = (shape: number[], data?: Float32Array): Tensor => {
        const t = tensor(shape, { dtype: dtype as DType, device })
        if (data) t.copyFrom(data)
        made.push(t)
        return t
      }
      const qn = B * T * NH * hs, kvn = B * T * NKV * hs
      const q = make([B, T, NH * hs], randomUniform(qn, 1, 41)), k = make([B, T, NKV * hs], randomUniform(kvn, 1, 42))
      const v = make([B, T, NKV * hs], randomUniform(kvn, 1, 43)), dout = make([B, T, NH * hs], randomUniform(qn, 0.01, 44))
      const out = make([B, T, NH * hs]), dq = make([B, T, NH * hs]), dk = make([B, T, NKV * hs]), dv = make([B, T, NKV * hs])
      const lse = tensor([B, NH, T], { device })
      made.push(lse)
      const heads = { nHeads: NH, nKvHeads: NKV }
      return {
        // the gradients accumulate call after call: finite, and the cost does not depend on them
        run: async () => {
          await flashAttentionForward(out, lse, q, k, v, heads)
          await flashAttentionBackward(dq, dk, dv, dout, out, lse, q, k, v, heads)
        },
        dispose: () => { for (const t of made) t.dispose() },
      }
    },
  }
}

/**
 * CUDA (bf16): the issue's T = 2048 and 8192 at head sizes 64 and 128, 16 384 tokens x 1024
 * channels a batch. CPU (f32): the small training config's heads (hs 32, T = 256) and GPT-2's
 * (hs 64, T = 1024). --quick: T = 128.
 */
export function attentionCases(device: Device, quick: boolean): BenchCase[] {
  if (quick) return [attentionCase(device, { B: 1, T: 128, NH: 2, NKV: 2, hs: 64, what: '(quick)' }, device === 'cuda' ? 'bfloat16' : 'float32')]
  if (device === 'cuda') {
    const sizes: AttentionSize[] = [
      { B: 8, T: 2048, NH: 16, NKV: 16, hs: 64, what: '(hs 64, T 2k)' },
      { B: 8, T: 2048, NH: 8, NKV: 8, hs: 128, what: '(hs 128, T 2k)' },
      { B: 2, T: 8192, NH: 16, NKV: 16, hs: 64, what: '(hs 64, T 8k)' },
      { B: 2, T: 8192, NH: 8, NKV: 8, hs: 128, what: '(hs 128, T 8k)' },
      { B: 4, T: 4096, NH: 32, NKV: 8, hs: 64, what: '(Llama-3.2-1B heads, GQA 4)' },
    ]
    return sizes.map((s) => attentionCase(device, s, 'bfloat16'))
  }
  return [
    attentionCase(device, { B: 8, T: 256, NH: 4, NKV: 4, hs: 32, what: '(L4 C128 config)' }, 'float32'),
    attentionCase(device, { B: 1, T: 1024, NH: 12, NKV: 12, hs: 64, what: '(GPT-2 heads, T 1k)' }, 'float32'),
  ]
}
