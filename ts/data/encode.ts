/**
 * Records → tokenized examples: render with a template, tokenize the segments as one text cut at
 * their boundaries (Tokenizer.encodePieces: prompt and completion never merge into one token
 * across a boundary, and a segment that continues the text gets no "▁" of its own), put the
 * tokenizer's special prefix (its BOS) in front once, append eos, truncate to maxLength keeping
 * the completion, and check the data for the template's markers and the tokenizer's special tokens.
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
  /** Skip (and count) examples whose completion does not fit maxLength, instead of throwing (the CLI's --skip-invalid). Default false. */
  skipTooLong?: boolean
  /**
   * The model's positions (maxLength's ceiling) and where that number comes from (a config.json,
   * --init-n-positions): an example that does not fit is then reported with what can be done.
   */
  positions?: { count: number; from: string }
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

/**
 * The ids of consecutive texts (a template's segments, or those of a generation prompt): each
 * text's ids apart (`parts`, Tokenizer.encodePieces), and the special prefix the tokenizer's
 * post-processor puts before a text (`prefix`, a BOS) — empty when the ids already start with it,
 * as when a chat template writes bos_token itself, so that an example holds one BOS.
 */
export function encodeTexts(tokenizer: Tokenizer, texts: readonly string[]): { prefix: number[]; parts: number[][] } {
  const parts = tokenizer.encodePieces !== undefined ? tokenizer.encodePieces(texts) : texts.map((t) => tokenizer.encode(t))
  const want = tokenizer.specialPrefix ?? []
  if (want.length === 0) return { prefix: [], parts }
  const head: number[] = []
  for (const p of parts) {
    for (const id of p) { if (head.length < want.length) head.push(id) }
    if (head.length >= want.length) break
  }
  const present = head.length === want.length && want.every((id, k) => head[k] === id)
  return { prefix: present ? [] : [...want], parts }
}

/** Tokenizes one record (no truncation). */
export function encodeRecord(record: DataRecord, template: Template, tokenizer: Tokenizer): EncodedExample {
  const { segments, eos } = template.render(record)
  const { prefix, parts } = encodeTexts(tokenizer, segments.map((s) => s.text))
  // The prefix (a BOS) is prompt: it is never a target anyway, being first.
  const ids: number[] = [...prefix]
  const kinds: number[] = prefix.map(() => KIND_PROMPT)
  let overrides: number[] | null = null
  let lastWeight = NaN
  let lastKind = KIND_COMPLETION
  let promptTokens = prefix.length
  let completionTokens = 0
  for (let s = 0; s < segments.length; s++) {
    const seg = segments[s]
    const part = parts[s]
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
  // The eos closes the last completion: it shares that segment's weight (an assistant turn with weight 0 stays untrained).
  const closing = (id: number): void => {
    ids.push(id)
    kinds.push(KIND_COMPLETION)
    if (overrides !== null) overrides.push(lastKind === KIND_COMPLETION ? lastWeight : NaN)
    completionTokens++
  }
  if (eos) closing(tokenizer.eosId)
  // A post-processor's suffix (rare: add_eos_token), unless the ids already end with it (the eos just appended).
  const suffix = tokenizer.specialSuffix ?? []
  if (suffix.length > 0 && !(ids.length >= suffix.length && suffix.every((id, k) => ids[ids.length - suffix.length + k] === id))) {
    for (const id of suffix) closing(id)
  }
  // Truncation keeps the BOS first, whether added here or written by the template.
  const bos = tokenizer.specialPrefix ?? []
  const keep = bos.length > 0 && ids.length >= bos.length && bos.every((id, k) => ids[k] === id) ? bos.length : 0
  const ex: EncodedExample = {
    ids: Int32Array.from(ids),
    kinds: Uint8Array.from(kinds),
    weights: overrides !== null ? Float32Array.from(overrides) : null,
    promptTokens,
    completionTokens,
    truncated: 0,
    source: record.source,
  }
  if (keep > 0) ex.keep = keep
  return ex
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
  let needed = 0
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
      needed = Math.max(needed, cut.needed)
      tooLong.push({
        source: record.source, field: null,
        message: `${ex.ids.length} tokens do not fit in ${maxLength}: its completion (${ex.completionTokens} tokens with eos) ` +
          `and one token before it need ${cut.needed}`,
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
      `in the maximum length of ${maxLength} tokens`, tooLong, tooLong.length, tooLongHint(needed, options.positions))
  }
  return { examples, stats, warnings }
}

/**
 * What can be done about completions that do not fit (`needed`: the most ids one of them needs):
 * a longer --max-length only up to the model's positions (a model takes no more than it has),
 * else shorter completions, or skipping them (--skip-invalid; skipTooLong in the API).
 */
function tooLongHint(needed: number, positions: { count: number; from: string } | undefined): string {
  const skip = 'or pass --skip-invalid to skip and count them'
  if (positions === undefined) return `raise --max-length to ${needed} if the model has that many positions, shorten those completions, ${skip}`
  if (needed <= positions.count) {
    return `raise --max-length to ${needed} or more, which the model allows: it takes up to ${positions.count} positions, per ` +
      `${positions.from}; or shorten those completions, ${skip}`
  }
  return `the model takes at most ${positions.count} positions, per ${positions.from}, fewer than the ${needed} needed, so ` +
    `--max-length cannot help: shorten those completions, ${skip}`
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
