/** Generation with a KV cache: agrees with full recomputation, seeded sampling, stops and limits. */
import { GPT2Config } from '../ts/native'
import { initModel, GPT2Model } from '../ts/model'
import { rng } from './support/reference'

const cfg: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nPositions: 24, vocabSize: 17 }

async function model(maxSeqLen = 24, config: GPT2Config = cfg): Promise<GPT2Model> {
  const m = await initModel(config, { seed: 21, maxSeqLen })
  const r = rng(22)
  for (const p of m.parameters()) { // larger weights: distinct, confident next-token choices
    m.write(p.name, m.read(p.name).map((x) => (p.name.includes('ln_') ? x : x * 15 + 0.1 * (r() - 0.5))))
  }
  return m
}

describe('generate (cpu)', () => {
  test('the KV cache gives the same tokens as recomputing the whole sequence, greedy and sampled', async () => {
    const m = await model()
    const prompt = [3, 1, 4, 1, 5]
    const cached = await m.generate(prompt, { maxNewTokens: 15 })
    const full = await m.generate(prompt, { maxNewTokens: 15, useCache: false })
    expect(cached.tokens).toHaveLength(15)
    expect(cached).toEqual(full)
    const s1 = await m.generate(prompt, { maxNewTokens: 15, temperature: 0.8, topK: 8, topP: 0.95, seed: 7 })
    const s2 = await m.generate(prompt, { maxNewTokens: 15, temperature: 0.8, topK: 8, topP: 0.95, seed: 7, useCache: false })
    expect(s1).toEqual(s2) // reuseCache is off by default: each call is a function of its prompt alone
    m.dispose()
  })

  test('the greedy first token is the argmax of the logits at the last prompt position', async () => {
    const m = await model()
    const prompt = [2, 7, 1, 8]
    const logits = await m.logits({ B: 1, T: 4, tokens: Int32Array.from(prompt), targets: new Int32Array(4), weights: new Float32Array(4) })
    const last = Array.from(logits.slice(3 * cfg.vocabSize))
    const first = (await m.generate(prompt, { maxNewTokens: 1 })).tokens[0]
    expect(first).toBe(last.indexOf(Math.max(...last)))
    m.dispose()
  })

  test('seeded sampling is reproducible and seeds differ; top-k 1 is greedy', async () => {
    const m = await model()
    const opts = { maxNewTokens: 12, temperature: 1.5, seed: 1 }
    const a = await m.generate([1, 2], opts)
    expect(await m.generate([1, 2], opts)).toEqual(a)
    const others: string[] = [] // one call at a time: a model is busy until its call settles
    for (const seed of [2, 3, 4, 5]) others.push((await m.generate([1, 2], { ...opts, seed })).tokens.join())
    expect(others.some((t) => t !== a.tokens.join())).toBe(true)
    const greedy = await m.generate([1, 2], { maxNewTokens: 12 })
    expect(await m.generate([1, 2], { ...opts, topK: 1 })).toEqual(greedy)
    m.dispose()
  })

  test('stops at a stop id (excluded), at maxNewTokens, and at n_positions', async () => {
    const m = await model()
    const free = await m.generate([5], { maxNewTokens: 10 })
    const stopAt = free.tokens[3]
    const idx = free.tokens.indexOf(stopAt)
    const stopped = await m.generate([5], { maxNewTokens: 10, stopIds: [stopAt] })
    expect(stopped).toEqual({ tokens: free.tokens.slice(0, idx), stopReason: 'stop', reusedTokens: 0 })
    expect((await m.generate([5], { maxNewTokens: 4 })).stopReason).toBe('max_tokens')
    const long = await m.generate([5, 6, 7], { maxNewTokens: 100 })
    expect(long).toMatchObject({ stopReason: 'length' })
    expect(long.tokens).toHaveLength(cfg.nPositions - 3)
    // A prompt longer than the training arena (maxSeqLen 8) prefills token by token.
    const small = await model(8)
    const p = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    const viaSteps = await small.generate(p, { maxNewTokens: 5 })
    expect(viaSteps.tokens).toEqual((await m.generate(p, { maxNewTokens: 5 })).tokens)
    small.dispose()
    await expect(m.generate([], {})).rejects.toThrow(/at least one token/)
    await expect(m.generate([99], {})).rejects.toThrow(/prompt\[0\] = 99 is outside the vocabulary/)
    await expect(m.generate([1], { topP: 0 })).rejects.toThrow(RangeError)
    m.dispose()
  })
})

describe('generate (cpu): the KV cache kept between calls (reuseCache)', () => {
  test("a chat's next turn feeds only its new tokens and gives the tokens of a fresh prefill", async () => {
    const m = await model()
    const p1 = [3, 1, 4]
    const g1 = await m.generate(p1, { maxNewTokens: 6, reuseCache: true })
    expect(g1.reusedTokens).toBe(0)
    // The cache holds p1 and the generated tokens it fed back (all but the last).
    const p2 = [...p1, ...g1.tokens, 2, 7]
    const g2 = await m.generate(p2, { maxNewTokens: 6, reuseCache: true })
    expect(g2.reusedTokens).toBe(p1.length + g1.tokens.length - 1)
    const full = await m.generate(p2, { maxNewTokens: 6, useCache: false })
    expect(g2.tokens).toEqual(full.tokens)
    const fresh = await model()
    expect((await fresh.generate(p2, { maxNewTokens: 6, reuseCache: true })).tokens).toEqual(g2.tokens)
    fresh.dispose()
    // The same prompt again: all but its last token are kept; without reuseCache, none.
    expect((await m.generate(p2, { maxNewTokens: 6, reuseCache: true })).reusedTokens).toBe(p2.length - 1)
    expect((await m.generate(p2, { maxNewTokens: 6 })).reusedTokens).toBe(0)
    expect((await m.generate(p2, { maxNewTokens: 6 })).tokens).toEqual(g2.tokens)
    // A prompt that parts early is prefilled whole; a shared start shorter than the rest is not kept.
    expect((await m.generate([3, 9, 4, 1, 5, 9, 2], { maxNewTokens: 2, reuseCache: true })).reusedTokens).toBe(0)
    expect((await m.generate([3, 9, 4, 2, 2, 2, 2, 2, 2], { maxNewTokens: 2, reuseCache: true })).reusedTokens).toBe(0)
    m.dispose()
  })

  test('a change of the parameters forgets the cache: write, a training step, a new initialization', async () => {
    const m = await model()
    const p = [5, 6, 7, 8]
    const before = await m.generate(p, { maxNewTokens: 4, reuseCache: true })
    expect((await m.generate(p, { maxNewTokens: 4, reuseCache: true })).reusedTokens).toBe(3)
    const name = 'h.0.attn.c_attn.weight'
    m.write(name, m.read(name).map((x) => -x))
    const after = await m.generate(p, { maxNewTokens: 4, reuseCache: true })
    expect(after.reusedTokens).toBe(0)
    expect(after.tokens).toEqual((await m.generate(p, { maxNewTokens: 4, useCache: false })).tokens)
    expect(after.tokens).not.toEqual(before.tokens)
    const batch = { B: 1, T: 4, tokens: Int32Array.from(p), targets: Int32Array.from([6, 7, 8, 9]), weights: new Float32Array(4).fill(1) }
    await m.step(batch, { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 0 })
    expect((await m.generate(p, { maxNewTokens: 4, reuseCache: true })).reusedTokens).toBe(0)
    await m.initRandom(3)
    expect((await m.generate(p, { maxNewTokens: 4, reuseCache: true })).reusedTokens).toBe(0)
    m.dispose()
  })

  test('prompts past the activations and long new turns go through the cache 32 rows at a time', async () => {
    const big: GPT2Config = { ...cfg, nPositions: 128 }
    const r = rng(5)
    const prompt = Array.from({ length: 80 }, () => Math.floor(r() * cfg.vocabSize))
    const batched = await model(128, big)
    const chunked = await model(8, big) // 80 > maxSeqLen 8: chunks of 32, 32 and 16 rows from position 0
    const a = await batched.generate(prompt, { maxNewTokens: 6, reuseCache: true })
    const b = await chunked.generate(prompt, { maxNewTokens: 6, reuseCache: true })
    expect(b.tokens).toEqual(a.tokens)
    // A next turn of 41 new tokens after 85 kept: two chunks (32 and 9 rows) on the batched model.
    const next = [...prompt, ...a.tokens, ...Array.from({ length: 36 }, () => Math.floor(r() * cfg.vocabSize))]
    const turn = await batched.generate(next, { maxNewTokens: 4, reuseCache: true })
    expect(turn.reusedTokens).toBe(prompt.length + a.tokens.length - 1)
    expect(turn.tokens).toEqual((await batched.generate(next, { maxNewTokens: 4, useCache: false })).tokens)
    batched.dispose()
    chunked.dispose()
  })
})

test('generate refuses what would be coerced silently: fractional or NaN ids, fractional counts', async () => {
  const { initModel } = await import('../ts/model')
  const model = await initModel({ arch: 'gpt2', vocabSize: 20, nPositions: 16, nEmbd: 8, nLayer: 1, nHead: 2 } as never, { seed: 1 })
  await expect(model.generate([1.5, 2])).rejects.toThrow('generate: prompt[0] = 1.5 is not an integer token id')
  await expect(model.generate([1, NaN])).rejects.toThrow('generate: prompt[1] = NaN is not an integer token id')
  await expect(model.generate([1, 2], { maxNewTokens: 1.5 })).rejects.toThrow('generate: maxNewTokens must be an integer >= 0, got 1.5')
  await expect(model.generate([1, 2], { seed: -1 })).rejects.toThrow('generate: seed must be an integer >= 0, got -1')
  await expect(model.generate([1, 2], { stopIds: [0.5] })).rejects.toThrow('generate: stopIds holds 0.5')
  expect((await model.generate([1, 2], { maxNewTokens: 2 })).tokens).toHaveLength(2)
  model.dispose()
})
