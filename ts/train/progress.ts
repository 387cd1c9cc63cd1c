/**
 * A progress reporter for long runs.
 *
 * On a TTY: one line, redrawn in place ("\r" + text + clear-to-end), never wider than the
 * terminal (a wrapped line could not be redrawn):
 *
 *   train ███████░░░░░░░░░░░░░░░░░░░░░ 120/450  26% | loss 2.31 lr 3.0e-4 tok/s 1520 | elapsed 1m 05s eta 2m 58s
 *
 * `log()` clears the bar, prints its line, and draws the bar again below it. Redraws are
 * throttled to one per TTY_REDRAW_MS; the last state is always drawn by finish().
 *
 * Not a TTY (a log file, CI): plain lines, the first update at once, then at most one per
 * minIntervalMs, and a last one at finish(); no control characters.
 *
 * The ETA comes from a rate (steps/s) smoothed with a time constant of RATE_TAU_MS, so one
 * slow step (an eval, a checkpoint) moves it a little, a lasting change fully. The average
 * is bias-corrected (as Adam's moments are): early on it is the plain average rate, each
 * interval weighted by its duration, not whatever the first interval happened to be. The first
 * update is the baseline of the rate: a resumed run that starts at step 4000 is not credited
 * with 4000 steps in its first second. (Pass `initial` to start the clock at construction.)
 */

export interface ProgressOptions {
  /** Steps in the whole run (the bar's 100%). */
  total: number
  /** Default process.stderr. */
  stream?: NodeJS.WriteStream | NodeJS.WritableStream
  /** Default: the stream's own isTTY. */
  isTTY?: boolean
  /** Printed first on each line, e.g. "train". */
  label?: string
  /** Non-TTY: the least time between two lines. Default 10 000 ms. */
  minIntervalMs?: number
  /** The step already done at construction; the rate is measured from it and from now. */
  initial?: number
  /** Terminal width when the stream does not say (default 80). */
  columns?: number
  /** The clock, in ms (tests inject one). Default Date.now. */
  now?: () => number
}

/** TTY: the least time between two redraws. */
export const TTY_REDRAW_MS = 100
/** Time constant of the smoothed rate. */
export const RATE_TAU_MS = 20_000

const CLEAR_TO_END = '\x1b[K'

/** "45s", "1m 05s", "2h 03m", "3d 04h"; "?" for a negative or non-finite duration. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?'
  const s = Math.round(ms / 1000)
  if (s < 60) return `${s}s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`
  const h = Math.floor(m / 60)
  if (h < 24) return `${h}h ${String(m % 60).padStart(2, '0')}m`
  return `${Math.floor(h / 24)}d ${String(h % 24).padStart(2, '0')}h`
}

/**
 * A short number: integers as they are below 100 000 (1520), 3 significant digits otherwise
 * (2.31, 0.0123, 12.5), k/M/G/T from 100 000 (150k, 1.23M), and exponent notation below 0.01
 * (3.0e-4, as a learning rate is written).
 */
export function formatNumber(x: number, digits = 3): string {
  if (Number.isNaN(x)) return 'nan'
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf'
  if (x === 0) return '0'
  const a = Math.abs(x)
  if (a >= 1e5) {
    for (const [div, suffix] of [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']] as const) {
      if (a >= div * 0.9995) return `${Number((x / div).toPrecision(digits))}${suffix}`
    }
  }
  if (Number.isInteger(x) || a >= 100) return String(Math.round(x))
  if (a >= 0.01) return x.toPrecision(digits)
  return x.toExponential(Math.max(0, digits - 2)) // "3.0e-4": JavaScript writes no "+" or leading zeros
}

/** Control characters would garble the bar or a log file: one space each. */
function clean(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ')
}

export class Progress {
  readonly total: number
  readonly label: string
  readonly isTTY: boolean
  private readonly stream: NodeJS.WriteStream | NodeJS.WritableStream
  private readonly minIntervalMs: number
  private readonly columnsDefault: number
  private readonly now: () => number
  private readonly start: number

  private done = 0
  private fields: Record<string, string | number> = {}
  /** The last (time, done) that fed the rate; null until the first update sets the baseline. */
  private mark: { t: number; done: number } | null = null
  /** Time-weighted exponential average of the rate, and the weight it has gathered (bias correction). */
  private ema = 0
  private emaWeight = 0
  private lastDrawAt = -Infinity
  private lastPrintedDone = -1
  /** A bar is on the screen (TTY) that log() must clear first. */
  private barShown = false
  private finished = false

  constructor(options: ProgressOptions) {
    const { total } = options
    if (!(Number.isFinite(total) && total >= 0)) {
      throw new TypeError(`Progress: Expected a non-negative number for total but received ${total}`)
    }
    this.total = total
    this.stream = options.stream ?? process.stderr
    this.isTTY = options.isTTY ?? Boolean((this.stream as NodeJS.WriteStream).isTTY)
    this.label = clean(options.label ?? '')
    this.minIntervalMs = options.minIntervalMs ?? 10_000
    this.columnsDefault = options.columns ?? 80
    this.now = options.now ?? Date.now
    this.start = this.now()
    if (options.initial !== undefined) {
      this.done = options.initial
      this.mark = { t: this.start, done: options.initial }
    }
  }

  /** Steps per second, smoothed; null before two updates (or one after `initial`). */
  get rate(): number | null {
    return this.emaWeight > 0 ? this.ema / this.emaWeight : null
  }

  /** Milliseconds left at the smoothed rate; null while the rate is unknown. */
  etaMs(): number | null {
    if (this.done >= this.total) return 0
    const rate = this.rate
    if (rate === null || rate <= 0) return null
    return ((this.total - this.done) / rate) * 1000
  }

  /** Milliseconds since construction. */
  elapsedMs(): number {
    return this.now() - this.start
  }

  /** `done` steps of `total` are done; `fields` are shown after the count (numbers through formatNumber). */
  update(done: number, fields: Record<string, string | number> = {}): void {
    if (this.finished) return
    const t = this.now()
    this.fields = fields
    if (this.mark === null) {
      this.mark = { t, done }
    } else if (t > this.mark.t && done >= this.mark.done) {
      const dt = t - this.mark.t
      const instant = ((done - this.mark.done) / dt) * 1000
      // An exponential average in time, not in updates: irregular updates weigh by their duration.
      const alpha = 1 - Math.exp(-dt / RATE_TAU_MS)
      this.ema += alpha * (instant - this.ema)
      this.emaWeight += alpha * (1 - this.emaWeight)
      this.mark = { t, done }
    } else if (done < this.mark.done) {
      this.mark = { t, done } // went backwards (a new phase): start measuring again
      this.ema = 0
      this.emaWeight = 0
    }
    this.done = done
    if (this.isTTY) {
      if (t - this.lastDrawAt >= TTY_REDRAW_MS || done >= this.total) this.draw(t)
    } else if (this.lastPrintedDone < 0 || t - this.lastDrawAt >= this.minIntervalMs) {
      this.printLine(t)
    }
  }

  /** A line of its own: above the bar on a TTY, a plain line otherwise. */
  log(line: string): void {
    if (this.isTTY && this.barShown) {
      this.stream.write(`\r${CLEAR_TO_END}${line}\n`)
      this.barShown = false
      if (!this.finished) this.draw(this.now())
    } else {
      this.stream.write(`${line}\n`)
    }
  }

  /** The last state, then `summary` on a line of its own. Later calls do nothing. */
  finish(summary?: string): void {
    if (this.finished) return
    const t = this.now()
    if (this.isTTY) {
      if (this.mark !== null) this.draw(t)
      if (this.barShown) this.stream.write('\n')
      this.barShown = false
    } else if (this.mark !== null && (this.lastPrintedDone !== this.done || this.lastDrawAt < 0)) {
      this.printLine(t)
    }
    this.finished = true
    if (summary !== undefined) this.stream.write(`${summary}\n`)
  }

  // -------------------------------------------------------------------------------------
  // lines

  private columns(): number {
    const c = (this.stream as NodeJS.WriteStream).columns
    return typeof c === 'number' && c > 0 ? c : this.columnsDefault
  }

  private count(): string {
    const width = String(Math.round(this.total)).length
    const pct = this.total > 0 ? Math.floor((100 * Math.min(this.done, this.total)) / this.total) : 100
    return `${String(this.done).padStart(width)}/${this.total} ${String(pct).padStart(3)}%`
  }

  private fieldText(): string {
    return Object.entries(this.fields)
      .map(([k, v]) => `${clean(k)} ${typeof v === 'number' ? formatNumber(v) : clean(v)}`)
      .join(' ')
  }

  private timeText(t: number): string {
    const eta = this.etaMs()
    return `elapsed ${formatDuration(t - this.start)} eta ${eta === null ? '?' : formatDuration(eta)}`
  }

  /** The TTY line: label, bar, count, fields, times; the bar takes what is left, and fields are cut last. */
  private draw(t: number): void {
    const cols = Math.max(20, this.columns() - 1) // the last column would wrap on some terminals
    const fields = this.fieldText()
    const times = this.timeText(t)
    const head = this.label ? `${this.label} ` : ''
    const count = this.count()
    const rest = ` ${count}${fields ? ` | ${fields}` : ''} | ${times}`
    const room = cols - head.length - rest.length
    let line: string
    if (room >= 12) {
      const barWidth = Math.min(30, room)
      const frac = this.total > 0 ? Math.min(1, Math.max(0, this.done / this.total)) : 1
      const full = Math.round(frac * barWidth)
      line = `${head}${'█'.repeat(full)}${'░'.repeat(barWidth - full)}${rest}`
    } else {
      line = `${head}${count}${fields ? ` | ${fields}` : ''} | ${times}`
      if (line.length > cols) line = `${head}${count} | ${times}`
      if (line.length > cols) line = line.slice(0, cols)
    }
    this.stream.write(`\r${line}${CLEAR_TO_END}`)
    this.barShown = true
    this.lastDrawAt = t
  }

  /** The non-TTY line: "train 120/450 (26%) | loss 2.31 lr 3.0e-4 | elapsed 1m 05s eta 2m 58s". */
  private printLine(t: number): void {
    const pct = this.total > 0 ? Math.floor((100 * Math.min(this.done, this.total)) / this.total) : 100
    const fields = this.fieldText()
    const parts = [`${this.label ? `${this.label} ` : ''}${this.done}/${this.total} (${pct}%)`]
    if (fields) parts.push(fields)
    parts.push(this.timeText(t))
    this.stream.write(`${parts.join(' | ')}\n`)
    this.lastDrawAt = t
    this.lastPrintedDone = this.done
  }
}
