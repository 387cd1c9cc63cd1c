/**
 * The server's one line in front of the model: a Model runs one computation at a time (a second
 * concurrent call is an error), so requests take turns, first come first served. At most
 * `maxWaiting` wait behind the one that runs; one more is refused (QueueFullError → 429) rather
 * than left to wait without bound. A waiting job whose signal aborts (its client left, its
 * timeout passed, the server is closing) leaves the line without ever running.
 */

export class QueueFullError extends Error {
  constructor(readonly waiting: number) {
    super(`the server is busy: ${waiting} requests are already waiting for the model; retry later`)
    this.name = 'QueueFullError'
  }
}

/** A job aborted before its turn; `reason` is the signal's. */
export class LeftQueueError extends Error {
  constructor(readonly reason: unknown) {
    super('the request was aborted while it waited for the model')
    this.name = 'LeftQueueError'
  }
}

interface Waiting {
  start: () => void
  leave: (reason: unknown) => void
  signal?: AbortSignal
}

export class ModelQueue {
  private running = false
  private readonly line: Waiting[] = []

  constructor(readonly maxWaiting: number) {
    if (!(Number.isInteger(maxWaiting) && maxWaiting >= 0)) throw new RangeError(`maxWaiting: expected an integer ≥ 0, received ${maxWaiting}`)
  }

  /** Jobs waiting for their turn (not counting the running one). */
  get waiting(): number {
    return this.line.length
  }

  get busy(): boolean {
    return this.running
  }

  /**
   * Runs `job` when its turn comes: at once when the model is free, else after every job queued
   * before it. Throws QueueFullError at once when `maxWaiting` jobs already wait, LeftQueueError
   * when `signal` aborts before the turn.
   */
  async run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (signal?.aborted) throw new LeftQueueError(signal.reason)
    if (this.running) {
      if (this.line.length >= this.maxWaiting) throw new QueueFullError(this.line.length)
      await new Promise<void>((resolve, reject) => {
        const entry: Waiting = {
          start: () => { signal?.removeEventListener('abort', onAbort); resolve() },
          leave: (reason) => reject(new LeftQueueError(reason)),
          signal,
        }
        const onAbort = (): void => {
          const i = this.line.indexOf(entry)
          if (i >= 0) this.line.splice(i, 1)
          entry.leave(signal?.reason)
        }
        signal?.addEventListener('abort', onAbort, { once: true })
        this.line.push(entry)
      })
    }
    this.running = true
    try {
      return await job()
    } finally {
      const next = this.line.shift()
      if (next !== undefined) next.start() // `running` stays true: the turn passes on
      else this.running = false
    }
  }

  /** Resolves once nothing runs and nothing waits. */
  async idle(): Promise<void> {
    while (this.running || this.line.length > 0) await new Promise((r) => setTimeout(r, 5))
  }
}
