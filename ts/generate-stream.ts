/**
 * Streaming generation: the tokens of one `generate` call as they are made, with their text
 * deltas, stop strings and cancellation. The engine computes off the event loop and hands
 * each new token to `onToken` (native/binding/model.cpp); this class turns those calls into
 * an async iterator.
 *
 * Text: `decode` is applied to all the tokens so far and the new part is handed out, except
 * - a trailing U+FFFD, which is a UTF-8 character whose bytes are not all here yet (held
 *   until a later token completes it; after 4 tokens, or at the end, it is what it is), and
 * - a tail that could be the start of a stop string (held until it cannot, or is one).
 * So the deltas concatenate to `result.text`, never split a character, and never show any
 * part of a stop string. Decoding everything each step costs O(n²) characters over n tokens
 * (a few ms at a thousand tokens), the price of being right for decoders that are not
 * concatenative (SentencePiece's leading-space rule).
 */

export type StreamStopReason = 'stop' | 'max_tokens' | 'length' | 'aborted'

export interface StreamPiece {
  /** The new token id. */
  token: number
  /** The text this token completes ('' while it is held back, or without `decode`). */
  text: string
}

export interface StreamResult {
  /** Every new token the engine made (a stop string's tokens included; a stop id not). */
  tokens: number[]
  /** The text up to the first stop string ('' without `decode`). */
  text: string
  stopReason: StreamStopReason
  /** Prompt tokens the KV cache held from the model's previous generation (Generation.reusedTokens). */
  reusedTokens: number
}

export interface StreamTextOptions {
  /** Ends generation soon after (the token in flight), with stopReason 'aborted'. */
  signal?: AbortSignal
  /** The tokenizer's decode: enables text deltas and stop strings. */
  decode?: (ids: number[]) => string
  /** Generation ends before the first occurrence of any of these (needs `decode`). */
  stopStrings?: string[]
}

/** Starts the engine's generation; `onToken` returns false to stop it at its next token. */
export type StartGeneration = (onToken: (index: number, token: number) => boolean) =>
  Promise<{ tokens: ArrayLike<number>; stopReason: string; reused: number }>

export class GenerationStream implements AsyncIterable<StreamPiece> {
  /** Settles when the engine is done and the model is free again (after an abort too). */
  readonly result: Promise<StreamResult>

  private readonly tokens: number[] = []
  private readonly held: number[] = [] // tokens whose piece waits for their text to settle
  private readonly ready: StreamPiece[] = []
  private text = ''
  private emitted = 0 // characters of `text` handed out
  private ended = false
  private stoppedAt: number | null = null // where the stop string begins in `text`
  private aborted = false
  private failure: unknown = null
  private wake: (() => void) | null = null
  private readonly stopStrings: string[]

  constructor(start: StartGeneration, private readonly options: StreamTextOptions = {}) {
    this.stopStrings = (options.stopStrings ?? []).filter((s) => s.length > 0)
    if (this.stopStrings.length > 0 && !options.decode) throw new TypeError('generateStream: stopStrings need a decode function')
    const { signal } = options
    const onAbort = () => { this.aborted = true; this.notify() }
    if (signal?.aborted) this.aborted = true
    else signal?.addEventListener('abort', onAbort, { once: true })
    const onToken = (index: number, token: number) => {
      if (index === this.tokens.length && !this.finished()) this.accept(token)
      return !this.finished()
    }
    this.result = (this.aborted ? Promise.resolve({ tokens: [], stopReason: 'cancelled', reused: 0 }) : start(onToken)).then((r) => {
      // The result is the whole truth: calls still queued behind it add nothing new.
      for (let i = this.tokens.length; i < r.tokens.length && !this.finished(); i++) this.accept(r.tokens[i])
      return this.finish(Array.from(r.tokens), r.stopReason, r.reused)
    }, (err: unknown) => {
      this.failure = err
      this.ended = true
      this.notify()
      throw err
    }).finally(() => signal?.removeEventListener('abort', onAbort))
    this.result.catch(() => {}) // the iterator reports the failure; an unobserved result must not crash the process
  }

  async *[Symbol.asyncIterator](): AsyncIterator<StreamPiece> {
    try {
      while (true) {
        if (this.ready.length > 0) { yield this.ready.shift()!; continue }
        if (this.failure !== null) throw this.failure
        if (this.ended || this.aborted) return
        await new Promise<void>((resolve) => { this.wake = resolve })
      }
    } finally {
      // A consumer that stops early (break, return, throw) cancels the rest.
      if (!this.ended) { this.aborted = true; this.notify() }
    }
  }

  /** Stops generation at the next token (as an abort signal would). */
  cancel(): void {
    this.aborted = true
    this.notify()
  }

  private finished(): boolean {
    return this.aborted || this.stoppedAt !== null
  }

  private accept(token: number): void {
    this.tokens.push(token)
    this.held.push(token)
    const { decode } = this.options
    if (!decode) { this.release(0); return }
    this.text = decode(this.tokens)
    const stop = this.findStop()
    if (stop !== null) {
      this.stoppedAt = stop
      this.release(stop)
      return
    }
    // A token is handed out once all of its text is settled: holding is rare and short
    // (one character, or a stop string's first few), and no piece ever lacks its token.
    // A character is at most 4 UTF-8 bytes and a token at least one: a U+FFFD still there
    // after 4 held tokens is invalid text, not an unfinished character.
    let safe = this.text.length
    if (safe > this.emitted && this.text.charCodeAt(safe - 1) === 0xfffd && this.held.length < 4) return
    safe -= this.stopPrefixLength(safe)
    if (safe === this.text.length) this.release(safe)
  }

  /** Hands out every held token, the last one carrying the text up to `end`. */
  private release(end: number): void {
    const delta = end > this.emitted ? this.text.slice(this.emitted, end) : ''
    for (let i = 0; i < this.held.length; i++) {
      this.ready.push({ token: this.held[i], text: i === this.held.length - 1 ? delta : '' })
    }
    this.held.length = 0
    this.emitted = Math.max(this.emitted, end)
    this.notify()
  }

  /**
   * The first stop string's start in `text`. Text already handed out held no stop and no
   * stop's beginning, so the search starts there.
   */
  private findStop(): number | null {
    let best: number | null = null
    for (const s of this.stopStrings) {
      const at = this.text.indexOf(s, this.emitted)
      if (at >= 0 && (best === null || at < best)) best = at
    }
    return best
  }

  /** How many characters before `end` could begin a stop string. */
  private stopPrefixLength(end: number): number {
    let longest = 0
    for (const s of this.stopStrings) {
      for (let k = Math.min(s.length - 1, end - this.emitted); k > longest; k--) {
        if (this.text.startsWith(s.slice(0, k), end - k)) { longest = k; break }
      }
    }
    return longest
  }

  private finish(tokens: number[], engineReason: string, reusedTokens: number): StreamResult {
    let stopReason: StreamStopReason
    if (this.stoppedAt !== null) stopReason = 'stop'
    else if (this.aborted) stopReason = 'aborted'
    else stopReason = engineReason as StreamStopReason
    const end = this.stoppedAt ?? this.text.length
    // At the end held text is final: a lone U+FFFD is one, a stop's beginning was not a stop.
    if (!this.aborted && this.held.length > 0) this.release(end)
    this.ended = true
    this.notify()
    return { tokens, text: this.text.slice(0, this.aborted ? this.emitted : end), stopReason, reusedTokens }
  }

  private notify(): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }
}
