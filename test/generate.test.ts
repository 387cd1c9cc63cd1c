/** Generation with a KV cache: agrees with full recomputation, seeded sampling, stops and limits. */
import { GPT2Config } from '../ts/native'
import { initModel, GPT2Model } from '../ts/model'
import { rng } from './support/reference'

const cfg: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nPositions: 24, vocabSize: 17 }

async function model(maxSeqLen = 24): Promise<GPT2Model> {
  const m = await initModel(cfg, { seed: 21, maxSeqLen })
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
    expect(s1).toEqual(s2)
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
    expect(stopped).toEqual({ tokens: free.tokens.slice(0, idx), stopReason: 'stop' })
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
