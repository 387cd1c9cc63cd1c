/**
 * Streaming generation: the same tokens as generate, text deltas that never split a UTF-8
 * character nor show a stop string, cancellation by signal and by leaving the loop.
 */
import { GPT2Config, NativeModel } from '../ts/native'
import { initModel, GPT2Model } from '../ts/model'
import { GenerationStream, StartGeneration, StreamPiece } from '../ts/generate-stream'
import { ByteTokenizer } from '../ts/data/tokenizer'
import { rng } from './support/reference'

const cfg: GPT2Config = { nLayer: 2, nHead: 2, nEmbd: 16, nPositions: 64, vocabSize: 257 }
const bytes = new ByteTokenizer()
const decode = (ids: number[]) => bytes.decode(ids)

async function model(): Promise<GPT2Model> {
  const m = await initModel(cfg, { seed: 21 })
  const r = rng(22)
  for (const p of m.parameters()) { // larger weights: distinct, confident next-token choices
    m.write(p.name, m.read(p.name).map((x) => (p.name.includes('ln_') ? x : x * 15 + 0.1 * (r() - 0.5))))
  }
  return m
}

async function collect(stream: AsyncIterable<StreamPiece>): Promise<StreamPiece[]> {
  const pieces: StreamPiece[] = []
  for await (const p of stream) pieces.push(p)
  return pieces
}

/** An engine stand-in that makes `tokens` one by one, as the binding does (calls may trail the result). */
function scripted(tokens: number[], o: { late?: boolean } = {}): StartGeneration {
  return async (onToken) => {
    const made: number[] = []
    for (const t of tokens) {
      made.push(t)
      if (o.late) setImmediate(() => onToken(made.length - 1, t))
      else if (!onToken(made.length - 1, t)) return { tokens: made, stopReason: 'cancelled', reused: 0 }
    }
    return { tokens: made, stopReason: 'max_tokens', reused: 0 }
  }
}

const utf8 = (s: string) => Array.from(Buffer.from(s, 'utf8'))

describe('GenerationStream (scripted tokens)', () => {
  const text = 'héllo 😀 wörld, done'

  test('deltas are whole characters and concatenate to the text, one piece per token', async () => {
    for (const late of [false, true]) {
      const ids = utf8(text)
      const stream = new GenerationStream(scripted(ids, { late }), { decode })
      const pieces = await collect(stream)
      expect(pieces.map((p) => p.token)).toEqual(ids)
      expect(pieces.map((p) => p.text).join('')).toBe(text)
      for (const p of pieces) expect(p.text).not.toContain('\ufffd')
      // the 4 bytes of 😀 come out as 3 empty pieces and then the character
      const emoji = pieces.findIndex((p) => p.text.includes('😀'))
      expect(pieces.slice(emoji - 3, emoji + 1).map((p) => p.text)).toEqual(['', '', '', '😀'])
      expect(await stream.result).toEqual({ tokens: ids, text, stopReason: 'max_tokens', reusedTokens: 0 })
    }
  })

  test('a stop string ends the stream before it and is never streamed, even in part', async () => {
    const stream = new GenerationStream(scripted(utf8(text)), { decode, stopStrings: ['wör', 'zzz'] })
    const pieces = await collect(stream)
    expect(pieces.map((p) => p.text).join('')).toBe('héllo 😀 ')
    const r = await stream.result
    expect(r.stopReason).toBe('stop')
    expect(r.text).toBe('héllo 😀 ')
    // generation stopped at the token that completed the stop (the scripted engine saw false)
    expect(decode(r.tokens)).toBe('héllo 😀 wör')
  })

  test('a stop string\'s beginning is held, then released when it turns out not to be one', async () => {
    const seen: string[] = []
    const stream = new GenerationStream(scripted(utf8('ab END? no: ENDING')), { decode, stopStrings: ['ENDS'] })
    for await (const p of stream) seen.push(p.text)
    expect(seen.join('')).toBe('ab END? no: ENDING')
    // 'E', 'N', 'D' were held until '?' showed no stop followed
    const q = seen.findIndex((s) => s.includes('?'))
    expect(seen.slice(q - 3, q + 1)).toEqual(['', '', '', 'END?'])
    expect((await stream.result).stopReason).toBe('max_tokens')
  })

  test('a trailing incomplete character is released at the end as what it is', async () => {
    const ids = [...utf8('ok '), 0xe2, 0x82] // the first two bytes of "€"
    const stream = new GenerationStream(scripted(ids), { decode })
    const pieces = await collect(stream)
    expect(pieces.map((p) => p.text).join('')).toBe(decode(ids))
    expect((await stream.result).text).toBe(decode(ids))
  })

  test('invalid UTF-8 is held at most 4 tokens, then streamed as U+FFFD', async () => {
    const ids = [...utf8('a'), 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa, ...utf8('b')]
    const pieces = await collect(new GenerationStream(scripted(ids), { decode }))
    expect(pieces.map((p) => p.text).join('')).toBe(decode(ids))
    // the first invalid byte's piece comes out with the 4th held token, not at the end
    expect(pieces[4].text).toContain('\ufffd')
  })

  test('stop strings need a decode function', () => {
    expect(() => new GenerationStream(scripted([1]), { stopStrings: ['x'] })).toThrow(/decode/)
  })

  test('an already aborted signal makes nothing', async () => {
    const c = new AbortController()
    c.abort()
    let started = false
    const stream = new GenerationStream(async (onToken) => { started = true; onToken(0, 1); return { tokens: [1], stopReason: 'max_tokens', reused: 0 } },
      { signal: c.signal })
    expect(await collect(stream)).toEqual([])
    expect(await stream.result).toEqual({ tokens: [], text: '', stopReason: 'aborted', reusedTokens: 0 })
    expect(started).toBe(false)
  })
})

describe('generateStream (cpu engine)', () => {
  test('the same tokens as generate, greedy and sampled, without and with decode', async () => {
    const m = await model()
    for (const opts of [{ maxNewTokens: 20 }, { maxNewTokens: 20, temperature: 0.9, topP: 0.9, seed: 3 }]) {
      const once = await m.generate([72, 105], opts)
      const stream = m.generateStream([72, 105], opts)
      const pieces = await collect(stream)
      expect(pieces.map((p) => p.token)).toEqual(once.tokens)
      expect(pieces.every((p) => p.text === '')).toBe(true)
      expect(await stream.result).toMatchObject({ tokens: once.tokens, text: '', stopReason: once.stopReason })
      const texts = m.generateStream([72, 105], { ...opts, decode })
      const joined = (await collect(texts)).map((p) => p.text).join('')
      expect(joined).toBe(decode(once.tokens))
    }
    m.dispose()
  })

  test('a stop string ends generation early in the engine; stop ids still work', async () => {
    const m = await model()
    const free = await m.generate([65], { maxNewTokens: 30 })
    const text = decode(free.tokens)
    const stopText = text.slice(4, 6)
    const stream = m.generateStream([65], { maxNewTokens: 30, decode, stopStrings: [stopText] })
    await collect(stream)
    const r = await stream.result
    expect(r.stopReason).toBe('stop')
    expect(r.text).toBe(text.slice(0, text.indexOf(stopText)))
    expect(r.tokens.length).toBeLessThan(free.tokens.length)
    const byId = m.generateStream([65], { maxNewTokens: 30, stopIds: [free.tokens[5]] })
    await collect(byId)
    expect((await byId.result).stopReason).toBe('stop')
    m.dispose()
  })

  test('an abort signal or leaving the loop stops the engine, and the model is free again', async () => {
    const m = await model()
    const c = new AbortController()
    const stream = m.generateStream([1, 2, 3], { maxNewTokens: 60, signal: c.signal })
    let n = 0
    for await (const _ of stream) if (++n === 3) c.abort()
    const r = await stream.result
    expect(r.stopReason).toBe('aborted')
    expect(n).toBe(3) // nothing after the abort reaches the loop
    const left = m.generateStream([1, 2, 3], { maxNewTokens: 60 })
    for await (const _ of left) break
    expect((await left.result).stopReason).toBe('aborted')
    expect((await m.generate([1, 2, 3], { maxNewTokens: 4 })).tokens).toHaveLength(4)
    m.dispose()
  })

  test('the binding\'s onToken: false stops at the next token with stopReason "cancelled"', async () => {
    // The flag is set when the JS call runs, so the engine stops a few tokens later: room for
    // a thousand tokens makes "stopped early" certain, not a race.
    const m = await initModel({ ...cfg, nPositions: 1100 }, { seed: 5 })
    const native = (m as unknown as { native: NativeModel }).native
    const seen: number[] = []
    const r = await native.generate(Int32Array.from([9]), { maxNewTokens: 1000, temperature: 1, topK: 0, topP: 1, seed: 0,
      stopIds: new Int32Array(0), useCache: true, reuseCache: false }, (i, t) => { seen.push(t); return i < 4 })
    expect(r.stopReason).toBe('cancelled')
    expect(r.tokens.length).toBeGreaterThanOrEqual(5)
    expect(r.tokens.length).toBeLessThan(1000)
    await new Promise((resolve) => setImmediate(resolve))
    expect(seen).toEqual(Array.from(r.tokens))
    expect(() => native.generate(Int32Array.from([9]), { maxNewTokens: 1, temperature: 0, topK: 0, topP: 1, seed: 0,
      stopIds: new Int32Array(0), useCache: true, reuseCache: false }, 'no' as never)).toThrow(/Expected a function for onToken/)
    m.dispose()
  })
})
