/**
 * A model directory's tokenizer: `tokenizer.json` (required) run by @huggingface/tokenizers (a
 * pure-JS port of the Rust library's models, normalizers, pre-tokenizers and decoders), plus
 * `tokenizer_config.json` (optional) for the eos token and the chat template.
 *
 * `encode(text)` gives a text's ids without the post-processor's special tokens. A templated
 * example is encoded with `encodePieces(segments)`: each segment's ids apart, so that no token
 * spans a prompt/completion boundary, and otherwise as the whole text would be encoded. The
 * library prepends "▁" (SentencePiece-style: a `Prepend` normalizer or a `Metaspace`
 * pre-tokenizer) or a space (`ByteLevel` with add_prefix_space) to each section of a text it
 * encodes, a section being the text between added tokens; a segment that starts in the middle
 * of a section is a continuation and gets none, while a segment that starts right after an
 * added token gets what the whole text would give it there (docs/data.md, "Tokenizers").
 * The special tokens the post-processor adds around a text (Llama's BOS) are `specialPrefix`
 * and `specialSuffix`; encode.ts puts them around an example once.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers'
import { ByteLevelBpe } from './byte-bpe'
import { chatTemplateSource, specialTokenVariables } from './chat-template'
import { Tokenizer } from './tokenizer'

/** Tried in order when the config names no eos token. */
const EOS_CANDIDATES = ['<|endoftext|>', '</s>', '<eos>', '<|end_of_text|>', '<|im_end|>']

export interface HfTokenizerFiles {
  /** The parsed tokenizer.json. */
  tokenizer: Record<string, unknown>
  /** The parsed tokenizer_config.json ({} when absent). */
  config?: Record<string, unknown>
}

export class HfTokenizer implements Tokenizer {
  readonly eosId: number
  readonly eosToken: string
  readonly vocabSize: number
  readonly specialTokens: readonly string[]
  /** Ids the post-processor puts before a text (a BOS: Llama 2, Mistral, TinyLlama, Llama 3.x), [] for none (Qwen, GPT-2). */
  readonly specialPrefix: readonly number[]
  /** Ids the post-processor puts after a text ([] for the models above). */
  readonly specialSuffix: readonly number[]
  /** The model's chat_template (tokenizer_config.json or chat_template.jinja), or null. */
  readonly chatTemplate: string | null
  /** The file the chat_template was read from, for messages; null when unknown (built from objects). */
  readonly chatTemplateFile: string | null
  /** bos_token, eos_token, … as the chat template reads them. */
  readonly templateVariables: Record<string, string>
  private readonly impl: HfTokenizerImpl
  /** GPT-2-style byte-level BPE runs here, not in the library (byte-bpe.ts), except on texts with added tokens. */
  private readonly fast: ByteLevelBpe | null
  private readonly addedPattern: RegExp | null
  /** The added tokens the library matches before normalizing (all of them without a normalizer): they cut a text into sections. */
  private readonly sectionPattern: RegExp | null
  private readonly addedById: Map<string, { id: number; lstrip: boolean; rstrip: boolean }>
  private readonly json: Record<string, unknown>
  private readonly libConfig: Record<string, unknown>
  /** What the library adds at the start of a section: see `variant`. */
  private readonly prefixing: Prefixing
  /** The library with the section-start prefixes turned off, built on first use (see `variant`). */
  private continuationImpl: HfTokenizerImpl | null = null
  private laterSectionImpl: HfTokenizerImpl | null = null

  constructor(files: HfTokenizerFiles, chatTemplate: string | null = null, chatTemplateFile: string | null = null) {
    const config = files.config ?? {}
    try {
      this.impl = new HfTokenizerImpl(files.tokenizer, config)
    } catch (err) {
      throw new Error(`tokenizer.json: cannot build the tokenizer: ${(err as Error).message}`, { cause: err })
    }
    const vocab = this.impl.get_vocab(true)
    let maxId = -1
    for (const id of vocab.values()) if (id > maxId) maxId = id
    this.vocabSize = maxId + 1
    this.templateVariables = specialTokenVariables(config)
    const named = this.templateVariables.eos_token
    const eos = named !== undefined ? named : EOS_CANDIDATES.find((t) => this.impl.token_to_id(t) !== undefined)
    const eosId = eos !== undefined ? this.impl.token_to_id(eos) : undefined
    if (eos === undefined || eosId === undefined) {
      throw new Error(`tokenizer: no end-of-sequence token: ${named !== undefined ? `eos_token ${JSON.stringify(named)} is not in ` +
        'the vocabulary' : `tokenizer_config.json names no eos_token and none of ${EOS_CANDIDATES.join(' ')} is in the vocabulary`}`)
    }
    this.eosToken = eos
    this.eosId = eosId
    const added = Array.isArray(files.tokenizer.added_tokens) ? files.tokenizer.added_tokens as Array<Record<string, unknown>> : []
    this.specialTokens = added.filter((t) => t.special === true && typeof t.content === 'string').map((t) => t.content as string)
    this.chatTemplate = chatTemplate ?? chatTemplateSource(config)
    this.chatTemplateFile = chatTemplateFile
    this.fast = ByteLevelBpe.from(files.tokenizer)
    const addedTexts = added.map((t) => t.content).filter((c): c is string => typeof c === 'string' && c !== '')
    this.addedPattern = addedTexts.length > 0
      ? new RegExp(addedTexts.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'))
      : null
    this.json = files.tokenizer
    this.libConfig = config
    // As the library: a token is matched before normalization unless it is `normalized` (default: not special) and there is a normalizer.
    const hasNormalizer = files.tokenizer.normalizer !== null && files.tokenizer.normalizer !== undefined
    this.addedById = new Map()
    const sectionTexts: string[] = []
    for (const t of added) {
      if (typeof t.content !== 'string' || t.content === '' || typeof t.id !== 'number') continue
      const normalized = typeof t.normalized === 'boolean' ? t.normalized : t.special !== true
      if (normalized && hasNormalizer) continue
      sectionTexts.push(t.content)
      this.addedById.set(t.content, { id: t.id, lstrip: t.lstrip === true, rstrip: t.rstrip === true })
    }
    // Longest first: at the leftmost match the longest token wins, as the library's trie does.
    sectionTexts.sort((a, b) => b.length - a.length)
    this.sectionPattern = sectionTexts.length > 0
      ? new RegExp(sectionTexts.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g')
      : null
    this.prefixing = prefixingOf(files.tokenizer)
    const around = specialsAround(this.impl)
    this.specialPrefix = around.prefix
    this.specialSuffix = around.suffix
  }

  /** Whether the byte-level BPE fast path is in use (else every text goes through @huggingface/tokenizers). */
  get fastPath(): boolean {
    return this.fast !== null
  }

  /** Reads `dir/tokenizer.json`, and `tokenizer_config.json` and `chat_template.jinja` when present. */
  static async fromDir(dir: string): Promise<HfTokenizer> {
    const read = async (name: string, required: boolean): Promise<string | null> => {
      try {
        return await fs.promises.readFile(path.join(dir, name), 'utf8')
      } catch (err) {
        if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return null
        throw new Error(`${path.join(dir, name)}: cannot read the tokenizer: ${(err as Error).message}`, { cause: err })
      }
    }
    const parse = (name: string, text: string): Record<string, unknown> => {
      try {
        return JSON.parse(text) as Record<string, unknown>
      } catch (err) {
        throw new Error(`${path.join(dir, name)}: invalid JSON: ${(err as Error).message}`, { cause: err })
      }
    }
    const tokenizer = parse('tokenizer.json', (await read('tokenizer.json', true)) as string)
    const configText = await read('tokenizer_config.json', false)
    const config = configText !== null ? parse('tokenizer_config.json', configText) : {}
    const jinja = await read('chat_template.jinja', false)
    const templateFile = jinja !== null ? 'chat_template.jinja' : chatTemplateSource(config) !== null ? 'tokenizer_config.json' : null
    return new HfTokenizer({ tokenizer, config }, jinja, templateFile !== null ? path.join(dir, templateFile) : null)
  }

  encode(text: string): number[] {
    if (this.fast !== null && (this.addedPattern === null || !this.addedPattern.test(text))) return this.fast.encode(text)
    return this.impl.encode(text, { add_special_tokens: false }).ids
  }

  /**
   * The ids of a text given as consecutive pieces, each piece's ids apart (no token spans two
   * pieces). The text is cut into sections at added tokens, as the library does; a piece that
   * starts a section is encoded as the library encodes that section (with its "▁" or prefix
   * space), one that continues a section without it. Special tokens of the post-processor are
   * not added (see specialPrefix). `encodePieces([t])[0]` equals `encode(t)`.
   */
  encodePieces(texts: readonly string[]): number[][] {
    if (texts.length === 1) return [this.encode(texts[0])]
    interface Item { piece: number; text: string; added: { id: number; lstrip: boolean; rstrip: boolean } | null }
    const items: Item[] = []
    texts.forEach((text, piece) => {
      const re = this.sectionPattern
      let last = 0
      if (re !== null) {
        re.lastIndex = 0
        for (let m = re.exec(text); m !== null; m = re.exec(text)) {
          if (m.index > last) items.push({ piece, text: text.slice(last, m.index), added: null })
          items.push({ piece, text: m[0], added: this.addedById.get(m[0]) ?? null })
          last = m.index + m[0].length
        }
      }
      if (last < text.length) items.push({ piece, text: text.slice(last), added: null })
    })
    // lstrip / rstrip: an added token eats the whitespace beside it, across piece boundaries as in the whole text.
    for (let i = 0; i < items.length; i++) {
      const a = items[i].added
      if (a === null) continue
      if (a.lstrip) {
        for (let j = i - 1; j >= 0 && items[j].added === null; j--) {
          items[j].text = items[j].text.trimEnd()
          if (items[j].text !== '') break
        }
      }
      if (a.rstrip) {
        for (let j = i + 1; j < items.length && items[j].added === null; j++) {
          items[j].text = items[j].text.trimStart()
          if (items[j].text !== '') break
        }
      }
    }
    const out: number[][] = texts.map(() => [])
    // Where the next text starts: the whole text's first section, a section after an added token, or inside a section.
    let start: SectionStart = 'text'
    for (const it of items) {
      if (it.added !== null) { out[it.piece].push(it.added.id); start = 'section'; continue }
      if (it.text === '') continue // all whitespace, stripped by an added token beside it
      for (const id of this.encodeSection(it.text, start)) out[it.piece].push(id)
      start = 'continuation'
    }
    return out
  }

  /** Ids of text without added tokens that starts the whole text, a later section, or continues a section. */
  private encodeSection(text: string, start: SectionStart): number[] {
    const lib = this.variant(start)
    if (lib === this.impl && this.fast !== null) return this.fast.encode(text)
    return lib.encode(text, { add_special_tokens: false }).ids
  }

  /**
   * The library instance that encodes a section as it would be encoded at `start` of the whole
   * text: the tokenizer itself for the text's first section; without Metaspace's
   * prepend_scheme "first" for a later one; with no section-start prefix at all for a continuation.
   */
  private variant(start: SectionStart): HfTokenizerImpl {
    if (start === 'text') return this.impl
    if (start === 'section') {
      if (!this.prefixing.firstOnly) return this.impl
      this.laterSectionImpl ??= new HfTokenizerImpl(withoutPrefixes(this.json, 'later-section'), this.libConfig)
      return this.laterSectionImpl
    }
    if (!this.prefixing.any) return this.impl
    this.continuationImpl ??= new HfTokenizerImpl(withoutPrefixes(this.json, 'continuation'), this.libConfig)
    return this.continuationImpl
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return ''
    return this.impl.decode(Array.from(ids), { skip_special_tokens: false })
  }

  tokenToId(token: string): number | undefined {
    return this.impl.token_to_id(token)
  }
}

type SectionStart = 'text' | 'section' | 'continuation'

interface Prefixing {
  /** Some part of the pipeline adds "▁" or a space at the start of a section. */
  any: boolean
  /** A Metaspace pre-tokenizer adds "▁" only to the text's first section (prepend_scheme "first"). */
  firstOnly: boolean
}

/** The section-start prefixes a tokenizer.json's normalizer and pre-tokenizer add. */
function prefixingOf(json: Record<string, unknown>): Prefixing {
  const out: Prefixing = { any: false, firstOnly: false }
  const visit = (node: unknown): void => {
    if (typeof node !== 'object' || node === null) return
    const n = node as Record<string, unknown>
    if (n.type === 'Prepend') out.any = true
    if (n.type === 'Metaspace') {
      // The library reads prepend_scheme, "always" when absent.
      const scheme = typeof n.prepend_scheme === 'string' ? n.prepend_scheme : 'always'
      if (scheme !== 'never') out.any = true
      if (scheme === 'first') out.firstOnly = true
    }
    if (n.type === 'ByteLevel' && n.add_prefix_space === true) out.any = true
    for (const list of [n.normalizers, n.pretokenizers]) if (Array.isArray(list)) list.forEach(visit)
  }
  visit(json.normalizer)
  visit(json.pre_tokenizer)
  return out
}

/**
 * A copy of a tokenizer.json whose normalizer and pre-tokenizer add no section-start prefix
 * ('continuation'), or none of Metaspace's first-section-only "▁" ('later-section'). Vocabulary
 * and merges are shared, not copied.
 */
function withoutPrefixes(json: Record<string, unknown>, mode: 'continuation' | 'later-section'): Record<string, unknown> {
  const strip = (node: unknown): unknown => {
    if (typeof node !== 'object' || node === null) return node
    const n = { ...(node as Record<string, unknown>) }
    if (Array.isArray(n.normalizers)) n.normalizers = n.normalizers.filter((x) => mode === 'later-section' || (x as { type?: unknown })?.type !== 'Prepend').map(strip)
    if (Array.isArray(n.pretokenizers)) n.pretokenizers = n.pretokenizers.map(strip)
    if (n.type === 'Metaspace' && (mode === 'continuation' || n.prepend_scheme === 'first')) {
      n.prepend_scheme = 'never'
      n.add_prefix_space = false
    }
    if (n.type === 'ByteLevel' && mode === 'continuation') n.add_prefix_space = false
    return n
  }
  const normalizer = json.normalizer as { type?: unknown } | null | undefined
  return {
    ...json,
    normalizer: mode === 'continuation' && normalizer?.type === 'Prepend' ? null : strip(json.normalizer ?? null),
    pre_tokenizer: strip(json.pre_tokenizer ?? null),
  }
}

/**
 * The ids the post-processor puts around a text, found by encoding probes with and without
 * special tokens (whatever kind of post-processor it is: TemplateProcessing, a Sequence, Bert's).
 */
function specialsAround(impl: HfTokenizerImpl): { prefix: number[]; suffix: number[] } {
  for (const probe of ['a', 'Hello', '0']) {
    const plain = impl.encode(probe, { add_special_tokens: false }).ids
    const full = impl.encode(probe, { add_special_tokens: true }).ids
    if (plain.length === 0) continue
    for (let at = 0; at + plain.length <= full.length; at++) {
      if (plain.every((id, k) => full[at + k] === id)) return { prefix: full.slice(0, at), suffix: full.slice(at + plain.length) }
    }
  }
  return { prefix: [], suffix: [] }
}
