/**
 * The study's AlpacaDataShort construction (Huerta-Enochian, "Instruction Fine-Tuning: Does
 * Prompt Loss Matter?"): every Alpaca record whose completion is longer than its prompt
 * becomes an instruction-prediction task, which turns a long-completion dataset into a
 * short-completion one with the same texts. See docs/plw-study.md.
 *
 * - "Longer" is in tokens of the given tokenizer, raw fields, prompt = instruction + input,
 *   counted as datasetStats counts them (recordTokenCounts): output > instruction + input.
 * - No input: instruction = SWAP_INSTRUCTION, input = the old output, output = the old instruction.
 *   With input: instruction = SWAP_INSTRUCTION_WITH_CONTEXT + the old input, same swap.
 * - Records keep their order; the others pass unchanged.
 * - Idempotent: a swapped record's prompt holds the old output plus a fixed instruction, so it
 *   is longer than its new completion (the old instruction) and is never swapped back.
 */
import { AlpacaRecord } from './records'
import { recordTokenCounts } from './stats'
import { Tokenizer } from './tokenizer'

export const SWAP_INSTRUCTION = 'Predict the prompt that generated the following AI output.'
export const SWAP_INSTRUCTION_WITH_CONTEXT = 'Predict the prompt that generated the below AI output given the following context. Context: '

/** Whether the record's output has more tokens than its instruction and input together. */
export function completionLongerThanPrompt(record: AlpacaRecord, tokenizer: Tokenizer): boolean {
  const c = recordTokenCounts(record, tokenizer)
  return c.completion > c.instruction + c.input
}

/** The instruction-prediction task of a record (unconditionally; see swapLongCompletions). */
export function swapRecord(record: AlpacaRecord): AlpacaRecord {
  const instruction = record.input !== '' ? SWAP_INSTRUCTION_WITH_CONTEXT + record.input : SWAP_INSTRUCTION
  return { format: 'alpaca', instruction, input: record.output, output: record.instruction, source: record.source }
}

/**
 * The AlpacaDataShort transform of a dataset: records whose completion is longer than their
 * prompt swapped, the others as they were, in order. `swapped[i]` says which.
 */
export function swapLongCompletions(records: readonly AlpacaRecord[], tokenizer: Tokenizer):
  { records: AlpacaRecord[]; swapped: boolean[] } {
  const swapped = records.map((r) => completionLongerThanPrompt(r, tokenizer))
  return { records: records.map((r, i) => (swapped[i] ? swapRecord(r) : r)), swapped }
}
