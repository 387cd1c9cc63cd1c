/**
 * The GGUF container as written by ts/export/gguf-writer.ts, read back by a small reader
 * written here from the format's description (not the writer's code): magic, version, counts,
 * every metadata value type, tensor infos (dims innermost first), 32-byte alignment of the
 * data section and of every tensor, and the tensor bytes in each dtype. Q8_0 against its
 * error bound, the layout helpers (transpose, the RoPE row permutation, llama3 factors), and
 * the chat template derived from a plwtune training template.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { GgmlType, GgufType, GgufWriter, gguf, tensorBytes } from '../../ts/export/gguf-writer'
import { dequantizeQ8_0, quantizeQ8_0 } from '../../ts/export/q8_0'
import { llama3RopeFactors, permuteRope, storedType, transpose } from '../../ts/export/gguf-arch'
import { llamaConfig } from '../../ts/arch'
import { bf16BitsToF32, f16BitsToF32 } from '../../ts/safetensors'
import { chatTemplateFor } from '../../ts/export/gguf-chat-template'
import { resolveTemplate } from '../../ts/data/resolve-template'
import { generationPrompt, renderText } from '../../ts/data/template'
import { Template as JinjaTemplate } from '@huggingface/jinja'

// ---------------------------------------------------------------------------------------------
// an independent reader

interface ReadTensor { name: string; dims: number[]; type: number; offset: number }
interface ReadFile { version: number; kv: Map<string, { type: number; value: unknown }>; tensors: ReadTensor[]; dataStart: number; buf: Buffer }

function readGguf(file: string): ReadFile {
  const buf = fs.readFileSync(file)
  let p = 0
  const u32 = () => { const x = buf.readUInt32LE(p); p += 4; return x }
  const u64 = () => { const x = buf.readBigUInt64LE(p); p += 8; return Number(x) }
  const str = () => { const n = u64(); const s = buf.toString('utf8', p, p + n); p += n; return s }
  const scalar = (t: number): unknown => {
    switch (t) {
      case 0: return buf.readUInt8(p++)
      case 1: return buf.readInt8(p++)
      case 2: { const x = buf.readUInt16LE(p); p += 2; return x }
      case 3: { const x = buf.readInt16LE(p); p += 2; return x }
      case 4: return u32()
      case 5: { const x = buf.readInt32LE(p); p += 4; return x }
      case 6: { const x = buf.readFloatLE(p); p += 4; return x }
      case 7: { const x = buf.readUInt8(p++); if (x > 1) throw new Error(`bool ${x}`); return x === 1 }
      case 8: return str()
      case 10: return u64()
      case 11: { const x = Number(buf.readBigInt64LE(p)); p += 8; return x }
      case 12: { const x = buf.readDoubleLE(p); p += 8; return x }
      default: throw new Error(`value type ${t}`)
    }
  }
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error('magic')
  p = 4
  const version = u32()
  const nTensors = u64()
  const nKv = u64()
  const kv = new Map<string, { type: number; value: unknown }>()
  for (let i = 0; i < nKv; i++) {
    const key = str()
    const type = u32()
    if (type === 9) {
      const et = u32()
      const n = u64()
      const xs: unknown[] = []
      for (let j = 0; j < n; j++) xs.push(scalar(et))
      kv.set(key, { type: 9 * 100 + et, value: xs })
    } else {
      kv.set(key, { type, value: scalar(type) })
    }
  }
  const tensors: ReadTensor[] = []
  for (let i = 0; i < nTensors; i++) {
    const name = str()
    const nd = u32()
    const dims: number[] = []
    for (let j = 0; j < nd; j++) dims.push(u64())
    tensors.push({ name, dims, type: u32(), offset: u64() })
  }
  const alignment = (kv.get('general.alignment')?.value as number | undefined) ?? 32
  const dataStart = Math.ceil(p / alignment) * alignment
  return { version, kv, tensors, dataStart, buf }
}

const tmpDirs: string[] = []
const tmpFile = (name: string) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'plw-gguf-w-'))
  tmpDirs.push(dir)
  return path.join(dir, name)
}
afterAll(() => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }) })

function seq(n: number, f: (i: number) => number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => f(i))
}

describe('GgufWriter', () => {
  const a = seq(3 * 64, (i) => Math.sin(i) * 3)
  const bias = seq(5, (i) => i - 2)
  const odd = seq(7 * 3, (i) => i / 7)
  let file: string
  let r: ReadFile

  beforeAll(() => {
    file = tmpFile('t.gguf')
    const w = new GgufWriter()
    w.set('general.architecture', gguf.str('llama'))
    w.set('u8', { type: GgufType.UINT8, value: 250 })
    w.set('i8', { type: GgufType.INT8, value: -5 })
    w.set('u16', { type: GgufType.UINT16, value: 65000 })
    w.set('i16', { type: GgufType.INT16, value: -30000 })
    w.set('u32', gguf.u32(4000000000))
    w.set('i32', { type: GgufType.INT32, value: -2000000000 })
    w.set('f32', gguf.f32(1e-5))
    w.set('f64', { type: GgufType.FLOAT64, value: Math.PI })
    w.set('bool', gguf.bool(true))
    w.set('u64', { type: GgufType.UINT64, value: 2n ** 40n })
    w.set('i64', { type: GgufType.INT64, value: -(2 ** 40) })
    w.set('unicode', gguf.str('Ġhello ▁wörld 猫'))
    w.set('strings', gguf.strings(['a', '', 'Ġb c']))
    w.set('ints', gguf.i32s([1, -2, 3]))
    w.set('floats', gguf.f32s([0.5, -1000]))
    w.set('empty', gguf.strings([]))
    w.addTensor({ name: 'a.f32', shape: [3, 64], type: GgmlType.F32, data: () => a })
    w.addTensor({ name: 'bias', shape: [5], type: GgmlType.F32, data: () => bias })
    w.addTensor({ name: 'a.f16', shape: [3, 64], type: GgmlType.F16, data: () => a })
    w.addTensor({ name: 'odd', shape: [7, 3], type: GgmlType.BF16, data: () => odd })
    w.addTensor({ name: 'a.q8_0', shape: [3, 64], type: GgmlType.Q8_0, data: () => a })
    w.write(file)
    r = readGguf(file)
  })

  test('header: magic, version 3, counts; every metadata type round-trips', () => {
    expect(r.version).toBe(3)
    expect(r.tensors).toHaveLength(5)
    const v = (k: string) => r.kv.get(k)
    expect(v('general.architecture')).toEqual({ type: 8, value: 'llama' })
    expect(v('u8')).toEqual({ type: 0, value: 250 })
    expect(v('i8')).toEqual({ type: 1, value: -5 })
    expect(v('u16')).toEqual({ type: 2, value: 65000 })
    expect(v('i16')).toEqual({ type: 3, value: -30000 })
    expect(v('u32')).toEqual({ type: 4, value: 4000000000 })
    expect(v('i32')).toEqual({ type: 5, value: -2000000000 })
    expect(v('f32')!.type).toBe(6)
    expect(v('f32')!.value).toBeCloseTo(1e-5, 12)
    expect(v('f64')).toEqual({ type: 12, value: Math.PI })
    expect(v('bool')).toEqual({ type: 7, value: true })
    expect(v('u64')).toEqual({ type: 10, value: 2 ** 40 })
    expect(v('i64')).toEqual({ type: 11, value: -(2 ** 40) })
    expect(v('unicode')!.value).toBe('Ġhello ▁wörld 猫')
    expect(v('strings')).toEqual({ type: 908, value: ['a', '', 'Ġb c'] })
    expect(v('ints')).toEqual({ type: 905, value: [1, -2, 3] })
    expect(v('floats')).toEqual({ type: 906, value: [0.5, -1000] })
    expect(v('empty')).toEqual({ type: 908, value: [] })
  })

  test('tensor infos: ggml dims innermost first, types, aligned offsets, file size', () => {
    const byName = new Map(r.tensors.map((t) => [t.name, t]))
    expect(byName.get('a.f32')).toMatchObject({ dims: [64, 3], type: 0 })
    expect(byName.get('bias')).toMatchObject({ dims: [5], type: 0 })
    expect(byName.get('a.f16')).toMatchObject({ dims: [64, 3], type: 1 })
    expect(byName.get('odd')).toMatchObject({ dims: [3, 7], type: 30 })
    expect(byName.get('a.q8_0')).toMatchObject({ dims: [64, 3], type: 8 })
    expect(r.dataStart % 32).toBe(0)
    let expected = 0
    for (const t of r.tensors) {
      expect(t.offset % 32).toBe(0)
      expect(t.offset).toBe(expected) // packed in order, each padded to 32
      const shape = [...t.dims].reverse()
      expected = Math.ceil((t.offset + tensorBytes(shape, t.type as GgmlType)) / 32) * 32
    }
    expect(r.buf.length).toBe(r.dataStart + expected)
    expect(tensorBytes([3, 64], GgmlType.Q8_0)).toBe(3 * 2 * 34)
  })

  test('tensor data in each dtype', () => {
    const at = (name: string) => r.dataStart + r.tensors.find((t) => t.name === name)!.offset
    const f32 = Array.from({ length: a.length }, (_, i) => r.buf.readFloatLE(at('a.f32') + 4 * i))
    expect(f32).toEqual(Array.from(a))
    expect(Array.from({ length: 5 }, (_, i) => r.buf.readFloatLE(at('bias') + 4 * i))).toEqual(Array.from(bias))
    const f16 = Array.from({ length: a.length }, (_, i) => f16BitsToF32(r.buf.readUInt16LE(at('a.f16') + 2 * i)))
    f16.forEach((x, i) => expect(Math.abs(x - a[i])).toBeLessThanOrEqual(Math.abs(a[i]) * 2 ** -11 + 2 ** -24))
    const bf = Array.from({ length: odd.length }, (_, i) => bf16BitsToF32(r.buf.readUInt16LE(at('odd') + 2 * i)))
    bf.forEach((x, i) => expect(Math.abs(x - odd[i])).toBeLessThanOrEqual(Math.abs(odd[i]) * 2 ** -8))
    const q = dequantizeQ8_0(r.buf.subarray(at('a.q8_0'), at('a.q8_0') + 6 * 34), a.length)
    const max = Math.max(...Array.from(a, Math.abs))
    q.forEach((x, i) => expect(Math.abs(x - a[i])).toBeLessThanOrEqual(max * (1 / 254 + 2 ** -11))) // d is a normal f16 here
  })

  test('refuses what ggml cannot hold; a failed write leaves the old file', () => {
    const w = new GgufWriter()
    expect(() => w.addTensor({ name: 'q', shape: [2, 48], type: GgmlType.Q8_0, data: () => new Float32Array(96) })).toThrow(/multiple of 32/)
    expect(() => w.addTensor({ name: 'x'.repeat(64), shape: [1], type: GgmlType.F32, data: () => new Float32Array(1) })).toThrow(/63 bytes/)
    w.addTensor({ name: 't', shape: [2], type: GgmlType.F32, data: () => new Float32Array(3) })
    expect(() => w.addTensor({ name: 't', shape: [2], type: GgmlType.F32, data: () => new Float32Array(2) })).toThrow(/twice/)
    expect(() => new GgufWriter().set('k', { type: GgufType.UINT8, value: 256 }).header()).toThrow(/\[0, 255\]/)
    fs.writeFileSync(file + '.old', 'previous')
    expect(() => w.write(file + '.old')).toThrow(/3 values/)
    expect(fs.readFileSync(file + '.old', 'utf8')).toBe('previous')
    expect(fs.readdirSync(path.dirname(file)).filter((f) => f.endsWith('.tmp'))).toEqual([])
  })
})

describe('q8_0', () => {
  test('blocks of 32: f16 scale max|x|/127, q = round(x/d); error within d/2 + 127·(f16 rounding of d) per block', () => {
    let s = 7
    const rnd = () => { s = (s * 1103515245 + 12345) % 2 ** 31; return s / 2 ** 31 - 0.5 }
    const x = seq(32 * 50, (i) => rnd() * (i < 32 ? 1e-3 : i < 64 ? 0 : 10))
    const bytes = quantizeQ8_0(x)
    expect(bytes.length).toBe(50 * 34)
    const y = dequantizeQ8_0(bytes, x.length)
    let worst = 0
    for (let b = 0; b < 50; b++) {
      const blk = x.subarray(32 * b, 32 * b + 32)
      const amax = Math.max(...Array.from(blk, Math.abs))
      for (let j = 0; j < 32; j++) {
        const err = Math.abs(y[32 * b + j] - blk[j])
        // d/2 from rounding q, and 127·|d − f16(d)| from storing d: half an f16 ulp, relative 2^-11
        // for a normal d, absolute 2^-25 for a subnormal one (d < 2^-14, the first block here)
        const d = amax / 127
        expect(err).toBeLessThanOrEqual(d / 2 + 127 * Math.max(d * 2 ** -11, 2 ** -25) + 1e-12)
        if (amax > 0) worst = Math.max(worst, err / amax)
      }
    }
    expect(worst).toBeGreaterThan(0.001) // it is a lossy format: the bound is not vacuous
    expect(Array.from(y.subarray(32, 64))).toEqual(new Array(32).fill(0)) // an all-zero block: d = 0
    // the largest value of a block is exactly ±127·d
    const dv = new DataView(bytes.buffer)
    const qs = Array.from({ length: 32 }, (_, j) => dv.getInt8(2 * 34 + 2 + j)) // block 2
    expect(Math.max(...qs.map(Math.abs))).toBe(127)
  })

  test('halves round away from zero, as roundf', () => {
    const x = new Float32Array(32)
    x[0] = 127; x[1] = 0.5; x[2] = -0.5; x[3] = 1.5; x[4] = -2.5
    const b = quantizeQ8_0(x)
    const dv = new DataView(b.buffer)
    expect([1, 2, 3, 4, 5].map((j) => dv.getInt8(1 + j))).toEqual([127, 1, -1, 2, -3])
  })
})

describe('layouts', () => {
  test('storedType: 1-D stays f32; q8_0 falls back to f16 for rows that are not whole blocks', () => {
    expect(storedType([64], 'q8_0')).toBe(GgmlType.F32)
    expect(storedType([10, 64], 'q8_0')).toBe(GgmlType.Q8_0)
    expect(storedType([10, 48], 'q8_0')).toBe(GgmlType.F16)
    expect(storedType([10, 48], 'bf16')).toBe(GgmlType.BF16)
    expect(storedType([10, 48], 'f32')).toBe(GgmlType.F32)
  })

  test('transpose and the RoPE row permutation (rotate-half → adjacent pairs)', () => {
    expect(Array.from(transpose(Float32Array.from([1, 2, 3, 4, 5, 6]), 2, 3))).toEqual([1, 4, 2, 5, 3, 6])
    // 2 heads of 4 rows: head rows [x0 x1 | y0 y1] (pairs x_i with y_i) become [x0 y0 x1 y1]
    const rows = Float32Array.from([0, 1, 2, 3, 10, 11, 12, 13])
    expect(Array.from(permuteRope(rows, 2, 4, 1))).toEqual([0, 2, 1, 3, 10, 12, 11, 13])
    const w = seq(8 * 2, (i) => i) // 8 rows of 2 columns move whole
    expect(Array.from(permuteRope(w, 2, 4, 2))).toEqual([0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15])
  })

  test('llama3 RoPE factors: 1 for short wavelengths, factor for long, smooth between', () => {
    const c = llamaConfig({ vocabSize: 10, hiddenSize: 2048, numHeads: 32, ropeTheta: 500000,
      ropeScaling: { factor: 32, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 } })
    const f = llama3RopeFactors(c)
    expect(f).toHaveLength(32)
    expect(f[0]).toBe(1)
    expect(f[31]).toBe(32)
    for (let i = 1; i < 32; i++) expect(f[i]).toBeGreaterThanOrEqual(f[i - 1])
    expect(Array.from(f).some((x) => x > 1 && x < 32)).toBe(true)
  })
})

describe('a chat template from the training template (models whose tokenizer has none)', () => {
  test.each(['alpaca', 'completion', 'chatml', 'phi3', 'Q: {instruction}\nA: {output} END', '<<{instruction}>> => {output}'])('%s', (spec) => {
    const template = resolveTemplate(spec)
    const jinja = chatTemplateFor(template)
    expect(jinja).not.toBeNull()
    const render = (messages: Array<{ role: string; content: string }>) =>
      new JinjaTemplate(jinja as string).render({ messages, add_generation_prompt: true, eos_token: '<EOS>' })
    const source = { file: '<t>', index: 0 }
    const record = template.formats.includes('alpaca')
      ? { format: 'alpaca' as const, instruction: 'Name a fruit.', input: '', output: 'An apple.', source }
      : { format: 'chat' as const, messages: [{ role: 'user' as const, content: 'Name a fruit.' }, { role: 'assistant' as const, content: 'An apple.' }], source }
    // the generation prompt is plwtune's (what `plwtune generate` gives the model) …
    expect(render([{ role: 'user', content: 'Name a fruit.' }])).toBe(generationPrompt(template, record))
    // … and a whole turn is the training text with its eos
    expect(render([{ role: 'user', content: 'Name a fruit.' }, { role: 'assistant', content: 'An apple.' }]))
      .toBe(renderText(template, record) + (template.render(record).eos ? '<EOS>' : ''))
  })

  test('a template whose text holds Jinja delimiters gets none', () => {
    expect(chatTemplateFor(resolveTemplate('{{% raw %}} {instruction} {output}'))).toBeNull() // {{ is a brace in plwtune's strings
  })
})
