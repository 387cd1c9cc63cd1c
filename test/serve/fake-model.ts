/**
 * A stand-in for Model.generateStream with a fixed pace (one character-token every `msPerToken`),
 * for the server's queue, timeout, disconnect and limit tests: like a Model it refuses a second
 * generation while one runs, and it records what it was asked and how each one ended.
 */
import { StreamingModel } from '../../ts/serve/server'
import { GenerateOptions } from '../../ts/native'
import { StreamPiece, StreamResult, StreamTextOptions } from '../../ts/generate-stream'

type StreamOptions = GenerateOptions & StreamTextOptions

export interface FakeRun {
  prompt: number[]
  options: StreamOptions
  ended: StreamResult['stopReason'] | null
}

export class FakeModel implements StreamingModel {
  readonly runs: FakeRun[] = []
  private busy = false

  /** Answers with `text` (one token per character: its char code), cut at maxNewTokens. */
  constructor(readonly maxPositions: number, private readonly msPerToken: number, private readonly text = 'abcdefghijklmnopqrstuvwxyz') {}

  generateStream(prompt: ArrayLike<number>, options: StreamOptions = {}): AsyncIterable<StreamPiece> & { result: Promise<StreamResult> } {
    if (this.busy) throw new Error('FakeModel: a second generation while one runs (the server must queue)')
    this.busy = true
    const run: FakeRun = { prompt: Array.from(prompt), options, ended: null }
    this.runs.push(run)
    const pieces: StreamPiece[] = []
    const waiter: { wake: (() => void) | null } = { wake: null }
    let done = false
    const result = (async (): Promise<StreamResult> => {
      const tokens: number[] = []
      let text = ''
      let stopReason: StreamResult['stopReason'] = 'max_tokens'
      const max = Math.min(options.maxNewTokens ?? 32, this.text.length)
      for (let i = 0; i < max; i++) {
        await new Promise((r) => setTimeout(r, this.msPerToken))
        if (options.signal?.aborted) { stopReason = 'aborted'; break }
        tokens.push(this.text.charCodeAt(i))
        text += this.text[i]
        pieces.push({ token: tokens[i], text: this.text[i] })
        waiter.wake?.()
      }
      if (stopReason !== 'aborted' && tokens.length === this.text.length) stopReason = 'stop'
      run.ended = stopReason
      this.busy = false
      done = true
      waiter.wake?.()
      return { tokens, text, stopReason, reusedTokens: 0 }
    })()
    return {
      result,
      async *[Symbol.asyncIterator]() {
        while (true) {
          if (pieces.length > 0) { yield pieces.shift() as StreamPiece; continue }
          if (done) return
          await new Promise<void>((r) => { waiter.wake = r })
        }
      },
    }
  }
}
