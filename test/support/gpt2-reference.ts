/**
 * An independent float64 GPT-2 forward (Hugging Face semantics: pre-LN, GELU tanh, LayerNorm
 * eps 1e-5, Conv1D y = x·W + b, tied head), written from the architecture, for checking
 * the engine's logits. Straightforward loops; tiny configs only.
 */
import { GPT2Config } from '../../ts/native'

export type Weights = (name: string) => Float32Array

function layerNorm(x: Float64Array, w: Float32Array, b: Float32Array, N: number, C: number): Float64Array {
  const out = new Float64Array(N * C)
  for (let n = 0; n < N; n++) {
    let mean = 0
    for (let c = 0; c < C; c++) mean += x[n * C + c]
    mean /= C
    let v = 0
    for (let c = 0; c < C; c++) v += (x[n * C + c] - mean) ** 2
    const rstd = 1 / Math.sqrt(v / C + 1e-5)
    for (let c = 0; c < C; c++) out[n * C + c] = (x[n * C + c] - mean) * rstd * w[c] + b[c]
  }
  return out
}

function linear(x: Float64Array, w: Float32Array, b: Float32Array, N: number, IC: number, OC: number): Float64Array {
  const out = new Float64Array(N * OC)
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < OC; o++) {
      let s = b[o]
      for (let i = 0; i < IC; i++) s += x[n * IC + i] * w[i * OC + o]
      out[n * OC + o] = s
    }
  }
  return out
}

const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))

/** Logits (B,T,V) for one batch; positions and segments as the engine takes them. */
export function gpt2Logits(cfg: GPT2Config, W: Weights, B: number, T: number, tokens: Int32Array,
  positions?: Int32Array, segments?: Int32Array): Float64Array {
  const C = cfg.nEmbd, NH = cfg.nHead, hs = C / NH, V = cfg.vocabSize, N = B * T
  const wte = W('wte.weight'), wpe = W('wpe.weight')
  let x = new Float64Array(N * C)
  for (let n = 0; n < N; n++) {
    const pos = positions ? positions[n] : n % T
    for (let c = 0; c < C; c++) x[n * C + c] = wte[tokens[n] * C + c] + wpe[pos * C + c]
  }
  for (let l = 0; l < cfg.nLayer; l++) {
    const p = (k: string) => W(`h.${l}.${k}`)
    const ln1 = layerNorm(x, p('ln_1.weight'), p('ln_1.bias'), N, C)
    const qkv = linear(ln1, p('attn.c_attn.weight'), p('attn.c_attn.bias'), N, C, 3 * C)
    const y = new Float64Array(N * C)
    for (let b = 0; b < B; b++) for (let h = 0; h < NH; h++) for (let t = 0; t < T; t++) {
      const row = b * T + t
      const seg = segments ? segments[row] : 0
      const scores: number[] = []
      for (let t2 = 0; t2 <= t; t2++) {
        const row2 = b * T + t2
        if (segments && segments[row2] !== seg) { scores.push(-Infinity); continue }
        let s = 0
        for (let i = 0; i < hs; i++) s += qkv[row * 3 * C + h * hs + i] * qkv[row2 * 3 * C + C + h * hs + i]
        scores.push(s / Math.sqrt(hs))
      }
      const m = Math.max(...scores)
      const e = scores.map((s) => Math.exp(s - m))
      const z = e.reduce((a, c) => a + c, 0)
      for (let t2 = 0; t2 <= t; t2++) {
        const row2 = b * T + t2
        for (let i = 0; i < hs; i++) y[row * C + h * hs + i] += (e[t2] / z) * qkv[row2 * 3 * C + 2 * C + h * hs + i]
      }
    }
    const att = linear(y, p('attn.c_proj.weight'), p('attn.c_proj.bias'), N, C, C)
    x = x.map((v, i) => v + att[i])
    const ln2 = layerNorm(x, p('ln_2.weight'), p('ln_2.bias'), N, C)
    const fc = linear(ln2, p('mlp.c_fc.weight'), p('mlp.c_fc.bias'), N, C, 4 * C).map(gelu)
    const proj = linear(fc, p('mlp.c_proj.weight'), p('mlp.c_proj.bias'), N, 4 * C, C)
    x = x.map((v, i) => v + proj[i])
  }
  const lnf = layerNorm(x, W('ln_f.weight'), W('ln_f.bias'), N, C)
  const logits = new Float64Array(N * V)
  for (let n = 0; n < N; n++) for (let v = 0; v < V; v++) {
    let s = 0
    for (let c = 0; c < C; c++) s += lnf[n * C + c] * wte[v * C + c]
    logits[n * V + v] = s
  }
  return logits
}
