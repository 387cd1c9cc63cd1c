/**
 * The analysis's input table: CSV with the columns `dataset,plw,seed,benchmark,score`, one row
 * per score (a model trained on `dataset` with λ = `plw` and `seed`, measured on `benchmark`),
 * so that results from anywhere can be analysed as a sweep's are.
 *
 * - A header row is required; the five columns may come in any order, and other columns are
 *   ignored (a wider export can be passed as it is). Names are matched exactly (lower case).
 * - Fields may be quoted with double quotes (`"a,b"`, `""` for a quote inside), as spreadsheet
 *   exports write them; a quoted field cannot span lines. Blank lines are skipped; a UTF-8 BOM
 *   and CRLF line ends are accepted.
 * - `plw` and `score` must be finite numbers, `dataset` and `benchmark` non-empty; `seed` is a
 *   label (integers in a sweep; any text, even empty for a single-seed table, is accepted).
 * - One score per (dataset, plw, seed, benchmark): a second one is an error naming both lines.
 * - Every problem is reported as `file:line: field "x": why`, collected over the whole file and
 *   thrown once as a DataError (ts/data/errors.ts), as the dataset readers do.
 */
import * as fs from 'node:fs'
import { DataError, Problem } from '../data/errors'
import { Observation } from './analysis'

export const RESULTS_COLUMNS = ['dataset', 'plw', 'seed', 'benchmark', 'score'] as const

/** The fields of one CSV line; null when a quote is unterminated. */
export function splitCsvLine(line: string): string[] | null {
  const fields: string[] = []
  let i = 0
  for (;;) {
    let field = ''
    if (line[i] === '"') {
      i++
      for (;;) {
        if (i >= line.length) return null
        if (line[i] === '"') {
          if (line[i + 1] === '"') { field += '"'; i += 2; continue }
          i++
          break
        }
        field += line[i++]
      }
      // text after the closing quote up to the comma belongs to the field (lenient, as spreadsheets read it)
      while (i < line.length && line[i] !== ',') field += line[i++]
    } else {
      while (i < line.length && line[i] !== ',') field += line[i++]
    }
    fields.push(field)
    if (i >= line.length) return fields
    i++ // the comma
  }
}

/** Parses the table's text; `file` names it in the messages. */
export function parseResultsCsv(text: string, file: string): Observation[] {
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/)
  const problems: Problem[] = []
  const at = (index: number) => ({ file, line: index + 1, index })
  const headerIndex = lines.findIndex((l) => l.trim() !== '')
  if (headerIndex < 0) throw new DataError(`${file}: empty (expected a header row: ${RESULTS_COLUMNS.join(',')})`, [])
  const header = splitCsvLine(lines[headerIndex])
  if (header === null) throw new DataError(`${file}: bad header`, [{ source: at(headerIndex), field: null, message: 'unterminated quote' }])
  const names = header.map((h) => h.trim())
  const missing = RESULTS_COLUMNS.filter((c) => !names.includes(c))
  if (missing.length > 0) {
    throw new DataError(`${file}: bad header`, [{
      source: at(headerIndex), field: null,
      message: `missing column${missing.length === 1 ? '' : 's'} ${missing.join(', ')} (expected a header row with ${RESULTS_COLUMNS.join(',')}; ` +
        `found ${JSON.stringify(lines[headerIndex].slice(0, 120))})`,
    }])
  }
  const dupes = RESULTS_COLUMNS.filter((c) => names.indexOf(c) !== names.lastIndexOf(c))
  if (dupes.length > 0) {
    throw new DataError(`${file}: bad header`, [{ source: at(headerIndex), field: null, message: `column ${dupes.join(', ')} appears twice` }])
  }
  const col = Object.fromEntries(RESULTS_COLUMNS.map((c) => [c, names.indexOf(c)])) as Record<(typeof RESULTS_COLUMNS)[number], number>
  const out: Observation[] = []
  let count = 0
  const firstLine = new Map<string, number>()
  const problem = (index: number, field: string | null, message: string) => {
    count++
    if (problems.length < 100) problems.push({ source: at(index), field, message })
  }
  for (let i = headerIndex + 1; i < lines.length; i++) {
    if (lines[i].trim() === '') continue
    const fields = splitCsvLine(lines[i])
    if (fields === null) { problem(i, null, 'unterminated quote'); continue }
    if (fields.length < names.length) {
      problem(i, null, `${fields.length} field${fields.length === 1 ? '' : 's'}, the header has ${names.length}`)
      continue
    }
    const get = (c: (typeof RESULTS_COLUMNS)[number]) => fields[col[c]].trim()
    let ok = true
    const text = (c: 'dataset' | 'benchmark') => {
      const v = get(c)
      if (v === '') { problem(i, c, 'empty'); ok = false }
      return v
    }
    const num = (c: 'plw' | 'score') => {
      const raw = get(c)
      const v = Number(raw)
      if (raw === '' || !Number.isFinite(v)) { problem(i, c, `expected a number, received ${JSON.stringify(raw)}`); ok = false }
      return v
    }
    const obs: Observation = { dataset: text('dataset'), plw: num('plw'), seed: get('seed'), benchmark: text('benchmark'), score: num('score') }
    if (!ok) continue
    const key = JSON.stringify([obs.dataset, obs.plw, obs.seed, obs.benchmark])
    const first = firstLine.get(key)
    if (first !== undefined) { problem(i, null, `a second score for dataset ${obs.dataset}, plw ${obs.plw}, seed ${JSON.stringify(obs.seed)}, benchmark ${obs.benchmark} (the first is on line ${first})`); continue }
    firstLine.set(key, i + 1)
    out.push(obs)
  }
  if (count > 0) throw new DataError(`${file}: ${count} bad row${count === 1 ? '' : 's'}`, problems, count)
  if (out.length === 0) throw new DataError(`${file}: no rows after the header`, [])
  return out
}

/** Reads and parses a results CSV file. */
export function readResultsCsv(file: string): Observation[] {
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    throw new DataError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, [])
  }
  return parseResultsCsv(text, file)
}
