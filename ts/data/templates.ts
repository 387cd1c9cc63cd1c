/**
 * The built-in templates: alpaca, phi3, chatml, completion, and a user's template string.
 * (A model's own Jinja chat_template is chat-template.ts.) Conventions, with their reasons,
 * are in docs/data.md; in short:
 *
 * - alpaca: Stanford Alpaca's two prompt strings, byte for byte, ending in "### Response:".
 *   The completion is "\n" + output, then eos. Stanford's train.py concatenated the output
 *   right after the colon (`prompt + output + eos`); we put the newline every later Alpaca
 *   recipe and every inference prompt uses ("### Response:\n"), so a model trained here
 *   answers the usual prompt. `responsePrefix: ''` gives Stanford's exact text.
 * - completion: OpenAI's legacy fine-tuning conventions: prompt + "\n\n###\n\n"; the
 *   completion starts with a space (added when it does not start with whitespace) and ends
 *   with the stop sequence " END", then eos.
 * - phi3 and chatml: one segment per message as the models' own templates render them; the
 *   assistant header is prompt-like, the assistant's content and end marker completion-like.
 */
import { TemplateError } from './errors'
import { DATA_FORMATS, DataRecord, toMessages } from './records'
import { Marker, Rendered, Segment, Template } from './template'

// ---------------------------------------------------------------------------------------
// alpaca

export const ALPACA_PROMPT_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:'

export const ALPACA_PROMPT_NO_INPUT =
  'Below is an instruction that describes a task. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:'

export interface AlpacaOptions {
  /** Text between "### Response:" and the output, part of the completion. Default "\n". */
  responsePrefix?: string
  /** Append eos after the output. Default true. */
  eos?: boolean
}

/** Fields of an instruction-style template, from an alpaca or prompt/completion record. */
function instructionFields(record: DataRecord, template: string): { instruction: string; input: string; output: string } {
  switch (record.format) {
    case 'alpaca': return record
    case 'prompt-completion': return { instruction: record.prompt, input: '', output: record.completion }
    case 'chat':
      throw new TemplateError(`the ${template} template renders alpaca or prompt/completion records, not chat ` +
        'messages; use chatml, phi3 or the model\'s chat_template for chat data')
  }
}

export function alpacaTemplate(options: AlpacaOptions = {}): Template {
  const responsePrefix = options.responsePrefix ?? '\n'
  const eos = options.eos ?? true
  return {
    name: 'alpaca',
    formats: ['alpaca', 'prompt-completion'],
    markers: [
      { text: '### Instruction:', what: 'section header' },
      { text: '### Input:', what: 'section header' },
      { text: '### Response:', what: 'section header' },
    ],
    stop: ['### Instruction:'],
    render(record: DataRecord): Rendered {
      const { instruction, input, output } = instructionFields(record, 'alpaca')
      // Stanford's rule: the input variant when input is a non-empty string.
      // One pass over the template, so braces inside the data are never read as placeholders.
      const fields: Record<string, string> = { instruction, input }
      const prompt = (input !== '' ? ALPACA_PROMPT_INPUT : ALPACA_PROMPT_NO_INPUT)
        .replace(/\{(instruction|input)\}/g, (_, k: string) => fields[k])
      return { segments: [{ text: prompt, kind: 'prompt' }, { text: responsePrefix + output, kind: 'completion' }], eos }
    },
  }
}

// ---------------------------------------------------------------------------------------
// completion (prompt + separator, completion + stop sequence)

export interface CompletionOptions {
  /** Ends every prompt. Default "\n\n###\n\n". */
  separator?: string
  /** Ends every completion. Default " END". */
  stop?: string
  /** Start the completion with a space when it does not start with whitespace. Default true. */
  leadingSpace?: boolean
  /** Append eos after the stop sequence. Default true. */
  eos?: boolean
}

export const COMPLETION_DEFAULTS = { separator: '\n\n###\n\n', stop: ' END' } as const

export function completionTemplate(options: CompletionOptions = {}): Template {
  const separator = options.separator ?? COMPLETION_DEFAULTS.separator
  const stop = options.stop ?? COMPLETION_DEFAULTS.stop
  const leadingSpace = options.leadingSpace ?? true
  const eos = options.eos ?? true
  const markers: Marker[] = []
  if (separator.trim() !== '') markers.push({ text: separator, what: 'separator' })
  if (stop.trim() !== '') markers.push({ text: stop, what: 'stop sequence' })
  return {
    name: 'completion',
    formats: ['alpaca', 'prompt-completion'],
    markers,
    stop: stop !== '' ? [stop] : [],
    render(record: DataRecord): Rendered {
      let prompt: string
      let completion: string
      if (record.format === 'prompt-completion') ({ prompt, completion } = record)
      else {
        const f = instructionFields(record, 'completion')
        prompt = f.input !== '' ? `${f.instruction}\n\n${f.input}` : f.instruction
        completion = f.output
      }
      const lead = leadingSpace && !/^\s/.test(completion) ? ' ' : ''
      return {
        segments: [{ text: prompt + separator, kind: 'prompt' }, { text: lead + completion + stop, kind: 'completion' }],
        eos,
      }
    },
  }
}

// ---------------------------------------------------------------------------------------
// a user's template string: "{instruction}", "{input}", "{output}"; "{{" and "}}" are braces

export interface CustomOptions {
  /** Append eos after the rendered completion. Default true. */
  eos?: boolean
}

type Piece = { literal: string } | { field: 'instruction' | 'input' | 'output' }

function parseTemplateString(source: string): Piece[] {
  const pieces: Piece[] = []
  let literal = ''
  for (let i = 0; i < source.length; i++) {
    const c = source[i]
    if (c === '{' && source[i + 1] === '{') { literal += '{'; i++; continue }
    if (c === '}' && source[i + 1] === '}') { literal += '}'; i++; continue }
    if (c === '{') {
      const end = source.indexOf('}', i)
      const name = end < 0 ? '' : source.slice(i + 1, end)
      if (name !== 'instruction' && name !== 'input' && name !== 'output') {
        throw new TemplateError(`template string: unknown placeholder ${end < 0 ? source.slice(i) : `{${name}}`} at ` +
          `character ${i}; the placeholders are {instruction}, {input} and {output} (write {{ and }} for braces)`)
      }
      if (literal !== '') pieces.push({ literal })
      literal = ''
      pieces.push({ field: name })
      i = end
      continue
    }
    if (c === '}') throw new TemplateError(`template string: unmatched "}" at character ${i} (write }} for a brace)`)
    literal += c
  }
  if (literal !== '') pieces.push({ literal })
  return pieces
}

/**
 * A template from a string such as "Q: {instruction}\n{input}\nA: {output}": everything
 * before {output} is the prompt, {output} and the text after it the completion.
 */
export function customTemplate(source: string, options: CustomOptions = {}): Template {
  const pieces = parseTemplateString(source)
  const at = pieces.findIndex((p) => 'field' in p && p.field === 'output')
  if (at < 0) throw new TemplateError('template string: {output} is missing; it marks where the completion starts')
  if (pieces.slice(at + 1).some((p) => 'field' in p)) {
    throw new TemplateError('template string: {output} must appear once, after every other placeholder')
  }
  if (!pieces.some((p) => 'field' in p && p.field === 'instruction')) {
    throw new TemplateError('template string: {instruction} is missing')
  }
  const eos = options.eos ?? true
  const before = pieces[at - 1]
  const after = pieces[at + 1]
  const markers: Marker[] = []
  if (before !== undefined && 'literal' in before && before.literal.trim() !== '') {
    markers.push({ text: before.literal, what: 'response separator' })
  }
  const suffix = after !== undefined && 'literal' in after ? after.literal : ''
  if (suffix.trim() !== '') markers.push({ text: suffix, what: 'stop sequence' })
  return {
    name: 'custom',
    formats: ['alpaca', 'prompt-completion'],
    markers,
    stop: suffix !== '' ? [suffix] : [],
    render(record: DataRecord): Rendered {
      const f = instructionFields(record, 'custom')
      const text = (ps: Piece[]): string => ps.map((p) => ('literal' in p ? p.literal : f[p.field])).join('')
      return {
        segments: [{ text: text(pieces.slice(0, at)), kind: 'prompt' }, { text: text(pieces.slice(at)), kind: 'completion' }],
        eos,
      }
    },
  }
}

// ---------------------------------------------------------------------------------------
// phi3 and chatml: one segment per message, the assistant header apart

interface ChatFormat {
  name: string
  /** Text before a message's content, per role. */
  open: (role: string) => string
  /** Text after a message's content (the end-of-turn marker and its newline). */
  close: string
  markers: string[]
  stop: string[]
}

function chatFormatTemplate(format: ChatFormat, eos: boolean): Template {
  return {
    name: format.name,
    formats: DATA_FORMATS,
    markers: format.markers.map((text) => ({ text, what: 'chat marker' })),
    stop: format.stop,
    render(record: DataRecord): Rendered {
      const segments: Segment[] = []
      for (const m of toMessages(record)) {
        const weighted = (s: Segment): Segment => (m.weight !== undefined ? { ...s, weight: m.weight } : s)
        if (m.role === 'assistant') {
          segments.push({ text: format.open(m.role), kind: 'prompt' })
          segments.push(weighted({ text: m.content + format.close, kind: 'completion' }))
        } else {
          segments.push(weighted({ text: format.open(m.role) + m.content + format.close, kind: 'prompt' }))
        }
      }
      return { segments, eos }
    },
  }
}

/** Phi-3: `<|user|>\n…<|end|>\n<|assistant|>\n…<|end|>\n`, then eos (as Phi-3's template ends with eos_token). */
export function phi3Template(options: { eos?: boolean } = {}): Template {
  return chatFormatTemplate({
    name: 'phi3',
    open: (role) => `<|${role}|>\n`,
    close: '<|end|>\n',
    markers: ['<|system|>', '<|user|>', '<|assistant|>', '<|end|>'],
    stop: ['<|end|>'],
  }, options.eos ?? true)
}

/** ChatML: `<|im_start|>role\n…<|im_end|>\n` per message, then eos. */
export function chatmlTemplate(options: { eos?: boolean } = {}): Template {
  return chatFormatTemplate({
    name: 'chatml',
    open: (role) => `<|im_start|>${role}\n`,
    close: '<|im_end|>\n',
    markers: ['<|im_start|>', '<|im_end|>'],
    stop: ['<|im_end|>'],
  }, options.eos ?? true)
}
