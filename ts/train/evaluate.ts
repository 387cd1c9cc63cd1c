/**
 * Evaluation during and after training: the loss on a split (weighted, completion-only and
 * prompt-only, whatever λ is), and answers generated for records, scored by exact match.
 */
import { BatchLoader } from '../data/loader'
import { EncodedExample } from '../data/example'
import { DataRecord } from '../data/records'
import { Template } from '../data/template'
import { Tokenizer } from '../data/tokenizer'
import { GPT2Model } from '../model'

export interface SplitLoss {
  /** Σ w·CE / Σ w with the run's λ. */
  loss: number | null
  /** Mean CE over completion targets (eos included): what runs with different λ are compared on. */
  completionLoss: number | null
  /** Mean CE over prompt targets, measured even when λ = 0. */
  promptLoss: number | null
  tokens: number
}

export interface LossOptions {
  promptLossWeight: number
  microBatchSize: number
  padId: number
  packing: boolean
  maxLength: number
}

export async function evaluateLoss(model: GPT2Model, examples: readonly EncodedExample[], o: LossOptions): Promise<SplitLoss> {
  if (examples.length === 0) return { loss: null, completionLoss: null, promptLoss: null, tokens: 0 }
  const loader = new BatchLoader(examples, {
    batchSize: o.microBatchSize, microBatchSize: o.microBatchSize, promptLossWeight: o.promptLossWeight,
    shuffle: false, padId: o.padId, packing: o.packing, maxLength: o.maxLength,
  })
  let lossSum = 0, weightSum = 0, cSum = 0, cCount = 0, pSum = 0, pCount = 0, tokens = 0
  for (const step of loader.steps({ epoch: 0, step: 0 }, 1)) {
    for (const b of step.microBatches) {
      const r = await model.evaluate(b)
      lossSum += r.lossSum
      weightSum += r.weightSum
      cSum += r.completionLossSum
      cCount += r.completionCount
      pSum += r.promptLossSum
      pCount += r.promptCount
    }
    tokens += step.tokens
  }
  return {
    loss: weightSum > 0 ? lossSum / weightSum : null,
    completionLoss: cCount > 0 ? cSum / cCount : null,
    promptLoss: pCount > 0 ? pSum / pCount : null,
    tokens,
  }
}

export interface Answer {
  /** The prompt as the model saw it (template applied). */
  prompt: string
  expected: string
  response: string
  correct: boolean
  stopReason: string
}

/** The ids of a record's generation prompt: its segments before the last completion, each tokenized alone (as in training). */
export function promptIds(template: Template, tokenizer: Tokenizer, record: DataRecord): { ids: number[]; text: string; expected: string } {
  const { segments } = template.render(record)
  let last = segments.length - 1
  while (last >= 0 && segments[last].kind !== 'completion') last--
  if (last < 0) throw new Error('the record renders no completion to generate')
  const before = segments.slice(0, last)
  return { ids: before.flatMap((s) => tokenizer.encode(s.text)), text: before.map((s) => s.text).join(''), expected: segments[last].text }
}

/** Cuts a generated text at the first stop string. */
export function cutAtStop(text: string, stops: readonly string[]): string {
  let end = text.length
  for (const s of stops) {
    const i = s === '' ? -1 : text.indexOf(s)
    if (i >= 0 && i < end) end = i
  }
  return text.slice(0, end)
}

/** Greedy answers for records, scored by exact match of the trimmed texts. */
export async function generateAnswers(model: GPT2Model, tokenizer: Tokenizer, template: Template, records: readonly DataRecord[],
  options: { maxNewTokens: number; onProgress?: (done: number) => void }): Promise<{ answers: Answer[]; accuracy: number | null }> {
  const answers: Answer[] = []
  const room = model.config.nPositions
  for (const record of records) {
    const p = promptIds(template, tokenizer, record)
    if (p.ids.length === 0 || p.ids.length >= room) continue // nothing to condition on, or no room to answer
    const g = await model.generate(p.ids, { maxNewTokens: Math.min(options.maxNewTokens, room - p.ids.length), stopIds: [tokenizer.eosId] })
    const response = cutAtStop(tokenizer.decode(g.tokens), template.stop)
    answers.push({ prompt: p.text, expected: p.expected, response, correct: response.trim() === p.expected.trim(), stopReason: g.stopReason })
    options.onProgress?.(answers.length)
  }
  const correct = answers.filter((a) => a.correct).length
  return { answers, accuracy: answers.length > 0 ? correct / answers.length : null }
}
