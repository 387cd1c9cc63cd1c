/**
 * A model directory's tokenizer: `tokenizer.json` (required) run by @huggingface/tokenizers (a
 * pure-JS port of the Rust library's models, normalizers, pre-tokenizers and decoders), plus
 * `tokenizer_config.json` (optional) for the eos token and the chat template.
 *
 * Text is encoded without the post-processor's special tokens (add_special_tokens: false):
 * segments are encoded separately and concatenated, and the template writes any bos itself.
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
  /** The model's chat_template (tokenizer_config.json or chat_template.jinja), or null. */
  readonly chatTemplate: string | null
  /** bos_token, eos_token, … as the chat template reads them. */
  readonly templateVariables: Record<string, string>
  private readonly impl: HfTokenizerImpl
  /** GPT-2-style byte-level BPE runs here, not in the library (byte-bpe.ts), except on texts with added tokens. */
  private readonly fast: ByteLevelBpe | null
  private readonly addedPattern: RegExp | null

  constructor(files: HfTokenizerFiles, chatTemplate: string | null = null) {
    const config = files.config ?? {}
    try {
      this.impl = new HfTokenizerImpl(files.tokenizer, config)
    } catch (err) {
      throw new Error(`tokenizer.json: cannot build the tokenizer: ${(err as Error).message}`)
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
    this.fast = ByteLevelBpe.from(files.tokenizer)
    const addedTexts = added.map((t) => t.content).filter((c): c is string => typeof c === 'string' && c !== '')
    this.addedPattern = addedTexts.length > 0
      ? new RegExp(addedTexts.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'))
      : null
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
        throw new Error(`${path.join(dir, name)}: cannot read the tokenizer: ${(err as Error).message}`)
      }
    }
    const parse = (name: string, text: string): Record<string, unknown> => {
      try {
        return JSON.parse(text) as Record<string, unknown>
      } catch (err) {
        throw new Error(`${path.join(dir, name)}: invalid JSON: ${(err as Error).message}`)
      }
    }
    const tokenizer = parse('tokenizer.json', (await read('tokenizer.json', true)) as string)
    const configText = await read('tokenizer_config.json', false)
    const config = configText !== null ? parse('tokenizer_config.json', configText) : {}
    const jinja = await read('chat_template.jinja', false)
    return new HfTokenizer({ tokenizer, config }, jinja)
  }

  encode(text: string): number[] {
    if (this.fast !== null && (this.addedPattern === null || !this.addedPattern.test(text))) return this.fast.encode(text)
    return this.impl.encode(text, { add_special_tokens: false }).ids
  }

  decode(ids: ArrayLike<number>): string {
    if (ids.length === 0) return ''
    return this.impl.decode(Array.from(ids), { skip_special_tokens: false })
  }

  tokenToId(token: string): number | undefined {
    return this.impl.token_to_id(token)
  }
}
