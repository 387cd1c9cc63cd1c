/**
 * Per architecture: the GGUF metadata keys, tensor names and layouts llama.cpp expects
 * (src/llama-arch.cpp names, src/models/<arch>.cpp shapes), from a plwtune model config and
 * its weights by engine name (ts/arch/).
 *
 *  - GPT-2 → `gpt2`: Conv1D weights are stored [in, out]; llama.cpp wants nn.Linear's
 *    [out, in] (ggml dims [in, out]), so c_attn, c_proj and c_fc are transposed (as
 *    convert_hf_to_gguf does). The head is tied: no output.weight (llama.cpp falls back to
 *    token_embd). LayerNorm epsilon 1e-5 (plwtune's GPT-2 has no other).
 *  - Llama / Mistral → `llama`: llama.cpp rotates adjacent pairs (LLAMA_ROPE_TYPE_NORM)
 *    while Hugging Face checkpoints rotate halves (dimension j with j + head_dim/2), so the
 *    rows of q_proj and k_proj (weights and biases) are permuted per head: HF row
 *    h·D + s·D/2 + i goes to h·D + 2i + s. That is what convert_hf_to_gguf does, and it makes
 *    llama.cpp's pairs the ones plwtune rotates together. "llama3" RoPE scaling becomes the
 *    rope_freqs.weight tensor of per-frequency divisors.
 *  - Qwen2 → `qwen2`, Qwen3 → `qwen3`: llama.cpp rotates halves (LLAMA_ROPE_TYPE_NEOX), so
 *    nothing is permuted. Qwen3's per-head q_norm/k_norm become attn_q_norm/attn_k_norm.
 *
 * Which tensors keep f32 whatever the dtype: every 1-D tensor (norms, biases) and
 * rope_freqs, as convert_hf_to_gguf does. q8_0 needs rows of a multiple of 32 values; a
 * tensor whose rows are not falls back to f16 (convert_hf_to_gguf's fallback too).
 */
import type { ModelConfig } from '../arch'
import { maxPositions } from '../arch'
import { GPT2_LAYER_NORM_EPS } from '../arch/gpt2'
import type { LlamaModelConfig } from '../arch/llama'
import { GgmlType, GgufDtype, GGML_TYPE_OF, GgufValue, gguf } from './gguf-writer'
import { Q8_0_BLOCK } from './q8_0'

/** Reads one tensor of the (merged) model by plwtune's engine name, with its shape on disk. */
export interface WeightSource {
  shape(name: string): number[] | null
  read(name: string): Float32Array
}

export interface ArchTensor {
  /** llama.cpp's name (blk.N.attn_q.weight, …). */
  name: string
  /** Torch order (outermost first). */
  shape: number[]
  type: GgmlType
  data: () => Float32Array
}

export interface ArchPlan {
  /** general.architecture. */
  arch: 'gpt2' | 'llama' | 'qwen2' | 'qwen3'
  kv: Array<[string, GgufValue]>
  tensors: ArchTensor[]
}

export class GgufExportError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GgufExportError'
  }
}

/** The type a tensor is stored in for the requested dtype. */
export function storedType(shape: readonly number[], dtype: GgufDtype, forceF32 = false): GgmlType {
  if (forceF32 || shape.length < 2 || dtype === 'f32') return GgmlType.F32
  if (dtype === 'q8_0' && shape[shape.length - 1] % Q8_0_BLOCK !== 0) return GgmlType.F16
  return GGML_TYPE_OF[dtype]
}

/** A [rows, cols] row-major matrix transposed. */
export function transpose(x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(x.length)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]
  return out
}

/**
 * Rows of a q/k projection (weight [heads·D, C] or bias [heads·D], `cols` = C or 1) from the
 * rotate-half order to llama.cpp's adjacent pairs: row h·D + s·D/2 + i → h·D + 2i + s.
 */
export function permuteRope(x: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  if (headDim % 2 !== 0) throw new GgufExportError(`head_dim ${headDim} is odd: RoPE needs pairs`)
  if (x.length !== heads * headDim * cols) throw new GgufExportError(`permuteRope: ${x.length} values, expected ${heads}·${headDim}·${cols}`)
  const out = new Float32Array(x.length)
  const half = headDim / 2
  for (let h = 0; h < heads; h++) {
    for (let s = 0; s < 2; s++) {
      for (let i = 0; i < half; i++) {
        const from = (h * headDim + s * half + i) * cols
        const to = (h * headDim + 2 * i + s) * cols
        out.set(x.subarray(from, from + cols), to)
      }
    }
  }
  return out
}

/** llama3 RoPE: the divisor of each of the head_dim/2 frequencies (convert_hf_to_gguf's rope_freqs). */
export function llama3RopeFactors(c: LlamaModelConfig): Float32Array {
  const s = c.ropeScaling
  if (s === null) throw new Error('llama3RopeFactors: no rope scaling')
  const half = c.headDim / 2
  const out = new Float32Array(half)
  const lowWavelen = s.originalMaxPositions / s.lowFreqFactor
  const highWavelen = s.originalMaxPositions / s.highFreqFactor
  for (let i = 0; i < half; i++) {
    const freq = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim)
    const wavelen = (2 * Math.PI) / freq
    if (wavelen < highWavelen) out[i] = 1
    else if (wavelen > lowWavelen) out[i] = s.factor
    else {
      const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
      out[i] = 1 / ((1 - smooth) / s.factor + smooth)
    }
  }
  return out
}

class Planner {
  readonly tensors: ArchTensor[] = []

  constructor(private readonly src: WeightSource, private readonly dtype: GgufDtype) {}

  /** The shape of `from` on disk, checked against what the config implies. */
  shapeOf(from: string, expected: number[]): number[] {
    const got = this.src.shape(from)
    if (got === null) throw new GgufExportError(`the model has no tensor ${from} (shape [${expected}] expected)`)
    if (got.join(',') !== expected.join(',')) {
      throw new GgufExportError(`tensor ${from} has shape [${got}], expected [${expected}] for this config.json`)
    }
    return got
  }

  /** A tensor taken as it is (same layout), or changed by `map`, with `shape` the GGUF (torch-order) shape. */
  add(name: string, from: string, expected: number[], o: { map?: (x: Float32Array) => Float32Array; shape?: number[]; f32?: boolean } = {}): void {
    this.shapeOf(from, expected)
    const shape = o.shape ?? expected
    this.tensors.push({
      name, shape, type: storedType(shape, this.dtype, o.f32),
      data: () => (o.map ? o.map(this.src.read(from)) : this.src.read(from)),
    })
  }

  has(from: string): boolean {
    return this.src.shape(from) !== null
  }
}

function gpt2Plan(c: ModelConfig & { arch: 'gpt2' }, src: WeightSource, dtype: GgufDtype): ArchPlan {
  const C = c.nEmbd, V = c.vocabSize, F = 4 * C
  const p = new Planner(src, dtype)
  p.add('token_embd.weight', 'wte.weight', [V, C])
  p.add('position_embd.weight', 'wpe.weight', [c.nPositions, C])
  const conv = (name: string, from: string, inDim: number, outDim: number): void =>
    p.add(name, from, [inDim, outDim], { map: (x) => transpose(x, inDim, outDim), shape: [outDim, inDim] })
  for (let l = 0; l < c.nLayer; l++) {
    const h = `h.${l}.`, b = `blk.${l}.`
    p.add(`${b}attn_norm.weight`, `${h}ln_1.weight`, [C])
    p.add(`${b}attn_norm.bias`, `${h}ln_1.bias`, [C])
    conv(`${b}attn_qkv.weight`, `${h}attn.c_attn.weight`, C, 3 * C)
    p.add(`${b}attn_qkv.bias`, `${h}attn.c_attn.bias`, [3 * C])
    conv(`${b}attn_output.weight`, `${h}attn.c_proj.weight`, C, C)
    p.add(`${b}attn_output.bias`, `${h}attn.c_proj.bias`, [C])
    p.add(`${b}ffn_norm.weight`, `${h}ln_2.weight`, [C])
    p.add(`${b}ffn_norm.bias`, `${h}ln_2.bias`, [C])
    conv(`${b}ffn_up.weight`, `${h}mlp.c_fc.weight`, C, F)
    p.add(`${b}ffn_up.bias`, `${h}mlp.c_fc.bias`, [F])
    conv(`${b}ffn_down.weight`, `${h}mlp.c_proj.weight`, F, C)
    p.add(`${b}ffn_down.bias`, `${h}mlp.c_proj.bias`, [C])
  }
  p.add('output_norm.weight', 'ln_f.weight', [C])
  p.add('output_norm.bias', 'ln_f.bias', [C])
  const a = 'gpt2'
  return {
    arch: a,
    kv: [
      [`${a}.context_length`, gguf.u32(c.nPositions)],
      [`${a}.embedding_length`, gguf.u32(C)],
      [`${a}.feed_forward_length`, gguf.u32(F)],
      [`${a}.block_count`, gguf.u32(c.nLayer)],
      [`${a}.attention.head_count`, gguf.u32(c.nHead)],
      [`${a}.attention.layer_norm_epsilon`, gguf.f32(GPT2_LAYER_NORM_EPS)],
    ],
    tensors: p.tensors,
  }
}

function llamaPlan(c: LlamaModelConfig, src: WeightSource, dtype: GgufDtype): ArchPlan {
  const arch = c.family === 'qwen2' ? 'qwen2' : c.family === 'qwen3' ? 'qwen3' : 'llama'
  const C = c.hiddenSize, V = c.vocabSize, D = c.headDim, H = c.numHeads, KVH = c.numKvHeads, F = c.intermediateSize
  if (arch === 'qwen2' && D * H !== C) {
    throw new GgufExportError(`llama.cpp's qwen2 needs head_dim · heads = hidden_size (${D}·${H} ≠ ${C})`)
  }
  if (arch !== 'llama' && c.ropeScaling !== null) {
    throw new GgufExportError(`"llama3" RoPE scaling on a ${c.family} model has no GGUF form llama.cpp's ${arch} reads`)
  }
  const permute = arch === 'llama' // NORM rope in llama.cpp; NEOX (no permute) for qwen2/qwen3
  const p = new Planner(src, dtype)
  p.add('token_embd.weight', 'model.embed_tokens.weight', [V, C])
  for (let l = 0; l < c.numLayers; l++) {
    const m = `model.layers.${l}.`, b = `blk.${l}.`
    p.add(`${b}attn_norm.weight`, `${m}input_layernorm.weight`, [C])
    for (const [gg, hf, heads] of [['attn_q', 'q_proj', H], ['attn_k', 'k_proj', KVH], ['attn_v', 'v_proj', KVH]] as const) {
      const rope = permute && gg !== 'attn_v'
      p.add(`${b}${gg}.weight`, `${m}self_attn.${hf}.weight`, [heads * D, C],
        rope ? { map: (x) => permuteRope(x, heads, D, C) } : {})
      if (c.qkvBias) {
        p.add(`${b}${gg}.bias`, `${m}self_attn.${hf}.bias`, [heads * D], rope ? { map: (x) => permuteRope(x, heads, D, 1) } : {})
      }
    }
    if (c.qkNorm) {
      p.add(`${b}attn_q_norm.weight`, `${m}self_attn.q_norm.weight`, [D])
      p.add(`${b}attn_k_norm.weight`, `${m}self_attn.k_norm.weight`, [D])
    }
    p.add(`${b}attn_output.weight`, `${m}self_attn.o_proj.weight`, [C, H * D])
    if (c.oBias) p.add(`${b}attn_output.bias`, `${m}self_attn.o_proj.bias`, [C])
    p.add(`${b}ffn_norm.weight`, `${m}post_attention_layernorm.weight`, [C])
    p.add(`${b}ffn_gate.weight`, `${m}mlp.gate_proj.weight`, [F, C])
    p.add(`${b}ffn_up.weight`, `${m}mlp.up_proj.weight`, [F, C])
    p.add(`${b}ffn_down.weight`, `${m}mlp.down_proj.weight`, [C, F])
    if (c.mlpBias) {
      p.add(`${b}ffn_gate.bias`, `${m}mlp.gate_proj.bias`, [F])
      p.add(`${b}ffn_up.bias`, `${m}mlp.up_proj.bias`, [F])
      p.add(`${b}ffn_down.bias`, `${m}mlp.down_proj.bias`, [C])
    }
  }
  p.add('output_norm.weight', 'model.norm.weight', [C])
  // Tied: no output.weight; llama.cpp's llama, qwen2 and qwen3 use token_embd then.
  if (!c.tieWordEmbeddings) p.add('output.weight', 'lm_head.weight', [V, C])
  if (c.ropeScaling !== null) {
    const factors = llama3RopeFactors(c)
    p.tensors.push({ name: 'rope_freqs.weight', shape: [factors.length], type: GgmlType.F32, data: () => factors })
  }
  const kv: Array<[string, GgufValue]> = [
    [`${arch}.context_length`, gguf.u32(maxPositions(c))],
    [`${arch}.embedding_length`, gguf.u32(C)],
    [`${arch}.feed_forward_length`, gguf.u32(F)],
    [`${arch}.block_count`, gguf.u32(c.numLayers)],
    [`${arch}.attention.head_count`, gguf.u32(H)],
    [`${arch}.attention.head_count_kv`, gguf.u32(KVH)],
    [`${arch}.attention.key_length`, gguf.u32(D)],
    [`${arch}.attention.value_length`, gguf.u32(D)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gguf.f32(c.rmsNormEps)],
    [`${arch}.rope.freq_base`, gguf.f32(c.ropeTheta)],
    [`${arch}.rope.dimension_count`, gguf.u32(D)],
  ]
  if (arch === 'llama') kv.push([`${arch}.vocab_size`, gguf.u32(V)])
  return { arch, kv, tensors: p.tensors }
}

/** The architecture's metadata and tensors for a model config and its weights. */
export function archPlan(c: ModelConfig, src: WeightSource, dtype: GgufDtype): ArchPlan {
  return c.arch === 'gpt2' ? gpt2Plan(c, src, dtype) : llamaPlan(c, src, dtype)
}
