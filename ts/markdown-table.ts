/** A markdown table whose columns are padded to line up in a terminal too; `right` marks right-aligned columns. */
export function markdownTable(header: string[], rows: string[][], right: boolean[]): string {
  const widths = header.map((h, j) => Math.max(3, h.length, ...rows.map((r) => r[j].length)))
  const cell = (text: string, j: number) => (right[j] ? text.padStart(widths[j]) : text.padEnd(widths[j]))
  const line = (cells: string[]) => `| ${cells.map(cell).join(' | ')} |`
  const rule = `| ${widths.map((w, j) => (right[j] ? '-'.repeat(w - 1) + ':' : '-'.repeat(w))).join(' | ')} |`
  return [line(header), rule, ...rows.map(line)].join('\n')
}
