/**
 * The slash commands of `plwtune chat`, parsed from one input line:
 *
 *   /reset                 forget the conversation (the system prompt stays)
 *   /system TEXT           set the system prompt; `/system` alone clears it
 *   /params k=v …          set sampling: temperature, top_p, top_k, max_tokens, seed (`seed=random`);
 *                          `/params` alone shows them
 *   /help                  the commands and keys
 *   /exit, /quit           leave (as Ctrl-D)
 *
 * A line that starts with `//` is a message that starts with `/` (one slash removed). Parsing
 * is pure: errors come back as `{ kind: 'error', message }` for the REPL to print.
 */
import { nearest } from '../train/config'

export interface ChatParams {
  /** 0 is greedy. */
  temperature: number
  /** (0, 1]. */
  topP: number
  /** 0: all tokens. */
  topK: number
  /** New tokens per answer at most (the context may leave fewer). */
  maxTokens: number
  /** The sampling seed of every answer; null: a fresh random seed per answer. */
  seed: number | null
}

export type ChatInput =
  | { kind: 'message'; text: string }
  | { kind: 'empty' }
  | { kind: 'reset' }
  | { kind: 'system'; text: string | null }
  | { kind: 'params'; set: Partial<ChatParams> }
  | { kind: 'show-params' }
  | { kind: 'help' }
  | { kind: 'exit' }
  | { kind: 'error'; message: string }

export const COMMANDS = ['reset', 'system', 'params', 'help', 'exit', 'quit'] as const

export const CHAT_HELP = `Commands:
  /reset                 forget the conversation (the system prompt stays)
  /system TEXT           set the system prompt (/system alone clears it)
  /params k=v ...        set temperature, top_p, top_k, max_tokens, seed (seed=random for a new one each answer);
                         /params alone shows them
  /help                  this help
  /exit                  leave (also /quit, Ctrl-D)
  //text                 send a message that starts with "/"
Keys: Ctrl-C stops an answer; at the prompt (or twice quickly) it leaves; Ctrl-D leaves.`

/** The keys /params takes, with their spelling in messages. */
const PARAM_KEYS = ['temperature', 'top_p', 'top_k', 'max_tokens', 'seed'] as const
type ParamKey = (typeof PARAM_KEYS)[number]

/** One `key=value` checked; a message naming the key when it does not fit. */
export function parseParam(key: string, raw: string): { set: Partial<ChatParams> } | { error: string } {
  const k = key.toLowerCase().replace(/-/g, '_')
  if (!(PARAM_KEYS as readonly string[]).includes(k)) {
    const near = nearest(key, PARAM_KEYS)
    return { error: `unknown parameter ${JSON.stringify(key)}${near ? ` (did you mean ${near}?)` : ''}; the parameters are ${PARAM_KEYS.join(', ')}` }
  }
  const name = k as ParamKey
  if (name === 'seed' && (raw === 'random' || raw === 'none')) return { set: { seed: null } }
  const x = Number(raw)
  const number = raw.trim() !== '' && Number.isFinite(x)
  switch (name) {
    case 'temperature':
      if (!number || x < 0) return { error: `temperature: expected a number ≥ 0 (0 is greedy), received ${JSON.stringify(raw)}` }
      return { set: { temperature: x } }
    case 'top_p':
      if (!number || !(x > 0 && x <= 1)) return { error: `top_p: expected a number in (0, 1], received ${JSON.stringify(raw)}` }
      return { set: { topP: x } }
    case 'top_k':
      if (!number || !Number.isInteger(x) || x < 0) return { error: `top_k: expected an integer ≥ 0 (0: all tokens), received ${JSON.stringify(raw)}` }
      return { set: { topK: x } }
    case 'max_tokens':
      if (!number || !Number.isInteger(x) || x < 1) return { error: `max_tokens: expected an integer ≥ 1, received ${JSON.stringify(raw)}` }
      return { set: { maxTokens: x } }
    case 'seed':
      if (!number || !Number.isSafeInteger(x) || x < 0) {
        return { error: `seed: expected an integer ≥ 0, or random, received ${JSON.stringify(raw)}` }
      }
      return { set: { seed: x } }
  }
}

/** `/params` arguments: `key=value` pairs separated by spaces (or commas); every error at once. */
export function parseParams(args: string): ChatInput {
  const words = args.split(/[\s,]+/).filter((w) => w !== '')
  if (words.length === 0) return { kind: 'show-params' }
  const set: Partial<ChatParams> = {}
  const errors: string[] = []
  for (const w of words) {
    const eq = w.indexOf('=')
    if (eq <= 0 || eq === w.length - 1) {
      errors.push(`expected key=value, received ${JSON.stringify(w)} (e.g. /params temperature=0.7 top_p=0.9 max_tokens=64 seed=1)`)
      continue
    }
    const r = parseParam(w.slice(0, eq), w.slice(eq + 1))
    if ('error' in r) errors.push(r.error)
    else Object.assign(set, r.set)
  }
  if (errors.length > 0) return { kind: 'error', message: `/params: ${errors.join('; ')}` }
  return { kind: 'params', set }
}

/** One input line → what to do. */
export function parseInput(line: string): ChatInput {
  if (line.trim() === '') return { kind: 'empty' }
  if (line.startsWith('//')) return { kind: 'message', text: line.slice(1) }
  if (!line.startsWith('/')) return { kind: 'message', text: line }
  const m = /^\/(\S*)\s*([\s\S]*)$/.exec(line.trimEnd()) as RegExpExecArray
  const name = m[1].toLowerCase()
  const args = m[2]
  switch (name) {
    case 'reset':
    case 'help':
    case 'exit':
    case 'quit':
      if (args !== '') return { kind: 'error', message: `/${name} takes no arguments` }
      return name === 'reset' ? { kind: 'reset' } : name === 'help' ? { kind: 'help' } : { kind: 'exit' }
    case 'system':
      return { kind: 'system', text: args === '' ? null : args }
    case 'params':
      return parseParams(args)
  }
  const near = nearest(name, COMMANDS)
  return { kind: 'error', message: `unknown command /${name}${near ? ` (did you mean /${near}?)` : ''}; /help lists the commands ` +
    '(start a message with // to send one that begins with /)' }
}

/** The parameters as /params shows them. */
export function describeParams(p: ChatParams): string {
  return `temperature=${p.temperature} top_p=${p.topP} top_k=${p.topK} max_tokens=${p.maxTokens} seed=${p.seed ?? 'random'}`
}
