/**
 * Keys a user's JSON must not have where plwtune merges it into its own objects or looks its
 * keys up: `__proto__`, `constructor` and `prototype`. JSON.parse makes `__proto__` an own
 * property, but an assignment (`out[key] = value`) or an `in` test reaches Object.prototype
 * through these names: `{"__proto__": {…}}` in a config file replaced the config object's
 * prototype, and `"constructor"` passed `key in DEFAULTS`. Readers of config files, run and
 * sweep configurations, plwtune.json and model config.json refuse them, naming the file and
 * the key; lookups use own properties only (Object.hasOwn).
 *
 * Not for tokenizer.json and similar files whose keys are data (a vocabulary may well hold the
 * token "constructor"): those are read into Maps.
 */
import * as fs from 'node:fs'

export const FORBIDDEN_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype']

/** The first forbidden key in `value` (objects and arrays, recursively), as a path such as `init.__proto__`; null if none. */
export function forbiddenKey(value: unknown, at = ''): string | null {
  if (typeof value !== 'object' || value === null) return null
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = forbiddenKey(value[i], `${at}[${i}]`)
      if (found !== null) return found
    }
    return null
  }
  for (const key of Object.keys(value)) {
    const here = at === '' ? key : `${at}.${key}`
    if (FORBIDDEN_KEYS.includes(key)) return here
    const found = forbiddenKey((value as Record<string, unknown>)[key], here)
    if (found !== null) return found
  }
  return null
}

/** The message for a forbidden key in `where` (a file, or "command line"). */
export function forbiddenKeyMessage(where: string, key: string): string {
  return `${where}: key "${key}" is not allowed (__proto__, constructor and prototype would reach JavaScript object prototypes; ` +
    'remove it)'
}

/** Throws `make(message)` when `value` has a forbidden key anywhere. */
export function checkJsonKeys(value: unknown, where: string, make: (message: string) => Error = (m) => new Error(m)): void {
  const key = forbiddenKey(value)
  if (key !== null) throw make(forbiddenKeyMessage(where, key))
}

/**
 * A JSON object read from `file`. An unreadable, empty or unparsable file, a non-object and a
 * forbidden key are each thrown as `make(message)`, the message naming the file and `what` it
 * is; `damaged`, when given, is added to the messages about a file that is there but unusable
 * (a run directory's files say how they get that way).
 */
export function readJsonObject(file: string, what: string, make: (message: string) => Error = (m) => new Error(m),
  damaged = ''): Record<string, unknown> {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw make(`${file}: cannot read the ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`)
  }
  const bad = (why: string): Error => make(`${file}: the ${what} ${why}${damaged === '' ? '' : `: ${damaged}`}`)
  if (text.trim() === '') throw bad('is empty')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (err) {
    throw bad(`is not valid JSON (${(err as Error).message})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad('is not a JSON object')
  checkJsonKeys(json, file, make)
  return json as Record<string, unknown>
}
