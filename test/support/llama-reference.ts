/**
 * An independent float64 forward of a Llama-family decoder (Llama 2/3.x, TinyLlama, SmolLM2,
 * Qwen2/2.5, Qwen3, Mistral without its sliding window), written from the math that
 * transformers' modeling_llama.py / modeling_qwen2.py / modeling_qwen3.py compute, for checking
 * the engine's logits. It shares no code with the engine. Straightforward loops; tiny configs only.
 *
 * Shape legend: B = batch rows, T = time, C = hidden, H = query heads, KV = key/value heads,
 * D = head_dim (need not be C / H), F = intermediate, V = vocab.
 *
 * One decoder layer (pre-norm, no dropout):
 *   h   = RMSNorm(x) · input_layernorm            RMSNorm(x) = x / sqrt(mean(x²) + eps)
 *   q   = h·Wqᵀ (+bq) (H·D), k = h·Wkᵀ (+bk), v = h·Wvᵀ (+bv) (KV·D), weights [out, in]
 *   Qwen3: q, k ← RMSNorm over each head's D values · q_norm / k_norm (before RoPE)
 *   q, k ← RoPE, the half-split ("rotate_half") pairing: dimension j rotates with j + D/2 by
 *          angle pos · inv_freq[j], j < D/2: (a, b) → (a cos − b sin, b cos + a sin)
 *   att = softmax(q·k · D^-0.5 over the keys it may see) · v; query head h reads kv head
 *          floor(h / (H/KV)) (repeat_kv); a token sees the tokens at or before it in its row
 *          with the same segment id
 *   x  += att·Woᵀ (+bo)
 *   x  += down(silu(gate(h2)) * up(h2)) with h2 = RMSNorm(x) · post_attention_layernorm
 * then logits = RMSNorm(x) · model.norm · lm_headᵀ (embed_tokens when tied). No embedding scale.
 *
 * inv_freq[j] = theta^(-2j/D); the "llama3" rule (transformers' modeling_rope_utils) rescales
 * it by wavelength λ = 2π / inv_freq: λ < original/high_freq_factor unchanged, λ >
 * original/low_freq_factor divided by factor, in between s = (original/λ − low)/(high − low)
 * and inv·((1 − s)/factor + s). transformers computes inv_freq, pos·inv_freq and cos/sin in
 * float32; here everything is float64 unless `ropeF32` asks for float32 angles (see LlamaRefOptions).
 */
import { rng } from './reference'

export interface LlamaRefSpec {
  vocabSize: number
  hidden: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  intermediate: number
  rmsEps: number
  ropeTheta: number
  ropeScaling?: { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number }
  tied: boolean
  /** Bias on q_proj, k_proj, v_proj (Qwen2; Llama's attention_bias). */
  qkvBias: boolean
  /** Bias on o_proj (Llama's attention_bias; not Qwen2). */
  oBias: boolean
  /** Bias on gate_proj, up_proj, down_proj (Llama's mlp_bias). */
  mlpBias: boolean
  /** Qwen3: q_norm / k_norm, an RMSNorm over each head's head_dim, before RoPE. */
  qkNorm: boolean
}

/** A tensor by its Hugging Face name (model.layers.0.self_attn.q_proj.weight, …), row-major. */
export type LlamaWeights = (name: string) => ArrayLike<number>

export interface LlamaRefOptions {
  /** (B, T) position ids; default 0..T-1 in every row. */
  positions?: number[][]
  /** (B, T) segment ids of packed rows: attention stays inside a segment. Default: one segment per row. */
  segments?: number[][]
  /**
   * Round inv_freq and each angle pos·inv_freq to float32 as transformers does (it computes them in
   * float32; cos/sin then come from the rounded angle). Off: exact float64 angles. At position p the
   * float32 angle is off by up to ~p·2^-24 rad, so this matters for long positions only.
   */
  ropeF32?: boolean
}

function checkSpec(s: LlamaRefSpec): void {
  if (s.heads % s.kvHeads !== 0) throw new Error(`llama-reference: heads (${s.heads}) must be a multiple of kvHeads (${s.kvHeads})`)
  if (s.headDim % 2 !== 0) throw new Error(`llama-reference: headDim (${s.headDim}) must be even`)
}

/** inv_freq (D/2) as transformers computes it for this spec, the "llama3" rule included; float64. */
export function llamaRopeInvFreq(spec: LlamaRefSpec): Float64Array {
  const D = spec.headDim
  const inv = new Float64Array(D / 2)
  for (let j = 0; j < D / 2; j++) inv[j] = 1 / Math.pow(spec.ropeTheta, (2 * j) / D)
  const sc = spec.ropeScaling
  if (!sc) return inv
  const lowWavelen = sc.originalMaxPositionEmbeddings / sc.lowFreqFactor // longer waves: divided by factor
  const highWavelen = sc.originalMaxPositionEmbeddings / sc.highFreqFactor // shorter waves: kept
  for (let j = 0; j < D / 2; j++) {
    const wavelen = (2 * Math.PI) / inv[j]
    if (wavelen < highWavelen) continue
    if (wavelen > lowWavelen) {
      inv[j] /= sc.factor
      continue
    }
    const s = (sc.originalMaxPositionEmbeddings / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor)
    inv[j] = (1 - s) * (inv[j] / sc.factor) + s * inv[j]
  }
  return inv
}

/** out (N, C) = RMSNorm of each row of x (N, C), times w (C). */
function rmsNorm(x: Float64Array, w: ArrayLike<number>, N: number, C: number, eps: number): Float64Array {
  const out = new Float64Array(N * C)
  for (let n = 0; n < N; n++) {
    let ss = 0
    for (let c = 0; c < C; c++) ss += x[n * C + c] ** 2
    const r = 1 / Math.sqrt(ss / C + eps)
    for (let c = 0; c < C; c++) out[n * C + c] = x[n * C + c] * r * w[c]
  }
  return out
}

/** out (N, OC) = x (N, IC) · Wᵀ with W [OC, IC] (torch nn.Linear), + b (OC) when given. */
function linear(x: Float64Array, w: ArrayLike<number>, b: ArrayLike<number> | null, N: number, IC: number, OC: number): Float64Array {
  const out = new Float64Array(N * OC)
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      let s = b ? b[o] : 0
      for (let i = 0; i < IC; i++) s += x[n * IC + i] * w[o * IC + i]
      out[n * OC + o] = s
    }
  }
  return out
}

const silu = (x: number): number => x / (1 + Math.exp(-x))

/** In place: RoPE on x (N, nh, D) at positions pos (N). */
function rope(x: Float64Array, pos: ArrayLike<number>, inv: Float64Array, N: number, nh: number, D: number, f32: boolean): void {
  const half = D / 2
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < half; j++) {
      const angle = f32 ? Math.fround(pos[n] * inv[j]) : pos[n] * inv[j]
      const c = Math.cos(angle), s = Math.sin(angle)
      for (let h = 0; h < nh; h++) {
        const o = (n * nh + h) * D
        const a = x[o + j], b = x[o + j + half]
        x[o + j] = a * c - b * s
        x[o + j + half] = b * c + a * s
      }
    }
  }
}

/** Logits (B, T, V) of rows of token ids (all rows the same length T), float64. */
export function llamaLogits(spec: LlamaRefSpec, weights: LlamaWeights, tokens: number[][], opts: LlamaRefOptions = {}): Float64Array {
  checkSpec(spec)
  const B = tokens.length, T = B > 0 ? tokens[0].length : 0, N = B * T
  if (tokens.some((r) => r.length !== T)) throw new Error('llama-reference: all token rows must have the same length')
  const C = spec.hidden, H = spec.heads, KV = spec.kvHeads, D = spec.headDim, F = spec.intermediate, V = spec.vocabSize
  const nRep = H / KV, eps = spec.rmsEps, scale = 1 / Math.sqrt(D)
  const pos = new Float64Array(N), seg = new Float64Array(N)
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      pos[b * T + t] = opts.positions ? opts.positions[b][t] : t
      seg[b * T + t] = opts.segments ? opts.segments[b][t] : 0
    }
  }
  let inv = llamaRopeInvFreq(spec)
  if (opts.ropeF32) inv = inv.map(Math.fround)

  const embed = weights('model.embed_tokens.weight') // (V, C)
  let x = new Float64Array(N * C) // residual stream (N, C)
  for (let n = 0; n < N; n++) {
    const tok = tokens[Math.floor(n / T)][n % T]
    if (!(tok >= 0 && tok < V)) throw new Error(`llama-reference: token ${tok} out of range [0, ${V})`)
    for (let c = 0; c < C; c++) x[n * C + c] = embed[tok * C + c]
  }

  for (let l = 0; l < spec.layers; l++) {
    const p = (k: string) => weights(`model.layers.${l}.${k}`)
    const h = rmsNorm(x, p('input_layernorm.weight'), N, C, eps)
    const q = linear(h, p('self_attn.q_proj.weight'), spec.qkvBias ? p('self_attn.q_proj.bias') : null, N, C, H * D) // (N, H, D)
    const k = linear(h, p('self_attn.k_proj.weight'), spec.qkvBias ? p('self_attn.k_proj.bias') : null, N, C, KV * D) // (N, KV, D)
    const v = linear(h, p('self_attn.v_proj.weight'), spec.qkvBias ? p('self_attn.v_proj.bias') : null, N, C, KV * D) // (N, KV, D)
    const qh = spec.qkNorm ? rmsNorm(q, p('self_attn.q_norm.weight'), N * H, D, eps) : q
    const kh = spec.qkNorm ? rmsNorm(k, p('self_attn.k_norm.weight'), N * KV, D, eps) : k
    rope(qh, pos, inv, N, H, D, opts.ropeF32 === true)
    rope(kh, pos, inv, N, KV, D, opts.ropeF32 === true)

    const y = new Float64Array(N * H * D) // attention output (N, H, D)
    const scores = new Float64Array(T)
    for (let b = 0; b < B; b++) {
      for (let hq = 0; hq < H; hq++) {
        const hk = Math.floor(hq / nRep)
        for (let t = 0; t < T; t++) {
          const row = b * T + t
          let m = -Infinity
          for (let t2 = 0; t2 <= t; t2++) {
            const row2 = b * T + t2
            if (seg[row2] !== seg[row]) { scores[t2] = -Infinity; continue }
            let s = 0
            for (let i = 0; i < D; i++) s += qh[(row * H + hq) * D + i] * kh[(row2 * KV + hk) * D + i]
            scores[t2] = s * scale
            m = Math.max(m, scores[t2])
          }
          let z = 0
          for (let t2 = 0; t2 <= t; t2++) { scores[t2] = Math.exp(scores[t2] - m); z += scores[t2] }
          for (let t2 = 0; t2 <= t; t2++) {
            const pr = scores[t2] / z
            if (pr === 0) continue
            const row2 = b * T + t2
            for (let i = 0; i < D; i++) y[(row * H + hq) * D + i] += pr * v[(row2 * KV + hk) * D + i]
          }
        }
      }
    }
    const o = linear(y, p('self_attn.o_proj.weight'), spec.oBias ? p('self_attn.o_proj.bias') : null, N, H * D, C)
    x = x.map((val, i) => val + o[i])

    const h2 = rmsNorm(x, p('post_attention_layernorm.weight'), N, C, eps)
    const gate = linear(h2, p('mlp.gate_proj.weight'), spec.mlpBias ? p('mlp.gate_proj.bias') : null, N, C, F)
    const up = linear(h2, p('mlp.up_proj.weight'), spec.mlpBias ? p('mlp.up_proj.bias') : null, N, C, F)
    const act = gate.map((g, i) => silu(g) * up[i])
    const down = linear(act, p('mlp.down_proj.weight'), spec.mlpBias ? p('mlp.down_proj.bias') : null, N, F, C)
    x = x.map((val, i) => val + down[i])
  }

  const xf = rmsNorm(x, weights('model.norm.weight'), N, C, eps)
  const head = spec.tied ? embed : weights('lm_head.weight') // (V, C)
  return linear(xf, head, null, N, C, V)
}

/** Every tensor of a spec by Hugging Face name, with its shape, in the order transformers lists them. */
export function llamaTensorShapes(spec: LlamaRefSpec): Array<{ name: string; shape: number[] }> {
  const C = spec.hidden, Q = spec.heads * spec.headDim, KVD = spec.kvHeads * spec.headDim, F = spec.intermediate
  const out: Array<{ name: string; shape: number[] }> = [{ name: 'model.embed_tokens.weight', shape: [spec.vocabSize, C] }]
  for (let l = 0; l < spec.layers; l++) {
    const add = (k: string, shape: number[]) => out.push({ name: `model.layers.${l}.${k}`, shape })
    for (const [n, oc] of [['q', Q], ['k', KVD], ['v', KVD]] as Array<[string, number]>) {
      add(`self_attn.${n}_proj.weight`, [oc, C])
      if (spec.qkvBias) add(`self_attn.${n}_proj.bias`, [oc])
    }
    add('self_attn.o_proj.weight', [C, Q])
    if (spec.oBias) add('self_attn.o_proj.bias', [C])
    if (spec.qkNorm) {
      add('self_attn.q_norm.weight', [spec.headDim])
      add('self_attn.k_norm.weight', [spec.headDim])
    }
    for (const [n, shape] of [['gate', [F, C]], ['up', [F, C]], ['down', [C, F]]] as Array<[string, number[]]>) {
      add(`mlp.${n}_proj.weight`, shape)
      if (spec.mlpBias) add(`mlp.${n}_proj.bias`, [shape[0]])
    }
    add('input_layernorm.weight', [C])
    add('post_attention_layernorm.weight', [C])
  }
  out.push({ name: 'model.norm.weight', shape: [C] })
  if (!spec.tied) out.push({ name: 'lm_head.weight', shape: [spec.vocabSize, C] })
  return out
}

/**
 * Seeded weights for every tensor of a spec (float32 values, so the engine can hold them exactly):
 * matrices uniform in ±scale/sqrt(fan_in) (activations stay O(1) and attention is far from
 * uniform at scale 1.5, the default), the embedding uniform in ±1, norm weights 1 ± 0.25, biases ±0.2.
 * The same seed and spec always give the same values (mulberry32 in tensor order of llamaTensorShapes).
 */
export function llamaRandomWeights(spec: LlamaRefSpec, seed: number, scale = 1.5): Map<string, Float32Array> {
  const r = rng(seed)
  const out = new Map<string, Float32Array>()
  for (const { name, shape } of llamaTensorShapes(spec)) {
    const n = shape.reduce((a, b) => a * b, 1)
    const u = () => 2 * r() - 1
    let f: () => number
    if (name.endsWith('norm.weight') || name.endsWith('layernorm.weight')) f = () => 1 + 0.25 * u()
    else if (name.endsWith('.bias')) f = () => 0.2 * u()
    else if (name === 'model.embed_tokens.weight') f = u
    else f = () => (scale / Math.sqrt(shape[1])) * u()
    out.set(name, Float32Array.from({ length: n }, f))
  }
  return out
}

/** A LlamaWeights over a map; an unknown name throws (so a tensor the spec should not read is caught). */
export function weightsOf(map: Map<string, ArrayLike<number>>): LlamaWeights {
  return (name) => {
    const w = map.get(name)
    if (!w) throw new Error(`llama-reference: no tensor ${name}`)
    return w
  }
}
