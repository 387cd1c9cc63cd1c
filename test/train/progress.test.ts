/** The progress reporter: TTY redraws, rate-limited plain lines, the smoothed rate and ETA, formatting. */
import { Progress, RATE_TAU_MS, TTY_REDRAW_MS, formatDuration, formatNumber } from '../../ts/train/progress'

/** A stream that keeps what is written; `columns` as a terminal reports it. */
function fakeStream(columns?: number): { stream: NodeJS.WritableStream; text: () => string } {
  const chunks: string[] = []
  const stream = { write: (chunk: string) => { chunks.push(String(chunk)); return true }, columns }
  return { stream: stream as unknown as NodeJS.WritableStream, text: () => chunks.join('') }
}

/** A clock the test moves. */
function fakeClock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start
  return { now: () => t, advance: (ms) => { t += ms } }
}

/** What a terminal shows: "\r" returns to column 0, ESC[K clears to the end, "\n" keeps the line. */
function screen(output: string): string[] {
  const lines: string[] = []
  let line = ''
  for (const piece of output.split(/(\r|\n|\x1b\[K)/)) {
    if (piece === '\r') line = ''
    else if (piece === '\n') { lines.push(line); line = '' }
    else if (piece === '\x1b[K') continue
    else line += piece
  }
  if (line !== '') lines.push(line)
  return lines
}

describe('formatDuration', () => {
  test.each([
    [0, '0s'], [499, '0s'], [500, '1s'], [45_000, '45s'], [59_499, '59s'], [59_500, '1m 00s'], [65_000, '1m 05s'],
    [3_599_000, '59m 59s'], [3_600_000, '1h 00m'], [7_380_000, '2h 03m'], [86_400_000, '1d 00h'], [273_600_000, '3d 04h'],
    [-1, '?'], [NaN, '?'], [Infinity, '?'],
  ])('%p ms is %p', (ms, text) => expect(formatDuration(ms)).toBe(text))
})

describe('formatNumber', () => {
  test.each([
    [0, '0'], [1520, '1520'], [99_999, '99999'], [2.31415, '2.31'], [-2.31415, '-2.31'], [10.5, '10.5'], [0.0123, '0.0123'],
    [0.0003, '3.0e-4'], [1.25e-10, '1.3e-10'], [123.7, '124'], [150_000, '150k'], [1_234_567, '1.23M'], [999_999, '1M'],
    [3.2e9, '3.2G'], [NaN, 'nan'], [Infinity, 'inf'], [-Infinity, '-inf'],
  ])('%p is %p', (x, text) => expect(formatNumber(x)).toBe(text))
})

describe('Progress on a TTY', () => {
  test('redraws one line with \\r, no newline until finish, and fits the terminal', () => {
    const { stream, text } = fakeStream(100)
    const clock = fakeClock()
    const p = new Progress({ total: 450, stream, isTTY: true, label: 'train', now: clock.now })
    for (let step = 0; step <= 200; step++) {
      p.update(step, { loss: 5 - step / 100, lr: 3e-4, 'tok/s': 1520 })
      clock.advance(500)
    }
    const out = text()
    expect(out).not.toContain('\n')
    const draws = out.split('\r').filter((s) => s !== '')
    expect(draws.length).toBeGreaterThan(100)
    for (const d of draws) {
      expect(d.endsWith('\x1b[K')).toBe(true)
      expect(d.length - 3).toBeLessThan(100)
    }
    const last = screen(out)
    expect(last).toHaveLength(1)
    expect(last[0]).toMatch(/^train [█░]+ 200\/450  44% \| loss 3 lr 3\.0e-4 tok\/s 1520 \| elapsed 1m 40s eta 2m 05s$/)
    const bar = last[0].match(/[█░]+/)![0]
    expect((bar.match(/█/g) ?? []).length).toBe(Math.round((200 / 450) * bar.length))
    p.finish('done: 200 steps')
    expect(text().endsWith('\ndone: 200 steps\n')).toBe(true)
    const [final, summary] = screen(text()).slice(-2)
    expect(final).toMatch(/ 200\/450  44% .* elapsed 1m 41s eta 2m 05s$/) // finish() redraws at its own time
    expect(summary).toBe('done: 200 steps')
  })

  test('redraws are throttled, the last state is drawn at finish', () => {
    const { stream, text } = fakeStream(80)
    const clock = fakeClock()
    const p = new Progress({ total: 1000, stream, isTTY: true, now: clock.now })
    for (let step = 0; step < 100; step++) {
      p.update(step, {})
      clock.advance(TTY_REDRAW_MS / 10)
    }
    expect(text().split('\r').filter((s) => s !== '').length).toBe(10)
    p.finish()
    expect(screen(text())[0]).toMatch(/^[█░]+ +99\/1000 +9% \| elapsed 1s eta /)
  })

  test('log() prints above the bar without garbling it', () => {
    const { stream, text } = fakeStream(80)
    const clock = fakeClock()
    const p = new Progress({ total: 10, stream, isTTY: true, label: 'train', now: clock.now })
    p.log('before any bar')
    p.update(0, { loss: 3 })
    clock.advance(1000)
    p.update(1, { loss: 2.5 })
    p.log('step 1: val loss 2.4')
    clock.advance(1000)
    p.update(2, { loss: 2.2 })
    p.log('checkpoint: runs/x/step-2')
    const shown = screen(text())
    expect(shown[0]).toBe('before any bar')
    expect(shown[1]).toBe('step 1: val loss 2.4')
    expect(shown[2]).toBe('checkpoint: runs/x/step-2')
    expect(shown[3]).toMatch(/^train [█░]+  2\/10  20% \| loss 2\.20 \| elapsed 2s eta 8s$/)
    expect(shown).toHaveLength(4)
    p.finish()
    p.log('after finish')
    expect(screen(text()).slice(-2)).toEqual([shown[3], 'after finish'])
  })

  test('a narrow terminal drops the bar, then the fields, never wrapping', () => {
    for (const cols of [120, 60, 40, 24]) {
      const { stream, text } = fakeStream(cols)
      const clock = fakeClock()
      const p = new Progress({ total: 12_000, stream, isTTY: true, label: 'train', now: clock.now })
      p.update(0, {})
      clock.advance(60_000)
      p.update(5000, { loss: 2.3141, lr: 0.0003, 'tok/s': 15_200 })
      const line = screen(text())[0]
      expect(line.length).toBeLessThanOrEqual(cols - 1)
      if (cols >= 100) expect(line).toContain('█')
      if (cols === 60) expect(line).not.toContain('█')
      expect(line.startsWith(cols >= 40 ? 'train ' : 'train')).toBe(true)
    }
  })

  test('control characters in fields are replaced', () => {
    const { stream, text } = fakeStream(200)
    const p = new Progress({ total: 2, stream, isTTY: true, now: fakeClock().now })
    p.update(1, { note: 'a\nb\rc\x1b[2J' })
    expect(text().split('\r').join('').replace(/\x1b\[K/g, '')).not.toMatch(/[\n\r\x1b]/)
  })
})

describe('Progress without a TTY', () => {
  test('plain lines, the first at once, then at most one per minIntervalMs, and one at finish', () => {
    const { stream, text } = fakeStream()
    const clock = fakeClock()
    const p = new Progress({ total: 100, stream, isTTY: false, label: 'train', minIntervalMs: 10_000, now: clock.now })
    for (let step = 0; step <= 35; step++) {
      p.update(step, { loss: 2 })
      clock.advance(1000)
    }
    p.finish('summary line')
    const out = text()
    expect(out).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f]/)
    const lines = out.trimEnd().split('\n')
    expect(lines).toEqual([
      'train 0/100 (0%) | loss 2 | elapsed 0s eta ?',
      'train 10/100 (10%) | loss 2 | elapsed 10s eta 1m 30s',
      'train 20/100 (20%) | loss 2 | elapsed 20s eta 1m 20s',
      'train 30/100 (30%) | loss 2 | elapsed 30s eta 1m 10s',
      'train 35/100 (35%) | loss 2 | elapsed 36s eta 1m 05s',
      'summary line',
    ])
  })

  test('defaults: a 10 s interval, the stream decides TTY-ness, no line at finish when nothing changed', () => {
    const { stream, text } = fakeStream()
    const clock = fakeClock()
    const p = new Progress({ total: 5, stream, now: clock.now })
    expect(p.isTTY).toBe(false)
    p.update(0, {})
    clock.advance(9_999)
    p.update(1, {})
    expect(text().split('\n').filter(Boolean)).toHaveLength(1)
    clock.advance(1)
    p.update(1, {})
    expect(text().split('\n').filter(Boolean)).toHaveLength(2)
    p.finish()
    p.finish('ignored: finish twice')
    expect(text().split('\n').filter(Boolean)).toHaveLength(2)
    p.update(3, {}) // after finish: nothing
    p.log('a log line')
    expect(text().endsWith('1/5 (20%) | elapsed 10s eta 40s\na log line\n')).toBe(true)
  })
})

describe('the rate and the ETA', () => {
  test('a steady rate gives remaining / rate', () => {
    const clock = fakeClock()
    const p = new Progress({ total: 1000, stream: fakeStream().stream, isTTY: false, now: clock.now })
    p.update(0, {})
    expect(p.rate).toBeNull()
    expect(p.etaMs()).toBeNull()
    for (let step = 1; step <= 100; step++) {
      clock.advance(250) // 4 steps/s
      p.update(step, {})
      expect(p.rate).toBeCloseTo(4, 9)
      expect(p.etaMs()).toBeCloseTo(((1000 - step) / 4) * 1000, 3)
    }
    p.update(1000, {})
    expect(p.etaMs()).toBe(0)
  })

  test('the first update is the baseline: a resumed run is not credited with its earlier steps', () => {
    const clock = fakeClock()
    const p = new Progress({ total: 5000, stream: fakeStream().stream, isTTY: false, now: clock.now })
    clock.advance(5)
    p.update(4000, {})
    clock.advance(1000)
    p.update(4002, {})
    expect(p.rate).toBeCloseTo(2, 9)
    expect(p.etaMs()).toBeCloseTo(499_000, 3)
    // with `initial`, construction is the baseline
    const q = new Progress({ total: 10, stream: fakeStream().stream, isTTY: false, initial: 4, now: clock.now })
    clock.advance(2000)
    q.update(5, {})
    expect(q.rate).toBeCloseTo(0.5, 9)
  })

  test('early on the rate is the duration-weighted average; a lasting change wins over RATE_TAU_MS', () => {
    const clock = fakeClock()
    const p = new Progress({ total: 1e6, stream: fakeStream().stream, isTTY: false, now: clock.now })
    p.update(0, {})
    clock.advance(3000) // a slow first step (warm-up)
    p.update(1, {})
    clock.advance(1000)
    p.update(2, {})
    // weights 1-e^(-3/τ) and (1-e^(-1/τ))·e^(-3/τ)... ≈ durations for t ≪ τ: about 2 steps / 4 s
    expect(p.rate!).toBeGreaterThan(0.45)
    expect(p.rate!).toBeLessThan(0.55)
    // then 10 steps/s for 5 τ: the average forgets the start
    const steps = (5 * RATE_TAU_MS) / 100
    for (let i = 0; i < steps; i++) {
      clock.advance(100)
      p.update(3 + i, {})
    }
    expect(p.rate!).toBeGreaterThan(9.9)
    expect(p.rate!).toBeLessThanOrEqual(10 + 1e-9)
    // one slow step (an eval of 5 s) moves it only a little
    clock.advance(5000)
    p.update(3 + steps, {})
    expect(p.rate!).toBeGreaterThan(7)
    expect(p.rate!).toBeLessThan(9)
  })

  test('a step count that goes back restarts the measurement', () => {
    const clock = fakeClock()
    const p = new Progress({ total: 100, stream: fakeStream().stream, isTTY: false, now: clock.now })
    p.update(50, {})
    clock.advance(1000)
    p.update(60, {})
    clock.advance(1000)
    p.update(0, {})
    expect(p.rate).toBeNull()
  })

  test('bad totals are errors', () => {
    expect(() => new Progress({ total: -1 })).toThrow(/non-negative number for total/)
    expect(() => new Progress({ total: NaN })).toThrow(TypeError)
  })
})
