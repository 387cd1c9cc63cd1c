/**
 * Multiple-choice benchmarks with few-shot contexts, as the PLW study scored its models with
 * lm-evaluation-harness (docs/eval.md "Benchmarks and forgetting"; docs/plw-study.md): `plwtune
 * eval --benchmarks` and the sweep's per-run scores.
 *
 * Few-shot rule. Record i of a benchmark with K shots is scored with K other records of the same
 * benchmark, solved, in front of each of its contexts:
 *
 *   solved(e_1) + "\n\n" + … + solved(e_K) + "\n\n" + context
 *
 * where solved(e) = e.contexts[e.answer] + e.continuations[e.answer] (the question and its right
 * answer for ARC/PIQA; the sentence with the right option filled in for WinoGrande's partial
 * scoring, whose contexts differ per choice). This is lm-eval's fewshot_context with its default
 * fewshot_delimiter "\n\n"; its target_delimiter " " is already the leading space of a choice (or of
 * WinoGrande's continuation) in our records (docs/eval.md's mappings). The K records are drawn
 * without replacement from the benchmark's records other than i, by a generator seeded with
 * hash(seed, benchmark name, i): a pure function of those, so every run, resume and the
 * --baseline model see the same examples. A benchmark with ≤ K other records uses all of them.
 * acc_norm's lengths stay those of the record's own choices (lm-eval divides by len(choice),
 * never by the few-shot text).
 */
import { ChoiceRecord, readChoiceDataset } from '../data/choices'
import { hashSeed, Rng } from '../data/rng'
import { Tokenizer } from '../data/tokenizer'
import { UsageError } from '../commands/flags'
import { Model } from '../model'
import { ChoiceRequest, choiceRequests, scoreChoices } from './choices'

/** The study's shots (its Table 2; docs/plw-study.md): ARC Challenge 25, PIQA 0, TruthfulQA MC1 0, WinoGrande 5. */
export const STUDY_SHOTS: Readonly<Record<string, number>> = Object.freeze({
  arc: 25, arc_challenge: 25, piqa: 0, truthfulqa_mc1: 0, winogrande: 5,
})

/** lm-eval's default fewshot_delimiter: between the solved examples and before the scored context. */
export const FEWSHOT_DELIMITER = '\n\n'

/** The few-shot seed when none is given: lm-eval's default fewshot random seed. */
export const DEFAULT_FEWSHOT_SEED = 1234

export interface BenchmarkSpec { name: string; file: string; shots: number }

const NAME = /^[A-Za-z0-9_.-]+$/u

/** "NAME=VALUE,…" as [name, value] pairs (split at the first "="), with the flag named in errors. */
function pairs(flag: string, text: string, what: string): Array<[string, string]> {
  const items = text.split(',').map((s) => s.trim())
  if (text.trim() === '' || items.some((s) => s === '')) {
    throw new UsageError(`${flag}: expected NAME=${what}[,NAME=${what}…], received ${JSON.stringify(text)}`)
  }
  const seen = new Set<string>()
  return items.map((item) => {
    const eq = item.indexOf('=')
    if (eq < 0) throw new UsageError(`${flag}: ${JSON.stringify(item)} is not NAME=${what}`)
    const name = item.slice(0, eq).trim()
    const value = item.slice(eq + 1).trim()
    if (!NAME.test(name)) throw new UsageError(`${flag}: ${JSON.stringify(name)} is not a benchmark name (letters, digits, _ . -)`)
    if (value === '') throw new UsageError(`${flag}: ${name}= has no ${what}`)
    if (seen.has(name)) throw new UsageError(`${flag}: ${name} is given twice`)
    seen.add(name)
    return [name, value]
  })
}

/**
 * "--benchmarks arc=a.jsonl,piqa=p.jsonl" and "--shots arc=10" (defaults: STUDY_SHOTS[name] ?? 0).
 * Throws UsageError naming the flag.
 */
export function parseBenchmarkFlags(benchmarks: string, shots?: string): BenchmarkSpec[] {
  const specs = pairs('--benchmarks', benchmarks, 'FILE').map(([name, file]): BenchmarkSpec => ({ name, file, shots: STUDY_SHOTS[name] ?? 0 }))
  if (shots !== undefined) {
    for (const [name, k] of pairs('--shots', shots, 'K')) {
      const spec = specs.find((s) => s.name === name)
      if (spec === undefined) throw new UsageError(`--shots: ${name} is not among --benchmarks (${specs.map((s) => s.name).join(', ')})`)
      if (!/^\d+$/u.test(k)) throw new UsageError(`--shots: ${name}=${k}: expected an integer ≥ 0`)
      spec.shots = Number(k)
    }
  }
  return specs
}

export interface Benchmark extends BenchmarkSpec { records: ChoiceRecord[] }

/** Reads each benchmark's file (file:line errors from the reader: a DataError). */
export async function loadBenchmarks(specs: readonly BenchmarkSpec[]): Promise<Benchmark[]> {
  const out: Benchmark[] = []
  for (const s of specs) {
    const { records } = await readChoiceDataset(s.file)
    out.push({ ...s, records })
  }
  return out
}

/** FNV-1a over the UTF-16 code units of a name: a 32-bit integer for hashSeed. */
function nameHash(name: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0
  return h
}

/** hashSeed's stream for few-shot draws ("fews"), apart from the data layer's. */
const FEWSHOT_STREAM = 0x66657773

/**
 * The indices of the few-shot examples of record `i` of `n` (a benchmark named `name`): `k` of the
 * other n − 1 indices, drawn without replacement in the drawn order (all n − 1, shuffled, when
 * k ≥ n − 1), seeded by (seed, name, i).
 */
export function fewShotIndices(n: number, i: number, k: number, seed: number, name: string): number[] {
  const m = n - 1 // the others: position j stands for index j < i ? j : j + 1
  const take = Math.max(0, Math.min(k, m))
  if (take === 0) return []
  const rng = new Rng(hashSeed(seed, FEWSHOT_STREAM, nameHash(name), i))
  const swapped = new Map<number, number>() // a partial Fisher–Yates over positions 0..m-1, O(k)
  const out: number[] = []
  for (let t = 0; t < take; t++) {
    const j = t + rng.below(m - t)
    const picked = swapped.get(j) ?? j
    swapped.set(j, swapped.get(t) ?? t)
    out.push(picked < i ? picked : picked + 1)
  }
  return out
}

/** A record answered: its right context and continuation (lm-eval's doc_to_text + target_delimiter + doc_to_target). */
export function solvedText(r: ChoiceRecord): string {
  return r.contexts[r.answer] + r.continuations[r.answer]
}

/** Record `i` with its few-shot examples in front of every context (the module comment's rule). */
export function fewShotRecord(records: readonly ChoiceRecord[], i: number, k: number, seed: number, name: string): ChoiceRecord {
  const r = records[i]
  const shots = fewShotIndices(records.length, i, k, seed, name)
  if (shots.length === 0) return r
  const prefix = shots.map((j) => solvedText(records[j])).join(FEWSHOT_DELIMITER) + FEWSHOT_DELIMITER
  return { ...r, contexts: r.contexts.map((c) => prefix + c) }
}

/** A note when the benchmark has too few records for its shots, else null. */
export function fewShotShortfall(b: Benchmark): string | null {
  const others = b.records.length - 1
  if (b.shots <= others || b.shots === 0) return null
  return `benchmark ${b.name}: ${b.shots} shots asked, but it has ${b.records.length} record${b.records.length === 1 ? '' : 's'}: ` +
    `each record is scored with all ${others} other${others === 1 ? '' : 's'}`
}

/** A benchmark's records with their few-shot contexts and the model's requests for them. */
export interface PreparedBenchmark {
  benchmark: Benchmark
  /** The records as scored: few-shot examples in front of their contexts. */
  records: ChoiceRecord[]
  requests: ChoiceRequest[]
  /** The longest request's input: the model's maxSeqLen must be at least this. */
  longest: number
}

/** Few-shot contexts and tokenized requests for a model of `nPositions` (contexts cut from the left to fit, as choiceRequests does). */
export function prepareBenchmark(tokenizer: Tokenizer, b: Benchmark, nPositions: number, seed = DEFAULT_FEWSHOT_SEED): PreparedBenchmark {
  const records = b.records.map((_, i) => fewShotRecord(b.records, i, b.shots, seed, b.name))
  const requests = choiceRequests(tokenizer, records, nPositions)
  return { benchmark: b, records, requests, longest: requests.reduce((m, q) => Math.max(m, q.input.length), 1) }
}

export interface BenchmarkScore {
  name: string
  shots: number
  /** Records scored. */
  n: number
  acc: number
  /** Standard error of the mean (0 when n < 2). */
  acc_stderr: number
  acc_norm: number
  acc_norm_stderr: number
  /** Records with a choice whose context lost tokens to the model's positions. */
  truncated: number
}

export interface ScoreBenchmarkOptions {
  /** Few-shot seed (DEFAULT_FEWSHOT_SEED). */
  seed?: number
  /** Rows per forward pass (default and cap: the model's maxBatch). */
  maxBatch?: number
  onProgress?: (done: number, total: number) => void
  /** Stops scoring between batches (scoreChoices), throwing its reason. */
  signal?: AbortSignal
  /** Where fewShotShortfall's note goes (default: stderr). */
  warn?: (line: string) => void
}

/** Scores prepared requests (prepareBenchmark) on a model whose maxSeqLen covers `p.longest`. */
export async function scorePreparedBenchmark(model: Model, tokenizer: Tokenizer, p: PreparedBenchmark,
  o: Omit<ScoreBenchmarkOptions, 'seed'> = {}): Promise<BenchmarkScore> {
  const b = p.benchmark
  const note = fewShotShortfall(b)
  if (note !== null) (o.warn ?? ((line: string) => { process.stderr.write(line + '\n') }))(note)
  const info = model.info
  if (p.longest > info.maxSeqLen) {
    throw new Error(`benchmark ${b.name}: its longest request has ${p.longest} tokens, more than the model was loaded for (maxSeqLen ${info.maxSeqLen}); ` +
      'load it with maxSeqLen ≥ prepareBenchmark(…).longest')
  }
  const maxBatch = Math.max(1, Math.min(o.maxBatch ?? info.maxBatch, info.maxBatch))
  const r = await scoreChoices(model, p.records, p.requests, { maxBatch, padId: tokenizer.eosId, onProgress: o.onProgress, signal: o.signal })
  return {
    name: b.name, shots: b.shots, n: p.records.length, acc: r.acc ?? 0, acc_stderr: r.accStderr ?? 0,
    acc_norm: r.accNorm ?? 0, acc_norm_stderr: r.accNormStderr ?? 0, truncated: r.scores.filter((s) => s.truncated).length,
  }
}

/**
 * Few-shot contexts drawn (seeded) from the benchmark's other records, never the scored one;
 * batched scoring through scoreChoices (per-token losses from model.evaluate). Contexts are cut
 * from the left to the model's positions (counted in `truncated`); the model must have been
 * loaded with a maxSeqLen that holds the longest request (prepareBenchmark(…).longest, at most
 * its positions), else this throws.
 */
export async function scoreBenchmark(model: Model, tokenizer: Tokenizer, b: Benchmark,
  o: ScoreBenchmarkOptions = {}): Promise<BenchmarkScore> {
  return scorePreparedBenchmark(model, tokenizer, prepareBenchmark(tokenizer, b, model.maxPositions, o.seed ?? DEFAULT_FEWSHOT_SEED), o)
}
