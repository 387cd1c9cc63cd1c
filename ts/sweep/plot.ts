/**
 * The sweep's picture: a metric against the prompt loss weight λ, as a standalone SVG.
 *
 * Decisions a reader would otherwise rediscover:
 * - λ is categorical on the x axis: evenly spaced, each labelled with its value. The grid a
 *   sweep uses (0, 0.01, 0.05, 0.1, 0.5, 1) spans decades and includes 0, so a linear axis
 *   crowds the small weights into one corner and a log axis cannot place 0; the axis label
 *   says the spacing is not to scale.
 * - Each seed is a dot of its own color, set a little left or right of its λ by seed (the same
 *   offset at every λ, never on the mean), so a seed's runs can be followed across λ and no
 *   dot hides another or the mean.
 * - The mean over seeds is a dark line with a marker at each λ, and the spread (mean ± std,
 *   or min–max with two seeds) a vertical bar through it.
 * - The best λ gets a tinted column and a "best" tag (λ tied with it alike, tagged "tied");
 *   the subtitle says which way is better.
 * - A percentage metric (exact match) is drawn in %, its axis kept inside [0, 100]; a spread
 *   bar that reaches past it (mean − std below 0%) is cut at the axis and loses that cap.
 * - That categorical axis is also the study's rank scale (the `weight` its regression fits), so
 *   the benchmark plots (ts/sweep/study.ts) use it as it is, saying so in `xLabel`; their base
 *   model is a dashed horizontal `reference` line, in the legend.
 * - Ticks come from niceTicks (ts/train/plot.ts), colors are its Okabe–Ito PALETTE.
 */
import { PALETTE, escapeXml, niceTicks } from '../train/plot'

export interface SweepPlotInput {
  /** The x categories, in order. */
  lambdas: number[]
  seeds: number[]
  /** values[i][j]: λ i, seed j; null where there is no finished run. */
  values: Array<Array<number | null>>
  means: Array<number | null>
  /** The spread bar per λ: [low, high], or null for none. */
  spread?: Array<[number, number] | null>
  /** What the spread bar is, for the legend ("min–max over 2 seeds"). */
  spreadLabel?: string
  /** Index of the best λ, or null. */
  best: number | null
  /** Indices of λ tied with the best (highlighted alike). */
  tied?: number[]
  /** The y axis label, e.g. "test exact match". */
  metricLabel: string
  /** The unit, shown after the y label: "nats". (Percentages get "%".) */
  unit?: string
  higherIsBetter: boolean
  /** Values are fractions drawn as percentages. */
  percent?: boolean
  title?: string
  /** The x axis label (default: the categories' note). */
  xLabel?: string
  /** A horizontal reference line, e.g. the base model's score ("base model"). */
  reference?: { value: number; label: string }
  width?: number
  height?: number
}

const FONT = 'Helvetica, Arial, sans-serif'
const INK = '#1f2937'
const MUTED = '#4b5563'
const GRID = '#e5e7eb'
const AXIS = '#9ca3af'
const BEST = '#E69F00'
const SEED_COLORS = PALETTE.filter((c) => c !== '#000000' && c !== '#F0E442')

/** Round a coordinate to 2 decimals, printed short. */
function c(v: number): string {
  const r = Math.round(v * 100) / 100
  return Object.is(r, -0) ? '0' : String(r)
}

function textWidth(text: string, size: number): number {
  return Array.from(text).length * size * 0.56
}

function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9))
}

/** The λ as written on the axis: its shortest exact form (0, 0.01, 0.5, 1). */
export function lambdaLabel(x: number): string {
  return String(x)
}

export function renderSweepPlot(input: SweepPlotInput): string {
  const width = input.width ?? 760
  const height = input.height ?? 440
  const n = input.lambdas.length
  if (n === 0) throw new RangeError('renderSweepPlot: Expected at least one λ but received none')
  if (input.values.length !== n || input.means.length !== n) {
    throw new RangeError(`renderSweepPlot: Expected values and means for ${n} λ but received ${input.values.length} and ${input.means.length}`)
  }
  const scale = input.percent ? 100 : 1
  const v = (x: number) => x * scale
  const finite = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x)

  // The y range: every dot, mean and spread end, padded a little, then widened to nice ticks.
  const ys: number[] = []
  input.values.forEach((row) => row.forEach((x) => { if (finite(x)) ys.push(v(x)) }))
  input.means.forEach((x) => { if (finite(x)) ys.push(v(x)) })
  input.spread?.forEach((s) => { if (s && finite(s[0]) && finite(s[1])) ys.push(v(s[0]), v(s[1])) })
  if (input.reference && finite(input.reference.value)) ys.push(v(input.reference.value))
  const empty = ys.length === 0
  let lo = empty ? 0 : Math.min(...ys)
  let hi = empty ? 1 : Math.max(...ys)
  if (hi === lo) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : input.percent ? 10 : 1
    lo -= d
    hi += d
  } else {
    const padY = 0.06 * (hi - lo)
    lo -= padY
    hi += padY
  }
  if (input.percent) {
    lo = Math.max(0, lo)
    hi = Math.min(100, hi)
  }

  const pad = 16
  const parts: string[] = []
  let top = pad
  const title = input.title ?? `${input.metricLabel} against the prompt loss weight λ`
  parts.push(`<text x="${pad}" y="${top + 15}" font-size="16" font-weight="bold" fill="${INK}">${escapeXml(title)}</text>`)
  top += 24
  const tied = input.best !== null ? input.tied ?? [] : []
  const bestText = input.best === null ? 'no finished runs yet'
    : tied.length === 0 ? `best λ = ${lambdaLabel(input.lambdas[input.best])}`
      : `tied best: λ = ${[input.best, ...tied].map((i) => lambdaLabel(input.lambdas[i])).join(', ')}`
  const subtitle = `${input.higherIsBetter ? 'higher' : 'lower'} is better · ${bestText} · ${input.seeds.length} seed${input.seeds.length === 1 ? '' : 's'} per λ`
  parts.push(`<text class="subtitle" x="${pad}" y="${top + 12}" font-size="12" fill="${MUTED}">${escapeXml(subtitle)}</text>`)
  top += 24

  // Legend: seeds (colored dots), the mean line, the spread bar, the best column.
  const showSeeds = input.seeds.length <= SEED_COLORS.length
  const seedColor = (j: number) => (showSeeds ? SEED_COLORS[j % SEED_COLORS.length] : '#6b7280')
  const legendItems: Array<{ kind: 'dot' | 'mean' | 'bar' | 'best' | 'ref'; color: string; label: string }> = []
  if (showSeeds) input.seeds.forEach((s, j) => legendItems.push({ kind: 'dot', color: seedColor(j), label: `seed ${s}` }))
  else legendItems.push({ kind: 'dot', color: seedColor(0), label: 'one dot per seed' })
  legendItems.push({ kind: 'mean', color: INK, label: 'mean over seeds' })
  if (input.spread && input.spreadLabel) legendItems.push({ kind: 'bar', color: INK, label: input.spreadLabel })
  if (input.best !== null) legendItems.push({ kind: 'best', color: BEST, label: tied.length > 0 ? 'tied best λ' : 'best λ' })
  if (input.reference) legendItems.push({ kind: 'ref', color: MUTED, label: input.reference.label })
  const legend: string[] = []
  let lx = pad
  let ly = top + 8
  for (const item of legendItems) {
    const w = 22 + textWidth(item.label, 12) + 18
    if (lx > pad && lx + w > width - pad) {
      lx = pad
      ly += 20
    }
    const cx = lx + 8
    if (item.kind === 'dot') legend.push(`<circle cx="${c(cx)}" cy="${c(ly)}" r="4" fill="${item.color}" stroke="#ffffff" stroke-width="1"/>`)
    if (item.kind === 'mean') {
      legend.push(`<line x1="${c(lx)}" y1="${c(ly)}" x2="${c(lx + 16)}" y2="${c(ly)}" stroke="${INK}" stroke-width="2"/>` +
        `<circle cx="${c(cx)}" cy="${c(ly)}" r="4.5" fill="${INK}" stroke="#ffffff" stroke-width="1.5"/>`)
    }
    if (item.kind === 'bar') {
      legend.push(`<g stroke="${INK}" stroke-width="1.5"><line x1="${c(cx)}" y1="${c(ly - 7)}" x2="${c(cx)}" y2="${c(ly + 7)}"/>` +
        `<line x1="${c(cx - 4)}" y1="${c(ly - 7)}" x2="${c(cx + 4)}" y2="${c(ly - 7)}"/><line x1="${c(cx - 4)}" y1="${c(ly + 7)}" x2="${c(cx + 4)}" y2="${c(ly + 7)}"/></g>`)
    }
    if (item.kind === 'ref') legend.push(`<line x1="${c(lx)}" y1="${c(ly)}" x2="${c(lx + 16)}" y2="${c(ly)}" stroke="${MUTED}" stroke-width="1.5" stroke-dasharray="4 3"/>`)
    if (item.kind === 'best') legend.push(`<rect x="${c(lx)}" y="${c(ly - 7)}" width="16" height="14" fill="${BEST}" fill-opacity="0.22" stroke="${BEST}" stroke-width="1"/>`)
    legend.push(`<text x="${c(lx + 22)}" y="${c(ly + 4)}" font-size="12" fill="${INK}">${escapeXml(item.label)}</text>`)
    lx += w
  }
  parts.push(`<g class="legend">${legend.join('')}</g>`)
  top = ly + 20

  // Plot area and y ticks (their labels decide the left margin).
  const missing = input.lambdas.filter((_, i) => input.values[i].every((x) => !finite(x)))
  const noteText = missing.length > 0 && !empty ? `no finished run yet for λ = ${missing.map(lambdaLabel).join(', ')}` : ''
  const bottom = height - pad - 40 - (noteText ? 16 : 0)
  const plotTop = top
  const plotH = Math.max(40, bottom - plotTop)
  const t = niceTicks(lo, hi, Math.max(2, Math.round(plotH / 55)))
  let yTicks = t.ticks
  if (input.percent) yTicks = yTicks.filter((y) => y >= 0 && y <= 100)
  const yLo = Math.min(yTicks[0], lo)
  const yHi = Math.max(yTicks[yTicks.length - 1], hi)
  const d = decimalsOf(t.step)
  const yLabels = yTicks.map((y) => `${y.toFixed(d)}${input.percent ? '%' : ''}`)
  const left = pad + 22 + Math.max(...yLabels.map((l) => textWidth(l, 11))) + 8
  const right = width - pad - 4
  const plotW = Math.max(40, right - left)
  const slot = plotW / n
  const sx = (i: number) => left + slot * (i + 0.5)
  const sy = (y: number) => plotTop + plotH - ((y - yLo) / (yHi - yLo)) * plotH

  parts.push(`<rect class="plot-area" x="${c(left)}" y="${c(plotTop)}" width="${c(plotW)}" height="${c(plotH)}" fill="#ffffff"/>`)
  const bandW = Math.min(slot * 0.84, 76)
  for (const i of input.best === null ? [] : [input.best, ...tied]) {
    parts.push(`<rect class="best" data-lambda="${input.lambdas[i]}" x="${c(sx(i) - bandW / 2)}" y="${c(plotTop)}" width="${c(bandW)}" ` +
      `height="${c(plotH)}" fill="${BEST}" fill-opacity="0.16"/>`)
    parts.push(`<text x="${c(sx(i))}" y="${c(plotTop + 14)}" text-anchor="middle" font-size="11" font-weight="bold" fill="#a86b00">${tied.length > 0 ? 'tied' : 'best'}</text>`)
  }
  const grid: string[] = []
  const labels: string[] = []
  yTicks.forEach((y, k) => {
    grid.push(`<line x1="${c(left)}" y1="${c(sy(y))}" x2="${c(left + plotW)}" y2="${c(sy(y))}"/>`)
    labels.push(`<text class="tick-y" data-value="${y}" x="${c(left - 8)}" y="${c(sy(y) + 4)}" text-anchor="end">${escapeXml(yLabels[k])}</text>`)
  })
  input.lambdas.forEach((x, i) => {
    const bold = i === input.best || tied.includes(i) ? ' font-weight="bold" fill="#1f2937"' : ''
    labels.push(`<text class="tick-x" data-value="${x}" x="${c(sx(i))}" y="${c(plotTop + plotH + 18)}" text-anchor="middle"${bold}>${escapeXml(lambdaLabel(x))}</text>`)
    grid.push(`<line x1="${c(sx(i))}" y1="${c(plotTop + plotH)}" x2="${c(sx(i))}" y2="${c(plotTop + plotH + 4)}" stroke="${AXIS}"/>`)
  })
  parts.push(`<g stroke="${GRID}" stroke-width="1">${grid.join('')}</g>`)
  parts.push(`<g stroke="${AXIS}" stroke-width="1"><line x1="${c(left)}" y1="${c(plotTop)}" x2="${c(left)}" y2="${c(plotTop + plotH)}"/>` +
    `<line x1="${c(left)}" y1="${c(plotTop + plotH)}" x2="${c(left + plotW)}" y2="${c(plotTop + plotH)}"/></g>`)
  parts.push(`<g font-size="11" fill="${MUTED}">${labels.join('')}</g>`)
  parts.push(`<text x="${c(left + plotW / 2)}" y="${c(plotTop + plotH + 40)}" text-anchor="middle" font-size="12" fill="${INK}">` +
    `${escapeXml(input.xLabel ?? 'prompt loss weight λ (categories, evenly spaced: not to scale)')}</text>`)
  if (input.reference && finite(input.reference.value)) {
    const y = sy(v(input.reference.value))
    parts.push(`<line class="reference" data-value="${input.reference.value}" x1="${c(left)}" y1="${c(y)}" x2="${c(left + plotW)}" y2="${c(y)}" ` +
      `stroke="${MUTED}" stroke-width="1.5" stroke-dasharray="4 3"/>`)
  }
  const yMid = plotTop + plotH / 2
  const unit = input.percent ? '%' : input.unit
  const yLabel = `${input.metricLabel}${unit ? ` (${unit})` : ''}`
  parts.push(`<text x="${pad + 4}" y="${c(yMid)}" transform="rotate(-90 ${pad + 4} ${c(yMid)})" text-anchor="middle" ` +
    `dominant-baseline="hanging" font-size="12" fill="${INK}">${escapeXml(yLabel)}</text>`)

  // Seeds: dots alternately left and right of the mean (seed 1 left, seed 2 right, seed 3 further
  // left, …), never on it, within 40% of a slot.
  const m = input.seeds.length
  const levels = Math.ceil(m / 2)
  const stepPx = Math.min(9, (slot * 0.4 - 12) / Math.max(1, levels - 1))
  const offset = (j: number) => (j % 2 === 0 ? -1 : 1) * (12 + stepPx * Math.floor(j / 2))
  const body: string[] = []
  input.seeds.forEach((s, j) => {
    const dots = input.values.map((row, i) => (finite(row[j]) ? `<circle cx="${c(sx(i) + offset(j))}" cy="${c(sy(v(row[j] as number)))}" r="4"/>` : ''))
    body.push(`<g class="seed" data-seed="${s}" fill="${seedColor(j)}" fill-opacity="0.9" stroke="#ffffff" stroke-width="1">${dots.join('')}</g>`)
  })
  // Spread bars, then the mean line and markers on top.
  if (input.spread) {
    const bars = input.spread.map((s, i) => {
      if (!s || !finite(s[0]) || !finite(s[1]) || s[0] === s[1]) return ''
      // Kept inside the axis (mean − std of a percentage can fall below 0%); a cut end has no cap.
      const x = sx(i)
      const ends = [v(s[0]), v(s[1])].map((y) => ({ y: sy(Math.min(yHi, Math.max(yLo, y))), cut: y < yLo || y > yHi }))
      return `<line x1="${c(x)}" y1="${c(ends[0].y)}" x2="${c(x)}" y2="${c(ends[1].y)}"/>` +
        ends.filter((e) => !e.cut).map((e) => `<line x1="${c(x - 5)}" y1="${c(e.y)}" x2="${c(x + 5)}" y2="${c(e.y)}"/>`).join('')
    })
    body.push(`<g class="spread" stroke="${INK}" stroke-width="1.5" stroke-opacity="0.8">${bars.join('')}</g>`)
  }
  const meanPts = input.means.map((y, i) => (finite(y) ? [sx(i), sy(v(y))] : null)).filter((p): p is number[] => p !== null)
  if (meanPts.length > 1) {
    body.push(`<polyline class="mean" points="${meanPts.map(([x, y]) => `${c(x)},${c(y)}`).join(' ')}" fill="none" stroke="${INK}" ` +
      'stroke-width="2" stroke-linejoin="round"/>')
  }
  body.push(`<g class="mean-markers" fill="${INK}" stroke="#ffffff" stroke-width="1.5">` + input.means.map((y, i) => {
    if (!finite(y)) return ''
    const isBest = i === input.best || tied.includes(i)
    const r = isBest ? 6 : 4.5
    const fill = isBest ? ` fill="${BEST}" stroke="${INK}"` : ''
    return `<circle data-lambda="${input.lambdas[i]}" data-value="${y}" cx="${c(sx(i))}" cy="${c(sy(v(y)))}" r="${r}"${fill}/>`
  }).join('') + '</g>')
  parts.push(body.join('\n'))
  if (empty) parts.push(`<text x="${c(left + plotW / 2)}" y="${c(yMid)}" text-anchor="middle" font-size="13" fill="${MUTED}">no finished runs yet</text>`)
  if (noteText) {
    parts.push(`<text class="note" x="${pad}" y="${height - pad}" font-size="11" font-style="italic" fill="${MUTED}">${escapeXml(noteText)}</text>`)
  }

  return '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="${FONT}">\n<title>${escapeXml(title)}</title><rect width="100%" height="100%" fill="#ffffff"/>\n${parts.join('\n')}\n</svg>\n`
}
