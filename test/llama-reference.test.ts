/**
 * The float64 Llama-family reference (test/support/llama-reference.ts) checked against
 * properties a wrong forward would break: RoPE's relative-position invariance (and that RoPE
 * is applied at all), GQA's head mapping against MHA written out here in transformers' tensor
 * style (cat(freqs, freqs) cos/sin tables, rotate_half, repeat_kv), packed rows against
 * separate rows, causality, tied = untied with lm_head = embed_tokens, the llama3 inv_freq rule
 * against values worked out by hand for Llama-3.2-1B, and logits computed by an independent
 * PyTorch float64 forward (written in transformers' style, run once by hand; see GOLDEN).
 */
import {
  LlamaRefSpec, llamaLogits, llamaRandomWeights, llamaRopeInvFreq, llamaTensorShapes, weightsOf,
} from './support/llama-reference'
import { relError, rng } from './support/reference'

const base: LlamaRefSpec = {
  vocabSize: 19, hidden: 12, layers: 2, heads: 4, kvHeads: 2, headDim: 6, intermediate: 20, rmsEps: 1e-6, ropeTheta: 10000,
  tied: true, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false,
}
const llama3: LlamaRefSpec = {
  ...base, ropeTheta: 500000, tied: false,
  ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
}
const qwen3: LlamaRefSpec = { ...base, heads: 6, kvHeads: 2, headDim: 4, ropeTheta: 1e6, qkNorm: true, tied: false }
const allBias: LlamaRefSpec = { ...base, heads: 3, kvHeads: 3, headDim: 4, qkvBias: true, oBias: true, mlpBias: true, tied: false }
const SPECS: Array<[string, LlamaRefSpec]> = [['llama GQA 4/2, tied', base], ['llama3 rope scaling, untied', llama3],
  ['qwen3 q/k norm, GQA 6/2', qwen3], ['all biases, MHA', allBias]]

function tokenRows(B: number, T: number, V: number, seed: number): number[][] {
  const r = rng(seed)
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(r() * V)))
}

/** Largest |a − b| / largest |b|. */
function maxRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0, den = 0
  for (let i = 0; i < b.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])) }
  return num / den
}

describe('llamaRopeInvFreq', () => {
  test('plain RoPE: theta^(-2j/D)', () => {
    const inv = llamaRopeInvFreq({ ...base, headDim: 8, ropeScaling: undefined })
    expect(Array.from(inv)).toEqual([1, 0.1, 0.01, 0.001].map((x, j) => expect.closeTo(x, 17 - j)))
  })

  test('llama3 rule, Llama-3.2-1B (theta 5e5, head_dim 64, factor 32, low 1, high 4, original 8192)', () => {
    // inv_j = 5e5^(-j/32), wavelength λ_j = 2π·5e5^(j/32). Kept where λ < 8192/4 = 2048, i.e.
    // 5e5^(j/32) < 325.95, j/32 < ln 325.95 / ln 5e5 = 5.7868 / 13.1224 = 0.4410: j <= 14.
    // Divided by 32 where λ > 8192/1, 5e5^(j/32) > 1303.8, j/32 > 7.1731 / 13.1224 = 0.5466: j >= 18.
    // j = 15, 16, 17 are blended with s = (8192/λ − 1)/3: inv·((1 − s)/32 + s).
    const inv = llamaRopeInvFreq({ ...base, headDim: 64, ropeTheta: 500000,
      ropeScaling: { type: 'llama3', factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 } })
    expect(inv.length).toBe(32)
    // Hand values to 5 digits: relative tolerance 1e-4.
    const near = (got: number, want: number) => expect(Math.abs(got / want - 1)).toBeLessThan(1e-4)
    expect(inv[0]).toBe(1)
    near(inv[1], 0.66360) // exp(-13.12236/32) = exp(-0.410074), λ = 9.47: kept
    near(inv[14], 3.2114e-3) // 5e5^(-0.4375) = exp(-5.74103) = 1/311.39, λ = 1956.5 < 2048: kept
    // j = 16: inv = 1/sqrt(5e5) = 1.41421e-3, λ = 2π·707.107 = 4442.88, s = (8192/4442.88 − 1)/3 = 0.281283,
    // inv·(0.718717/32 + 0.281283) = 1.41421e-3 · 0.303743 = 4.2956e-4.
    near(inv[16], 4.2956e-4)
    const s16 = (8192 / (2 * Math.PI * Math.sqrt(5e5)) - 1) / 3
    expect(inv[16]).toBeCloseTo((1 / Math.sqrt(5e5)) * ((1 - s16) / 32 + s16), 15)
    // j = 15: 5e5^(-15/32) = 2.13112e-3, λ = 2948.3, s = (8192/2948.3 − 1)/3 = 0.592849: 2.13112e-3 · 0.605573 = 1.29055e-3.
    near(inv[15], 1.29055e-3)
    // j = 18: 5e5^(-0.5625) = exp(-7.38133) = 6.22772e-4, λ = 10089 > 8192: divided by 32 = 1.94616e-5.
    near(inv[18], 1.94616e-5)
    // j = 31: 5e5^(-31/32) = exp(-12.71229) = 3.01386e-6, / 32 = 9.41831e-8.
    near(inv[31], 9.41831e-8)
    const plain = llamaRopeInvFreq({ ...base, headDim: 64, ropeTheta: 500000 })
    for (let j = 0; j < 32; j++) {
      const ratio = inv[j] / plain[j]
      if (j <= 14) expect(ratio).toBe(1)
      else if (j >= 18) expect(ratio).toBeCloseTo(1 / 32, 15)
      else expect(ratio > 1 / 32 && ratio < 1).toBe(true)
    }
    // The blend is monotone in j (the ratio falls from 1 towards 1/32 across the band).
    expect(inv[15] / plain[15]).toBeGreaterThan(inv[16] / plain[16])
    expect(inv[16] / plain[16]).toBeGreaterThan(inv[17] / plain[17])
  })
})

describe.each(SPECS)('llamaLogits: %s', (_label, spec) => {
  const W = llamaRandomWeights(spec, 11)
  const w = weightsOf(W)

  test('reads exactly the tensors of the spec', () => {
    const read = new Set<string>()
    llamaLogits(spec, (n) => { read.add(n); return w(n) }, tokenRows(1, 3, spec.vocabSize, 1))
    expect([...read].sort()).toEqual(llamaTensorShapes(spec).map((t) => t.name).sort())
    for (const { name, shape } of llamaTensorShapes(spec)) expect(W.get(name)!.length).toBe(shape.reduce((a, b) => a * b, 1))
  })

  test('RoPE: shifting every position of a row by a constant leaves the logits unchanged; other positions change them', () => {
    const toks = tokenRows(2, 7, spec.vocabSize, 2)
    const at = (f: (t: number) => number) => llamaLogits(spec, w, toks, { positions: toks.map((r) => r.map((_, t) => f(t))) })
    const ref = llamaLogits(spec, w, toks)
    expect(relError(at((t) => t), ref)).toBe(0)
    // float64: the shifted angles differ by rounding only (~1e-16 per angle, ×1000 for the larger shift).
    expect(relError(at((t) => t + 13), ref)).toBeLessThan(1e-12)
    expect(relError(at((t) => t + 1000), ref)).toBeLessThan(1e-10)
    // Not a no-op: stretching the distances changes the logits by far more than rounding.
    expect(relError(at((t) => 2 * t), ref)).toBeGreaterThan(1e-3)
  })

  test('causal: changing the last token changes only the last position', () => {
    const toks = tokenRows(1, 6, spec.vocabSize, 3)
    const other = [toks[0].map((x, t) => (t === 5 ? (x + 1) % spec.vocabSize : x))]
    const a = llamaLogits(spec, w, toks), b = llamaLogits(spec, w, other)
    const V = spec.vocabSize
    expect(relError(b.slice(0, 5 * V), a.slice(0, 5 * V))).toBe(0)
    expect(relError(b.slice(5 * V), a.slice(5 * V))).toBeGreaterThan(1e-3)
  })

  test('a packed row of two examples (positions restarting, segments) equals the two rows run separately', () => {
    const [r0] = tokenRows(1, 5, spec.vocabSize, 4)
    const [r1] = tokenRows(1, 4, spec.vocabSize, 5)
    const packed = llamaLogits(spec, w, [[...r0, ...r1]], {
      positions: [[0, 1, 2, 3, 4, 0, 1, 2, 3]], segments: [[7, 7, 7, 7, 7, 9, 9, 9, 9]],
    })
    const sep = new Float64Array([...llamaLogits(spec, w, [r0]), ...llamaLogits(spec, w, [r1])])
    expect(maxRel(packed, sep)).toBe(0)
    // Without the segments the second example sees the first: different logits there.
    const leaky = llamaLogits(spec, w, [[...r0, ...r1]], { positions: [[0, 1, 2, 3, 4, 0, 1, 2, 3]] })
    expect(relError(leaky.slice(5 * spec.vocabSize), sep.slice(5 * spec.vocabSize))).toBeGreaterThan(1e-3)
  })

  test('tied head = untied head with lm_head equal to embed_tokens', () => {
    const toks = tokenRows(2, 4, spec.vocabSize, 6)
    const untied = { ...spec, tied: false }
    const W2 = new Map(W)
    W2.set('lm_head.weight', W.get('model.embed_tokens.weight')!)
    const a = llamaLogits({ ...spec, tied: true }, weightsOf(W2), toks)
    const b = llamaLogits(untied, weightsOf(W2), toks)
    expect(maxRel(a, b)).toBe(0)
  })
})

// ---------------------------------------------------------------------------------------------
// MHA written out in transformers' tensor style, one layer: cos/sin tables of width D
// (cat(freqs, freqs)), rotate_half(x) = cat(−x2, x1), q·cos + rotate_half(q)·sin, an additive
// −inf causal mask, softmax, then o_proj and the SwiGLU MLP. Different loops from the reference.

type Mat = number[][]
const mm = (a: Mat, w: ArrayLike<number>, out: number, bias?: ArrayLike<number>): Mat => a.map((row) =>
  Array.from({ length: out }, (_, o) => row.reduce((s, x, i) => s + x * w[o * row.length + i], bias ? bias[o] : 0)))
const rms = (row: number[], g: ArrayLike<number>, eps: number): number[] => {
  const r = 1 / Math.sqrt(row.reduce((s, x) => s + x * x, 0) / row.length + eps)
  return row.map((x, i) => x * r * g[i])
}

function mhaOneLayer(spec: LlamaRefSpec, W: Map<string, Float32Array>, toks: number[]): Mat {
  const C = spec.hidden, H = spec.heads, D = spec.headDim, T = toks.length, eps = spec.rmsEps
  expect(spec.kvHeads).toBe(H)
  const g = (n: string) => W.get(n)!
  const L = (n: string) => g(`model.layers.0.${n}`)
  const opt = (n: string, on: boolean) => (on ? L(n) : undefined)
  const emb = g('model.embed_tokens.weight')
  let x: Mat = toks.map((t) => Array.from(emb.slice(t * C, (t + 1) * C)))
  const h = x.map((r) => rms(r, L('input_layernorm.weight'), eps))
  const proj = (n: string) => mm(h, L(`self_attn.${n}_proj.weight`), H * D, opt(`self_attn.${n}_proj.bias`, spec.qkvBias))
  const heads = (m: Mat, norm?: string): Mat[] => Array.from({ length: H }, (_, hh) => m.map((r) => {
    const v = r.slice(hh * D, (hh + 1) * D)
    return norm ? rms(v, L(norm), eps) : v
  }))
  const inv = Array.from({ length: D / 2 }, (_, j) => 1 / spec.ropeTheta ** ((2 * j) / D))
  const cos = toks.map((_, t) => [...inv, ...inv].map((f) => Math.cos(t * f)))
  const sin = toks.map((_, t) => [...inv, ...inv].map((f) => Math.sin(t * f)))
  const rot = (m: Mat): Mat => m.map((r, t) => {
    const half = [...r.slice(D / 2).map((z) => -z), ...r.slice(0, D / 2)]
    return r.map((z, i) => z * cos[t][i] + half[i] * sin[t][i])
  })
  const q = heads(proj('q'), spec.qkNorm ? 'self_attn.q_norm.weight' : undefined).map(rot)
  const k = heads(proj('k'), spec.qkNorm ? 'self_attn.k_norm.weight' : undefined).map(rot)
  const v = heads(proj('v'))
  const y: Mat = toks.map(() => new Array(H * D).fill(0))
  for (let hh = 0; hh < H; hh++) {
    for (let t = 0; t < T; t++) {
      const s = k[hh].map((kr, t2) => (t2 > t ? -Infinity : kr.reduce((a, kv, i) => a + kv * q[hh][t][i], 0) * D ** -0.5))
      const m = Math.max(...s)
      const e = s.map((z) => Math.exp(z - m))
      const z = e.reduce((a, b) => a + b, 0)
      for (let t2 = 0; t2 < T; t2++) for (let i = 0; i < D; i++) y[t][hh * D + i] += (e[t2] / z) * v[hh][t2][i]
    }
  }
  const o = mm(y, L('self_attn.o_proj.weight'), C, opt('self_attn.o_proj.bias', spec.oBias))
  x = x.map((r, t) => r.map((z, i) => z + o[t][i]))
  const h2 = x.map((r) => rms(r, L('post_attention_layernorm.weight'), eps))
  const F = spec.intermediate
  const gate = mm(h2, L('mlp.gate_proj.weight'), F, opt('mlp.gate_proj.bias', spec.mlpBias))
  const up = mm(h2, L('mlp.up_proj.weight'), F, opt('mlp.up_proj.bias', spec.mlpBias))
  const act = gate.map((r, t) => r.map((z, i) => (z / (1 + Math.exp(-z))) * up[t][i]))
  const down = mm(act, L('mlp.down_proj.weight'), C, opt('mlp.down_proj.bias', spec.mlpBias))
  x = x.map((r, t) => r.map((z, i) => z + down[t][i]))
  const head = spec.tied ? emb : g('lm_head.weight')
  return mm(x.map((r) => rms(r, g('model.norm.weight'), eps)), head, spec.vocabSize)
}

/** The MHA weights equal to a GQA model: kv head j's k/v rows copied to query heads j·n_rep … (j+1)·n_rep − 1 (repeat_kv). */
function repeatKv(spec: LlamaRefSpec, W: Map<string, Float32Array>, mapping: (h: number) => number): Map<string, Float32Array> {
  const out = new Map(W)
  const D = spec.headDim, C = spec.hidden, H = spec.heads
  for (let l = 0; l < spec.layers; l++) {
    for (const n of ['k', 'v']) {
      const key = `model.layers.${l}.self_attn.${n}_proj`
      const w = W.get(`${key}.weight`)!, b = W.get(`${key}.bias`)
      const ww = new Float32Array(H * D * C), bb = new Float32Array(H * D)
      for (let h = 0; h < H; h++) {
        const j = mapping(h)
        ww.set(w.subarray(j * D * C, (j + 1) * D * C), h * D * C)
        if (b) bb.set(b.subarray(j * D, (j + 1) * D), h * D)
      }
      out.set(`${key}.weight`, ww)
      if (b) out.set(`${key}.bias`, bb)
    }
  }
  return out
}

describe('attention heads', () => {
  test.each([
    ['plain, tied', { ...base, layers: 1, heads: 3, kvHeads: 3, headDim: 4 }],
    ['all biases, untied', { ...allBias, layers: 1 }],
    ['q/k norm, untied', { ...qwen3, layers: 1, heads: 3, kvHeads: 3 }],
  ] as Array<[string, LlamaRefSpec]>)('kvHeads = heads equals MHA written out (1 layer, %s)', (_l, spec) => {
    const W = llamaRandomWeights(spec, 21)
    const toks = tokenRows(1, 6, spec.vocabSize, 22)[0]
    const ref = llamaLogits(spec, weightsOf(W), [toks])
    const mha = mhaOneLayer(spec, W, toks).flat()
    // Both float64, different summation orders: ~1e-15.
    expect(maxRel(ref, mha)).toBeLessThan(1e-12)
  })

  test.each([['GQA 4/2', base], ['GQA 6/2 with q/k norm', qwen3], ['GQA 4/1', { ...base, kvHeads: 1 }]] as Array<[string, LlamaRefSpec]>)(
    '%s equals MHA with each kv head repeated for its n_rep query heads (repeat_kv), and not the tiled order', (_l, spec) => {
      const W = llamaRandomWeights(spec, 31)
      const toks = tokenRows(2, 5, spec.vocabSize, 32)
      const nRep = spec.heads / spec.kvHeads
      const gqa = llamaLogits(spec, weightsOf(W), toks)
      const mhaSpec = { ...spec, kvHeads: spec.heads }
      const mha = llamaLogits(mhaSpec, weightsOf(repeatKv(spec, W, (h) => Math.floor(h / nRep))), toks)
      expect(maxRel(gqa, mha)).toBeLessThan(1e-13)
      if (spec.kvHeads > 1) {
        const tiled = llamaLogits(mhaSpec, weightsOf(repeatKv(spec, W, (h) => h % spec.kvHeads)), toks)
        expect(relError(tiled, gqa)).toBeGreaterThan(1e-3)
      }
    })
})

// ---------------------------------------------------------------------------------------------
// GOLDEN: logits of an independent PyTorch float64 forward, bench/torch_peer.py's build_llama
// (plain torch in transformers' tensor style: cat(freqs, freqs) cos/sin, rotate_half,
// repeat_interleave for repeat_kv, eager softmax attention, transformers' parameter names),
// given llamaRandomWeights(spec, 7) saved as a model dir and tokenRows(2, T, V, 100), run once by
// hand on torch 2.13.0+cpu through `scripts/gpu/llama_check.py --backend peer --dtype float64`.
// The configs: Qwen3-style (q/k norm, head_dim 16 ≠ 32/4, GQA 4/2, untied) and Llama-3-style
// (llama3 RoPE with all three bands at head_dim 16, GQA 4/1, tied; row 1 at positions 3000 + 37t,
// so relative distances reach 1739 and the divided bands matter). Over the whole tensor,
// max |Δ| / max |logit| was 6.6e-16 and 5.9e-16; a few entries and the sum of squares are kept here.

describe('against an independent PyTorch float64 forward (GOLDEN)', () => {
  const qwen3Golden: LlamaRefSpec = { vocabSize: 37, hidden: 32, layers: 2, heads: 4, kvHeads: 2, headDim: 16, intermediate: 48,
    rmsEps: 1e-6, ropeTheta: 1e6, tied: false, qkvBias: false, oBias: false, mlpBias: false, qkNorm: true }
  const llama3Golden: LlamaRefSpec = { vocabSize: 41, hidden: 32, layers: 2, heads: 4, kvHeads: 1, headDim: 16, intermediate: 64,
    rmsEps: 1e-5, ropeTheta: 10000, tied: true, qkvBias: false, oBias: false, mlpBias: false, qkNorm: false,
    ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 256 } }
  const cases: Array<[string, LlamaRefSpec, number, boolean, Record<number, number>, number]> = [
    ['Qwen3-style', qwen3Golden, 12, false,
      { 0: -0.27755896290552545, 1: 0.6296131378909923, 296: 0.39810067656102033, 451: -0.977146087202837, 887: -1.437490993185798 },
      763.2312509250189],
    ['Llama-3-style', llama3Golden, 48, true,
      { 0: -1.8579961793642135, 1: 1.154107006289447, 1312: -0.260682942618117, 1975: -0.9005680722404615, 3935: 1.645730874114331 },
      54834.80640356886],
  ]
  test.each(cases)('%s', (_l, spec, T, farPositions, entries, sumSquares) => {
    const toks = tokenRows(2, T, spec.vocabSize, 100)
    const positions = farPositions ? toks.map((row, b) => row.map((_, t) => (b === 1 ? 3000 + 37 * t : t))) : undefined
    const logits = llamaLogits(spec, weightsOf(llamaRandomWeights(spec, 7)), toks, { positions })
    expect(logits.length).toBe(2 * T * spec.vocabSize)
    // float64 on both sides, different summation orders: ~1e-15 relative.
    for (const [i, want] of Object.entries(entries)) expect(Math.abs(logits[Number(i)] - want)).toBeLessThan(1e-12 * Math.max(1, Math.abs(want)))
    expect(Math.abs(logits.reduce((s, x) => s + x * x, 0) / sumSquares - 1)).toBeLessThan(1e-12)
  })
})
