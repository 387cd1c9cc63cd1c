/**
 * Records → tokenized examples: render with a template, tokenize each segment separately and
 * concatenate (prompt and completion never merge into one token across their boundary), append
 * eos, truncate to maxLength keeping the completion, and check the data for the template's
 * markers and the tokenizer's special tokens.
 *
 * Nothing is dropped silently: an example whose completion does not fit, or that the template
 * cannot render, is an error listed with its file and line (DataError), or — when allowed —
 * skipped and counted in the stats.
 */
import { DataError, Problem, TemplateError, formatSource } from './errors'
import { EncodedExample, KIND_COMPLETION, KIND_PROMPT } from './example'
import { DataRecord, textFields } from './records'
import { Marker, Template } from './template'
import { Tokenizer } from './tokenizer'
import { truncateExample } from './truncate'
import { Warnings } from './warnings'

export interface EncodeOptions {
  /** Maximum ids per example (prompt + completion + eos). Default: no limit. */
  maxLength?: number
  /** Skip (and count) examples whose completion does not fit maxLength, instead of throwing. Default false. */
  skipTooLong?: boolean
  /** Skip (and count) records the template cannot render, instead of throwing. Default false. */
  skipInvalid?: boolean
  /** Where warnings go; a new collector by default (returned either way). */
  warnings?: Warnings
}

export interface EncodeStats {
  records: number
  examples: number
  /** Examples cut to fit maxLength, and the prompt tokens dropped from them. */
  truncated: number
  truncatedTokens: number
  /** Examples whose completion alone does not fit maxLength (skipped when skipTooLong). */
  tooLong: number
  /** Records the template could not render (skipped when skipInvalid). */
  invalid: number
  /** Over the kept examples, after truncation; the eos counts as completion. */
  promptTokens: number
  completionTokens: number
  maxTokens: number
}

export interface EncodeResult {
  examples: EncodedExample[]
  stats: EncodeStats
  warnings: Warnings
}

/** Tokenizes one record (no truncation). */
export function encodeRecord(record: DataRecord, template: Template, tokenizer: Tokenizer): EncodedExample {
  const { segments, eos } = template.render(record)
  const ids: number[] = []
  const kinds: number[] = []
  let overrides: number[] | null = null
  let lastWeight = NaN
  let lastKind = KIND_COMPLETION
  let promptTokens = 0
  let completionTokens = 0
  for (const seg of segments) {
    const part = tokenizer.encode(seg.text)
    const kind = seg.kind === 'prompt' ? KIND_PROMPT : KIND_COMPLETION
    const w = seg.weight ?? NaN
    if (seg.weight !== undefined && overrides === null) overrides = new Array<number>(ids.length).fill(NaN)
    for (const id of part) {
      ids.push(id)
      kinds.push(kind)
      if (overrides !== null) overrides.push(w)
    }
    if (kind === KIND_PROMPT) promptTokens += part.length
    else completionTokens += part.length
    lastWeight = w
    lastKind = kind
  }
  if (eos) {
    ids.push(tokenizer.eosId)
    kinds.push(KIND_COMPLETION)
    // The eos closes the last completion: it shares that segment's weight (an assistant turn with weight 0 stays untrained).
    if (overrides !== null) overrides.push(lastKind === KIND_COMPLETION ? lastWeight : NaN)
    completionTokens++
  }
  return {
    ids: Int32Array.from(ids),
    kinds: Uint8Array.from(kinds),
    weights: overrides !== null ? Float32Array.from(overrides) : null,
    promptTokens,
    completionTokens,
    truncated: 0,
    source: record.source,
  }
}

/** Warns when a template marker or a special token occurs inside a record's text. */
export function checkMarkers(record: DataRecord, markers: readonly Marker[], warnings: Warnings): void {
  const fields = textFields(record)
  for (const m of markers) {
    for (const [field, text] of fields) {
      if (text.includes(m.text)) {
        warnings.add({
          code: `${m.what} ${JSON.stringify(m.text)}`, source: record.source, field,
          message: `contains the ${m.what} ${JSON.stringify(m.text)}` +
            (m.what === 'special token' ? ', which the tokenizer reads as that token' : ', which the template uses to mark its structure'),
        })
      }
    }
  }
}

export function encodeDataset(records: readonly DataRecord[], template: Template, tokenizer: Tokenizer,
  options: EncodeOptions = {}): EncodeResult {
  const maxLength = options.maxLength ?? Infinity
  if (!(maxLength >= 2)) throw new RangeError(`encodeDataset: Expected maxLength ≥ 2 but received ${maxLength}`)
  const warnings = options.warnings ?? new Warnings()
  const markers: Marker[] = [...template.markers]
  const seen = new Set(markers.map((m) => m.text))
  for (const s of tokenizer.specialTokens ?? []) {
    if (!seen.has(s)) { markers.push({ text: s, what: 'special token' }); seen.add(s) }
  }
  const formats = new Set(records.map((r) => r.format))
  for (const f of formats) {
    if (!template.formats.includes(f)) {
      throw new TemplateError(`the ${template.name} template renders ${template.formats.join(' or ')} records, not ${f}; ` +
        (f === 'chat' ? 'use chatml, phi3 or the model\'s chat_template for chat data' : 'choose another template'))
    }
  }
  const stats: EncodeStats = {
    records: records.length, examples: 0, truncated: 0, truncatedTokens: 0, tooLong: 0, invalid: 0,
    promptTokens: 0, completionTokens: 0, maxTokens: 0,
  }
  const examples: EncodedExample[] = []
  const invalid: Problem[] = []
  const tooLong: Problem[] = []
  for (const record of records) {
    checkMarkers(record, markers, warnings)
    let ex: EncodedExample
    try {
      ex = encodeRecord(record, template, tokenizer)
    } catch (err) {
      if (!(err instanceof TemplateError)) throw err
      stats.invalid++
      const prefix = `${formatSource(record.source)}: `
      const message = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message
      invalid.push({ source: record.source, field: null, message })
      continue
    }
    const cut = truncateExample(ex, maxLength)
    if (cut.example === null) {
      stats.tooLong++
      tooLong.push({
        source: record.source, field: null,
        message: `${ex.ids.length} tokens do not fit maxLength ${maxLength}: keeping the completion ` +
          `(${ex.completionTokens} tokens with eos) and one token before it needs ${cut.needed}`,
      })
      continue
    }
    if (cut.dropped > 0) { stats.truncated++; stats.truncatedTokens += cut.dropped }
    ex = cut.example
    stats.promptTokens += ex.promptTokens
    stats.completionTokens += ex.completionTokens
    if (ex.ids.length > stats.maxTokens) stats.maxTokens = ex.ids.length
    examples.push(ex)
  }
  stats.examples = examples.length
  if (invalid.length > 0 && !options.skipInvalid) {
    throw new DataError(`${invalid.length} record${invalid.length === 1 ? '' : 's'} the ${template.name} template cannot render`,
      invalid, invalid.length, 'fix them, or pass skipInvalid / --skip-invalid to skip and count them')
  }
  if (tooLong.length > 0 && !options.skipTooLong) {
    throw new DataError(`${tooLong.length} example${tooLong.length === 1 ? '' : 's'} whose completion does not fit ` +
      `maxLength ${maxLength}`, tooLong, tooLong.length, 'raise maxLength, or allow skipping them (skipTooLong), which counts them')
  }
  return { examples, stats, warnings }
}

/** One line for a log: `1,100 examples; 12 truncated (1,024 prompt tokens dropped); 2 too long, skipped`. */
export function describeEncode(stats: EncodeStats): string {
  const parts = [`${stats.examples} examples`, `mean ${(stats.promptTokens / Math.max(1, stats.examples)).toFixed(1)} prompt + ` +
    `${(stats.completionTokens / Math.max(1, stats.examples)).toFixed(1)} completion tokens`, `longest ${stats.maxTokens}`]
  if (stats.truncated > 0) parts.push(`${stats.truncated} truncated (${stats.truncatedTokens} prompt tokens dropped)`)
  if (stats.tooLong > 0) parts.push(`${stats.tooLong} too long, skipped`)
  if (stats.invalid > 0) parts.push(`${stats.invalid} not renderable, skipped`)
  return parts.join('; ')
}
