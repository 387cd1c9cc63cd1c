/** The built-in demo set: determinism, balance, exact answers re-derived here, sizes, repeats. */
import {
  DEMO_FAMILIES, DEMO_INSTRUCTIONS, DEMO_TEMPLATE, DEMO_WORDS, DemoFamily, DemoRecord, familyOf, generateDemoRecords,
} from '../../ts/demo/tasks'
import { ALPACA_PROMPT_INPUT } from '../../ts/data/templates'

/** The answer to a record, computed from its input by an independent route (loops, char codes). */
function expectedAnswer(family: DemoFamily, input: string): string {
  const nums = input.split(' ')
  switch (family) {
    case 'add': {
      const m = /^(\d\d) \+ (\d\d)$/.exec(input)
      if (!m) throw new Error(`bad add input ${input}`)
      return `${parseInt(m[1], 10) + parseInt(m[2], 10)}`
    }
    case 'subtract': {
      const m = /^(\d\d) - (\d\d)$/.exec(input)
      if (!m) throw new Error(`bad subtract input ${input}`)
      return `${parseInt(m[1], 10) - parseInt(m[2], 10)}`
    }
    case 'reverse': {
      let out = ''
      for (let i = input.length - 1; i >= 0; i--) out += input[i]
      return out
    }
    case 'uppercase': {
      let out = ''
      for (const c of input) out += String.fromCharCode(c.charCodeAt(0) - 32)
      return out
    }
    case 'length':
      return `${input.length}`
    case 'sort': {
      // counting sort over the ten digits
      const counts = new Array<number>(10).fill(0)
      for (const n of nums) counts[Number(n)]++
      const out: string[] = []
      counts.forEach((k, d) => { for (let i = 0; i < k; i++) out.push(`${d}`) })
      return out.join(' ')
    }
    case 'max': {
      let best = -1
      for (const n of nums) if (Number(n) > best) best = Number(n)
      return `${best}`
    }
    case 'min': {
      let best = 10
      for (const n of nums) if (Number(n) < best) best = Number(n)
      return `${best}`
    }
    case 'next_letter':
      return nums.map((c) => 'abcdefghijklmnopqrstuvwxyz'['abcdefghijklmnopqrstuvwxyz'.indexOf(c) + 1]).join(' ')
  }
}

/** The shape every input of a family must have. */
const INPUT_SHAPE: Record<DemoFamily, RegExp> = {
  add: /^[1-9]\d \+ [1-9]\d$/,
  subtract: /^[1-9]\d - [1-9]\d$/,
  reverse: /^[a-z]{3,7}$/,
  uppercase: /^[a-z]{3,7}$/,
  length: /^[a-z]{3,7}$/,
  sort: /^\d( \d){2,4}$/,
  max: /^\d( \d){2,4}$/,
  min: /^\d( \d){2,4}$/,
  next_letter: /^[a-y]( [a-y]){1,3}$/,
}

describe('generateDemoRecords', () => {
  const records: DemoRecord[] = generateDemoRecords(6000, 1234)

  test('is a pure function of (count, seed); another seed gives other records', () => {
    expect(generateDemoRecords(6000, 1234)).toEqual(records)
    expect(generateDemoRecords(100, 1234)).toEqual(records.slice(0, 100)) // a prefix does not depend on count
    const other = generateDemoRecords(100, 1235)
    expect(other).not.toEqual(records.slice(0, 100))
    expect(generateDemoRecords(50, 2 ** 32 + 1234)).not.toEqual(records.slice(0, 50))
    expect(generateDemoRecords(0, 1)).toEqual([])
  })

  test('every family appears, balanced, in any count ≥ the number of families', () => {
    const counts = new Map<DemoFamily, number>()
    for (const r of records) counts.set(familyOf(r), (counts.get(familyOf(r)) ?? 0) + 1)
    for (const f of DEMO_FAMILIES) {
      expect(Math.abs((counts.get(f) ?? 0) - 6000 / DEMO_FAMILIES.length)).toBeLessThanOrEqual(1)
    }
    for (let seed = 0; seed < 20; seed++) {
      const few = generateDemoRecords(DEMO_FAMILIES.length, seed)
      expect(new Set(few.map(familyOf)).size).toBe(DEMO_FAMILIES.length)
    }
    // and not in a fixed cycle: the order of families varies between blocks
    const firstBlock = records.slice(0, DEMO_FAMILIES.length).map(familyOf)
    const secondBlock = records.slice(DEMO_FAMILIES.length, 2 * DEMO_FAMILIES.length).map(familyOf)
    expect(secondBlock).not.toEqual(firstBlock)
  })

  test('every answer is right, re-derived from the input', () => {
    for (const r of records) {
      const family = familyOf(r)
      expect(r.input).toMatch(INPUT_SHAPE[family])
      expect(r.output).toBe(expectedAnswer(family, r.input))
    }
  })

  test('every phrasing is used, and inputs are shared between families', () => {
    const used = new Set(records.map((r) => r.instruction))
    for (const f of DEMO_FAMILIES) for (const text of DEMO_INSTRUCTIONS[f]) expect(used.has(text)).toBe(true)
    const familiesOfInput = new Map<string, Set<DemoFamily>>()
    for (const r of records) {
      const set = familiesOfInput.get(r.input) ?? new Set<DemoFamily>()
      set.add(familyOf(r))
      familiesOfInput.set(r.input, set)
    }
    const shared = [...familiesOfInput.values()].filter((s) => s.size > 1).length
    expect(shared).toBeGreaterThan(50) // the instruction, not the input, decides the answer
  })

  test('records are short: outputs 1–10 bytes, whole Alpaca examples within 256 byte tokens', () => {
    for (const r of records) {
      expect(Buffer.byteLength(r.output)).toBeGreaterThanOrEqual(1)
      expect(Buffer.byteLength(r.output)).toBeLessThanOrEqual(10)
      expect(Buffer.byteLength(r.instruction + r.input + r.output)).toBeLessThanOrEqual(50)
      const demoPrompt = DEMO_TEMPLATE.replace('{instruction}', r.instruction).replace('{input}', r.input).replace(/\{output\}$/, '')
      expect(Buffer.byteLength(demoPrompt)).toBeLessThanOrEqual(80)
      // Alpaca's own preamble is 204 bytes; prompt + "\n" + output + eos still fits 256 byte-level tokens
      const alpaca = ALPACA_PROMPT_INPUT.replace('{instruction}', r.instruction).replace('{input}', r.input)
      expect(Buffer.byteLength(alpaca) + 1 + Buffer.byteLength(r.output) + 1).toBeLessThanOrEqual(256)
    }
  })

  test('problems rarely repeat', () => {
    const keys = new Set(records.map((r) => `${familyOf(r)}|${r.input}`))
    expect(records.length - keys.size).toBeLessThanOrEqual(records.length * 0.01)
    const exact = new Set(records.map((r) => `${r.instruction}|${r.input}`))
    expect(records.length - exact.size).toBeLessThanOrEqual(records.length * 0.01)
  })

  test('the options and errors', () => {
    const some = generateDemoRecords(90, 3, { families: ['reverse', 'sort'] })
    expect(new Set(some.map(familyOf))).toEqual(new Set(['reverse', 'sort']))
    expect(() => generateDemoRecords(-1, 0)).toThrow(/non-negative integer for count/)
    expect(() => generateDemoRecords(1.5, 0)).toThrow(TypeError)
    expect(() => generateDemoRecords(3, 0.5)).toThrow(/integer for seed/)
    expect(() => generateDemoRecords(3, 0, { families: [] })).toThrow(/at least one family/)
    // @ts-expect-error: not a family
    expect(() => generateDemoRecords(3, 0, { families: ['divide'] })).toThrow(/received divide/)
    expect(() => familyOf({ instruction: 'Translate to French.' })).toThrow(/demo set/)
  })
})

describe('the demo vocabulary', () => {
  test('phrasings belong to one family each', () => {
    const all = DEMO_FAMILIES.flatMap((f) => DEMO_INSTRUCTIONS[f])
    expect(new Set(all).size).toBe(all.length)
    for (const f of DEMO_FAMILIES) expect(DEMO_INSTRUCTIONS[f].length).toBeGreaterThanOrEqual(3)
  })

  test('words are unique, lowercase, 3–7 letters, a few hundred', () => {
    expect(new Set(DEMO_WORDS).size).toBe(DEMO_WORDS.length)
    expect(DEMO_WORDS.length).toBeGreaterThanOrEqual(300)
    for (const w of DEMO_WORDS) expect(w).toMatch(/^[a-z]{3,7}$/)
  })
})
