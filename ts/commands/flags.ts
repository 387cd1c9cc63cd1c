/**
 * Flag parsing shared by the subcommands (train has its own, driven by TrainConfig):
 * `--name value`, `--name=value`, booleans as bare flags; unknown flags and wrong types
 * are errors naming the flag, with a "did you mean" for near misses.
 */
import { nearest } from '../train/config'

export type FlagKind = 'string' | 'number' | 'integer' | 'boolean' | 'numbers'

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

export function parseFlags<S extends Record<string, FlagKind>>(argv: string[], spec: S):
  { values: Partial<Record<keyof S, string | number | boolean | number[]>>; positional: string[] } {
  const values: Partial<Record<keyof S, string | number | boolean | number[]>> = {}
  const positional: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (!arg.startsWith('--')) { positional.push(arg); continue }
    const [flag, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    const kind = Object.hasOwn(spec, flag) ? spec[flag] : undefined // own keys only: --constructor is no flag
    if (kind === undefined) {
      const near = nearest(flag, Object.keys(spec))
      throw new UsageError(`unknown flag --${flag}${near ? ` (did you mean --${near}?)` : ''}`)
    }
    if (kind === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new UsageError(`--${flag} takes no value (or =true/=false)`)
      ;(values as Record<string, unknown>)[flag] = inline !== 'false'
      continue
    }
    const raw = inline ?? argv[++i]
    if (raw === undefined) throw new UsageError(`--${flag} needs a value`)
    if (kind === 'string') {
      (values as Record<string, unknown>)[flag] = raw
    } else if (kind === 'numbers') {
      const xs = raw.split(',').map((s) => Number(s.trim()))
      if (xs.some((x) => !Number.isFinite(x)) || raw.trim() === '') throw new UsageError(`--${flag}: expected comma-separated numbers, received ${JSON.stringify(raw)}`)
      ;(values as Record<string, unknown>)[flag] = xs
    } else {
      const x = Number(raw)
      if (raw.trim() === '' || !Number.isFinite(x) || (kind === 'integer' && !Number.isInteger(x))) {
        throw new UsageError(`--${flag}: expected ${kind === 'integer' ? 'an integer' : 'a number'}, received ${JSON.stringify(raw)}`)
      }
      ;(values as Record<string, unknown>)[flag] = x
    }
  }
  return { values, positional }
}
