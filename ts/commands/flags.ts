/**
 * The flags of every command, from one table per command (a FlagTable: each flag's type, group,
 * one-line help and default), which drives both the parsing and the --help text.
 *
 * Parsing: `--name value`, `--name=value`, booleans as bare flags (or `--name=true|false`);
 * `--help` and `-h` are always understood. Unknown flags and wrong types are UsageErrors naming
 * the flag, with a "did you mean" for near misses; a value that is missing (`--lr --max-steps 3`)
 * is one too. `scanFlags` is the untyped core (train uses it to hand raw values to
 * resolveConfig, whose messages name the config key); `parseFlags` converts the values.
 *
 * Help: `commandHelp` prints the usage, a summary, the flags grouped (model, data, optimisation,
 * schedule, evaluation, generation, server, output, other), one line each, and examples.
 */
import { nearest } from '../train/config'

export type FlagKind = 'string' | 'number' | 'integer' | 'boolean' | 'numbers'

/** Where a flag is listed in --help, in this order. */
export type FlagGroup = 'model' | 'data' | 'optimisation' | 'schedule' | 'evaluation' | 'generation' | 'server' | 'output' | 'other'
export const FLAG_GROUPS: readonly FlagGroup[] = ['model', 'data', 'optimisation', 'schedule', 'evaluation', 'generation', 'server', 'output', 'other']

export interface FlagDef {
  kind: FlagKind
  /** One line: what the flag does (no trailing period needed). */
  help: string
  group: FlagGroup
  /** Shown as [default] in --help; absent: no default (or one the help text explains). */
  default?: string | number | boolean
  /** The value's name in --help (DIR, FILE, N…); absent: from the kind. */
  placeholder?: string
}

/** Key: the flag's name without --, in kebab-case. (`help` needs no entry: --help and -h are always there.) */
export type FlagTable = Record<string, FlagDef>

export class UsageError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UsageError'
  }
}

type KindValue<K> = K extends 'string' ? string : K extends 'number' | 'integer' ? number : K extends 'boolean' ? boolean
  : K extends 'numbers' ? number[] : never

/** The parsed values: each flag given, typed by its kind; `help` for --help / -h. */
export type FlagValues<T> = { [N in keyof T]?: T[N] extends { kind: infer K } ? KindValue<K> : never } & { help?: boolean }

/** One flag as the command line gave it: its raw text (null for a bare boolean). */
export interface RawFlag { flag: string; def: FlagDef; raw: string | null }

export interface ScanOptions {
  /** Appended to the unknown-flag message (train: "; see --help"). */
  unknownSuffix?: string
  /** Arguments that do not start with -- are an error (not collected as positional). */
  noPositional?: boolean
  /** Prefixes of flags not in the table that are accepted all the same, with this definition (train's --init-<field>). */
  families?: Record<string, FlagDef>
}

/**
 * The untyped core: each flag with its raw value, in order, plus positional arguments and
 * whether --help / -h was given. Checks that flags exist (own keys only: --constructor is no
 * flag) and that the ones with a value have one.
 */
export function scanFlags(argv: readonly string[], table: FlagTable, o: ScanOptions = {}): { flags: RawFlag[]; positional: string[]; help: boolean } {
  const flags: RawFlag[] = []
  const positional: string[] = []
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--help' || arg === '-h') { help = true; continue }
    if (!arg.startsWith('--')) {
      if (o.noPositional) throw new UsageError(`unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`)
      positional.push(arg)
      continue
    }
    const [flag, inline] = arg.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
    const family = Object.entries(o.families ?? {}).find(([prefix]) => flag.startsWith(prefix) && flag.length > prefix.length)
    const def = Object.hasOwn(table, flag) ? table[flag] : family?.[1]
    if (def === undefined) {
      const near = nearest(flag, Object.keys(table))
      throw new UsageError(`unknown flag --${flag}${near ? ` (did you mean --${near}?)` : ''}${o.unknownSuffix ?? ''}`)
    }
    if (def.kind === 'boolean') {
      flags.push({ flag, def, raw: inline ?? null })
      continue
    }
    const raw = inline ?? argv[++i]
    if (raw === undefined) throw new UsageError(`--${flag} needs a value`)
    // `--lr --max-steps 3`: the value is missing, not "--max-steps" (a negative number is a value)
    if (inline === undefined && /^--[a-z]/.test(raw)) throw new UsageError(`--${flag} needs a value (found the flag ${raw} after it)`)
    flags.push({ flag, def, raw })
  }
  return { flags, positional, help }
}

/** One raw value converted to its kind; UsageError naming the flag when it does not fit. */
export function flagValue(flag: string, kind: FlagKind, raw: string | null): string | number | boolean | number[] {
  if (kind === 'boolean') {
    if (raw !== null && raw !== 'true' && raw !== 'false') throw new UsageError(`--${flag} takes no value (or =true/=false)`)
    return raw !== 'false'
  }
  const text = raw ?? ''
  if (kind === 'string') return text
  if (kind === 'numbers') {
    const xs = text.split(',').map((s) => Number(s.trim()))
    if (xs.some((x) => !Number.isFinite(x)) || text.trim() === '') throw new UsageError(`--${flag}: expected comma-separated numbers, received ${JSON.stringify(text)}`)
    return xs
  }
  const x = Number(text)
  if (text.trim() === '' || !Number.isFinite(x) || (kind === 'integer' && !Number.isInteger(x))) {
    throw new UsageError(`--${flag}: expected ${kind === 'integer' ? 'an integer' : 'a number'}, received ${JSON.stringify(text)}`)
  }
  return x
}

/** Parses `argv` against a command's table: typed values (later flags win) and positional arguments. */
export function parseFlags<T extends FlagTable>(argv: readonly string[], table: T, o: ScanOptions = {}): { values: FlagValues<T>; positional: string[] } {
  const { flags, positional, help } = scanFlags(argv, table, o)
  const values: Record<string, unknown> = {}
  if (help) values.help = true
  for (const { flag, def, raw } of flags) values[flag] = flagValue(flag, def.kind, raw)
  return { values: values as FlagValues<T>, positional }
}

const GROUP_TITLES: Record<FlagGroup, string> = {
  model: 'Model', data: 'Data', optimisation: 'Optimisation', schedule: 'Schedule', evaluation: 'Evaluation',
  generation: 'Generation', server: 'Server', output: 'Output', other: 'Other',
}

const KIND_PLACEHOLDERS: Record<FlagKind, string> = { string: 'TEXT', number: 'X', integer: 'N', boolean: '', numbers: 'X,Y,…' }

/** `--name TYPE` as --help shows it. */
export function flagSignature(name: string, def: FlagDef): string {
  const placeholder = def.placeholder ?? KIND_PLACEHOLDERS[def.kind]
  return `--${name}${placeholder ? ` ${placeholder}` : ''}`
}

/** The flags of a table grouped as --help lists them: `  --name TYPE  help [default]`, names aligned within the listing. */
export function flagLines(table: FlagTable, o: { width?: number } = {}): string[] {
  const entries: Array<[string, FlagDef]> = Object.entries(table).filter(([n]) => n !== 'help')
  entries.push(['help', { kind: 'boolean', group: 'other', help: 'this help (also -h)' }])
  const width = o.width ?? Math.min(28, Math.max(...entries.map(([n, d]) => flagSignature(n, d).length)))
  const lines: string[] = []
  for (const group of FLAG_GROUPS) {
    const members = entries.filter(([, d]) => d.group === group)
    if (members.length === 0) continue
    lines.push(`${GROUP_TITLES[group]}:`)
    for (const [name, def] of members) {
      const sig = flagSignature(name, def)
      const shown = def.default === undefined ? '' : ` [${typeof def.default === 'string' ? def.default : JSON.stringify(def.default)}]`
      lines.push(`  ${sig.padEnd(width)}  ${def.help}${shown}`)
    }
    lines.push('')
  }
  return lines
}

export interface CommandHelp {
  /** e.g. "plwtune merge --model DIR --adapter DIR --out DIR" (without "Usage: "). */
  usage: string
  /** A paragraph (may span lines) on what the command does. */
  summary: string
  table: FlagTable
  /** Two or three command lines. */
  examples: string[]
  /** Extra paragraphs after the flags (exit status, notes), optional. */
  notes?: string
}

/** A command's --help text: usage, summary, the grouped flags, examples. */
export function commandHelp(h: CommandHelp): string {
  const lines = [`Usage: ${h.usage}`, '', h.summary.trimEnd(), '', ...flagLines(h.table)]
  if (h.notes) lines.push(h.notes.trimEnd(), '')
  if (h.examples.length > 0) {
    lines.push('Examples:')
    for (const e of h.examples) lines.push(`  ${e}`)
  }
  while (lines[lines.length - 1] === '') lines.pop()
  return lines.join('\n')
}
