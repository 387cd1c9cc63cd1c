/**
 * Loss curves as a standalone SVG: no dependencies, one string, opened by any browser.
 *
 * Decisions a reader would otherwise rediscover:
 * - Ticks are "nice": steps of 1, 2 or 5 × 10^k. The y range is widened to whole ticks; the
 *   x range is the data's own (training curves fill the width), snapped to 0 when it starts near 0.
 * - On a log y axis ticks are 1-2-5 in each decade (decades only when the range is wide);
 *   values ≤ 0 cannot be drawn there and are skipped, like NaN and ±Infinity, with a note
 *   under the plot saying how many.
 * - A series of more than MAX_POINTS points is thinned to the first and last point plus the
 *   minimum and maximum of each index bucket, in order: spikes survive, the file stays small.
 * - Series with few points (val loss, evaluated every k steps) get markers; a lone point is
 *   only visible as one.
 * - Colors are the Okabe–Ito palette (distinguishable with the common color-vision
 *   deficiencies); the legend repeats each color with its marker.
 * - Coordinates carry 2 decimals. All text is XML-escaped.
 */

export interface PlotSeries {
  name: string
  /** [x, y] pairs, drawn in the order given. */
  points: Array<[number, number]>
  /** Draw a marker at each point. Default: when the series has at most MARKER_MAX_POINTS points. */
  markers?: boolean
}

export interface PlotOptions {
  title?: string
  /** Default "step". */
  xLabel?: string
  /** Default "loss". */
  yLabel?: string
  /** Pixels; default 760. */
  width?: number
  /** Pixels; default 440. */
  height?: number
  /** Logarithmic y axis. Default false. */
  logY?: boolean
}

/** Points kept per series; above this a series is thinned (min and max per bucket). */
export const MAX_POINTS = 2000
/** Series with at most this many points get markers by default. */
export const MARKER_MAX_POINTS = 60

/** Okabe–Ito, reordered so the first colors are the most distinct on white; yellow last. */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000', '#F0E442']

const FONT = 'Helvetica, Arial, sans-serif'
const INK = '#1f2937'
const MUTED = '#4b5563'
const GRID = '#e5e7eb'
const AXIS = '#9ca3af'

// ---------------------------------------------------------------------------------------
// ticks

/** A 1-2-5 step that cuts `span` into about `target` pieces. */
export function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target)
  const mag = Math.pow(10, Math.floor(Math.log10(raw)))
  const norm = raw / mag
  const m = norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10
  return m * mag
}

/** Decimals that print every multiple of `step` exactly (step is 1, 2 or 5 × 10^k). */
function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9))
}

/** Multiples of a 1-2-5 step covering [lo, hi] (outward), about `target` intervals. */
export function niceTicks(lo: number, hi: number, target = 5): { ticks: number[]; step: number } {
  if (!(hi > lo)) throw new RangeError(`niceTicks: Expected lo < hi but received ${lo}, ${hi}`)
  const step = niceStep(hi - lo, target)
  const first = Math.floor(lo / step + 1e-9)
  const last = Math.ceil(hi / step - 1e-9)
  const d = decimalsOf(step)
  const ticks: number[] = []
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toFixed(d)))
  return { ticks, step }
}

/** Multiples of a 1-2-5 step inside [lo, hi]. */
function innerTicks(lo: number, hi: number, target: number): { ticks: number[]; step: number } {
  const step = niceStep(hi - lo, target)
  const d = decimalsOf(step)
  const ticks: number[] = []
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9); k++) ticks.push(Number((k * step).toFixed(d)))
  return { ticks, step }
}

/** Log-axis ticks: 1-2-5 per decade for narrow ranges, every decade for wide ones; the domain snaps to ticks. */
export function logTicks(lo: number, hi: number): { ticks: number[]; domain: [number, number] } {
  const d0 = Math.floor(Math.log10(lo) + 1e-9)
  const d1 = Math.ceil(Math.log10(hi) - 1e-9)
  const mantissas = d1 - d0 <= 3 ? [1, 2, 5] : [1]
  const all: number[] = []
  for (let d = d0; d <= Math.max(d1, d0 + 1); d++) {
    for (const m of mantissas) all.push(Number((m * Math.pow(10, d)).toPrecision(12)))
  }
  let a = 0
  while (a + 1 < all.length && all[a + 1] <= lo * (1 + 1e-12)) a++
  let b = all.length - 1
  while (b - 1 >= 0 && all[b - 1] >= hi * (1 - 1e-12)) b--
  if (b <= a) b = Math.min(all.length - 1, a + 1)
  return { ticks: all.slice(a, b + 1), domain: [all[a], all[b]] }
}

/** A tick label: fixed decimals for the step, k/M suffixes for big round numbers. */
function tickLabel(v: number, step: number): string {
  const a = Math.abs(v)
  if (a >= 1e6 && step >= 1e5) return `${Number((v / 1e6).toFixed(decimalsOf(step / 1e6)))}M`
  if (a >= 1e4 && step >= 1e3) return `${Number((v / 1e3).toFixed(decimalsOf(step / 1e3)))}k`
  if (a !== 0 && (a < 1e-4 || a >= 1e9)) return v.toExponential().replace(/e\+?/, 'e')
  return v.toFixed(decimalsOf(step))
}

/** A log-axis label: each tick is its own step. */
function logLabel(v: number): string {
  return tickLabel(v, Number(v.toPrecision(1)))
}

// ---------------------------------------------------------------------------------------
// data

/** Thin a series to at most `max` points: first, last, and per index bucket its min and max, in order. */
export function downsample(points: Array<[number, number]>, max = MAX_POINTS): Array<[number, number]> {
  if (points.length <= max) return points
  const buckets = Math.max(1, Math.floor((max - 2) / 2))
  const inner = points.length - 2
  const out: Array<[number, number]> = [points[0]]
  for (let b = 0; b < buckets; b++) {
    const from = 1 + Math.floor((b * inner) / buckets)
    const to = 1 + Math.floor(((b + 1) * inner) / buckets)
    if (to <= from) continue
    let lo = from
    let hi = from
    for (let i = from + 1; i < to; i++) {
      if (points[i][1] < points[lo][1]) lo = i
      if (points[i][1] > points[hi][1]) hi = i
    }
    if (lo === hi) out.push(points[lo])
    else if (lo < hi) out.push(points[lo], points[hi])
    else out.push(points[hi], points[lo])
  }
  out.push(points[points.length - 1])
  return out
}

/** Escape text for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] as string)
    // characters XML 1.0 forbids (C0 controls but tab, newline, carriage return; lone surrogates)
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd')
}

/** Round a coordinate to 2 decimals, printed short. */
function c(v: number): string {
  const r = Math.round(v * 100) / 100
  return Object.is(r, -0) ? '0' : String(r)
}

/** Approximate text width in pixels (Helvetica averages ~0.56 em). */
function textWidth(text: string, size: number): number {
  return Array.from(text).length * size * 0.56
}

// ---------------------------------------------------------------------------------------
// the plot

/**
 * A standalone SVG of loss curves: nice ticks, gridlines, a legend, one polyline per series
 * (markers on sparse ones), a note for points that could not be drawn.
 */
export function renderLossPlot(series: PlotSeries[], options: PlotOptions = {}): string {
  const width = options.width ?? 760
  const height = options.height ?? 440
  if (!(Number.isFinite(width) && width >= 200) || !(Number.isFinite(height) && height >= 150)) {
    throw new RangeError(`renderLossPlot: Expected width ≥ 200 and height ≥ 150 but received ${width} × ${height}`)
  }
  const logY = options.logY ?? false
  const xLabel = options.xLabel ?? 'step'
  const yLabel = options.yLabel ?? (logY ? 'loss (log scale)' : 'loss')

  // Drawable points per series, and what was skipped.
  let nonFinite = 0
  let nonPositive = 0
  const drawn = series.map((s) => {
    const kept: Array<[number, number]> = []
    for (const [x, y] of s.points) {
      if (!Number.isFinite(x) || !Number.isFinite(y)) nonFinite++
      else if (logY && y <= 0) nonPositive++
      else kept.push([x, y])
    }
    const markers = s.markers ?? (kept.length > 0 && kept.length <= MARKER_MAX_POINTS)
    return { name: s.name, points: downsample(kept), markers: markers || kept.length === 1 }
  })
  const all = drawn.flatMap((s) => s.points)
  const empty = all.length === 0

  // Layout, top to bottom: title, legend, plot area, x ticks, x label, note.
  const pad = 16
  let top = pad
  const parts: string[] = []
  if (options.title) {
    parts.push(`<text x="${pad}" y="${top + 15}" font-size="16" font-weight="bold" fill="${INK}">${escapeXml(options.title)}</text>`)
    top += 28
  }

  // Ranges.
  let xLo: number
  let xHi: number
  let yLo: number
  let yHi: number
  if (empty) {
    ;[xLo, xHi, yLo, yHi] = [0, 1, logY ? 0.1 : 0, logY ? 10 : 1]
  } else {
    xLo = Math.min(...all.map((p) => p[0]))
    xHi = Math.max(...all.map((p) => p[0]))
    yLo = Math.min(...all.map((p) => p[1]))
    yHi = Math.max(...all.map((p) => p[1]))
    if (xHi === xLo) {
      const d = Math.abs(xLo) > 0 ? Math.abs(xLo) * 0.1 : 1
      xLo -= d
      xHi += d
    } else if (xLo > 0 && xLo <= 0.05 * (xHi - xLo)) {
      xLo = 0 // steps that start at 1: show the axis from 0
    }
    if (yHi === yLo) {
      if (logY) {
        yLo /= 1.5
        yHi *= 1.5
      } else {
        const d = Math.abs(yLo) > 0 ? Math.abs(yLo) * 0.1 : 1
        yLo -= d
        yHi += d
      }
    }
  }

  // Y ticks decide the left margin (their labels), so they come before the x layout.
  const legendRows = layoutLegend(drawn.map((s) => s.name), width - 2 * pad)
  const legendTop = top
  top += legendRows.length * 20 + 14
  const note: string[] = []
  if (nonFinite > 0) note.push(`${nonFinite} non-finite point${nonFinite === 1 ? '' : 's'} (NaN or ±Infinity) not drawn`)
  if (nonPositive > 0) note.push(`${nonPositive} point${nonPositive === 1 ? '' : 's'} ≤ 0 not drawn on the log scale`)
  const bottom = height - pad - 36 - (note.length > 0 ? 18 : 0)
  const plotTop = top
  const plotH = Math.max(40, bottom - plotTop)

  let yTicks: number[]
  let yLabels: string[]
  if (logY) {
    const t = logTicks(yLo, yHi)
    yTicks = t.ticks
    ;[yLo, yHi] = t.domain
    yLabels = yTicks.map(logLabel)
  } else {
    const t = niceTicks(yLo, yHi, Math.max(2, Math.round(plotH / 55)))
    yTicks = t.ticks
    yLo = yTicks[0]
    yHi = yTicks[yTicks.length - 1]
    yLabels = yTicks.map((v) => tickLabel(v, t.step))
  }
  const left = pad + 20 + Math.max(...yLabels.map((l) => textWidth(l, 11))) + 8
  const right = width - pad - 8
  const plotW = Math.max(40, right - left)
  const xt = innerTicks(xLo, xHi, Math.max(2, Math.round(plotW / 100)))

  const sx = (x: number): number => left + ((x - xLo) / (xHi - xLo)) * plotW
  const sy = logY
    ? (y: number): number => plotTop + plotH - ((Math.log10(y) - Math.log10(yLo)) / (Math.log10(yHi) - Math.log10(yLo))) * plotH
    : (y: number): number => plotTop + plotH - ((y - yLo) / (yHi - yLo)) * plotH

  // Plot area, grid, ticks.
  parts.push(`<rect class="plot-area" x="${c(left)}" y="${c(plotTop)}" width="${c(plotW)}" height="${c(plotH)}" fill="#ffffff" stroke="none"/>`)
  const grid: string[] = []
  const labels: string[] = []
  yTicks.forEach((v, i) => {
    const y = sy(v)
    grid.push(`<line x1="${c(left)}" y1="${c(y)}" x2="${c(left + plotW)}" y2="${c(y)}"/>`)
    labels.push(`<text class="tick-y" data-value="${v}" x="${c(left - 8)}" y="${c(y + 4)}" text-anchor="end">${escapeXml(yLabels[i])}</text>`)
  })
  for (const v of xt.ticks) {
    const x = sx(v)
    grid.push(`<line x1="${c(x)}" y1="${c(plotTop)}" x2="${c(x)}" y2="${c(plotTop + plotH)}"/>`)
    labels.push(`<text class="tick-x" data-value="${v}" x="${c(x)}" y="${c(plotTop + plotH + 18)}" text-anchor="middle">${escapeXml(tickLabel(v, xt.step))}</text>`)
  }
  parts.push(`<g stroke="${GRID}" stroke-width="1">${grid.join('')}</g>`)
  parts.push(`<g stroke="${AXIS}" stroke-width="1"><line x1="${c(left)}" y1="${c(plotTop)}" x2="${c(left)}" y2="${c(plotTop + plotH)}"/>` +
    `<line x1="${c(left)}" y1="${c(plotTop + plotH)}" x2="${c(left + plotW)}" y2="${c(plotTop + plotH)}"/></g>`)
  parts.push(`<g font-size="11" fill="${MUTED}">${labels.join('')}</g>`)

  // Axis labels.
  parts.push(`<text x="${c(left + plotW / 2)}" y="${c(plotTop + plotH + 40)}" text-anchor="middle" font-size="12" fill="${INK}">${escapeXml(xLabel)}</text>`)
  const yMid = plotTop + plotH / 2
  parts.push(`<text x="${pad + 4}" y="${c(yMid)}" transform="rotate(-90 ${pad + 4} ${c(yMid)})" text-anchor="middle" ` +
    `dominant-baseline="hanging" font-size="12" fill="${INK}">${escapeXml(yLabel)}</text>`)

  // Series: lines clipped to the plot area (markers may overhang by their radius).
  parts.push(`<clipPath id="plot-clip"><rect x="${c(left - 5)}" y="${c(plotTop - 5)}" width="${c(plotW + 10)}" height="${c(plotH + 10)}"/></clipPath>`)
  const body: string[] = []
  drawn.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]
    const xy = s.points.map(([x, y]) => `${c(sx(x))},${c(sy(y))}`)
    const name = escapeXml(s.name)
    if (s.points.length > 1) {
      body.push(`<polyline class="series" data-name="${name}" points="${xy.join(' ')}" fill="none" stroke="${color}" ` +
        'stroke-width="1.75" stroke-linejoin="round" stroke-linecap="round"/>')
    }
    if (s.markers && s.points.length > 0) {
      body.push(`<g class="markers" data-name="${name}" fill="${color}" stroke="#ffffff" stroke-width="1">` +
        xy.map((p) => { const [x, y] = p.split(','); return `<circle cx="${x}" cy="${y}" r="3.5"/>` }).join('') + '</g>')
    }
  })
  parts.push(`<g clip-path="url(#plot-clip)">${body.join('')}</g>`)
  if (empty) {
    parts.push(`<text x="${c(left + plotW / 2)}" y="${c(yMid)}" text-anchor="middle" font-size="13" fill="${MUTED}">no data yet</text>`)
  }

  // Legend, under the title.
  const legend: string[] = []
  legendRows.forEach((row, r) => {
    const y = legendTop + r * 20 + 10
    for (const item of row) {
      const s = drawn[item.index]
      const color = PALETTE[item.index % PALETTE.length]
      const x = pad + item.x
      legend.push(`<line x1="${c(x)}" y1="${c(y)}" x2="${c(x + 22)}" y2="${c(y)}" stroke="${color}" stroke-width="2.5" stroke-linecap="round"/>`)
      if (s.markers) legend.push(`<circle cx="${c(x + 11)}" cy="${c(y)}" r="3.5" fill="${color}" stroke="#ffffff" stroke-width="1"/>`)
      legend.push(`<text x="${c(x + 28)}" y="${c(y + 4)}" font-size="12" fill="${INK}">${escapeXml(s.name)}</text>`)
    }
  })
  parts.push(`<g class="legend">${legend.join('')}</g>`)

  if (note.length > 0) {
    parts.push(`<text class="note" x="${pad}" y="${height - pad}" font-size="11" font-style="italic" fill="${MUTED}">` +
      `${escapeXml(note.join('; '))}</text>`)
  }

  const title = options.title ? `<title>${escapeXml(options.title)}</title>` : ''
  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${FONT}">\n${title}<rect width="100%" height="100%" fill="#ffffff"/>\n${parts.join('\n')}\n</svg>\n`
}

/** Legend entries in rows that fit `maxWidth`: [{index, x}] per row. */
function layoutLegend(names: string[], maxWidth: number): Array<Array<{ index: number; x: number }>> {
  const rows: Array<Array<{ index: number; x: number }>> = []
  let row: Array<{ index: number; x: number }> = []
  let x = 0
  names.forEach((name, index) => {
    const w = 28 + textWidth(name, 12) + 20
    if (row.length > 0 && x + w > maxWidth) {
      rows.push(row)
      row = []
      x = 0
    }
    row.push({ index, x })
    x += w
  })
  if (row.length > 0) rows.push(row)
  return rows
}
