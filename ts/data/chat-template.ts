/**
 * A model's own Jinja `chat_template` (tokenizer_config.json), rendered with @huggingface/jinja,
 * as a Template: one segment per message, split where the template's text for that message
 * starts and ends.
 *
 * The boundaries are found by rendering prefixes of the conversation:
 * - an assistant message's header ends where its content starts: found by rendering the
 *   conversation with a sentinel in place of that content (so a header-like word inside the
 *   content cannot mislead it); failing that, where `render(messages[:i], add_generation_prompt=true)`
 *   ends, or where the content first occurs;
 * - message i ends where `render(messages[:i+1])` stops agreeing with the full render after
 *   the message's content (templates that close a conversation with eos_token make the prefix
 *   render diverge there; a template that renders the last turn differently, as Qwen3's
 *   `<think>` block, is compared from the content on), moved back to the start of a special
 *   token if it would fall inside one, and never before the content ends. The last message ends
 *   at the end of the text, so whatever the template writes after it (end-of-turn marker,
 *   eos_token) is completion;
 * - except in a template that writes the assistant header whatever add_generation_prompt says
 *   (the first Llama 3 template did): there the prefix render always ends with that header, so
 *   an assistant message ends with the first special token after its content (its end-of-turn
 *   marker), and the header the template writes after the last message is prompt.
 * The header is prompt-like; the content with its end marker is completion-like for the
 * assistant, prompt-like for system/user; a message's `weight` applies to its content segment.
 * A template whose prefixes cannot be placed this way is reported (TemplateError) rather than
 * guessed at. Templates are untrusted code: every render runs with budgets (jinja-budget.ts),
 * and a budget stop ends the whole render, never taken for a failed probe.
 */
import { TemplateError, formatSource } from './errors'
import { BudgetedTemplate, RenderBudget, TemplateBudgetError } from './jinja-budget'
import { ChatMessage, DATA_FORMATS, DataRecord, toMessages } from './records'
import { Rendered, Segment, Template } from './template'

/** Stands in for a message's content to find where the template puts it. */
const SENTINEL = '\u0000plwtune-content\u0000'

export interface ChatTemplateOptions {
  /** Variables the template reads besides messages: bos_token, eos_token, … (strings). */
  variables?: Record<string, unknown>
  /** Special-token strings: a boundary never falls inside one; they are also the warned-about markers. */
  specialTokens?: readonly string[]
  /** Append the tokenizer's eos after the rendered text. Default false: the template writes its own ending. */
  eos?: boolean
  /** The file the template came from (tokenizer_config.json or chat_template.jinja), for messages. */
  sourceFile?: string
  /** Limits of one render (defaults: DEFAULT_RENDER_BUDGET). */
  budget?: Partial<RenderBudget>
  /**
   * The time `strftime_now` renders (Llama 3.2's template writes today's date into every
   * conversation). Training passes the run's start, so a resumed run renders the same text;
   * default: the moment of each render.
   */
  now?: Date
}

/** The special-token variables of a tokenizer_config.json, as strings (they may be `{content: …}` objects). */
export function specialTokenVariables(config: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
    const v = config[key]
    if (typeof v === 'string') out[key] = v
    else if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') {
      out[key] = (v as { content: string }).content
    }
  }
  return out
}

/**
 * The chat template of a tokenizer_config.json: `chat_template` as a string, or the entry named
 * "default" of a list of `{name, template}`. Null when the config has none.
 */
export function chatTemplateSource(config: Record<string, unknown>): string | null {
  const t = config.chat_template
  if (typeof t === 'string') return t
  if (Array.isArray(t)) {
    const entry = t.find((e) => typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'default')
    if (entry !== undefined && typeof (entry as { template?: unknown }).template === 'string') return (entry as { template: string }).template
  }
  return null
}

export function jinjaChatTemplate(source: string, options: ChatTemplateOptions = {}): Template {
  const compiled = new BudgetedTemplate(source, options.sourceFile !== undefined ? `${options.sourceFile} (chat_template)` : 'chat_template',
    options.budget, options.now)
  const variables = options.variables ?? {}
  const specials = [...new Set(options.specialTokens ?? [])].filter((s) => s !== '')
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean): string =>
    compiled.render({
      ...variables,
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
    })
  const tryRender = (messages: ChatMessage[], addGenerationPrompt: boolean): string | null => {
    try {
      return render(messages, addGenerationPrompt)
    } catch (err) {
      if (err instanceof TemplateBudgetError) throw err
      return null
    }
  }

  /**
   * Whether the template writes the assistant header after every conversation, add_generation_prompt
   * or not: a following assistant message's content then starts right where the render ends.
   */
  let unconditionalHeader: boolean | null = null
  const writesHeaderAlways = (): boolean => {
    if (unconditionalHeader === null) {
      const user: ChatMessage = { role: 'user', content: 'Hi' }
      const alone = tryRender([user], false)
      const next = tryRender([user, { role: 'assistant', content: SENTINEL }], false)
      unconditionalHeader = alone !== null && next !== null && next.startsWith(alone) && next.indexOf(SENTINEL) === alone.length
    }
    return unconditionalHeader
  }

  /** The end of the first special token in text[from, to), or -1. */
  const firstSpecialEnd = (text: string, from: number, to: number): number => {
    let best = -1
    let bestStart = Infinity
    for (const s of specials) {
      const at = text.indexOf(s, from)
      if (at >= 0 && at + s.length <= to && (at < bestStart || (at === bestStart && at + s.length > best))) { bestStart = at; best = at + s.length }
    }
    return best
  }

  /** Moves a boundary back to the start of a special token it would cut. */
  const notInsideSpecial = (text: string, pos: number): number => {
    for (const s of specials) {
      for (let start = Math.max(0, pos - s.length + 1); start < pos; start++) {
        if (text.startsWith(s, start)) return start
      }
    }
    return pos
  }

  /**
   * Where message i's content starts in `full`: render the conversation with a sentinel for that
   * content and find it (the text before it must match `full`); else the end of the render with
   * add_generation_prompt, when a prefix of `full`; else the content's first occurrence. -1 if none.
   */
  const findContentStart = (messages: ChatMessage[], i: number, full: string, pos: number): number => {
    const probe = tryRender(messages.map((m, k) => (k === i ? { ...m, content: SENTINEL } : m)), false)
    const at = probe !== null ? probe.indexOf(SENTINEL, pos) : -1
    if (at >= 0 && (probe as string).startsWith(full.slice(0, at))) return at
    const g = tryRender(messages.slice(0, i), true)
    if (g !== null && g.length >= pos && full.startsWith(g)) return g.length
    for (const c of [messages[i].content, messages[i].content.trim()]) {
      const found = c === '' ? -1 : full.indexOf(c, pos)
      if (found >= 0) return found
    }
    return -1
  }

  return {
    name: 'chat_template',
    formats: DATA_FORMATS,
    markers: specials.map((text) => ({ text, what: 'special token' })),
    stop: [],
    render(record: DataRecord): Rendered {
      const messages = toMessages(record)
      const where = formatSource(record.source)
      let full: string
      try {
        full = render(messages, false)
      } catch (err) {
        if (err instanceof TemplateBudgetError) throw err
        throw new TemplateError(`${where}: the chat_template failed on this conversation: ${(err as Error).message}`)
      }
      const segments: Segment[] = []
      let pos = 0
      const push = (end: number, kind: Segment['kind'], weight: number | undefined): void => {
        if (end <= pos) return
        const s: Segment = { text: full.slice(pos, end), kind }
        if (weight !== undefined) s.weight = weight
        const last = segments[segments.length - 1]
        // Adjacent segments of one kind and weight merge: fewer pieces, same tokens' weights.
        if (last !== undefined && last.kind === s.kind && last.weight === s.weight) last.text += s.text
        else segments.push(s)
        pos = end
      }
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i]
        const isLast = i === messages.length - 1
        if (m.role === 'assistant') {
          const headerEnd = findContentStart(messages, i, full, pos)
          if (headerEnd < 0) {
            throw new TemplateError(`${where}: cannot find where the content of assistant message ${i} starts in the ` +
              'chat_template\'s text')
          }
          push(headerEnd, 'prompt', undefined)
        }
        const c = m.content.trim()
        const at = c === '' ? -1 : full.indexOf(c, pos)
        const contentEnd = at >= 0 ? at + c.length : pos
        const headerAlways = m.role === 'assistant' && writesHeaderAlways()
        let end: number
        if (isLast) {
          end = full.length
          const marker = headerAlways ? firstSpecialEnd(full, contentEnd, full.length) : -1
          if (marker >= 0) {
            push(marker, 'completion', m.weight)
            end = full.length // the header written after the conversation
            push(end, 'prompt', undefined)
            continue
          }
        } else {
          const prefix = tryRender(messages.slice(0, i + 1), false)
          if (prefix === null) {
            if (m.role === 'assistant') {
              throw new TemplateError(`${where}: the chat_template fails on the conversation up to assistant message ${i}, ` +
                'so where that message ends cannot be found')
            }
            continue // a prompt-like message whose end cannot be rendered alone merges with what follows
          }
          let k = 0
          const n = Math.min(prefix.length, full.length)
          while (k < n && prefix.charCodeAt(k) === full.charCodeAt(k)) k++
          // The prefix render differs before the content ends (the last turn rendered its own way):
          // compare what follows the content in each.
          const pc = k < contentEnd && at >= 0 ? prefix.indexOf(c, Math.min(k, at)) : -1
          if (pc >= 0) {
            let j = 0
            while (contentEnd + j < full.length && pc + c.length + j < prefix.length &&
              prefix.charCodeAt(pc + c.length + j) === full.charCodeAt(contentEnd + j)) j++
            k = contentEnd + j
          }
          end = Math.max(notInsideSpecial(full, k), contentEnd)
          if (headerAlways) {
            const marker = firstSpecialEnd(full, contentEnd, end)
            if (marker >= 0) end = marker
          }
        }
        push(end, m.role === 'assistant' ? 'completion' : 'prompt', m.weight)
      }
      return { segments, eos: options.eos ?? false }
    },
  }
}
