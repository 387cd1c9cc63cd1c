/**
 * The conversation of `plwtune chat`: the system prompt and the turns so far, rendered into
 * the ids of the next generation prompt, and kept within the model's context.
 *
 * Rendering. A template that renders chat records (the model's chat_template, chatml, phi3)
 * gets the conversation as one chat record, [system?, user, assistant, …, user, assistant ""],
 * and the prompt is every segment before the last completion (as `generate` builds a chat
 * record's prompt, so the text is the training text up to the answer). An instruction template
 * (alpaca, completion, or a template string such as "Q: {instruction}\nA: {output} END") has
 * no turns: each past turn is rendered as its own record (instruction: the user's message,
 * output: the answer) followed by the eos when the template ends records with one, then the new
 * message's prompt; a system prompt has no place there either and goes first, as plain text
 * followed by a blank line.
 *
 * Trimming. The prompt must leave the answer room: prompt + min(max tokens, context / 2) ≤
 * context. While it does not, the oldest turn is dropped for good (the caller reports how
 * many). With no turn left to drop, the answer gets what room remains, or, when the system
 * prompt and the message alone fill the context, the message is refused.
 */
import { encodeTexts } from '../data/encode'
import { ChatMessage, DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { answerEnds, promptSegments } from '../eval/generation'

export interface Turn {
  user: string
  assistant: string
}

/** What the next answer is generated from. */
export interface Prepared {
  /** The prompt's token ids. */
  ids: number[]
  /** Its text (for /show-like debugging and tests). */
  text: string
  /** New tokens the answer may take: max tokens, or less when the context leaves less. */
  maxTokens: number
  /** Turns dropped from the start of the history to make room (they are gone from the session). */
  dropped: number
}

/** A message that cannot be answered within the context, even without history. */
export class ContextError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ContextError'
  }
}

export class ChatSession {
  system: string | null
  turns: Turn[] = []
  readonly template: Template
  readonly tokenizer: Tokenizer
  /** Positions the model can attend over (prompt + answer). */
  readonly contextLength: number
  /** Whether the template renders conversations (else: turns as consecutive instruction records). */
  readonly chat: boolean
  /** What the template writes inside the completion before the answer (alpaca "\n", completion " "), removed from answers. */
  readonly answerPrefix: string
  /** Strings that end an answer (answerEnds, ts/eval/generation.ts: the same rule as the server's). */
  readonly stopStrings: string[]
  /** Token ids that end an answer: the eos, and the stop strings that are one special token. */
  readonly stopIds: number[]

  constructor(o: { template: Template; tokenizer: Tokenizer; contextLength: number; system?: string | null }) {
    if (!(Number.isInteger(o.contextLength) && o.contextLength >= 2)) {
      throw new RangeError(`ChatSession: Expected a context length ≥ 2 but received ${o.contextLength}`)
    }
    this.template = o.template
    this.tokenizer = o.tokenizer
    this.contextLength = o.contextLength
    this.system = o.system ?? null
    this.chat = o.template.formats.includes('chat')
    const ends = answerEnds(this.template, this.tokenizer, this.probeRecord())
    this.answerPrefix = ends.prefix
    this.stopStrings = ends.stops
    this.stopIds = ends.stopIds
  }

  reset(): void {
    this.turns = []
  }

  /** A one-turn exchange with an empty answer: what the template writes around answers is read from it. */
  private probeRecord(): DataRecord {
    return this.chat
      ? { format: 'chat', messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: '' }], source: { file: 'chat', index: 0 } }
      : { format: 'alpaca', instruction: 'Hi', input: '', output: '', source: { file: 'chat', index: 0 } }
  }

  /** The messages of the conversation with `user` as the next message (chat templates). */
  messages(user: string): ChatMessage[] {
    const out: ChatMessage[] = []
    if (this.system !== null && this.system !== '') out.push({ role: 'system', content: this.system })
    for (const t of this.turns) out.push({ role: 'user', content: t.user }, { role: 'assistant', content: t.assistant })
    out.push({ role: 'user', content: user })
    return out
  }

  /** The generation prompt for `user` after the current history (no trimming). */
  render(user: string): { ids: number[]; text: string } {
    const source = { file: 'chat', index: this.turns.length }
    // Each piece: texts encoded together (segments of one record), then whether the eos follows.
    const records: Array<{ texts: string[]; eos: boolean }> = []
    if (this.chat) {
      const record: DataRecord = { format: 'chat', messages: [...this.messages(user), { role: 'assistant', content: '' }], source }
      records.push({ texts: promptSegments(this.template, record).before, eos: false })
    } else {
      if (this.system !== null && this.system !== '') records.push({ texts: [this.system + '\n\n'], eos: false })
      for (const t of this.turns) {
        const r = this.template.render({ format: 'alpaca', instruction: t.user, input: '', output: t.assistant, source })
        records.push({ texts: r.segments.map((s) => s.text), eos: r.eos })
      }
      const next: DataRecord = { format: 'alpaca', instruction: user, input: '', output: '', source }
      records.push({ texts: promptSegments(this.template, next).before, eos: false })
    }
    const texts = records.flatMap((r) => r.texts)
    const { prefix, parts } = encodeTexts(this.tokenizer, texts)
    const ids = [...prefix]
    let text = ''
    let k = 0
    for (const r of records) {
      for (const t of r.texts) { ids.push(...parts[k++]); text += t }
      if (r.eos) ids.push(this.tokenizer.eosId)
    }
    return { ids, text }
  }

  /**
   * The prompt for `user`, dropping the oldest turns until prompt + min(maxTokens, context / 2)
   * fits the context. Throws ContextError when the system prompt and the message alone leave
   * no room to answer (nothing is dropped then).
   */
  prepare(user: string, maxTokens: number): Prepared {
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new RangeError(`prepare: Expected max tokens ≥ 1 but received ${maxTokens}`)
    const n = this.contextLength
    const reserve = Math.min(maxTokens, Math.floor(n / 2))
    let drop = 0
    let p = this.render(user)
    while (p.ids.length + reserve > n && drop < this.turns.length) {
      drop++
      p = this.renderWithout(user, drop)
    }
    if (p.ids.length >= n) {
      const what = this.system !== null && this.system !== '' ? 'the system prompt and this message take' : 'this message takes'
      throw new ContextError(`${what} ${p.ids.length} tokens; the model's context holds ${n} (prompt and answer together): ` +
        'shorten it' + (this.system !== null && this.system !== '' ? ' or the system prompt (/system)' : ''))
    }
    if (drop > 0) this.turns = this.turns.slice(drop)
    return { ids: p.ids, text: p.text, maxTokens: Math.min(maxTokens, n - p.ids.length), dropped: drop }
  }

  private renderWithout(user: string, drop: number): { ids: number[]; text: string } {
    const kept = this.turns
    this.turns = kept.slice(drop)
    try {
      return this.render(user)
    } finally {
      this.turns = kept
    }
  }

  /** Records an answered turn. */
  add(user: string, assistant: string): void {
    this.turns.push({ user, assistant })
  }

  /** An answer as generated → as kept in the history and shown: the template's answer prefix removed, trimmed. */
  cleanAnswer(text: string): string {
    const p = this.answerPrefix
    return (p !== '' && text.startsWith(p) ? text.slice(p.length) : text).trim()
  }
}
