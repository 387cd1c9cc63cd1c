/**
 * The GPT-2 engine on CUDA against the engine on the CPU: the same weights and batch give
 * the same loss and gradients, and 50 steps on a fixed batch follow the CPU's loss curve.
 * Skipped, with the reason printed, where CUDA cannot run.
 *
 * Tolerances: the CUDA engine runs its matmuls as TF32 (10-bit mantissa inputs, ~5e-4
 * relative per product sum), so the loss agrees to 1e-3 relative and each gradient tensor to
 * 2e-2 (whole-tensor relative error; a wrong index or transpose gives O(1)). Over 50 AdamW
 * steps the rounding differences grow, so the curves are compared at 2e-2 relative.
 */
import { GPT2Config, Batch } from '../ts/native'
import { initModel, GPT2Model } from '../ts/model'
import { announceCudaSkip, describeCuda } from './support/devices'
import { rng, randInt, relError } from './support/reference'

announceCudaSkip('cuda-engine.test.ts')

const cfg: GPT2Config = { nLayer: 3, nHead: 4, nEmbd: 64, nPositions: 64, vocabSize: 300 }
const opt = { lr: 3e-3, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, maxGradNorm: 1 }
const seed = Date.now() % 100000

function batch(B: number, T: number, s: number): Batch {
  const r = rng(s)
  const kinds = Uint8Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : i % T < T / 3 ? 1 : 2))
  return { B, T, tokens: randInt(B * T, cfg.vocabSize, r), targets: randInt(B * T, cfg.vocabSize, r),
    weights: Float32Array.from(kinds, (k) => (k === 0 ? 0 : k === 1 ? 0.1 : 1)), kinds,
    segments: Int32Array.from({ length: B * T }, (_, i) => ((i % T) < T / 2 ? 0 : 1)),
    positions: Int32Array.from({ length: B * T }, (_, i) => (i % T) % (T / 2)) }
}

async function twin(): Promise<[GPT2Model, GPT2Model]> {
  const cpu = await initModel(cfg, { seed, device: 'cpu', maxBatch: 4, maxSeqLen: 32 })
  const cuda = await initModel(cfg, { seed: seed + 1, device: 'cuda', maxBatch: 4, maxSeqLen: 32 })
  for (const p of cpu.parameters()) cuda.write(p.name, cpu.read(p.name))
  return [cpu, cuda]
}

describeCuda(`GPT-2 engine: CUDA matches CPU (seed ${seed})`, () => {
  test('one micro-step: loss sums and every gradient tensor', async () => {
    const [cpu, cuda] = await twin()
    const b = batch(4, 32, seed)
    const norm = b.weights.reduce((s, w) => s + w, 0)
    const a = await cpu.accumulate(b, norm)
    const c = await cuda.accumulate(b, norm)
    expect(Math.abs(c.lossSum - a.lossSum)).toBeLessThan(1e-3 * a.lossSum)
    expect(Math.abs(c.completionLossSum - a.completionLossSum)).toBeLessThan(1e-3 * a.completionLossSum)
    expect(c.weightSum).toBeCloseTo(a.weightSum, 4)
    for (const p of cpu.parameters()) {
      expect({ name: p.name, ok: relError(cuda.read(p.name, 'grad'), cpu.read(p.name, 'grad')) < 2e-2 })
        .toEqual({ name: p.name, ok: true })
    }
    cpu.dispose(); cuda.dispose()
  })

  test('50 steps on a fixed batch follow the CPU loss curve', async () => {
    const [cpu, cuda] = await twin()
    const b = batch(4, 32, seed + 7)
    for (let s = 0; s < 50; s++) {
      const a = await cpu.step(b, opt)
      const c = await cuda.step(b, opt)
      expect(Math.abs(c.lossSum - a.lossSum)).toBeLessThan(2e-2 * a.lossSum)
    }
    cpu.dispose(); cuda.dispose()
  })

  test('generation with the KV cache matches the CPU greedy tokens', async () => {
    const [cpu, cuda] = await twin()
    const prompt = [5, 17, 42, 7]
    expect((await cuda.generate(prompt, { maxNewTokens: 20 })).tokens).toEqual((await cpu.generate(prompt, { maxNewTokens: 20 })).tokens)
    cpu.dispose(); cuda.dispose()
  })
})
