/**
 * LoRA in the engine, on the CPU, for GPT-2 and each Llama flavour: the base frozen (no
 * gradient, untouched by training), adapters named and shaped as PEFT's, step 0 bitwise the
 * base model, adapter gradients against central finite differences (with dropout off, and
 * with dropout on and its mask fixed by the step), the model with adapters against the same
 * model with the adapters merged into its weights by an independent loop here, and KV-cache
 * generation through the adapters equal to recomputation.
 */
import { Batch } from '../ts/native'
import { Model, planMemory } from '../ts/model'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { backendInfo } from '../ts/native'
import { ModelConfig, llamaConfig } from '../ts/arch'
import { LINEAR_MODULES, LoraSettings } from '../ts/lora/settings'
import { rng, randInt, relError } from './support/reference'

const V = 23
const CONFIGS: Array<[string, ModelConfig]> = [
  ['gpt2', { arch: 'gpt2', vocabSize: V, nPositions: 16, nEmbd: 16, nLayer: 2, nHead: 2 } as ModelConfig],
  ['llama3 GQA tied', llamaConfig({ vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 4,
    intermediateSize: 24, maxPositions: 16, tieWordEmbeddings: true })],
  ['llama untied, all biases', llamaConfig({ vocabSize: V, hiddenSize: 12, numLayers: 2, numHeads: 3, numKvHeads: 3, headDim: 4,
    intermediateSize: 20, maxPositions: 16, tieWordEmbeddings: false, qkvBias: true, oBias: true, mlpBias: true })],
  ['qwen3 q/k norm', llamaConfig({ family: 'qwen3', vocabSize: V, hiddenSize: 16, numLayers: 2, numHeads: 4, numKvHeads: 2,
    headDim: 6, intermediateSize: 24, maxPositions: 16, tieWordEmbeddings: false })],
]

const opt = { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01, maxGradNorm: 1 }

function batchOf(B: number, T: number, seed: number): Batch {
  const r = rng(seed)
  const tokens = randInt(B * T, V, r)
  const targets = randInt(B * T, V, r)
  const kinds = Uint8Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? 0 : i % T < 0.4 * T ? 1 : 2))
  const weights = Float32Array.from(kinds, (k) => (k === 0 ? 0 : k === 1 ? 0.25 : 1))
  return { B, T, tokens, targets, weights, kinds }
}

function settings(arch: 'gpt2' | 'llama', over: Partial<LoraSettings> = {}): LoraSettings {
  return { r: 4, alpha: 8, dropout: 0, targets: LINEAR_MODULES[arch], rslora: false, ...over }
}

/** The same random base weights into every model (a wide spread, so the loss surface is not flat). */
function baseWeights(model: Model, seed: number): Map<string, Float32Array> {
  const r = rng(seed)
  const out = new Map<string, Float32Array>()
  for (const p of model.baseParameters()) {
    const n = p.shape.reduce((a, d) => a * d, 1)
    const norm = p.shape.length === 1 && p.name.includes('norm') || p.name.includes('ln_')
    out.set(p.name, Float32Array.from({ length: n }, () => norm ? 1 + 0.3 * (r() - 0.5) : 0.3 * (r() - 0.5)))
  }
  return out
}

/** Non-zero adapters (B is zero at init, which would make A's gradient zero). */
function randomAdapters(model: Model, seed: number): void {
  const r = rng(seed)
  for (const p of model.adapterParameters()) {
    const n = p.shape.reduce((a, d) => a * d, 1)
    model.write(p.name, Float32Array.from({ length: n }, () => 0.4 * (r() - 0.5)))
  }
}

async function loraModel(config: ModelConfig, lora: LoraSettings, seed = 3): Promise<Model> {
  const model = await Model.create(config, { lora: { ...lora, seed: 11 }, maxBatch: 2, maxSeqLen: 8 })
  await model.initRandom(1)
  for (const [name, w] of baseWeights(model, seed)) model.write(name, w)
  return model
}

describe.each(CONFIGS)('LoRA engine (cpu): %s', (_label, config) => {
  const arch = config.arch

  test('adapters are PEFT-named and -shaped, trainable; the base is frozen', async () => {
    const model = await loraModel(config, settings(arch))
    const adapters = model.adapterParameters()
    const modules = LINEAR_MODULES[arch]
    // GPT-2: c_proj is both attn.c_proj and mlp.c_proj
    const perLayer = arch === 'gpt2' ? 4 : 7
    expect(adapters.length).toBe(2 * perLayer * 2)
    for (const p of adapters) {
      expect(p.trainable).toBe(true)
      expect(p.name).toMatch(/\.lora_[AB]\.weight$/)
      expect(modules.some((m) => p.name.includes(`.${m}.lora_`))).toBe(true)
      const base = model.parameters().find((q) => q.name === p.name.replace(/\.lora_[AB]\.weight$/, '.weight'))!
      const [IC, OC] = arch === 'gpt2' ? base.shape : [base.shape[1], base.shape[0]]
      expect(p.shape).toEqual(p.name.endsWith('lora_A.weight') ? [4, IC] : [OC, 4])
    }
    for (const p of model.baseParameters()) {
      expect(p.trainable).toBe(false)
      expect(() => model.read(p.name, 'grad')).toThrow(/frozen/)
    }
    model.dispose()
  })

  test('at init (B = 0) the model is bitwise the base model; A is Kaiming-uniform', async () => {
    const lora = await loraModel(config, settings(arch))
    const full = await Model.create(config, { maxBatch: 2, maxSeqLen: 8 })
    for (const [name, w] of baseWeights(lora, 3)) full.write(name, w)
    const b = batchOf(2, 8, 4)
    expect((await lora.evaluate(b, { tokenLosses: true })).tokenLosses).toEqual((await full.evaluate(b, { tokenLosses: true })).tokenLosses)
    for (const p of lora.adapterParameters()) {
      const w = lora.read(p.name)
      if (p.name.endsWith('lora_B.weight')) expect(w.every((x) => x === 0)).toBe(true)
      else {
        const bound = 1 / Math.sqrt(p.shape[1])
        expect(w.every((x) => Math.abs(x) <= bound)).toBe(true)
        expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.5 * bound)
      }
    }
    lora.dispose()
    full.dispose()
  })

  test('adapter gradients match central finite differences (dropout off)', async () => {
    const model = await loraModel(config, settings(arch))
    randomAdapters(model, 5)
    const b = batchOf(2, 8, 7)
    const norm = b.weights.reduce((s, w) => s + w, 0)
    await model.accumulate(b, norm)
    await checkGradients(model, async () => (await model.evaluate(b)).lossSum / norm)
    model.dispose()
  })

  test('adapter gradients match finite differences with dropout 0.3, its mask fixed by the step', async () => {
    const model = await loraModel(config, settings(arch, { dropout: 0.3 }))
    randomAdapters(model, 5)
    const b = batchOf(2, 8, 7)
    const norm = b.weights.reduce((s, w) => s + w, 0)
    // zeroGrad restarts the optimizer step, so every accumulate below draws the same masks.
    const lossWithDropout = async () => {
      model.zeroGrad()
      return (await model.accumulate(b, norm)).lossSum / norm
    }
    const l0 = await lossWithDropout()
    expect(l0).not.toBeCloseTo((await model.evaluate(b)).lossSum / norm, 6) // dropout is on in training only
    expect(await lossWithDropout()).toBe(l0)
    model.zeroGrad()
    await model.accumulate(b, norm)
    await checkGradients(model, lossWithDropout)
    model.dispose()
  })

  test('training moves only the adapters and lowers the loss; rerun is bitwise equal', async () => {
    const run = async () => {
      const model = await loraModel(config, settings(arch, { dropout: 0.1 }))
      const before = new Map(model.baseParameters().map((p) => [p.name, model.read(p.name)]))
      const b = batchOf(2, 8, 9)
      const first = (await model.evaluate(b)).lossSum
      for (let s = 0; s < 12; s++) await model.step(b, opt)
      const last = (await model.evaluate(b)).lossSum
      expect(last).toBeLessThan(first)
      for (const [name, w] of before) expect(model.read(name)).toEqual(w)
      const adapters = model.adapterParameters().map((p) => model.read(p.name))
      model.dispose()
      return adapters
    }
    expect(await run()).toEqual(await run())
  })

  test.each([[false], [true]])('the model with adapters = its merged weights (rslora %s); cached generation = recomputation', async (rslora) => {
    const s = settings(arch, { rslora })
    const lora = await loraModel(config, s)
    randomAdapters(lora, 13)
    const scaling = rslora ? s.alpha / Math.sqrt(s.r) : s.alpha / s.r
    const merged = await Model.create(config, { maxBatch: 2, maxSeqLen: 8 })
    for (const p of merged.parameters()) {
      const w = lora.read(p.name)
      const module = p.name.replace(/\.weight$/, '')
      if (!lora.adapterParameters().some((q) => q.name === `${module}.lora_A.weight`)) {
        merged.write(p.name, w)
        continue
      }
      const A = lora.read(`${module}.lora_A.weight`)
      const B = lora.read(`${module}.lora_B.weight`)
      const [IC, OC] = arch === 'gpt2' ? p.shape : [p.shape[1], p.shape[0]]
      const out = Float32Array.from(w)
      for (let o = 0; o < OC; o++) {
        for (let i = 0; i < IC; i++) {
          let d = 0
          for (let k = 0; k < s.r; k++) d += B[o * s.r + k] * A[k * IC + i]
          out[arch === 'gpt2' ? i * OC + o : o * IC + i] += scaling * d
        }
      }
      merged.write(p.name, out)
    }
    const b = batchOf(2, 8, 4)
    const got = await lora.logits(b)
    const want = await merged.logits(b)
    // whole-tensor relative error; f32: the adapter path rounds x.A^T and its product with B
    // separately from the merged weight's sum (a few ulp per layer, ~1e-6 through 2 layers)
    expect(relError(got, want)).toBeLessThan(1e-5)
    const prompt = [1, 5, 7]
    const cached = await lora.generate(prompt, { maxNewTokens: 5 })
    expect(await lora.generate(prompt, { maxNewTokens: 5, useCache: false })).toEqual(cached)
    expect(await merged.generate(prompt, { maxNewTokens: 5 })).toEqual(cached)
    lora.dispose()
    merged.dispose()
  })
})

async function checkGradients(model: Model, loss: () => Promise<number>): Promise<void> {
  const grads = new Map(model.adapterParameters().map((p) => [p.name, model.read(p.name, 'grad')]))
  const h = 1e-2
  const r = rng(8)
  let checked = 0
  for (const p of model.adapterParameters()) {
    const grad = grads.get(p.name)!
    const w = model.read(p.name)
    for (let k = 0; k < 2; k++) {
      const i = Math.floor(r() * w.length)
      const plus = Float32Array.from(w); plus[i] += h
      model.write(p.name, plus)
      const lp = await loss()
      const minus = Float32Array.from(w); minus[i] -= h
      model.write(p.name, minus)
      const lm = await loss()
      model.write(p.name, w)
      const fd = (lp - lm) / (2 * h)
      // as test/llama-engine.test.ts: f32 FD noise ~2e-5, truncation O(h^2) ~1e-5
      expect({ name: p.name, i, fd, grad: grad[i], ok: Math.abs(fd - grad[i]) <= 3e-4 + 2e-2 * Math.abs(fd) })
        .toEqual({ name: p.name, i, fd, grad: grad[i], ok: true })
      checked++
    }
  }
  expect(checked).toBeGreaterThan(10)
}

test('a target the architecture does not have is refused, naming its linear layers', async () => {
  await expect(Model.create(CONFIGS[1][1], { lora: { r: 2, alpha: 4, dropout: 0, targets: ['c_attn'], rslora: false } }))
    .rejects.toThrow(/LoRA target 'c_attn' matches no linear layer of this model \(its linear layers: down_proj, gate_proj/)
})

describe('the memory bill under LoRA', () => {
  const align16 = (n: number) => Math.ceil(n / 16) * 16
  test('gradients and AdamW moments for the adapters only; the plan is the bill the engine allocates', async () => {
    const config = CONFIGS[2][1]
    const lora = settings('llama')
    const model = await Model.create(config, { lora, maxBatch: 2, maxSeqLen: 8 })
    const mem = model.info.memory
    expect(planMemory(config, { device: 'cpu', lora, maxBatch: 2, maxSeqLen: 8 })).toEqual(mem)
    const adapterFloats = model.adapterParameters().reduce((s, p) => s + align16(p.shape.reduce((a, d) => a * d, 1)), 0)
    expect(mem.optimizer).toBe(2 * 4 * adapterFloats) // m and v, f32
    const baseFloats = model.baseParameters().reduce((s, p) => s + align16(p.shape.reduce((a, d) => a * d, 1)), 0)
    const full = planMemory(config, { device: 'cpu', maxBatch: 2, maxSeqLen: 8 })
    expect(full.optimizer).toBe(2 * 4 * baseFloats) // full fine-tuning: moments for every base tensor
    model.dispose()
  })

  test('CUDA bf16 (planned without a GPU): the frozen 7B base is held once, in bf16', () => {
    if (!backendInfo().cuda.built) return // a build without nvcc cannot plan for CUDA
    const shape = MODEL_SHAPES['Llama-2-7B']
    const lora = settings('llama', { r: 16, alpha: 32 })
    const plan = planMemory(shape, { device: 'cuda', precision: 'bf16', lora, maxBatch: 1, maxSeqLen: 2048 })
    const full = planMemory(shape, { device: 'cuda', precision: 'bf16', maxBatch: 1, maxSeqLen: 2048 })
    const cfg = shape as { hiddenSize: number; vocabSize: number }
    const P = full.parameters / 6 // f32 master + bf16 copy per parameter
    const tables = 2 * cfg.vocabSize * cfg.hiddenSize // embed_tokens and the untied lm_head keep an f32 master
    const adapters = 32 * 16 * ((4096 + 4096) * 4 + 3 * (4096 + 11008))
    // a bf16 copy of everything; f32 masters of the tables and the adapters only (and the norm vectors: < 0.01%)
    const expected = 2 * (P + adapters) + 4 * (tables + adapters)
    expect(plan.parameters).toBeGreaterThan(expected)
    expect(plan.parameters).toBeLessThan(1.0001 * expected)
    expect(plan.optimizer).toBe(8 * adapters)
    expect(plan.total).toBeLessThan(0.3 * full.total)
  })
})

test('a LoRA model that does not fit is refused with the whole bill, saying what LoRA already saved', async () => {
  const lora = settings('llama', { r: 16, alpha: 32 })
  await expect(Model.create(MODEL_SHAPES['Llama-2-7B'], { device: 'cpu', lora, maxBatch: 64, maxSeqLen: 4096 }))
    .rejects.toThrow(/does not fit on cpu: it needs about \d+ MiB \(parameters .*AdamW \d+ MiB.*\) with LoRA r=16: the base is frozen, gradients and AdamW cover the 39976960 adapter parameters only/)
})
