/**
 * The tokenizer, embedded in GGUF the way llama.cpp's src/llama-vocab.cpp loads it, from a
 * model directory's tokenizer.json (+ tokenizer_config.json / chat_template.jinja):
 *
 *  - byte-level BPE (GPT-2, Llama 3, Qwen2/3, SmolLM, and plwtune's byte tokenizer, which is
 *    byte-level BPE with no merges) → tokenizer.ggml.model "gpt2": tokens in their byte-to-
 *    unicode spelling, exactly as tokenizer.json holds them, the merges ("a b" strings), and
 *    tokenizer.ggml.pre naming the pre-tokenizer regex llama.cpp should split with (detected
 *    from tokenizer.json's Split pattern; a byte tokenizer without merges splits nothing and
 *    gets "default");
 *  - SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, Mistral v0.1) → "llama":
 *    tokens with "▁", scores from the merges' ranks (the token of merge k scores −k), <0xXX>
 *    pieces as BYTE tokens.
 *
 * Token types (llama.cpp's llama_token_type): special added tokens are CONTROL (never printed
 * by a detokenizer, matched as specials), other added tokens USER_DEFINED, the rest NORMAL.
 * Ids the vocabulary lacks below the model's vocab_size (Qwen pads its embedding) become
 * "[PADn]" UNUSED tokens, as convert_hf_to_gguf writes them. BOS/EOS/UNK/PAD ids, whether a
 * BOS is prepended (what the tokenizer's post-processor does), and the chat template follow
 * (the tokenizer's own, else one derived from the template the model was trained with).
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { HfTokenizer } from '../data/hf-tokenizer'
import { GgufValue, gguf } from './gguf-writer'
import { GgufExportError } from './gguf-arch'

export enum TokenType { NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6 }

/** Split regexes of tokenizer.json → llama.cpp's pre-tokenizer names (src/llama-vocab.cpp). */
const PRE_BY_REGEX: Record<string, string> = {
  // Llama 3 (and 3.1 – 3.3): digits in runs of up to three.
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'llama-bpe',
  // Qwen2, Qwen2.5, Qwen3: single digits.
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'qwen2',
}

export interface VocabPlan {
  kv: Array<[string, GgufValue]>
  /** What was embedded, for the report: "gpt2 (byte-level BPE, pre qwen2), 151936 tokens". */
  summary: string
  tokenCount: number
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    throw new GgufExportError(`${file}: cannot read (${(err as Error).message})`)
  }
}

type Json = Record<string, unknown>

function preTokenizers(tok: Json): Json[] {
  const pre = tok.pre_tokenizer as Json | null | undefined
  if (!pre) return []
  return pre.type === 'Sequence' ? (pre.pretokenizers as Json[]) ?? [] : [pre]
}

/** llama.cpp's pre-tokenizer for a byte-level BPE tokenizer.json, or an error naming what it is. */
export function preTokenizerName(tok: Json, dir: string): string {
  const model = tok.model as Json
  const merges = (model.merges as unknown[] | undefined) ?? []
  if (merges.length === 0) return 'default' // one token per byte: any split gives the same ids
  const pres = preTokenizers(tok)
  const splits = pres.filter((p) => p.type === 'Split')
  const byteLevel = pres.find((p) => p.type === 'ByteLevel')
  const digits = pres.find((p) => p.type === 'Digits')
  if (splits.length === 1 && pres.length === 2 && byteLevel && byteLevel.use_regex === false) {
    const re = (splits[0].pattern as Json | undefined)?.Regex
    if (typeof re === 'string' && PRE_BY_REGEX[re] !== undefined) return PRE_BY_REGEX[re]
  }
  if (splits.length === 0 && byteLevel && byteLevel.use_regex !== false) {
    if (pres.length === 1) return 'gpt-2'
    if (pres.length === 2 && digits && digits.individual_digits === true) return 'smollm'
  }
  throw new GgufExportError(`${path.join(dir, 'tokenizer.json')}: its pre_tokenizer (${JSON.stringify(tok.pre_tokenizer).slice(0, 300)}) ` +
    'is not one plwtune knows the llama.cpp name of (GPT-2, Llama 3, Qwen2/3, SmolLM byte-level BPE, or SentencePiece-style BPE)')
}

function mergeStrings(model: Json): string[] {
  const merges = (model.merges as unknown[] | undefined) ?? []
  return merges.map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : String(m)))
}

/**
 * The tokenizer's GGUF metadata for the model directory `dir` (tokenizer.json required), for
 * a model whose embedding has `vocabSize` rows. `fallbackChatTemplate` is embedded when the
 * tokenizer has no chat template of its own (gguf-chat-template.ts: from the training template).
 */
export async function vocabPlan(dir: string, vocabSize: number, fallbackChatTemplate: string | null = null): Promise<VocabPlan> {
  const file = path.join(dir, 'tokenizer.json')
  if (!fs.existsSync(file)) throw new GgufExportError(`${dir}: no tokenizer.json (the GGUF file embeds the model's tokenizer)`)
  const tok = readJson(file)
  const model = tok.model as Json | undefined
  if (!model || model.type !== 'BPE') {
    throw new GgufExportError(`${file}: a ${String(model?.type)} tokenizer; the GGUF export supports BPE tokenizers ` +
      '(byte-level as GPT-2, Llama 3, Qwen; SentencePiece-style with byte fallback as Llama 2, Mistral)')
  }
  const hf = await HfTokenizer.fromDir(dir)
  const vocab = model.vocab as Record<string, number>
  const added = (Array.isArray(tok.added_tokens) ? tok.added_tokens : []) as Json[]
  let maxId = -1
  for (const id of Object.values(vocab)) maxId = Math.max(maxId, id)
  for (const t of added) maxId = Math.max(maxId, t.id as number)
  if (maxId + 1 > vocabSize) {
    throw new GgufExportError(`${file}: token ids reach ${maxId}, but the model's embedding has ${vocabSize} rows (config.json vocab_size)`)
  }
  const n = vocabSize
  const tokens: Array<string | undefined> = new Array(n)
  const types = new Int32Array(n).fill(TokenType.NORMAL)
  for (const [text, id] of Object.entries(vocab)) tokens[id] = text
  const spm = model.byte_fallback === true
  if (spm) {
    for (let id = 0; id < n; id++) {
      const t = tokens[id]
      if (t !== undefined && /^<0x[0-9A-Fa-f]{2}>$/.test(t)) types[id] = TokenType.BYTE
    }
    if (typeof model.unk_token === 'string' && vocab[model.unk_token] !== undefined) types[vocab[model.unk_token]] = TokenType.UNKNOWN
  }
  for (const t of added) {
    const id = t.id as number
    tokens[id] = t.content as string
    if (types[id] !== TokenType.UNKNOWN) types[id] = t.special === true ? TokenType.CONTROL : TokenType.USER_DEFINED
  }
  for (let id = 0; id < n; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`
      types[id] = TokenType.UNUSED
    }
  }
  const kv: Array<[string, GgufValue]> = []
  let summary: string
  if (spm) {
    kv.push(['tokenizer.ggml.model', gguf.str('llama')])
    kv.push(['tokenizer.ggml.pre', gguf.str('default')])
    kv.push(['tokenizer.ggml.tokens', gguf.strings(tokens as string[])])
    // llama.cpp's SentencePiece BPE merges, among the adjacent pairs whose concatenation is a
    // token, the one whose token scores highest; Hugging Face's BPE applies its merges by rank.
    // So the token of merge k scores −k, and a token no merge makes scores below them all.
    const scores = new Float32Array(n).fill(-1e9)
    mergeStrings(model).forEach((m, k) => {
      const space = m.indexOf(' ', 1)
      const id = vocab[m.slice(0, space) + m.slice(space + 1)]
      if (id !== undefined && scores[id] === -1e9) scores[id] = -k
    })
    for (let id = 0; id < n; id++) if (types[id] !== TokenType.NORMAL) scores[id] = 0
    kv.push(['tokenizer.ggml.scores', gguf.f32s(scores)])
    kv.push(['tokenizer.ggml.token_type', gguf.i32s(types)])
    const normalizers = ((tok.normalizer as Json | null)?.normalizers as Json[] | undefined) ?? [tok.normalizer as Json]
    const prepends = normalizers.some((x) => x?.type === 'Prepend' && x.prepend === '▁') ||
      preTokenizers(tok).some((p) => p.type === 'Metaspace' && p.prepend_scheme !== 'never')
    kv.push(['tokenizer.ggml.add_space_prefix', gguf.bool(prepends)])
    summary = `llama (SentencePiece-style BPE), ${n} tokens`
  } else {
    const pres = preTokenizers(tok)
    if (!pres.some((p) => p.type === 'ByteLevel')) {
      throw new GgufExportError(`${file}: a BPE tokenizer that is neither byte-level (a ByteLevel pre-tokenizer) nor byte-fallback ` +
        'SentencePiece-style; llama.cpp has no such vocabulary type')
    }
    const pre = preTokenizerName(tok, dir)
    kv.push(['tokenizer.ggml.model', gguf.str('gpt2')])
    kv.push(['tokenizer.ggml.pre', gguf.str(pre)])
    kv.push(['tokenizer.ggml.tokens', gguf.strings(tokens as string[])])
    kv.push(['tokenizer.ggml.token_type', gguf.i32s(types)])
    kv.push(['tokenizer.ggml.merges', gguf.strings(mergeStrings(model))])
    summary = `gpt2 (byte-level BPE, pre-tokenizer ${pre}, ${mergeStrings(model).length} merges), ${n} tokens`
  }
  const idOf = (text: string | undefined): number | undefined => {
    if (text === undefined) return undefined
    const a = added.find((t) => t.content === text)
    return a ? (a.id as number) : vocab[text]
  }
  const vars = hf.templateVariables
  kv.push(['tokenizer.ggml.eos_token_id', gguf.u32(hf.eosId)])
  const prefix = hf.specialPrefix
  const bos = prefix.length === 1 ? prefix[0] : idOf(vars.bos_token)
  if (bos !== undefined) kv.push(['tokenizer.ggml.bos_token_id', gguf.u32(bos)])
  const unk = idOf(vars.unk_token) ?? (typeof model.unk_token === 'string' ? vocab[model.unk_token] : undefined)
  if (unk !== undefined) kv.push(['tokenizer.ggml.unknown_token_id', gguf.u32(unk)])
  const pad = idOf(vars.pad_token)
  if (pad !== undefined) kv.push(['tokenizer.ggml.padding_token_id', gguf.u32(pad)])
  kv.push(['tokenizer.ggml.add_bos_token', gguf.bool(prefix.length > 0)])
  kv.push(['tokenizer.ggml.add_eos_token', gguf.bool(hf.specialSuffix.length > 0)])
  const chatTemplate = hf.chatTemplate ?? fallbackChatTemplate
  if (chatTemplate !== null) kv.push(['tokenizer.chat_template', gguf.str(chatTemplate)])
  return { kv, summary, tokenCount: n }
}
