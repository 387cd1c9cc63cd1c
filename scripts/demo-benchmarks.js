#!/usr/bin/env node
// Two multiple-choice benchmarks for the demo (JSONL, {context, choices, answer}, as
// `plwtune eval` and `plwtune sweep --benchmarks` read them): demo-numbers (add, subtract,
// length, sort, max, min) and demo-words (reverse, uppercase, next_letter). Each record is a
// demo task in the demo's prompt format with its right answer and three near misses made from
// the same input (off by one or ten, the wrong order, the input itself, a shift the wrong way…),
// so the choices look alike and only doing the task tells them apart. Drawn with another seed
// than the demo's training data (most records are new to the model; a few small tasks repeat:
// the task space is small).
// Usage: node scripts/demo-benchmarks.js OUT_DIR [RECORDS_PER_SET=200]
const fs = require('node:fs')
const path = require('node:path')
const root = path.join(__dirname, '..')
const { generateDemoRecords, DEMO_FAMILIES, DEMO_INSTRUCTIONS } = require(path.join(root, 'dist/ts/demo/tasks'))
const { Rng } = require(path.join(root, 'dist/ts/data/rng'))

const SETS = { 'demo-numbers': ['add', 'subtract', 'length', 'sort', 'max', 'min'], 'demo-words': ['reverse', 'uppercase', 'next_letter'] }
const out = process.argv[2]
const n = Number(process.argv[3] ?? 200)
if (!out || !Number.isInteger(n) || n < 1) {
  console.error('usage: node scripts/demo-benchmarks.js OUT_DIR [RECORDS_PER_SET=200]')
  process.exit(2)
}
fs.mkdirSync(out, { recursive: true })
for (const [name, families] of Object.entries(SETS)) {
  if (!families.every((f) => DEMO_FAMILIES.includes(f))) throw new Error(`unknown family in ${families}`)
  const pool = generateDemoRecords(n * 8, 7777, { families })
  const byFamily = new Map()
  for (const r of pool) {
    const f = familyOf(r)
    if (!byFamily.has(f)) byFamily.set(f, [])
    byFamily.get(f).push(r)
  }
  const rng = new Rng(4242)
  const lines = []
  for (const r of pool.slice(0, n)) {
    const near = [...new Set(nearMisses(familyOf(r), r.input, r.output))].filter((o) => o !== r.output && o !== '')
    const others = [...new Set(byFamily.get(familyOf(r)).map((x) => x.output))].filter((o) => o !== r.output && !near.includes(o))
    const wrong = []
    while (wrong.length < 3 && near.length > 0) wrong.push(near.splice(rng.below(near.length), 1)[0])
    while (wrong.length < 3 && others.length > 0) wrong.push(others.splice(rng.below(others.length), 1)[0])
    const answer = rng.below(wrong.length + 1)
    const choices = [...wrong]
    choices.splice(answer, 0, r.output)
    lines.push(JSON.stringify({ context: `${r.instruction}\nInput: ${r.input}\nAnswer:`, choices: choices.map((c) => ` ${c}`), answer }))
  }
  fs.writeFileSync(path.join(out, `${name}.jsonl`), lines.join('\n') + '\n')
  console.log(`${path.join(out, `${name}.jsonl`)}: ${lines.length} records`)
}

// The family of a demo record, from its instruction's phrasing (each phrasing belongs to one family).
function familyOf(r) {
  for (const [f, phrasings] of Object.entries(DEMO_INSTRUCTIONS)) if (phrasings.includes(r.instruction)) return f
  throw new Error(`no family for ${JSON.stringify(r.instruction)}`)
}

/** Wrong answers that look like the right one. */
function nearMisses(family, input, output) {
  const shift = (text, by) => text.replace(/[a-z]/g, (c) => String.fromCharCode(((c.charCodeAt(0) - 97 + by + 26) % 26) + 97))
  const digits = input.split(' ')
  const num = Number(output)
  switch (family) {
    case 'add': case 'subtract': case 'length':
      return [num + 1, num - 1, num + 10, num - 10, num + 2].filter((x) => x >= 0).map(String)
    case 'sort':
      return [[...digits].sort().reverse().join(' '), input, output.split(' ').slice(1).join(' ') + ' ' + output.split(' ')[0]]
    case 'max': case 'min':
      return [...digits, String(num + 1), String(Math.max(0, num - 1))]
    case 'reverse':
      return [input, output.slice(1) + output[0], output.toUpperCase(), output.slice(0, -1)]
    case 'uppercase':
      return [input, [...output].reverse().join(''), output.slice(0, -1), output.slice(1)]
    case 'next_letter':
      return [input, shift(input, -1), shift(input, 2)]
  }
  throw new Error(`no near misses for ${family}`)
}
