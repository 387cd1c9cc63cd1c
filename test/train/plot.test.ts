/** The loss plot: well-formed SVG, coordinates, nice ticks, non-finite points, thinning, escaping. */
import { MAX_POINTS, PALETTE, downsample, escapeXml, logTicks, niceTicks, renderLossPlot } from '../../ts/train/plot'

interface Element { name: string; attrs: Record<string, string>; text: string }

/**
 * A small XML checker: every tag balanced, attributes quoted and unique, no raw "<" or a bare
 * "&" in text or attributes. Returns the elements with their attributes and direct text.
 */
function parseXml(xml: string): Element[] {
  const elements: Element[] = []
  const stack: Element[] = []
  const body = xml.replace(/^<\?xml[^?]*\?>\s*/, '')
  const entity = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/
  let at = 0
  let roots = 0
  while (at < body.length) {
    const open = body.indexOf('<', at)
    const text = body.slice(at, open < 0 ? body.length : open)
    if (entity.test(text) || text.includes('>')) throw new Error(`bad text ${JSON.stringify(text)}`)
    if (stack.length > 0) stack[stack.length - 1].text += text
    else if (text.trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(text)}`)
    if (open < 0) break
    const close = body.indexOf('>', open)
    if (close < 0) throw new Error('unterminated tag')
    const tag = body.slice(open + 1, close)
    at = close + 1
    if (tag.startsWith('/')) {
      const top = stack.pop()
      if (top === undefined || top.name !== tag.slice(1).trim()) throw new Error(`</${tag.slice(1)}> closes ${top?.name}`)
      continue
    }
    const m = /^([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)$/.exec(tag)
    if (!m) throw new Error(`malformed tag <${tag}>`)
    const attrs: Record<string, string> = {}
    for (const a of m[2].matchAll(/([\w:.-]+)="([^"]*)"/g)) {
      if (a[1] in attrs) throw new Error(`duplicate attribute ${a[1]} in <${m[1]}>`)
      if (entity.test(a[2])) throw new Error(`bare & in ${a[1]}`)
      attrs[a[1]] = a[2]
    }
    const element: Element = { name: m[1], attrs, text: '' }
    elements.push(element)
    if (stack.length === 0) roots++
    if (m[3] !== '/') stack.push(element)
  }
  if (stack.length > 0) throw new Error(`unclosed <${stack[stack.length - 1].name}>`)
  if (roots !== 1) throw new Error(`${roots} root elements`)
  return elements
}

const unescape = (s: string): string =>
  s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, '&')

function polylines(elements: Element[]): Map<string, Array<[number, number]>> {
  const out = new Map<string, Array<[number, number]>>()
  for (const e of elements.filter((e) => e.name === 'polyline')) {
    out.set(unescape(e.attrs['data-name']), e.attrs.points.split(' ').map((p) => p.split(',').map(Number) as [number, number]))
  }
  return out
}

const ticksOf = (elements: Element[], axis: 'x' | 'y'): number[] =>
  elements.filter((e) => e.attrs.class === `tick-${axis}`).map((e) => Number(e.attrs['data-value']))

/** A tick sequence is nice: equally spaced by 1, 2 or 5 × 10^k, every tick a multiple of the step. */
function expectNice(ticks: number[]): void {
  expect(ticks.length).toBeGreaterThanOrEqual(2)
  const step = ticks[1] - ticks[0]
  const mantissa = step / Math.pow(10, Math.floor(Math.log10(step) + 1e-9))
  expect([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9)).toBe(true)
  for (let i = 1; i < ticks.length; i++) expect(ticks[i] - ticks[i - 1]).toBeCloseTo(step, 9)
  for (const t of ticks) expect(Math.abs(t / step - Math.round(t / step))).toBeLessThan(1e-6)
}

describe('renderLossPlot', () => {
  const train: Array<[number, number]> = Array.from({ length: 200 }, (_, i) => [i + 1, 4 * Math.exp(-i / 50) + 0.5])
  const val: Array<[number, number]> = [[50, 2.1], [100, 1.3], [150, 0.9], [200, 0.8]]

  test('is a well-formed standalone SVG with a title, a legend entry per series and distinct colors', () => {
    const svg = renderLossPlot([{ name: 'train loss', points: train }, { name: 'val loss', points: val }],
      { title: 'demo run', xLabel: 'optimizer step', yLabel: 'nats' })
    const elements = parseXml(svg)
    expect(svg.startsWith('<?xml')).toBe(true)
    expect(elements[0].name).toBe('svg')
    expect(elements[0].attrs.xmlns).toBe('http://www.w3.org/2000/svg')
    const texts = elements.filter((e) => e.name === 'text').map((e) => unescape(e.text))
    for (const t of ['demo run', 'train loss', 'val loss', 'optimizer step', 'nats']) expect(texts).toContain(t)
    const lines = elements.filter((e) => e.name === 'polyline')
    expect(lines.map((e) => e.attrs.stroke)).toEqual([PALETTE[0], PALETTE[1]])
    // the sparse series has markers, the dense one does not
    const markerGroups = elements.filter((e) => e.attrs.class === 'markers')
    expect(markerGroups.map((e) => e.attrs['data-name'])).toEqual(['val loss'])
    expect(elements.filter((e) => e.name === 'circle' && e.attrs.fill === undefined).length).toBe(val.length)
  })

  test('points land at the coordinates the axes say', () => {
    // x in [0, 100] and y in [0, 10] are exactly whole ticks, so the plot area spans them
    const points: Array<[number, number]> = [[0, 0], [25, 10], [50, 5], [100, 2.5]]
    const elements = parseXml(renderLossPlot([{ name: 's', points }], { width: 600, height: 400 }))
    const area = elements.find((e) => e.attrs.class === 'plot-area')!
    const [x0, y0, w, h] = ['x', 'y', 'width', 'height'].map((k) => Number(area.attrs[k]))
    const xTicks = ticksOf(elements, 'x')
    const yTicks = ticksOf(elements, 'y')
    expect(xTicks[0]).toBe(0)
    expect(xTicks[xTicks.length - 1]).toBe(100)
    expect(yTicks[0]).toBe(0)
    expect(yTicks[yTicks.length - 1]).toBe(10)
    const drawn = polylines(elements).get('s')!
    expect(drawn.length).toBe(points.length)
    points.forEach(([x, y], i) => {
      expect(drawn[i][0]).toBeCloseTo(x0 + (x / 100) * w, 1)
      expect(drawn[i][1]).toBeCloseTo(y0 + h - (y / 10) * h, 1)
    })
    // and every tick label sits at its value
    const xLabels = elements.filter((e) => e.attrs.class === 'tick-x')
    for (const e of xLabels) expect(Number(e.attrs.x)).toBeCloseTo(x0 + (Number(e.attrs['data-value']) / 100) * w, 1)
  })

  test('ticks are nice numbers and cover the data', () => {
    for (const [lo, hi] of [[0.3137, 5.71], [1, 450], [2.31, 2.37], [0, 123456], [-3.3, 7.9], [1e-5, 3e-5]]) {
      const data: Array<[number, number]> = [[lo, lo], [hi, hi]]
      const elements = parseXml(renderLossPlot([{ name: 'a', points: data }]))
      const ys = ticksOf(elements, 'y')
      expectNice(ys)
      expect(ys[0]).toBeLessThanOrEqual(lo)
      expect(ys[ys.length - 1]).toBeGreaterThanOrEqual(hi)
      const xs = ticksOf(elements, 'x')
      expectNice(xs)
      for (const x of xs) {
        expect(x).toBeGreaterThanOrEqual(Math.min(0, lo) - 1e-12)
        expect(x).toBeLessThanOrEqual(hi + 1e-12)
      }
      const labels = elements.filter((e) => e.attrs.class === 'tick-y').map((e) => e.text)
      expect(new Set(labels).size).toBe(labels.length) // labels are distinct: enough decimals
    }
    expect(niceTicks(0, 1, 5)).toEqual({ ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2 })
    expect(niceTicks(0.31, 5.7, 5).ticks).toEqual([0, 2, 4, 6])
    expect(niceTicks(0.31, 5.7, 8).ticks).toEqual([0, 1, 2, 3, 4, 5, 6])
    expect(niceTicks(0.1, 0.7, 6).ticks).toEqual([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]) // no 0.30000000000000004
  })

  test('log scale: 1-2-5 ticks per decade, values ≤ 0 skipped with a note', () => {
    expect(logTicks(0.31, 5.7)).toEqual({ ticks: [0.2, 0.5, 1, 2, 5, 10], domain: [0.2, 10] })
    expect(logTicks(1e-3, 1e3).ticks).toEqual([1e-3, 1e-2, 0.1, 1, 10, 100, 1000])
    const elements = parseXml(renderLossPlot([{ name: 'a', points: [[1, 3], [2, 0], [3, 0.4], [4, -1]] }], { logY: true }))
    expect(ticksOf(elements, 'y')).toEqual([0.2, 0.5, 1, 2, 5])
    expect(polylines(elements).get('a')!.length).toBe(2)
    expect(elements.find((e) => e.attrs.class === 'note')!.text).toMatch(/2 points ≤ 0 not drawn on the log scale/)
  })

  test('NaN and ±Infinity are skipped, with a note', () => {
    const svg = renderLossPlot([{ name: 'a', points: [[1, 2], [2, NaN], [3, Infinity], [NaN, 1], [4, 1]] }])
    expect(svg).not.toMatch(/="[^"]*(NaN|Infinity)/) // in no coordinate
    const elements = parseXml(svg)
    expect(polylines(elements).get('a')!.length).toBe(2)
    expect(elements.find((e) => e.attrs.class === 'note')!.text).toMatch(/^3 non-finite points \(NaN or ±Infinity\) not drawn$/)
    expect(parseXml(renderLossPlot([{ name: 'a', points: [[1, 2]] }])).some((e) => e.attrs.class === 'note')).toBe(false)
  })

  test('empty series, no series, a single point, a constant series', () => {
    for (const input of [[], [{ name: 'train', points: [] }], [{ name: 'x', points: [[1, NaN]] as Array<[number, number]> }]]) {
      const elements = parseXml(renderLossPlot(input))
      expect(elements.some((e) => e.name === 'text' && e.text === 'no data yet')).toBe(true)
      expect(elements.some((e) => e.name === 'polyline')).toBe(false)
    }
    const one = parseXml(renderLossPlot([{ name: 'val', points: [[75, 3.2]] }]))
    expect(one.filter((e) => e.name === 'circle' && e.attrs.cx !== undefined && e.attrs.fill === undefined).length).toBe(1)
    const area = one.find((e) => e.attrs.class === 'plot-area')!
    const dot = one.find((e) => e.name === 'circle' && e.attrs.fill === undefined)!
    const inside = (v: string, lo: string, size: string) => Number(v) > Number(lo) && Number(v) < Number(lo) + Number(size)
    expect(inside(dot.attrs.cx, area.attrs.x, area.attrs.width)).toBe(true)
    expect(inside(dot.attrs.cy, area.attrs.y, area.attrs.height)).toBe(true)
    const flat = parseXml(renderLossPlot([{ name: 'c', points: [[0, 2], [10, 2]] }]))
    expectNice(ticksOf(flat, 'y'))
    for (const [, y] of polylines(flat).get('c')!) expect(Number.isFinite(y)).toBe(true)
  })

  test('huge series are thinned to at most MAX_POINTS points, keeping first, last and extremes', () => {
    const n = 1_000_000
    const points: Array<[number, number]> = Array.from({ length: n }, (_, i) => [i, 2 + Math.sin(i / 1000)])
    points[123_457][1] = 50 // a spike
    const svg = renderLossPlot([{ name: 'train', points }])
    expect(svg.length).toBeLessThan(60_000)
    const drawn = polylines(parseXml(svg)).get('train')!
    expect(drawn.length).toBeLessThanOrEqual(MAX_POINTS)
    const thin = downsample(points)
    expect(thin.length).toBeLessThanOrEqual(MAX_POINTS)
    expect(thin[0]).toBe(points[0])
    expect(thin[thin.length - 1]).toBe(points[n - 1])
    expect(thin).toContain(points[123_457])
    for (let i = 1; i < thin.length; i++) expect(thin[i][0]).toBeGreaterThan(thin[i - 1][0]) // order kept
    const small = points.slice(0, 10)
    expect(downsample(small)).toBe(small)
    // x tick labels of big step counts are short
    const labels = parseXml(svg).filter((e) => e.attrs.class === 'tick-x').map((e) => e.text)
    expect(labels).toContain('200k')
  })

  test('text is escaped', () => {
    const name = `a<b> & "c" 'd' \u0001`
    const svg = renderLossPlot([{ name, points: [[0, 1], [1, 2]] }], { title: '<script>alert(1)</script>' })
    expect(svg).not.toContain('<script>')
    const elements = parseXml(svg)
    expect(elements.some((e) => e.name === 'text' && unescape(e.text) === 'a<b> & "c" \'d\' \ufffd')).toBe(true)
    expect(escapeXml('&<>"\'')).toBe('&amp;&lt;&gt;&quot;&apos;')
  })

  test('bad sizes are errors', () => {
    expect(() => renderLossPlot([], { width: 10 })).toThrow(/width ≥ 200/)
    expect(() => renderLossPlot([], { height: NaN })).toThrow(RangeError)
  })
})
