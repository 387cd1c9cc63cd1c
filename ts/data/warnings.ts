/**
 * Warnings about the data that do not stop a run (a stop sequence inside a completion, a
 * special token's text inside a prompt, …), collected per kind: a count and the first few
 * examples of each, so that 50,000 occurrences print as one line and three examples.
 */
import { Source, formatSource } from './errors'

export interface DataWarning {
  /** Groups warnings of one kind, e.g. `marker:" END"`. */
  code: string
  source: Source
  field: string | null
  message: string
}

export interface WarningGroup {
  code: string
  count: number
  examples: DataWarning[]
}

export function formatWarning(w: DataWarning): string {
  return `${formatSource(w.source)}: ${w.field !== null ? `field "${w.field}": ` : ''}${w.message}`
}

export class Warnings {
  private readonly groups = new Map<string, WarningGroup>()
  constructor(readonly examplesPerCode = 3) {}

  add(w: DataWarning): void {
    let g = this.groups.get(w.code)
    if (g === undefined) { g = { code: w.code, count: 0, examples: [] }; this.groups.set(w.code, g) }
    g.count++
    if (g.examples.length < this.examplesPerCode) g.examples.push(w)
  }

  get count(): number {
    let n = 0
    for (const g of this.groups.values()) n += g.count
    return n
  }

  list(): WarningGroup[] {
    return [...this.groups.values()]
  }

  /** Lines for a log: each example, then `… N more like this` per kind. */
  format(): string[] {
    const lines: string[] = []
    for (const g of this.groups.values()) {
      for (const w of g.examples) lines.push(formatWarning(w))
      if (g.count > g.examples.length) lines.push(`  … ${g.count - g.examples.length} more like this`)
    }
    return lines
  }
}
