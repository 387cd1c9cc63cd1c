/**
 * Reading instruction datasets: a JSON array (`[{...}, ...]`) or JSON Lines (one object per
 * line), in any of the formats of records.ts.
 *
 * - JSON Lines are streamed line by line (readline over a file stream), never read whole;
 *   blank lines are skipped. A JSON array is parsed whole (JSON.parse) and each element's
 *   starting line is found by a linear scan, so messages name lines for both.
 * - The format is detected from the first record unless given.
 * - Every bad record is reported with file, line, field and why. By default the read
 *   throws one DataError listing the first problems and the count; with `skipInvalid`
 *   the bad records are skipped and counted in the summary. Nothing is dropped silently.
 */
import * as fs from 'node:fs'
import * as readline from 'node:readline'
import { DataError, Problem, Source, formatSource } from './errors'
import { DataFormat, DataRecord, DATA_FORMATS, FORMAT_KEYS, describeKeys, detectFormat, validateRecord } from './records'

export interface ReadOptions {
  /** The record format; 'auto' (default) detects it from the first record. */
  format?: DataFormat | 'auto'
  /** Skip bad records (counted in the summary) instead of throwing. Default false. */
  skipInvalid?: boolean
}

export interface ReadSummary {
  file: string
  format: DataFormat
  /** Whether the format was detected (from the first record) or given. */
  formatFrom: 'detected' | 'given'
  /** Records seen (non-blank lines of a JSONL file, elements of a JSON array). */
  records: number
  valid: number
  /** Records with at least one problem; with skipInvalid these were skipped. */
  invalid: number
  /** The problems, in file order (at most MAX_PROBLEMS_KEPT kept; `problemCount` is the total). */
  problems: Problem[]
  problemCount: number
}

export interface ReadResult {
  records: DataRecord[]
  summary: ReadSummary
}

/** Problems kept in memory for the summary; the count goes on past it. */
export const MAX_PROBLEMS_KEPT = 1000

/** Reads a dataset file. Throws DataError on bad records unless `skipInvalid`. */
export async function readDataset(file: string, options: ReadOptions = {}): Promise<ReadResult> {
  checkOptions(options)
  const collector = new Collector(file, options)
  await readJsonValues(file, collector)
  return collector.finish()
}

/** Where readJsonValues delivers a file's values: each parsed one with its source, and each line that does not parse. */
export interface JsonSink {
  /** Values delivered so far (parsed or not): the next value's index. */
  readonly seen: number
  add(value: unknown, source: Source): void
  unparsable(source: Source, message: string): void
}

/**
 * Walks a JSON array or JSON Lines file value by value, with file and line, as readDataset
 * does (other record kinds, such as multiple-choice records, reuse it). A file that cannot be
 * opened, or a JSON array that does not parse, throws DataError.
 */
export async function readJsonValues(file: string, sink: JsonSink): Promise<void> {
  const head = await readHead(file)
  // Node decodes invalid UTF-8 as U+FFFD without a word: such lines are found on the bytes first.
  const badUtf8 = await invalidUtf8Lines(file)
  if (head.trimStart().startsWith('[')) {
    const first = badUtf8.entries().next()
    if (!first.done) throw new DataError(`${file}:${first.value[0]}: ${utf8Message(first.value[1])}`, [])
    const text = stripBom(await fs.promises.readFile(file, 'utf8'))
    readJsonArray(text, file, sink)
    return
  }
  const stream = fs.createReadStream(file, { encoding: 'utf8' })
  const lines = readline.createInterface({ input: stream, crlfDelay: Infinity })
  let line = 0
  try {
    for await (const raw of lines) {
      line++
      const text = line === 1 ? stripBom(raw) : raw
      const bad = badUtf8.get(line)
      if (bad !== undefined) {
        sink.unparsable({ file, line, index: sink.seen }, utf8Message(bad))
        continue
      }
      if (text.trim() === '') continue
      let value: unknown
      try {
        value = JSON.parse(text)
      } catch (err) {
        sink.unparsable({ file, line, index: sink.seen }, jsonMessage(err))
        continue
      }
      sink.add(value, { file, line, index: sink.seen })
    }
  } finally {
    stream.destroy()
  }
}

function utf8Message(column: number): string {
  return `invalid UTF-8 at byte ${column + 1} of the line (the file must be UTF-8; re-encode it, e.g. iconv -f latin1 -t utf-8)`
}

/**
 * Lines (1-based) holding bytes that are not valid UTF-8, with the byte offset in the line of
 * the first bad one; one pass over the file in 1 MiB chunks, decoding each line strictly.
 */
async function invalidUtf8Lines(file: string): Promise<Map<number, number>> {
  const bad = new Map<number, number>()
  const decoder = new TextDecoder('utf-8', { fatal: true })
  const check = (bytes: Buffer, line: number) => {
    try {
      decoder.decode(bytes)
    } catch {
      let ok = 0 // find the first bad byte: the longest valid prefix
      for (let n = 1; n <= bytes.length; n++) {
        try { decoder.decode(bytes.subarray(0, n)); ok = n } catch { if (n - ok > 4) break }
      }
      bad.set(line, ok)
    }
  }
  let line = 1
  let carry = Buffer.alloc(0)
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    let buf = carry.length > 0 ? Buffer.concat([carry, chunk as Buffer]) : (chunk as Buffer)
    let nl: number
    while ((nl = buf.indexOf(10)) >= 0) {
      check(buf.subarray(0, nl), line++)
      buf = buf.subarray(nl + 1)
    }
    carry = Buffer.from(buf)
  }
  if (carry.length > 0) check(carry, line)
  return bad
}

/** Validates in-memory records (the library API): messages name them `<name>[index]`. */
export function recordsFromObjects(items: unknown[], options: ReadOptions & { name?: string } = {}): ReadResult {
  checkOptions(options)
  const name = options.name ?? '<data>'
  if (!Array.isArray(items)) throw new TypeError(`recordsFromObjects: Expected an array for items but received ${typeof items}`)
  const collector = new Collector(name, options)
  items.forEach((item, index) => collector.add(item, { file: name, index }))
  return collector.finish()
}

function checkOptions(options: ReadOptions): void {
  const f = options.format
  if (f !== undefined && f !== 'auto' && !DATA_FORMATS.includes(f)) {
    throw new TypeError(`readDataset: Expected one of auto, ${DATA_FORMATS.join(', ')} for format but received ${JSON.stringify(f)}`)
  }
}

class Collector {
  readonly records: DataRecord[] = []
  readonly problems: Problem[] = []
  problemCount = 0
  invalid = 0
  seen = 0
  private format: DataFormat | null
  private readonly formatFrom: 'detected' | 'given'
  private detectedAt: Source | null = null

  constructor(readonly file: string, readonly options: ReadOptions) {
    this.format = options.format !== undefined && options.format !== 'auto' ? options.format : null
    this.formatFrom = this.format !== null ? 'given' : 'detected'
  }

  private report(problems: Problem[]): void {
    this.invalid++
    this.problemCount += problems.length
    for (const p of problems) if (this.problems.length < MAX_PROBLEMS_KEPT) this.problems.push(p)
  }

  unparsable(source: Source, message: string): void {
    this.seen++
    this.report([{ source, field: null, message }])
  }

  add(value: unknown, source: Source): void {
    this.seen++
    if (this.format === null) {
      const detected = detectFormat(value)
      if (detected === null) {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          // Not an object at all: a bad record, not a clue to the format; detect from the next one.
          this.report([{ source, field: null, message: `expected a JSON object, received ${describeKeys(value)}` }])
          return
        }
        throw new DataError(
          `${formatSource(source)}: cannot tell the dataset's format from its first record: expected ` +
          `${DATA_FORMATS.map((f) => FORMAT_KEYS[f]).join(', or ')}; found ${describeKeys(value)}`, [], 0,
          'pass format: alpaca | prompt-completion | chat to choose one')
      }
      this.format = detected
      this.detectedAt = source
    }
    const result = validateRecord(value, this.format, source)
    if (result.record !== null) this.records.push(result.record)
    else this.report(result.problems)
  }

  finish(): ReadResult {
    if (this.format === null) {
      throw new DataError(`${this.file}: no records${this.seen > 0 ? ` (all ${this.seen} invalid)` : ''}`,
        this.problems, this.problemCount)
    }
    const summary: ReadSummary = {
      file: this.file, format: this.format, formatFrom: this.formatFrom, records: this.seen,
      valid: this.records.length, invalid: this.invalid, problems: this.problems, problemCount: this.problemCount,
    }
    if (this.invalid > 0 && !this.options.skipInvalid) {
      const detected = this.detectedAt !== null ? `, format ${this.format} detected from ${formatSource(this.detectedAt)}` : ''
      throw new DataError(`${this.file}: ${this.invalid} invalid record${this.invalid === 1 ? '' : 's'} of ${this.seen}${detected}`,
        this.problems, this.problemCount, 'fix them, or pass skipInvalid / --skip-invalid to skip and count them')
    }
    if (this.records.length === 0) {
      throw new DataError(`${this.file}: no valid records (${this.invalid} invalid)`, this.problems, this.problemCount)
    }
    return { records: this.records, summary }
  }
}

/** Describes a read in one line: `data.jsonl: 1,100 records (alpaca, detected), 3 invalid skipped`. */
export function describeRead(summary: ReadSummary): string {
  const skipped = summary.invalid > 0 ? `, ${summary.invalid} invalid skipped` : ''
  return `${summary.file}: ${summary.valid} records (${summary.format}, ${summary.formatFrom})${skipped}`
}

async function readHead(file: string): Promise<string> {
  let handle: fs.promises.FileHandle
  try {
    handle = await fs.promises.open(file, 'r')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new DataError(`${file}: cannot open the dataset (${code === 'ENOENT' ? 'no such file' : (err as Error).message})`, [])
  }
  try {
    const buf = Buffer.alloc(4096)
    const { bytesRead } = await handle.read(buf, 0, buf.length, 0)
    return stripBom(buf.subarray(0, bytesRead).toString('utf8'))
  } finally {
    await handle.close()
  }
}

function stripBom(s: string): string {
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s
}

/** JSON.parse's message without V8's echo of the whole input. */
function jsonMessage(err: unknown): string {
  let m = (err as Error).message
  m = m.replace(/, ".*" is not valid JSON$/s, '')
  return `invalid JSON: ${m.length > 200 ? m.slice(0, 200) + '…' : m}`
}

function readJsonArray(text: string, file: string, sink: JsonSink): void {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    const m = /at position (\d+)/.exec((err as Error).message)
    const line = m !== null ? lineAt(text, Number(m[1])) : undefined
    throw new DataError(`${file}${line !== undefined ? `:${line}` : ''}: ${jsonMessage(err).replace(/ at position \d+.*$/, '')}`, [])
  }
  if (!Array.isArray(value)) {
    throw new DataError(`${file}: expected a JSON array of records or JSON Lines`, [])
  }
  const lines = elementLines(text)
  value.forEach((item, index) => sink.add(item, { file, line: lines[index], index }))
}

/** The 1-based line of a character offset. */
function lineAt(text: string, offset: number): number {
  let line = 1
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++
  return line
}

/**
 * The 1-based line on which each element of a top-level JSON array starts, by one pass over
 * the text tracking strings and nesting depth (the text is known to be valid JSON).
 */
function elementLines(text: string): number[] {
  const lines: number[] = []
  let line = 1
  let depth = 0
  let inString = false
  let expectElement = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 10) { line++; continue }
    if (inString) {
      if (c === 92) i++ // backslash: skip the escaped character (never a newline in valid JSON)
      else if (c === 34) inString = false
      continue
    }
    if (c === 32 || c === 9 || c === 13) continue
    if (depth === 1 && expectElement && c !== 93 /* ] */) { lines.push(line); expectElement = false }
    if (c === 34) inString = true
    else if (c === 91 || c === 123) { depth++; if (depth === 1) expectElement = true }
    else if (c === 93 || c === 125) depth--
    else if (c === 44 && depth === 1) expectElement = true
  }
  return lines
}
