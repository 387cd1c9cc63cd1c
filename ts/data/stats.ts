/**
 * Length statistics of an instruction dataset under a tokenizer, and the prompt-loss-weight
 * advice that follows from them: the study's Table 1 (Huerta-Enochian, "Instruction
 * Fine-Tuning: Does Prompt Loss Matter?") computed for the user's own data. See docs/plw-study.md.
 *
 * Decisions a reader would otherwise rediscover:
 * - Token counts are of the raw fields, each encoded on its own: no template text, no eos.
 *   "Prompt" means instruction + input, as in the study, so
 *   ratio = mean completion / (mean instruction + mean input).
 * - Formats map onto (instruction, input, completion) as: alpaca → its three fields;
 *   prompt-completion → (prompt, 0, completion); chat → (every system and user message's
 *   content, 0, every assistant message's content), summed over the messages (every
 *   assistant turn is completion when training, docs/data.md).
 * - The standard deviation is the sample one (n − 1 in the denominator, pandas' default);
 *   a single record has no spread and reports 0 (pandas would give NaN), so the numbers stay numbers.
 * - Verdict: short-completion when the ratio is below 1 (completions shorter than prompts),
 *   the regime where the study found λ to matter (small non-zero λ beat 0 and 1, best ≈ 0.1);
 *   long-completion otherwise, where it found no effect of λ, and the advice is 0.
 *   A dataset with no prompt tokens at all has no ratio (null) and counts as long-completion.
 */
import { DataRecord } from './records'
import { Tokenizer } from './tokenizer'

/** Ratios below this are short-completion (the completion is shorter than the prompt). */
export const SHORT_COMPLETION_RATIO = 1
/** λ for short-completion data: the study's best value there. */
export const SHORT_COMPLETION_PLW = 0.1
/** λ for long-completion data: prompt masking, the common default (the study saw no effect of λ there). */
export const LONG_COMPLETION_PLW = 0

export type LengthVerdict = 'short-completion' | 'long-completion'

/** Token counts of one record's raw fields. */
export interface RecordTokenCounts {
  instruction: number
  input: number
  completion: number
}

export interface FieldStats {
  /** Mean tokens per record. */
  mean: number
  /** Sample standard deviation (n − 1); 0 for a single record. */
  std: number
  /** Tokens of this field over all records. */
  total: number
}

export interface DatasetStats {
  records: number
  instruction: FieldStats
  input: FieldStats
  completion: FieldStats
  /** Instruction + input + completion tokens over all records (raw fields, no template, no eos). */
  totalTokens: number
  /** mean completion / (mean instruction + mean input); null when there are no prompt tokens. */
  completionPromptRatio: number | null
  verdict: LengthVerdict
  recommendedPlw: number
  /** Why this λ, in a sentence or two, citing the study. */
  reason: string
}

/** The (instruction, input, completion) token counts of a record; see the header for the mapping of formats. */
export function recordTokenCounts(record: DataRecord, tokenizer: Tokenizer): RecordTokenCounts {
  const n = (text: string): number => (text === '' ? 0 : tokenizer.encode(text).length)
  switch (record.format) {
    case 'alpaca':
      return { instruction: n(record.instruction), input: n(record.input), completion: n(record.output) }
    case 'prompt-completion':
      return { instruction: n(record.prompt), input: 0, completion: n(record.completion) }
    case 'chat': {
      let instruction = 0
      let completion = 0
      for (const m of record.messages) {
        if (m.role === 'assistant') completion += n(m.content)
        else instruction += n(m.content)
      }
      return { instruction, input: 0, completion }
    }
  }
}

/** Mean, sample standard deviation (n − 1) and sum of integer counts. Two passes, in double. */
export function fieldStats(xs: ArrayLike<number>): FieldStats {
  const n = xs.length
  if (n === 0) throw new RangeError('fieldStats: Expected at least one value but received none')
  let total = 0
  for (let i = 0; i < n; i++) total += xs[i]
  const mean = total / n
  let ss = 0
  for (let i = 0; i < n; i++) ss += (xs[i] - mean) ** 2
  return { mean, std: n > 1 ? Math.sqrt(ss / (n - 1)) : 0, total }
}

/**
 * Ratios within this factor of the threshold (0.5–2) get a note that the verdict is weak there
 * (our own choice, not the study's).
 */
export const BORDERLINE_FACTOR = 2

/** The verdict and the recommended λ for a completion/prompt ratio (null: no prompt tokens). */
export function plwAdvice(ratio: number | null): { verdict: LengthVerdict; recommendedPlw: number; reason: string } {
  const advice = plwAdviceCore(ratio)
  if (ratio !== null && ratio > SHORT_COMPLETION_RATIO / BORDERLINE_FACTOR && ratio < SHORT_COMPLETION_RATIO * BORDERLINE_FACTOR) {
    advice.reason += ' The ratio is close to 1 (within a factor of 2), so this verdict is weak: let a sweep over λ on your data decide.'
  }
  return advice
}

function plwAdviceCore(ratio: number | null): { verdict: LengthVerdict; recommendedPlw: number; reason: string } {
  if (ratio === null) {
    return { verdict: 'long-completion', recommendedPlw: LONG_COMPLETION_PLW,
      reason: 'the records have no prompt tokens, so the prompt loss weight changes nothing.' }
  }
  if (ratio < SHORT_COMPLETION_RATIO) {
    return { verdict: 'short-completion', recommendedPlw: SHORT_COMPLETION_PLW,
      reason: `completions are shorter than prompts (ratio ${ratio.toFixed(3)} < ${SHORT_COMPLETION_RATIO}). ` +
        'On short-completion data the study (Huerta-Enochian) found performance quadratic in λ: ' +
        'small non-zero values beat both masking (0) and full prompt loss (1) on multiple-choice and ' +
        'short-generation benchmarks, best near 0.1. Confirm on your data with a sweep.' }
  }
  return { verdict: 'long-completion', recommendedPlw: LONG_COMPLETION_PLW,
    reason: `completions are at least as long as prompts (ratio ${ratio.toFixed(3)} ≥ ${SHORT_COMPLETION_RATIO}). ` +
      'On such data the study (Huerta-Enochian) found no relationship between λ and performance, ' +
      'so prompt masking (0, the common default) is as good as any small λ.' }
}

/** Length statistics and λ advice of a dataset under a tokenizer. */
export function datasetStats(records: readonly DataRecord[], tokenizer: Tokenizer): DatasetStats {
  const n = records.length
  if (n === 0) throw new RangeError('datasetStats: Expected at least one record but received none')
  const instruction = new Float64Array(n)
  const input = new Float64Array(n)
  const completion = new Float64Array(n)
  records.forEach((r, i) => {
    const c = recordTokenCounts(r, tokenizer)
    instruction[i] = c.instruction
    input[i] = c.input
    completion[i] = c.completion
  })
  const s = { instruction: fieldStats(instruction), input: fieldStats(input), completion: fieldStats(completion) }
  const prompt = s.instruction.mean + s.input.mean
  const ratio = prompt > 0 ? s.completion.mean / prompt : null
  return {
    records: n, ...s, totalTokens: s.instruction.total + s.input.total + s.completion.total,
    completionPromptRatio: ratio, ...plwAdvice(ratio),
  }
}
