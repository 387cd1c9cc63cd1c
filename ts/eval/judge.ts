/**
 * The LLM judge of `plwtune eval --judge URL --judge-model NAME` (docs/eval.md, "An LLM judge"):
 * each response is sent, with its instruction, input and reference answer, to an
 * OpenAI-compatible chat endpoint under the fixed JUDGE_PROMPT (judge-prompt.ts), at most
 * `concurrency` requests at a time, retried as judge-client.ts says; the reply's score (0–100)
 * is parsed or counted as unparsed, never guessed.
 *
 * Each verdict is stored in its responses line as `judge`:
 *   {"model": NAME, "prompt": JUDGE_PROMPT_HASH, "score": 85, "reply": "Score: 85"}
 *   {"model": NAME, "prompt": HASH, "score": null, "reply": "…"}          (unparsed)
 *   {"model": NAME, "prompt": HASH, "score": null, "error": "HTTP 400 …"} (failed)
 * With --out, the file is rewritten (atomically, at most once a second, and at the end) while
 * the judge answers, and a rerun reads it back: a line whose instruction, input, expected
 * answer and response are the ones generated now, judged by the same model name under the same
 * prompt hash, keeps its score or unparsed reply; only failed and missing verdicts are asked for.
 */
import * as fs from 'node:fs'
import { replaceFile } from '../atomic-write'
import { Progress } from '../train/progress'
import { meanStderr } from './match'
import { chatCompletion, chatCompletionsUrl, JudgeClientOptions, JudgeRequestError } from './judge-client'
import { JUDGE_PROMPT_HASH, JudgeItem, parseScore, renderJudgePrompt } from './judge-prompt'

export { JUDGE_PROMPT, JUDGE_PROMPT_HASH, parseScore, renderJudgePrompt } from './judge-prompt'
export type { JudgeItem } from './judge-prompt'

/** One record's verdict, as stored in its responses line under `judge`. */
export interface JudgeVerdict {
  /** The judge's model name. */
  model: string
  /** JUDGE_PROMPT_HASH when it was given. */
  prompt: string
  /** 0–100, or null: unparsed (`reply` holds what was said) or failed (`error` says why). */
  score: number | null
  /** The judge's reply (absent when the request failed). */
  reply?: string
  /** Why no reply came (absent when one did). */
  error?: string
}

/** The judge's numbers: the mean over parsed scores and its standard error, and what was not scored. */
export interface JudgeSummary {
  model: string
  prompt: string
  /** Records judged. */
  records: number
  /** Replies with a score. */
  scored: number
  /** Mean score (0–100) over `scored`; null when none. */
  mean: number | null
  /** Sample standard deviation (n − 1) over √n, as exact match's; null below 2 scores. */
  stderr: number | null
  /** Replies without a readable score. */
  unparsed: number
  /** Requests that got no reply after their retries. */
  failed: number
  /** Verdicts taken from the responses file of an earlier run. */
  cached: number
}

/** Judge settings from eval's flags. */
export interface JudgeSettings {
  url: string
  model: string
  apiKey?: string
  concurrency: number
}

/** A responses line as far as the judge reads and writes it. */
export type JudgedLine = JudgeItem & { judge?: JudgeVerdict }

/** The default of --judge-concurrency: requests in flight at once. */
export const JUDGE_CONCURRENCY = 4

/**
 * The judge settings from eval's flag values, or null without --judge. Errors are plain messages
 * for the caller to raise as usage errors; the key is read from the environment variable
 * --judge-key names and never appears in a message (nor does that flag's value: it may be a key
 * pasted by mistake).
 */
export function judgeSettingsOf(v: { judge?: unknown; 'judge-model'?: unknown; 'judge-key'?: unknown; 'judge-concurrency'?: unknown },
  env: NodeJS.ProcessEnv = process.env): { settings: JudgeSettings | null; error: string | null } {
  const url = v.judge as string | undefined
  if (url === undefined) {
    const stray = (['judge-model', 'judge-key', 'judge-concurrency'] as const).find((k) => v[k] !== undefined)
    return { settings: null, error: stray ? `--${stray} goes with --judge URL` : null }
  }
  const model = v['judge-model'] as string | undefined
  if (model === undefined || model.trim() === '') return { settings: null, error: '--judge needs --judge-model NAME (the model the judge server runs)' }
  try {
    chatCompletionsUrl(url)
  } catch (err) {
    return { settings: null, error: `--judge: ${(err as Error).message}` }
  }
  const concurrency = (v['judge-concurrency'] as number | undefined) ?? JUDGE_CONCURRENCY
  if (!Number.isInteger(concurrency) || concurrency < 1) return { settings: null, error: `--judge-concurrency: expected an integer ≥ 1, received ${concurrency}` }
  const keyVar = v['judge-key'] as string | undefined
  let apiKey: string | undefined
  if (keyVar !== undefined) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(keyVar)) {
      return { settings: null, error: '--judge-key takes the NAME of an environment variable that holds the key (e.g. --judge-key OPENAI_API_KEY), not the key itself' }
    }
    apiKey = env[keyVar]
    if (apiKey === undefined || apiKey === '') return { settings: null, error: '--judge-key: the environment variable it names is not set, or empty' }
  }
  return { settings: { url, model, apiKey, concurrency }, error: null }
}

/** The key that ties a cached verdict to a record: the judge, the prompt, and the four texts it saw. */
function cacheKey(model: string, prompt: string, item: JudgeItem): string {
  return JSON.stringify([model, prompt, item.instruction, item.input, item.expected, item.response])
}

/** Whether a verdict can be reused: a score, or an unparsed reply (failures are asked again). */
function reusable(j: unknown): j is JudgeVerdict {
  if (typeof j !== 'object' || j === null) return false
  const v = j as Partial<JudgeVerdict>
  if (typeof v.model !== 'string' || typeof v.prompt !== 'string' || v.error !== undefined) return false
  return (typeof v.score === 'number' && Number.isFinite(v.score)) || (v.score === null && typeof v.reply === 'string')
}

/**
 * The reusable verdicts of an earlier responses file (missing file: none), keyed by judge,
 * prompt hash and texts. Lines that are not JSON are skipped (a file cut short by a crash).
 */
export function readJudgeCache(file: string): Map<string, JudgeVerdict> {
  const cache = new Map<string, JudgeVerdict>()
  let text: string
  try {
    text = fs.readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return cache
    throw err
  }
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue
    let j: Partial<JudgedLine>
    try {
      j = JSON.parse(line) as Partial<JudgedLine>
    } catch {
      continue
    }
    if (!reusable(j.judge) || typeof j.instruction !== 'string' || typeof j.input !== 'string' || typeof j.expected !== 'string' ||
      typeof j.response !== 'string') continue
    cache.set(cacheKey(j.judge.model, j.judge.prompt, j as JudgeItem), j.judge)
  }
  return cache
}

/** The summary of a set of verdicts. */
export function summarize(settings: { model: string }, verdicts: readonly JudgeVerdict[], cached: number): JudgeSummary {
  const scores = verdicts.filter((v) => v.score !== null).map((v) => v.score as number)
  return {
    model: settings.model, prompt: JUDGE_PROMPT_HASH, records: verdicts.length, scored: scores.length,
    mean: scores.length > 0 ? scores.reduce((s, x) => s + x, 0) / scores.length : null, stderr: meanStderr(scores),
    unparsed: verdicts.filter((v) => v.score === null && v.error === undefined).length,
    failed: verdicts.filter((v) => v.error !== undefined).length, cached,
  }
}

/** A run stopped by a fatal reply (401, 403, 404): what was judged before it is kept. */
export class JudgeStopped extends Error {
  constructor(message: string, readonly summary: JudgeSummary) {
    super(message)
    this.name = 'JudgeStopped'
  }
}

/**
 * Judges `lines` (setting each one's `judge`), reusing `cache`, with at most
 * `settings.concurrency` requests at a time; `onVerdict` runs after each new verdict (in
 * completion order). A fatal reply (JudgeRequestError.fatal) stops new requests; the ones in
 * flight finish, then JudgeStopped is thrown (lines judged so far keep their verdicts).
 */
export async function judgeLines(lines: JudgedLine[], settings: JudgeSettings, o: {
  cache?: Map<string, JudgeVerdict>
  client?: Partial<JudgeClientOptions>
  /** Runs once the cache is applied: verdicts reused, requests to make. */
  onStart?: (cached: number, toAsk: number) => void
  onVerdict?: (index: number, verdict: JudgeVerdict, done: number) => void
  signal?: AbortSignal
} = {}): Promise<JudgeSummary> {
  let cached = 0
  const todo: number[] = []
  for (let i = 0; i < lines.length; i++) {
    const hit = o.cache?.get(cacheKey(settings.model, JUDGE_PROMPT_HASH, lines[i]))
    if (hit !== undefined) { lines[i].judge = hit; cached++ } else { delete lines[i].judge; todo.push(i) }
  }
  o.onStart?.(cached, todo.length)
  const client: JudgeClientOptions = { ...o.client, url: settings.url, model: settings.model, apiKey: settings.apiKey, signal: o.signal }
  let next = 0
  let done = cached
  let fatal = null as JudgeRequestError | null // set by the workers
  const worker = async () => {
    while (fatal === null && next < todo.length) {
      const i = todo[next++]
      let verdict: JudgeVerdict
      try {
        const reply = await chatCompletion(client, renderJudgePrompt(lines[i]))
        verdict = { model: settings.model, prompt: JUDGE_PROMPT_HASH, score: parseScore(reply.content), reply: reply.content }
      } catch (err) {
        if (!(err instanceof JudgeRequestError)) throw err
        if (err.fatal) { fatal ??= err; continue }
        verdict = { model: settings.model, prompt: JUDGE_PROMPT_HASH, score: null, error: err.message }
      }
      lines[i].judge = verdict
      done++
      o.onVerdict?.(i, verdict, done)
    }
  }
  await Promise.all(Array.from({ length: Math.min(settings.concurrency, todo.length) }, worker))
  const verdicts = lines.map((l) => l.judge).filter((j): j is JudgeVerdict => j !== undefined)
  const summary = summarize(settings, verdicts, cached)
  if (fatal !== null) throw new JudgeStopped(fatal.message, summary)
  return summary
}

/**
 * eval's judge step: the cache from `out` (when given), judging with a progress bar on `err`,
 * and `out` rewritten while verdicts come in (at most once a second) and at the end. A fatal
 * reply still leaves `out` holding what was judged, and its error says so.
 */
export async function judgeResponses(lines: JudgedLine[], settings: JudgeSettings, o: {
  out?: string
  err: NodeJS.WritableStream
  client?: Partial<JudgeClientOptions>
  signal?: AbortSignal
  /** Save interval in ms [1000]. */
  saveEveryMs?: number
}): Promise<JudgeSummary> {
  const cache = o.out !== undefined ? readJudgeCache(o.out) : new Map<string, JudgeVerdict>()
  if (o.out === undefined) o.err.write('judge: the scores are not kept (no --out FILE), so a rerun asks the judge again\n')
  const save = () => { if (o.out !== undefined) replaceFile(o.out, lines.map((l) => JSON.stringify(l) + '\n').join('')) }
  let progress = null as Progress | null // made once the note on reused verdicts is written
  let lastSave = Date.now()
  let scored = 0, sum = 0, unscored = 0
  const counts = () => ({ mean: scored > 0 ? (sum / scored).toFixed(1) : '—', unscored })
  try {
    const summary = await judgeLines(lines, settings, {
      cache, client: o.client, signal: o.signal,
      onStart: (cached, toAsk) => {
        for (const l of lines) if (l.judge !== undefined) { if (l.judge.score !== null) { scored++; sum += l.judge.score } else unscored++ }
        if (cached > 0) o.err.write(`judge: ${cached} of ${lines.length} verdicts reused from ${o.out}; asking for ${toAsk}\n`)
        progress = new Progress({ total: lines.length, stream: o.err, label: 'judge' })
        progress.update(cached, counts())
      },
      onVerdict: (_i, v, done) => {
        if (v.score !== null) { scored++; sum += v.score } else unscored++
        progress?.update(done, counts())
        if (Date.now() - lastSave >= (o.saveEveryMs ?? 1000)) { save(); lastSave = Date.now() }
      },
    })
    return summary
  } catch (err) {
    if (err instanceof JudgeStopped) {
      throw new Error(`judge stopped: ${err.message}` +
        (o.out !== undefined ? `; the ${err.summary.records} verdicts so far are kept in ${o.out}: rerun to continue` : ''), { cause: err })
    }
    throw err
  } finally {
    progress?.finish()
    save()
  }
}
