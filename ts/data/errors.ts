/**
 * Where a record came from, and the errors the data layer throws.
 *
 * Every problem with the user's data is reported as `file:line: field "x": why`, collected
 * over the whole file, and thrown once as a DataError listing the first few and the count,
 * so that a user fixes all of them in one pass instead of one per run.
 */

/** The origin of a record: a file and line (JSON/JSONL), or an in-memory array and index. */
export interface Source {
  /** The path as the user gave it, or a name such as `<data>` for in-memory records. */
  file: string
  /** 1-based line where the record starts; absent for in-memory records. */
  line?: number
  /** 0-based position of the record in its file or array. */
  index: number
}

/** `data.jsonl:17` for a file, `<data>[16]` for an in-memory array. */
export function formatSource(source: Source): string {
  return source.line !== undefined ? `${source.file}:${source.line}` : `${source.file}[${source.index}]`
}

/** One thing wrong with one record. */
export interface Problem {
  source: Source
  /** The field at fault (`output`, `messages[2].role`), or null when the record as a whole is. */
  field: string | null
  /** Why, phrased for the user: `expected a string, received number`. */
  message: string
}

export function formatProblem(p: Problem): string {
  return `${formatSource(p.source)}: ${p.field !== null ? `field "${p.field}": ` : ''}${p.message}`
}

/** How many problems a DataError's message lists before "… and N more". */
export const PROBLEMS_SHOWN = 20

/**
 * Bad input data: the message lists the first PROBLEMS_SHOWN problems and the total count;
 * `problems` holds them (up to a cap), `count` is the total.
 */
export class DataError extends Error {
  override readonly name = 'DataError'
  constructor(
    readonly headline: string,
    readonly problems: Problem[],
    readonly count: number = problems.length,
    readonly hint: string | null = null,
  ) {
    super(DataError.compose(headline, problems, count, hint))
  }

  private static compose(headline: string, problems: Problem[], count: number, hint: string | null): string {
    const lines = [headline + (hint !== null ? ` (${hint})` : '') + (problems.length > 0 ? ':' : '')]
    for (const p of problems.slice(0, PROBLEMS_SHOWN)) lines.push(`  ${formatProblem(p)}`)
    const rest = count - Math.min(problems.length, PROBLEMS_SHOWN)
    if (rest > 0) lines.push(`  … and ${rest} more`)
    return lines.join('\n')
  }
}

/** A template that cannot be built or cannot render a record (bad template string, unknown name, …). */
export class TemplateError extends Error {
  override readonly name = 'TemplateError'
}

/** `number`, `string`, `array`, `null`, `object`, `boolean`: the JSON type of a value, for messages. */
export function jsonType(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  return typeof value
}
