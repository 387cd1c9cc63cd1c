/**
 * Multiple-choice records, scored by log-likelihood (ts/eval/choices.ts scoreChoices) the way
 * lm-evaluation-harness scores its `multiple_choice` tasks. Two shapes (docs/eval.md maps
 * ARC, PIQA and WinoGrande onto them):
 *
 * - `{context, choices: [...], answer}`: one context, one continuation per choice (ARC, PIQA,
 *   HellaSwag). A choice carries its own separator, usually a leading space: context
 *   "Question: …\nAnswer:", choices [" Paris", " Rome"].
 * - `{contexts: [...], continuation, answer}`: one context per choice and one shared
 *   continuation (lm-eval's `multiple_inputs`, WinoGrande's partial scoring): the sentence up
 *   to the blank with each option filled in, then the rest of the sentence.
 *
 * `answer` is the 0-based index of the right choice. Other keys are ignored.
 *
 * acc_norm divides a choice's log-likelihood by a length. lm-eval computes it as
 * `float(len(i)) for i in choices` (lm_eval/api/task.py, process_results), where `choices`
 * are its doc_to_choice strings: Python's len, so Unicode code points, of the choice without
 * the target delimiter (" ") it puts in front when it builds the request; for multiple_inputs
 * tasks the choices are the contexts. So here the length is the code points of the choice
 * less one leading space (shape 1), or of the context (shape 2). EleutherAI's blog calls this
 * byte-length normalization; code points and bytes agree on ASCII text.
 */
import { DataError, Problem, Source, jsonType } from './errors'
import { JsonSink, readJsonValues } from './read'

export interface ChoiceRecord {
  shape: 'choices' | 'contexts'
  /** Per choice: the text conditioned on. */
  contexts: string[]
  /** Per choice: the text scored (its log-likelihood given the context). */
  continuations: string[]
  /** Per choice: what acc_norm divides the log-likelihood by (code points, as lm-eval's len()). */
  normLengths: number[]
  /** Index of the right choice. */
  answer: number
  source: Source
}

export interface ChoiceReadSummary {
  file: string
  records: number
  valid: number
  invalid: number
  problems: Problem[]
}

/** Whether a raw object looks like a multiple-choice record (either shape). */
export function isChoiceObject(raw: unknown): boolean {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return false
  const o = raw as Record<string, unknown>
  return ('choices' in o && 'context' in o) || ('contexts' in o && 'continuation' in o)
}

/** Python's len() of a str: code points. */
export function codePoints(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}

export function validateChoiceRecord(raw: unknown, source: Source):
  { record: ChoiceRecord; problems: null } | { record: null; problems: Problem[] } {
  const problems: Problem[] = []
  const bad = (field: string | null, message: string): void => { problems.push({ source, field, message }) }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    bad(null, `expected a JSON object {context, choices, answer}, received ${jsonType(raw)}`)
    return { record: null, problems }
  }
  const o = raw as Record<string, unknown>
  const shape: ChoiceRecord['shape'] = 'contexts' in o && !('choices' in o) ? 'contexts' : 'choices'
  const listField = shape === 'choices' ? 'choices' : 'contexts'
  const oneField = shape === 'choices' ? 'context' : 'continuation'
  const list = o[listField]
  let items: string[] = []
  if (!Array.isArray(list)) {
    bad(listField, list === undefined ? 'missing, expected an array of at least 2 strings' : `expected an array of strings, received ${jsonType(list)}`)
  } else {
    if (list.length < 2) bad(listField, `expected at least 2 entries, received ${list.length}`)
    list.forEach((c: unknown, i: number) => {
      if (typeof c !== 'string') bad(`${listField}[${i}]`, `expected a string, received ${jsonType(c)}`)
      else if (shape === 'choices' && c === '') bad(`${listField}[${i}]`, 'expected a non-empty string (an empty continuation has no likelihood)')
    })
    items = list.filter((c): c is string => typeof c === 'string')
  }
  const one = o[oneField]
  if (typeof one !== 'string') bad(oneField, one === undefined ? 'missing, expected a string' : `expected a string, received ${jsonType(one)}`)
  else if (shape === 'contexts' && one === '') bad(oneField, 'expected a non-empty string (an empty continuation has no likelihood)')
  const answer = o.answer
  const n = Array.isArray(list) ? list.length : 0
  if (typeof answer !== 'number' || !Number.isInteger(answer)) {
    bad('answer', answer === undefined ? 'missing, expected the index of the right choice' : `expected an integer index, received ${jsonType(answer)} ${JSON.stringify(answer)}`)
  } else if (n >= 2 && (answer < 0 || answer >= n)) {
    bad('answer', `expected an index in [0, ${n - 1}], received ${answer}`)
  }
  if (problems.length > 0) return { record: null, problems }
  const text = one as string
  const record: ChoiceRecord = shape === 'choices'
    ? { shape, contexts: items.map(() => text), continuations: items, normLengths: items.map((c) => codePoints(c.startsWith(' ') ? c.slice(1) : c)),
      answer: answer as number, source }
    : { shape, contexts: items, continuations: items.map(() => text), normLengths: items.map(codePoints), answer: answer as number, source }
  if (record.normLengths.some((l) => l === 0)) {
    return { record: null, problems: [{ source, field: listField, message: 'a choice has length 0 for acc_norm (a single space?)' }] }
  }
  return { record, problems: null }
}

class ChoiceCollector implements JsonSink {
  readonly records: ChoiceRecord[] = []
  readonly problems: Problem[] = []
  seen = 0
  invalid = 0

  constructor(readonly file: string) {}

  add(value: unknown, source: Source): void {
    this.seen++
    const r = validateChoiceRecord(value, source)
    if (r.record !== null) this.records.push(r.record)
    else { this.invalid++; this.problems.push(...r.problems) }
  }

  unparsable(source: Source, message: string): void {
    this.seen++
    this.invalid++
    this.problems.push({ source, field: null, message })
  }

  finish(skipInvalid: boolean): { records: ChoiceRecord[]; summary: ChoiceReadSummary } {
    const summary = { file: this.file, records: this.seen, valid: this.records.length, invalid: this.invalid, problems: this.problems }
    if (this.invalid > 0 && !skipInvalid) {
      throw new DataError(`${this.file}: ${this.invalid} invalid multiple-choice record${this.invalid === 1 ? '' : 's'} of ${this.seen}`,
        this.problems, this.problems.length, 'each needs {context, choices, answer} or {contexts, continuation, answer}')
    }
    if (this.records.length === 0) throw new DataError(`${this.file}: no multiple-choice records`, this.problems)
    return { records: this.records, summary }
  }
}

/** Reads a JSON or JSONL file of multiple-choice records; every bad one is reported with file, line and field. */
export async function readChoiceDataset(file: string, options: { skipInvalid?: boolean } = {}):
  Promise<{ records: ChoiceRecord[]; summary: ChoiceReadSummary }> {
  const c = new ChoiceCollector(file)
  await readJsonValues(file, c)
  return c.finish(options.skipInvalid ?? false)
}

/** Validates in-memory multiple-choice records (named `<name>[index]`). */
export function choiceRecordsFromObjects(items: unknown[], name = '<choices>'): ChoiceRecord[] {
  const c = new ChoiceCollector(name)
  items.forEach((item, index) => c.add(item, { file: name, index }))
  return c.finish(false).records
}

/** Whether a data file holds multiple-choice records: its first JSON value decides. */
export async function isChoiceFile(file: string): Promise<boolean> {
  const sink = {
    seen: 0, first: undefined as unknown, found: false,
    add(value: unknown): void { if (!this.found) { this.first = value; this.found = true } this.seen++ },
    unparsable(): void { this.seen++ },
  }
  await readJsonValues(file, sink)
  return sink.found && isChoiceObject(sink.first)
}
