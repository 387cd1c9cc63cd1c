/**
 * The tokenizer interface the data layer needs, and the built-in byte-level tokenizer of the
 * demo (no files, no training: ids 0–255 are the UTF-8 bytes, then the special tokens).
 */

export interface Tokenizer {
  /** Ids of a text, without any special tokens added around it (special-token strings inside it are recognized). */
  encode(text: string): number[]
  decode(ids: ArrayLike<number>): string
  /** End of sequence: appended after every completion. */
  readonly eosId: number
  /** Number of ids (the largest id + 1): the model's real vocabulary size. */
  readonly vocabSize: number
  /** The strings read as special tokens (e.g. `<|endoftext|>`); found inside data they are warned about. */
  readonly specialTokens?: readonly string[]
  /**
   * The ids of a text given as consecutive pieces (a template's segments), each piece's ids apart
   * so that no token spans two pieces, and otherwise as the whole text is encoded: a piece that
   * continues the text gets no "▁" or prefix space of its own. Absent: `encode` per piece (right
   * for tokenizers that add nothing at the start of a text, as the byte tokenizer).
   */
  encodePieces?(texts: readonly string[]): number[][]
  /** Ids the tokenizer's post-processor puts before a text (a BOS); absent or [] for none. Added once per example. */
  readonly specialPrefix?: readonly number[]
  /** Ids the post-processor puts after a text; absent or [] for none. */
  readonly specialSuffix?: readonly number[]
}

/** The byte tokenizer's special tokens by default: GPT-2's end of text. */
export const BYTE_SPECIAL_TOKENS = ['<|endoftext|>'] as const

/**
 * Bytes as tokens: `encode` is UTF-8, `decode` its inverse (invalid sequences decode to U+FFFD,
 * as a byte-level BPE decoder does). Special tokens get ids 256, 257, …; the first one is eos.
 * Vocabulary 257 by default; the engine pads V for speed on its own.
 */
export class ByteTokenizer implements Tokenizer {
  readonly eosId: number
  readonly vocabSize: number
  readonly specialTokens: readonly string[]
  private readonly specialIds: Map<string, number>
  private readonly specialPattern: RegExp
  private readonly specialFirstChars: string[]

  constructor(options: { specialTokens?: readonly string[] } = {}) {
    const specials = options.specialTokens ?? BYTE_SPECIAL_TOKENS
    if (specials.length === 0) throw new RangeError('ByteTokenizer: Expected at least one special token (the eos) but received none')
    if (new Set(specials).size !== specials.length || specials.some((s) => s === '')) {
      throw new RangeError(`ByteTokenizer: Expected distinct non-empty special tokens but received ${JSON.stringify(specials)}`)
    }
    this.specialTokens = [...specials]
    this.specialIds = new Map(specials.map((s, i) => [s, 256 + i]))
    this.eosId = 256
    this.vocabSize = 256 + specials.length
    // Longest first, so that a special token that is a prefix of another never wins.
    const alternatives = [...specials].sort((a, b) => b.length - a.length).map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    this.specialPattern = new RegExp(alternatives.join('|'), 'g')
    this.specialFirstChars = [...new Set(specials.map((s) => s[0]))]
  }

  encode(text: string): number[] {
    const out: number[] = []
    let last = 0
    if (this.mayHoldSpecial(text)) {
      const re = this.specialPattern
      re.lastIndex = 0
      for (let m = re.exec(text); m !== null; m = re.exec(text)) {
        pushUtf8(out, text, last, m.index)
        out.push(this.specialIds.get(m[0]) as number)
        last = m.index + m[0].length
      }
    }
    pushUtf8(out, text, last, text.length)
    return out
  }

  /** A cheap pre-check: a special token can only match where its first character occurs. */
  private mayHoldSpecial(text: string): boolean {
    for (const c of this.specialFirstChars) if (text.includes(c)) return true
    return false
  }

  decode(ids: ArrayLike<number>): string {
    let text = ''
    let bytes: number[] = []
    const flush = (): void => {
      if (bytes.length > 0) { text += Buffer.from(bytes).toString('utf8'); bytes = [] }
    }
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]
      if (id >= 0 && id < 256 && Number.isInteger(id)) { bytes.push(id); continue }
      if (!(id >= 256 && id < this.vocabSize && Number.isInteger(id))) {
        throw new RangeError(`ByteTokenizer.decode: Expected ids in [0, ${this.vocabSize}) but received ${id} at ${i}`)
      }
      flush()
      text += this.specialTokens[id - 256]
    }
    flush()
    return text
  }
}

/** Appends the UTF-8 bytes of text[from, to); lone surrogates become U+FFFD, as Buffer.from does. */
function pushUtf8(out: number[], text: string, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    let c = text.charCodeAt(i)
    if (c < 0x80) { out.push(c); continue }
    if (c < 0x800) { out.push(0xc0 | (c >> 6), 0x80 | (c & 63)); continue }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < to ? text.charCodeAt(i + 1) : 0
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00)
        i++
        out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
        continue
      }
      c = 0xfffd
    }
    out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63))
  }
}
