/**
 * A fast path for the most common tokenizer.json: byte-level BPE as GPT-2 defines it (no
 * normalizer, the ByteLevel pre-tokenizer with its regex, a BPE model without byte fallback or
 * word prefixes/suffixes). @huggingface/tokenizers runs every other configuration, and any
 * text that contains an added token; this file only makes the common case fast (the
 * library spends ~5 µs per token in TextEncoder calls, JSON.stringify'd merge keys and an LRU
 * cache; 52k Alpaca records took 15–50 s).
 *
 * The algorithm is GPT-2's `bpe()`: split the text with the pre-tokenizer regex, map each
 * piece's UTF-8 bytes to GPT-2's printable byte alphabet, then repeatedly merge every
 * occurrence of the adjacent pair of lowest merge rank. Pieces are cached (bounded).
 * test/data/tokenizer.test.ts checks it against the library token for token.
 */

/** The regex of GPT-2's ByteLevel pre-tokenizer (as the Rust library and tokenizers.js use it). */
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu

/** GPT-2's bytes_to_unicode: each byte as a printable character. */
function byteAlphabet(): string[] {
  const printable: number[] = []
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b)
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b)
  for (let b = 0xae; b <= 0xff; b++) printable.push(b)
  const out = new Array<string>(256)
  let n = 0
  for (let b = 0; b < 256; b++) {
    out[b] = printable.includes(b) ? String.fromCharCode(b) : String.fromCharCode(256 + n++)
  }
  return out
}

const BYTE_CHARS = byteAlphabet()
const CACHE_LIMIT = 200_000

/** Ids below 2^21 (2M tokens): pairs pack into one exact double key, ranks and merged ids into one value. */
const ID_LIMIT = 2 ** 21

export class ByteLevelBpe {
  /** (left id · 2^21 + right id) → rank · 2^21 + merged id. */
  private readonly merges: Map<number, number>
  /** The id of each byte's token. */
  private readonly byteIds: Int32Array
  private readonly cache = new Map<string, number[]>()
  private readonly addPrefixSpace: boolean

  private constructor(merges: Map<number, number>, byteIds: Int32Array, addPrefixSpace: boolean) {
    this.merges = merges
    this.byteIds = byteIds
    this.addPrefixSpace = addPrefixSpace
  }

  /** The fast path for this tokenizer.json, or null when it is not plain byte-level BPE. */
  static from(tokenizer: Record<string, unknown>): ByteLevelBpe | null {
    const model = tokenizer.model as Record<string, unknown> | undefined
    const pre = tokenizer.pre_tokenizer as Record<string, unknown> | null | undefined
    if (tokenizer.normalizer !== null && tokenizer.normalizer !== undefined) return null
    if (pre === null || pre === undefined || pre.type !== 'ByteLevel' || pre.use_regex === false) return null
    if (model === undefined || model.type !== 'BPE' || model.byte_fallback === true || model.ignore_merges === true) return null
    if (model.dropout !== null && model.dropout !== undefined) return null
    if (model.continuing_subword_prefix || model.end_of_word_suffix) return null
    if (typeof model.vocab !== 'object' || model.vocab === null || !Array.isArray(model.merges)) return null
    const vocab = new Map<string, number>(Object.entries(model.vocab as Record<string, number>))
    for (const id of vocab.values()) if (!Number.isInteger(id) || id < 0 || id >= ID_LIMIT) return null
    // Every single byte must be a token, or a piece could fail to encode (the library would emit unk).
    const byteIds = new Int32Array(256)
    for (let b = 0; b < 256; b++) {
      const id = vocab.get(BYTE_CHARS[b])
      if (id === undefined) return null
      byteIds[b] = id
    }
    const merges = new Map<number, number>()
    const list = model.merges as unknown[]
    for (let rank = 0; rank < list.length; rank++) {
      const m = list[rank]
      let pair: unknown[]
      if (typeof m === 'string') pair = m.split(' ')
      else if (Array.isArray(m)) pair = m
      else return null
      if (pair.length !== 2 || typeof pair[0] !== 'string' || typeof pair[1] !== 'string') return null
      const a = vocab.get(pair[0])
      const b = vocab.get(pair[1])
      const merged = vocab.get(pair[0] + pair[1])
      // A merge of unknown tokens can never apply; one whose result is not a token would emit unk: not our case.
      if (a === undefined || b === undefined) continue
      if (merged === undefined) return null
      const key = a * ID_LIMIT + b
      if (!merges.has(key)) merges.set(key, rank * ID_LIMIT + merged)
    }
    return new ByteLevelBpe(merges, byteIds, pre.add_prefix_space === true)
  }

  encode(text: string): number[] {
    if (this.addPrefixSpace && !text.startsWith(' ')) text = ' ' + text
    const out: number[] = []
    GPT2_PATTERN.lastIndex = 0
    for (let m = GPT2_PATTERN.exec(text); m !== null; m = GPT2_PATTERN.exec(text)) {
      const piece = m[0]
      let ids = this.cache.get(piece)
      if (ids === undefined) {
        ids = this.encodePiece(piece)
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear()
        this.cache.set(piece, ids)
      }
      for (let i = 0; i < ids.length; i++) out.push(ids[i])
    }
    return out
  }

  /** GPT-2's bpe(): merge every occurrence of the lowest-ranked adjacent pair until none applies. */
  private encodePiece(piece: string): number[] {
    const bytes = Buffer.from(piece, 'utf8')
    let n = bytes.length
    const sym = new Array<number>(n)
    for (let i = 0; i < n; i++) sym[i] = this.byteIds[bytes[i]]
    while (n > 1) {
      let best = Infinity
      let bestAt = -1
      for (let i = 0; i < n - 1; i++) {
        const v = this.merges.get(sym[i] * ID_LIMIT + sym[i + 1])
        if (v !== undefined && v < best) { best = v; bestAt = i }
      }
      if (bestAt < 0) break
      const a = sym[bestAt]
      const b = sym[bestAt + 1]
      const merged = best % ID_LIMIT
      let w = 0
      for (let i = 0; i < n; i++) {
        if (i < n - 1 && sym[i] === a && sym[i + 1] === b) { sym[w++] = merged; i++ }
        else sym[w++] = sym[i]
      }
      n = w
    }
    sym.length = n
    return sym
  }
}
