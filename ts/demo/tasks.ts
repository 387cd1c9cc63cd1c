/**
 * The built-in demo instruction set: short generated tasks with exact answers, for
 * `npm run train` with no arguments (a tiny byte-level GPT, 2 CPU cores, under 5 minutes).
 *
 * Decisions a reader would otherwise rediscover:
 * - Answers are 1–9 characters: the short-completion regime, where the prompt is most of the
 *   tokens and the prompt loss weight matters.
 * - Families share inputs, so the instruction decides the answer: a word is reversed,
 *   uppercased or counted; a digit list "5 2 9" is sorted, or its maximum or minimum taken.
 *   Each family has several phrasings, and every phrasing belongs to exactly one family
 *   (familyOf reads the family back from the instruction).
 * - Families are balanced: records come in blocks of one per family, in a seeded order.
 * - A (family, input) pair is drawn again when it already occurred (up to a few tries), so
 *   val and test problems rarely appear in train; only a family whose inputs run out repeats.
 * - Words are half real (DEMO_WORDS), half pronounceable pseudo-words, which widens the
 *   input space and keeps the word tasks about letters, not memorized words.
 * - Instruction + input + output ≤ 50 bytes, so that even with Stanford Alpaca's 204-byte
 *   preamble a whole example (prompt, "\n" + output, eos) fits 256 byte-level tokens. A demo
 *   that wants short prompts uses a compact template such as DEMO_TEMPLATE (≤ 80 bytes).
 * - Randomness is mulberry32 on 32-bit integer arithmetic: the same seed gives the same
 *   records on every platform and Node version.
 */

export interface DemoRecord {
  instruction: string
  /** Never empty: every family takes an input. */
  input: string
  output: string
}

/** The task families, in a fixed order. */
export const DEMO_FAMILIES = [
  'add', // "23 + 58" -> "81"
  'subtract', // "81 - 23" -> "58" (never negative)
  'reverse', // "plant" -> "tnalp"
  'uppercase', // "plant" -> "PLANT"
  'length', // "plant" -> "5"
  'sort', // "5 2 9" -> "2 5 9"
  'max', // "5 2 9" -> "9"
  'min', // "5 2 9" -> "2"
  'next_letter', // "c h m" -> "d i n"
] as const

export type DemoFamily = (typeof DEMO_FAMILIES)[number]

/** A compact user template for the demo (prompts of 30–80 bytes); the completion is output + eos. */
export const DEMO_TEMPLATE = '{instruction}\nInput: {input}\nAnswer: {output}'

/** The phrasings of each family's instruction. No phrasing appears under two families. */
export const DEMO_INSTRUCTIONS: Readonly<Record<DemoFamily, readonly string[]>> = {
  add: ['Add the two numbers.', 'What is the sum?', 'Compute the sum.', 'Give the total.'],
  subtract: ['Subtract the numbers.', 'What is the difference?', 'Compute the difference.'],
  reverse: ['Reverse the letters of the word.', 'Spell the word backwards.', 'Write the word in reverse.'],
  uppercase: ['Write the word in capitals.', 'Convert the word to uppercase.', 'Uppercase the word.'],
  length: ['How many letters are in the word?', 'Count the letters of the word.', 'Give the length of the word.'],
  sort: ['Sort the digits ascending.', 'Put the digits in order.', 'Sort the digits, low to high.'],
  max: ['What is the largest digit?', 'Give the maximum of the digits.', 'Find the biggest digit.'],
  min: ['What is the smallest digit?', 'Give the minimum of the digits.', 'Find the lowest digit.'],
  next_letter: ['Shift every letter forward by one.', 'Write the next letter for each.', 'Advance each letter by one.'],
}

/** Common short lowercase English words (3–7 letters), the real half of the word tasks. */
export const DEMO_WORDS: readonly string[] = (
  'able acid aged also area army away baby back ball band bank base bath bear beat bell belt best bird ' +
  'blow blue boat body bone book boot born both bowl burn busy cake call calm came camp card care cart ' +
  'case cash cast cell chat chip city clay club coal coat code cold cook cool cope copy corn cost crew ' +
  'crop dark data date dawn deal dear debt deck deep deer desk dish door down draw drop drum duck dust ' +
  'duty earn east easy edge else even ever exit face fact fair fall farm fast fear feel file fill film ' +
  'find fine fire firm fish five flag flat flow food foot fork form fort four free frog fuel full fund ' +
  'gain game gate gift girl give glad goal gold golf good gray grow hair half hall hand hard harm hat ' +
  'head heat help hero hill hold hole home hope horn host hour huge idea iron item jump just keep kind ' +
  'king kite lake lamp land lane last late lead leaf left lend lens life lift like line link lion list ' +
  'live load loan lock long look loud love luck mail main make many mark meal meat milk mind mine miss ' +
  'mood moon more most move much must name near neck need nest news next nice nine noon nose note ' +
  'ocean often olive onion open orange paper park party path peace pearl pen piano pilot plant plate ' +
  'point pond pool power press price proud queen quick quiet radio rain range river road robot rock ' +
  'room root rope rose round royal rule salt sand scale seed shape sheep shell ship shirt shoe short ' +
  'silver sing sister skill sleep slow small smile snake snow soft song sound south space speak spoon ' +
  'sport spring stamp star steam stone storm story sugar summer sun sweet table tail teach tiger toast ' +
  'today tooth tower town track train tree truck trust tulip uncle union upper valley value voice wagon ' +
  'walk wall water wave wheat wheel white wind window winter wolf woman wood word world yard year yellow ' +
  'young zebra zero apple bread chair cloud dream earth field fruit glass grape green heart horse house ' +
  'juice knife laugh lemon light magic money mouse music night north peach'
).split(' ')

// ---------------------------------------------------------------------------------------
// seeded randomness

/** mulberry32: a small 32-bit generator; integer arithmetic only, so identical everywhere. */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

type Random = () => number

/** An integer in [lo, hi]. */
function int(random: Random, lo: number, hi: number): number {
  return lo + Math.floor(random() * (hi - lo + 1))
}

function pick<T>(random: Random, items: ArrayLike<T>): T {
  return items[Math.floor(random() * items.length)]
}

// ---------------------------------------------------------------------------------------
// inputs, shared between families

const CONSONANTS = 'bcdfghjklmnprstvwz'
const VOWELS = 'aeiou'

/** A pronounceable pseudo-word of 3–7 letters: consonant-vowel syllables, the last maybe closed. */
function pseudoWord(random: Random): string {
  for (;;) {
    const syllables = int(random, 1, 3)
    let word = ''
    for (let s = 0; s < syllables; s++) {
      word += pick(random, CONSONANTS) + pick(random, VOWELS)
      if (s === syllables - 1 && random() < 0.6) word += pick(random, CONSONANTS)
    }
    if (word.length >= 3 && word.length <= 7) return word
  }
}

function word(random: Random): string {
  return random() < 0.5 ? pick(random, DEMO_WORDS) : pseudoWord(random)
}

/** 3–5 single digits (repeats allowed). */
function digits(random: Random): number[] {
  return Array.from({ length: int(random, 3, 5) }, () => int(random, 0, 9))
}

/** 2–4 letters a–y (each has a next letter). */
function letters(random: Random): string[] {
  return Array.from({ length: int(random, 2, 4) }, () => String.fromCharCode(97 + int(random, 0, 24)))
}

/** One problem of a family: the input and its exact answer. */
function problem(family: DemoFamily, random: Random): { input: string; output: string } {
  switch (family) {
    case 'add': {
      const a = int(random, 10, 99)
      const b = int(random, 10, 99)
      return { input: `${a} + ${b}`, output: String(a + b) }
    }
    case 'subtract': {
      const a = int(random, 10, 99)
      const b = int(random, 10, a)
      return { input: `${a} - ${b}`, output: String(a - b) }
    }
    case 'reverse': {
      const w = word(random)
      return { input: w, output: Array.from(w).reverse().join('') }
    }
    case 'uppercase': {
      const w = word(random)
      return { input: w, output: w.toUpperCase() }
    }
    case 'length': {
      const w = word(random)
      return { input: w, output: String(w.length) }
    }
    case 'sort': {
      const d = digits(random)
      return { input: d.join(' '), output: [...d].sort((x, y) => x - y).join(' ') }
    }
    case 'max': {
      const d = digits(random)
      return { input: d.join(' '), output: String(Math.max(...d)) }
    }
    case 'min': {
      const d = digits(random)
      return { input: d.join(' '), output: String(Math.min(...d)) }
    }
    case 'next_letter': {
      const l = letters(random)
      return { input: l.join(' '), output: l.map((c) => String.fromCharCode(c.charCodeAt(0) + 1)).join(' ') }
    }
  }
}

// ---------------------------------------------------------------------------------------
// the record set

export interface DemoOptions {
  /** Families to draw from (default all of DEMO_FAMILIES). */
  families?: readonly DemoFamily[]
}

/** Tries to draw a (family, input) pair that has not occurred yet, before accepting a repeat. */
const FRESH_TRIES = 20

/**
 * `count` demo records, a pure function of (count, seed, families). Families are balanced
 * (every block of F records holds each of the F families once), so any count ≥ F has all.
 */
export function generateDemoRecords(count: number, seed: number, options: DemoOptions = {}): DemoRecord[] {
  if (!Number.isInteger(count) || count < 0) {
    throw new TypeError(`generateDemoRecords: Expected a non-negative integer for count but received ${count}`)
  }
  if (!Number.isInteger(seed)) {
    throw new TypeError(`generateDemoRecords: Expected an integer for seed but received ${seed}`)
  }
  const families = options.families ?? DEMO_FAMILIES
  if (families.length === 0) throw new TypeError('generateDemoRecords: Expected at least one family but received none')
  for (const f of families) {
    if (!(DEMO_FAMILIES as readonly string[]).includes(f)) {
      throw new TypeError(`generateDemoRecords: Expected one of ${DEMO_FAMILIES.join(', ')} for a family but received ${f}`)
    }
  }
  // Seeds beyond 32 bits fold in their high word, so 1 and 2^32 + 1 differ.
  const random = mulberry32((seed >>> 0) ^ Math.imul(Math.floor(seed / 4294967296) >>> 0, 0x9e3779b1))
  const seen = new Set<string>()
  const records: DemoRecord[] = []
  let order: DemoFamily[] = []
  while (records.length < count) {
    if (order.length === 0) {
      order = [...families]
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1))
        const t = order[i]
        order[i] = order[j]
        order[j] = t
      }
    }
    const family = order.pop() as DemoFamily
    let p = problem(family, random)
    for (let tries = 1; tries < FRESH_TRIES && seen.has(`${family}\u0000${p.input}`); tries++) p = problem(family, random)
    seen.add(`${family}\u0000${p.input}`)
    records.push({ instruction: pick(random, DEMO_INSTRUCTIONS[family]), input: p.input, output: p.output })
  }
  return records
}

const FAMILY_OF_INSTRUCTION = new Map<string, DemoFamily>(
  DEMO_FAMILIES.flatMap((f) => DEMO_INSTRUCTIONS[f].map((text): [string, DemoFamily] => [text, f])),
)

/** The family of a demo record, read from its instruction (for per-family accuracy). */
export function familyOf(record: { instruction: string }): DemoFamily {
  const family = FAMILY_OF_INSTRUCTION.get(record.instruction)
  if (family === undefined) {
    throw new TypeError(`familyOf: Expected an instruction of the demo set but received ${JSON.stringify(record.instruction)}`)
  }
  return family
}
