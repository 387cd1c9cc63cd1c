/**
 * The three record formats an instruction dataset may use, their validation, and format
 * detection.
 *
 * - alpaca: `{instruction, input?, output}` (Stanford Alpaca; `input` may be missing, null or "")
 * - prompt-completion: `{prompt, completion}` (OpenAI's legacy fine-tuning format)
 * - chat: `{messages: [{role, content, weight?}]}` (OpenAI's chat fine-tuning format); roles are
 *   system, user and assistant; the last message must be the assistant's; `weight` in [0, 1]
 *   overrides that message's loss weight (OpenAI uses 0/1 on assistant turns).
 *
 * Other keys are ignored: datasets carry ids, categories and the like.
 */
import { Problem, Source, jsonType } from './errors'

export type DataFormat = 'alpaca' | 'prompt-completion' | 'chat'
export const DATA_FORMATS: readonly DataFormat[] = ['alpaca', 'prompt-completion', 'chat']

export type Role = 'system' | 'user' | 'assistant'
export const ROLES: readonly Role[] = ['system', 'user', 'assistant']

export interface ChatMessage {
  role: Role
  content: string
  /** Loss weight of this message's tokens, overriding λ (prompt-like roles) or 1 (assistant). */
  weight?: number
}

export interface AlpacaRecord {
  format: 'alpaca'
  instruction: string
  /** "" when the record has no input. */
  input: string
  output: string
  source: Source
}

export interface PromptCompletionRecord {
  format: 'prompt-completion'
  prompt: string
  completion: string
  source: Source
}

export interface ChatRecord {
  format: 'chat'
  messages: ChatMessage[]
  source: Source
}

export type DataRecord = AlpacaRecord | PromptCompletionRecord | ChatRecord

/** The format a raw record looks like, or null. `messages` wins, then prompt/completion, then alpaca. */
export function detectFormat(raw: unknown): DataFormat | null {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return null
  const o = raw as Record<string, unknown>
  if ('messages' in o) return 'chat'
  if ('prompt' in o && 'completion' in o) return 'prompt-completion'
  if ('instruction' in o || 'output' in o) return 'alpaca'
  return null
}

export function describeKeys(raw: unknown): string {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return `a JSON ${jsonType(raw)}`
  const keys = Object.keys(raw)
  return keys.length === 0 ? 'an empty object' : `keys ${keys.map((k) => JSON.stringify(k)).join(', ')}`
}

export const FORMAT_KEYS: Record<DataFormat, string> = {
  alpaca: '"instruction", "output" (and optional "input")',
  'prompt-completion': '"prompt", "completion"',
  chat: '"messages"',
}

/**
 * Checks one parsed record against a format. Returns the record, or the problems (one per
 * bad field, so a user sees everything wrong with the record at once).
 */
export function validateRecord(raw: unknown, format: DataFormat, source: Source):
  { record: DataRecord; problems: null } | { record: null; problems: Problem[] } {
  const problems: Problem[] = []
  const bad = (field: string | null, message: string): void => { problems.push({ source, field, message }) }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    bad(null, `expected a JSON object, received ${jsonType(raw)}`)
    return { record: null, problems }
  }
  const o = raw as Record<string, unknown>
  const str = (field: string, opts: { optional?: boolean; nonEmpty?: boolean } = {}): string => {
    const v = o[field]
    if (v === undefined || (opts.optional && v === null)) {
      if (!opts.optional) bad(field, `missing, expected a string (${format === 'alpaca' ? 'an' : 'a'} ${format} record has ${FORMAT_KEYS[format]})`)
      return ''
    }
    if (typeof v !== 'string') { bad(field, `expected a string, received ${jsonType(v)}`); return '' }
    if (opts.nonEmpty && v.trim() === '') bad(field, 'expected a non-empty string, received an empty one')
    return v
  }
  let record: DataRecord
  switch (format) {
    case 'alpaca': {
      const instruction = str('instruction', { nonEmpty: true })
      const input = str('input', { optional: true })
      const output = str('output')
      record = { format, instruction, input, output, source }
      break
    }
    case 'prompt-completion': {
      const prompt = str('prompt')
      const completion = str('completion')
      record = { format, prompt, completion, source }
      break
    }
    case 'chat': {
      record = { format, messages: validateMessages(o.messages, bad), source }
      break
    }
  }
  return problems.length > 0 ? { record: null, problems } : { record, problems: null }
}

function validateMessages(v: unknown, bad: (field: string | null, message: string) => void): ChatMessage[] {
  if (v === undefined) { bad('messages', 'missing, expected an array of {role, content} objects'); return [] }
  if (!Array.isArray(v)) { bad('messages', `expected an array, received ${jsonType(v)}`); return [] }
  if (v.length === 0) { bad('messages', 'expected at least one message, received an empty array'); return [] }
  const out: ChatMessage[] = []
  let ok = true
  v.forEach((m: unknown, i: number) => {
    const at = `messages[${i}]`
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      bad(at, `expected an object {role, content}, received ${jsonType(m)}`); ok = false; return
    }
    const mo = m as Record<string, unknown>
    if (mo.role === undefined) { bad(`${at}.role`, `missing, expected one of ${ROLES.join(', ')}`); ok = false }
    else if (typeof mo.role !== 'string') { bad(`${at}.role`, `expected a string, received ${jsonType(mo.role)}`); ok = false }
    else if (!(ROLES as readonly string[]).includes(mo.role)) {
      bad(`${at}.role`, `expected one of ${ROLES.join(', ')}, received ${JSON.stringify(mo.role)}`); ok = false
    }
    if (mo.content === undefined) { bad(`${at}.content`, 'missing, expected a string'); ok = false }
    else if (typeof mo.content !== 'string') {
      bad(`${at}.content`, `expected a string, received ${jsonType(mo.content)}`); ok = false
    }
    let weight: number | undefined
    if (mo.weight !== undefined && mo.weight !== null) {
      if (typeof mo.weight !== 'number' || !Number.isFinite(mo.weight)) {
        bad(`${at}.weight`, `expected a number in [0, 1], received ${jsonType(mo.weight)}`); ok = false
      } else if (mo.weight < 0 || mo.weight > 1) {
        bad(`${at}.weight`, `expected a number in [0, 1], received ${mo.weight}`); ok = false
      } else weight = mo.weight
    }
    if (ok) {
      const msg: ChatMessage = { role: mo.role as Role, content: mo.content as string }
      if (weight !== undefined) msg.weight = weight
      out.push(msg)
    }
  })
  if (ok && out[out.length - 1].role !== 'assistant') {
    bad('messages', `the last message must be the assistant's (the completion to learn), received "${out[out.length - 1].role}"`)
  }
  return out
}

/**
 * A record as chat messages, for chat templates: alpaca → user `instruction` (+ "\n\n" + `input`
 * when there is one), assistant `output`; prompt-completion → user `prompt`, assistant `completion`.
 */
export function toMessages(record: DataRecord): ChatMessage[] {
  switch (record.format) {
    case 'chat': return record.messages
    case 'alpaca': {
      const user = record.input !== '' ? `${record.instruction}\n\n${record.input}` : record.instruction
      return [{ role: 'user', content: user }, { role: 'assistant', content: record.output }]
    }
    case 'prompt-completion':
      return [{ role: 'user', content: record.prompt }, { role: 'assistant', content: record.completion }]
  }
}

/** The record's text fields with their names, for data checks (separator/stop sequence warnings). */
export function textFields(record: DataRecord): Array<[field: string, text: string]> {
  switch (record.format) {
    case 'alpaca': return [['instruction', record.instruction], ['input', record.input], ['output', record.output]]
    case 'prompt-completion': return [['prompt', record.prompt], ['completion', record.completion]]
    case 'chat': return record.messages.map((m, i) => [`messages[${i}].content`, m.content])
  }
}
