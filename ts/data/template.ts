/**
 * What a template is: it renders a record into segments of text, each prompt-like or
 * completion-like, which are tokenized separately and concatenated (encode.ts).
 *
 * Concatenating the segments gives exactly the format's text. The kind decides the default
 * loss weight of the segment's tokens (prompt: λ, completion: 1); a segment may carry its own
 * weight (chat messages with `weight`). `eos` says whether the tokenizer's end-of-sequence
 * token follows the last segment (completion-kind, weight 1).
 */
import { DataFormat, DataRecord } from './records'

export type SegmentKind = 'prompt' | 'completion'

export interface Segment {
  text: string
  kind: SegmentKind
  /** Overrides the kind's weight for this segment's tokens (from a chat message's `weight`). */
  weight?: number
}

export interface Rendered {
  segments: Segment[]
  /** Append the tokenizer's eos after the last segment. */
  eos: boolean
}

/** A string that structures a format; finding it inside the data is warned about. */
export interface Marker {
  text: string
  /** What it is, for the warning: `separator`, `stop sequence`, `section header`, `chat marker`. */
  what: string
}

export interface Template {
  /** `alpaca`, `phi3`, `chatml`, `completion`, `custom`, `chat_template`. */
  readonly name: string
  /** Renders one record. Throws TemplateError when the record's format does not fit the template. */
  render(record: DataRecord): Rendered
  readonly markers: readonly Marker[]
  /** Strings that end a completion at generation time, besides the eos token. */
  readonly stop: readonly string[]
  /** The record formats it renders. */
  readonly formats: readonly DataFormat[]
}

/**
 * The text a model is given to generate a record's (last) completion: every segment before
 * the last completion segment.
 */
export function generationPrompt(template: Template, record: DataRecord): string {
  const { segments } = template.render(record)
  let last = segments.length - 1
  while (last >= 0 && segments[last].kind !== 'completion') last--
  return segments.slice(0, last >= 0 ? last : segments.length).map((s) => s.text).join('')
}

/** The whole rendered text of a record (without the eos token). */
export function renderText(template: Template, record: DataRecord): string {
  return template.render(record).segments.map((s) => s.text).join('')
}
