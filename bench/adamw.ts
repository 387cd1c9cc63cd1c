/**
 * One optimizer step over GPT-2-124M-shaped parameters: the global gradient norm (clipping
 * at 1.0) and the AdamW update, as adamw() always does both. The parameters are the 148
 * tensors of GPT-2 124M in Hugging Face layout (V = 50257: 124,439,808 parameters), decay on
 * the >= 2-D ones. Floor: 28 bytes per fp32 parameter (read p, g, m, v; write p, m, v) at the
 * memory bandwidth; the separate norm pass re-reads g (4 more bytes), which the floor leaves out.
 */
import { tensor, adamw, AdamWGroup, AdamWHyper, Device, Tensor } from '../ts/native'
import { BenchCase, randomUniform } from './harness'

/** Parameter shapes of GPT-2 (HF keys, Conv1D weights [in, out]). */
export function gpt2Shapes(nLayer: number, V: number, C = 768, maxT = 1024): number[][] {
  const shapes: number[][] = [[V, C], [maxT, C]]
  for (let l = 0; l < nLayer; l++) {
    shapes.push([C], [C], [C, 3 * C], [3 * C], [C, C], [C], [C], [C], [C, 4 * C], [4 * C], [4 * C, C], [C])
  }
  shapes.push([C], [C])
  return shapes
}

const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1)

const HYPER = { lr: 6e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1.0 }

function adamwCase(device: Device, nLayer: number, V: number, label: string, slug: string): BenchCase {
  const shapes = gpt2Shapes(nLayer, V)
  const decay = shapes.map((s) => s.length >= 2)
  const count = shapes.reduce((a, s) => a + numel(s), 0)
  return {
    family: 'adamw',
    id: `adamw/${device}/${slug}`,
    name: 'AdamW step (grad norm + update)',
    shape: `${label}: ${(count / 1e6).toFixed(2)}M params in ${shapes.length} tensors`,
    dtype: 'float32',
    device,
    floor: { kind: 'bandwidth', bytes: 28 * count },
    minIterations: 5,
    peer: { kind: 'adamw', shapes, decay, ...HYPER },
    prepare: async () => {
      const all: Tensor[] = []
      const groups: AdamWGroup[] = shapes.map((shape, i) => {
        const n = numel(shape)
        const param = tensor(shape, { device, data: randomUniform(n, 0.02, 10 + i) })
        const grad = tensor(shape, { device, data: randomUniform(n, 1e-3, 1000 + i) })
        const m = tensor(shape, { device })
        const v = tensor(shape, { device })
        all.push(param, grad, m, v)
        return { param, grad, m, v, decay: decay[i] }
      })
      let step = 0
      return {
        run: () => {
          step++
          const hyper: AdamWHyper = { ...HYPER, step }
          return adamw(groups, hyper)
        },
        dispose: () => { for (const t of all) t.dispose() },
      }
    },
  }
}

/** GPT-2 124M on every device; --quick: 2 layers and V = 8192 (21M parameters). */
export function adamwCases(device: Device, quick: boolean): BenchCase[] {
  return [quick ? adamwCase(device, 2, 8192, 'GPT-2 2-layer V=8192', 'gpt2-2layer-v8192')
    : adamwCase(device, 12, 50257, 'GPT-2 124M', 'gpt2-124m')]
}
