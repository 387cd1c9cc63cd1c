/** safetensors files: F32/F16/BF16 bit patterns, torch's exact bytes, streamed writing, and header errors. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {
  openSafetensors, writeSafetensors, writeSafetensorsLazy, safetensorsFileBytes, f32BitsToBf16, f32BitsToF16,
  f16BitsToF32, bf16BitsToF32, SafetensorsDType,
} from '../ts/safetensors'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-st-'))
const bitsOf = (x: number): number => new Uint32Array(new Float32Array([x]).buffer)[0]
const fromBits = (u: number): number => new Float32Array(new Uint32Array([u]).buffer)[0]

/** The data bytes of a one-tensor file, as 16-bit words. */
function words(file: string): number[] {
  const buf = fs.readFileSync(file)
  const start = 8 + Number(buf.readBigUInt64LE(0))
  const out: number[] = []
  for (let i = start; i < buf.length; i += 2) out.push(buf.readUInt16LE(i))
  return out
}

// Hand-computed: value → IEEE half bits, round to nearest even.
const F16_CASES: Array<[number, number, string]> = [
  [1, 0x3c00, 'one'],
  [-2, 0xc000, 'minus two'],
  [65504, 0x7bff, 'the largest half'],
  [65519, 0x7bff, 'just below the halfway point to 65536: rounds down'],
  [65520, 0x7c00, 'halfway between 65504 and 65536: ties to the even (overflowing) value, +inf'],
  [-65520, 0xfc00, '-inf'],
  [1 / 3, 0x3555, '1/3 = 0x3555 (0.333251953125)'],
  [2049, 0x6800, 'tie between 2048 and 2050: even 2048'],
  [2051, 0x6802, 'tie between 2050 and 2052: even 2052'],
  [2 ** -14, 0x0400, 'the smallest normal'],
  [2 ** -14 - 2 ** -25, 0x0400, 'halfway between the largest subnormal 0x3ff and 0x400: even 0x400'],
  [2 ** -24, 0x0001, 'the smallest subnormal'],
  [2 ** -25, 0x0000, 'half the smallest subnormal: ties to even zero'],
  [1.5 * 2 ** -25, 0x0001, 'above the tie: the smallest subnormal'],
  [3 * 2 ** -25, 0x0002, '1.5 × the smallest subnormal: ties to even 2'],
  [-(2 ** -26), 0x8000, 'underflow keeps the sign: -0'],
  [fromBits(1), 0x0000, 'a float32 subnormal: 0'],
  [Infinity, 0x7c00, '+inf'],
  [-0, 0x8000, '-0'],
  [NaN, 0x7e00, 'the canonical NaN: quiet half NaN'],
  [fromBits(0xffc00001), 0xfe00, 'a negative NaN keeps its sign'],
]

// value bits → BF16 bits, round to nearest even.
const BF16_CASES: Array<[number, number, string]> = [
  [bitsOf(1), 0x3f80, 'one'],
  [bitsOf(-2), 0xc000, 'minus two'],
  [bitsOf(1 / 3), 0x3eab, '1/3 (0x3eaaaaab) rounds up'],
  [bitsOf(1 + 2 ** -8), 0x3f80, '1 + 2^-8: tie between 0x3f80 and 0x3f81, even 0x3f80'],
  [bitsOf(1 + 3 * 2 ** -8), 0x3f82, '1 + 3·2^-8: tie between 0x3f81 and 0x3f82, even 0x3f82'],
  [0x3f808001, 0x3f81, 'just above a tie: up'],
  [0x7f7fffff, 0x7f80, 'the largest float32 rounds to +inf'],
  [0x00000001, 0x0000, 'the smallest float32 subnormal: 0'],
  [0x00008000, 0x0000, 'a subnormal tie: even 0'],
  [0x00018000, 0x0002, 'a subnormal tie: even 2'],
  [0x0001ffff, 0x0002, 'a subnormal rounds up into the next'],
  [0x007fffff, 0x0080, 'the largest subnormal rounds up to the smallest normal'],
  [bitsOf(65520), 0x4780, '65520 is 65536 in bf16'],
  [bitsOf(-0), 0x8000, '-0'],
  [bitsOf(Infinity), 0x7f80, '+inf'],
  [0x7fc00000, 0x7fc0, 'the canonical NaN'],
  [0x7f800001, 0x7fc0, 'a signalling NaN becomes quiet (its low payload would have rounded to inf)'],
  [0xffa00000, 0xffe0, 'a negative NaN keeps its sign and top payload bits'],
]

describe('conversions', () => {
  test.each(F16_CASES)('f16(%p) = %p: %s', (x, bits) => {
    expect(f32BitsToF16(bitsOf(x))).toBe(bits)
  })
  test.each(BF16_CASES)('bf16(bits %p) = %p: %s', (u, bits) => {
    expect(f32BitsToBf16(u)).toBe(bits)
  })

  test('every half and every bfloat16 widens exactly and narrows back to itself (NaNs: quiet)', () => {
    const bad: string[] = []
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0
      if (f32BitsToF16(bitsOf(f16BitsToF32(h))) !== (isNaN16 ? h | 0x0200 : h)) bad.push(`f16 ${h.toString(16)}`)
      const isNaNb = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0
      if (f32BitsToBf16(bitsOf(bf16BitsToF32(h))) !== (isNaNb ? h | 0x0040 : h)) bad.push(`bf16 ${h.toString(16)}`)
    }
    expect(bad).toEqual([])
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24)
    expect(f16BitsToF32(0x7bff)).toBe(65504)
    expect(f16BitsToF32(0x3555)).toBe(0.333251953125)
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true)
  })
})

describe('safetensors files', () => {
  test('F32, F16 and BF16 files hold the hand-computed bits and read back widened', () => {
    const d = tmp()
    const f16Values = F16_CASES.map((c) => c[0])
    writeSafetensorsLazy(path.join(d, 'h.safetensors'), [{ name: 'x', shape: [f16Values.length], read: () => new Float32Array(f16Values) }], { dtype: 'F16' })
    expect(words(path.join(d, 'h.safetensors'))).toEqual(F16_CASES.map((c) => c[1]))
    const h = openSafetensors(path.join(d, 'h.safetensors'))
    expect(h.tensors.get('x')!.dtype).toBe('F16')
    expect(Array.from(h.read('x'))).toEqual(F16_CASES.map((c) => f16BitsToF32(c[1])))
    h.close()

    const src = new Float32Array(new Uint32Array(BF16_CASES.map((c) => c[0])).buffer)
    writeSafetensorsLazy(path.join(d, 'b.safetensors'), [{ name: 'x', shape: [src.length], read: () => src }], { dtype: 'BF16' })
    expect(words(path.join(d, 'b.safetensors'))).toEqual(BF16_CASES.map((c) => c[1]))
    const b = openSafetensors(path.join(d, 'b.safetensors'))
    expect(Array.from(new Uint32Array(b.read('x').buffer))).toEqual(BF16_CASES.map((c) => c[1] << 16 >>> 0)) // bits: NaN payloads too
    b.close()

    // F32 keeps every bit, NaN payloads included.
    const f32 = new Float32Array(new Uint32Array([0x7fa00001, 0x80000000, 0x00000001, 0x3eaaaaab]).buffer)
    writeSafetensorsLazy(path.join(d, 'f.safetensors'), [{ name: 'x', shape: [2, 2], read: () => f32 }])
    const f = openSafetensors(path.join(d, 'f.safetensors'))
    expect(Array.from(new Uint32Array(f.read('x').buffer))).toEqual([0x7fa00001, 0x80000000, 0x00000001, 0x3eaaaaab])
    f.close()
  })

  test('files are byte-identical to safetensors.torch.save_file (sorted by name, padded header)', () => {
    // What safetensors 0.8 (torch 2.13) writes for {"b.weight": [[1, -2], [65520, x]], "a.bias": [1/3, 2^-24, -0]}
    // with metadata {"format": "pt"}, x = NaN for F16/F32 and 7 for BF16 (torch's vectorized bf16 cast turns
    // every NaN into 0xffff; ours keeps the sign and payload: 0x7fc0).
    const expected = (dtype: string, pad: number, data: string): Buffer => {
      const bytes = dtype === 'F32' ? 4 : 2
      const json = `{"__metadata__":{"format":"pt"},"a.bias":{"dtype":"${dtype}","shape":[3],"data_offsets":[0,${3 * bytes}]},` +
        `"b.weight":{"dtype":"${dtype}","shape":[2,2],"data_offsets":[${3 * bytes},${7 * bytes}]}}` + ' '.repeat(pad)
      const len = Buffer.alloc(8)
      len.writeBigUInt64LE(BigInt(json.length))
      return Buffer.concat([len, Buffer.from(json), Buffer.from(data, 'hex')])
    }
    const cases: Array<[SafetensorsDType, number, Buffer]> = [
      ['F16', 7, expected('F16', 7, '553501000080' + '003c00c0007c007e')],
      ['BF16', 5, expected('BF16', 5, 'ab3e80330080' + '803f00c08047e040')],
      ['F32', 5, expected('F32', 5, 'abaaaa3e0000803300000080' + '0000803f000000c000f07f470000c07f')],
    ]
    const d = tmp()
    for (const [dtype, , want] of cases) {
      const last = dtype === 'BF16' ? 7 : NaN
      const file = path.join(d, `${dtype}.safetensors`)
      // Given out of order: the file is sorted by name all the same.
      writeSafetensorsLazy(file, [
        { name: 'b.weight', shape: [2, 2], read: () => new Float32Array([1, -2, 65520, last]) },
        { name: 'a.bias', shape: [3], read: () => new Float32Array([1 / 3, 2 ** -24, -0]) },
      ], { dtype })
      expect(fs.readFileSync(file).toString('hex')).toBe(want.toString('hex'))
      expect(safetensorsFileBytes([{ name: 'b.weight', shape: [2, 2] }, { name: 'a.bias', shape: [3] }], dtype)).toBe(want.length)
    }
  })

  test('writing streams: each read() is called once, in file order, after the previous tensor is on disk', () => {
    const d = tmp(), file = path.join(d, 's.safetensors')
    const calls: Array<[string, number]> = []
    const t = (name: string, n: number) => ({ name, shape: [n], read: () => {
      calls.push([name, fs.statSync(file).size])
      return new Float32Array(n).fill(n)
    } })
    const size = writeSafetensorsLazy(file, [t('c', 3), t('a', 5), t('b', 7)], { dtype: 'BF16' })
    const header = size - 2 * 15
    expect(calls).toEqual([['a', header], ['b', header + 10], ['c', header + 24]])
    expect(fs.statSync(file).size).toBe(size)
  })

  test('tensors longer than one conversion chunk (2^20 elements) convert element by element the same', () => {
    const d = tmp()
    const n = (1 << 20) + 5
    const src = new Float32Array(n)
    let s = 12345
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      src[i] = (s / 2 ** 32 - 0.5) * 2 ** ((i % 40) - 20)
    }
    const u = new Uint32Array(src.buffer)
    const half = new Uint32Array(65536).map((_, h) => bitsOf(f16BitsToF32(h)))
    const want: Record<SafetensorsDType, (x: number) => number> = {
      F32: (x) => x, BF16: (x) => (f32BitsToBf16(x) << 16) >>> 0, F16: (x) => half[f32BitsToF16(x)],
    }
    for (const dtype of ['BF16', 'F16', 'F32'] as const) {
      const file = path.join(d, `${dtype}.safetensors`)
      writeSafetensorsLazy(file, [{ name: 'w', shape: [n], read: () => src }], { dtype })
      const st = openSafetensors(file)
      const back = new Uint32Array(st.read('w').buffer)
      st.close()
      let bad = 0
      for (let i = 0; i < n; i++) if (back[i] !== want[dtype](u[i])) bad++
      expect(bad).toBe(0)
    }
  })

  test('the original writeSafetensors API still writes F32 with {"format":"pt"}', () => {
    const d = tmp(), file = path.join(d, 'o.safetensors')
    writeSafetensors(file, [{ name: 'z', shape: [2], data: new Float32Array([1, 2]) }, { name: 'y', shape: [], data: new Float32Array([3]) }])
    const st = openSafetensors(file)
    expect(st.metadata).toEqual({ format: 'pt' })
    expect([...st.tensors.keys()]).toEqual(['y', 'z'])
    expect(Array.from(st.read('z'))).toEqual([1, 2])
    expect(st.tensors.get('y')!.shape).toEqual([])
    st.close()
    expect(() => writeSafetensors(file, [{ name: 'z', shape: [3], data: new Float32Array(2) }])).toThrow(/"z": read\(\) gave 2 float32 values for shape \[3\]/)
  })

  test('malformed files are errors naming the file, the tensor and the byte', () => {
    const d = tmp()
    const raw = (name: string, json: string, data = Buffer.alloc(0), len = Buffer.byteLength(json)): string => {
      const head = Buffer.alloc(8)
      head.writeBigUInt64LE(BigInt(len))
      const file = path.join(d, name)
      fs.writeFileSync(file, Buffer.concat([head, Buffer.from(json), data]))
      return file
    }
    const f1 = raw('json.safetensors', '{"a":{"dtype":"F32",,}}')
    expect(() => openSafetensors(f1)).toThrow(new RegExp(`${f1}: header is not valid JSON at byte 28`))
    expect(() => openSafetensors(raw('len.safetensors', '{}', Buffer.alloc(0), 4000))).toThrow(/len.safetensors: header length 4000 \(bytes 0-7\) does not fit in a 10-byte file/)
    expect(() => openSafetensors(raw('short.safetensors', ''))).toThrow(/short.safetensors: header length 0/)
    expect(() => openSafetensors(raw('entry.safetensors', '{"a":{"dtype":"F32","shape":[2]}}'))).toThrow(/entry.safetensors: header: tensor "a": malformed entry/)
    expect(() => openSafetensors(raw('size.safetensors', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', Buffer.alloc(4))))
      .toThrow(/size.safetensors: tensor "a": 4 bytes at file byte 62 for F32 shape \[2\] \(expected 8\)/)
    expect(() => openSafetensors(raw('past.safetensors', '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', Buffer.alloc(4))))
      .toThrow(/past.safetensors: tensor "a": data_offsets \[0, 8\] \(file bytes 62-70\) run past the end/)
    expect(() => openSafetensors(raw('gap.safetensors', '{"a":{"dtype":"F16","shape":[1],"data_offsets":[2,4]}}', Buffer.alloc(4))))
      .toThrow(/gap.safetensors: tensor "a": data starts at file byte 64, expected 62 \(tensors must cover the data area without gaps\)/)
    expect(() => openSafetensors(raw('tail.safetensors', '{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}', Buffer.alloc(5))))
      .toThrow(/tail.safetensors: 3 bytes at file byte 64 belong to no tensor/)
    // the untrusted-file cases of the reliability issue: offsets that point into the header, fractions, overlaps
    expect(() => openSafetensors(raw('neg.safetensors', '{"a":{"dtype":"F32","shape":[32],"data_offsets":[-128,0]}}', Buffer.alloc(0))))
      .toThrow(/neg.safetensors: header: tensor "a": malformed entry/)
    expect(() => openSafetensors(raw('frac.safetensors', '{"a":{"dtype":"F16","shape":[1],"data_offsets":[0.5,2.5]}}', Buffer.alloc(3))))
      .toThrow(/frac.safetensors: header: tensor "a": malformed entry/)
    expect(() => openSafetensors(raw('overlap.safetensors',
      '{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[2],"data_offsets":[2,6]}}', Buffer.alloc(6))))
      .toThrow(/overlap.safetensors: tensor "b": data starts at file byte \d+, expected \d+ \(tensors must cover the data area without overlap\)/)
    const i64 = raw('i64.safetensors', '{"n":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}', Buffer.alloc(8))
    const st = openSafetensors(i64)
    expect(st.tensors.get('n')!.dtype).toBe('I64') // the header is readable, the data is not
    expect(() => st.read('n')).toThrow(/i64.safetensors: tensor "n": dtype I64 is not supported \(F32, F16 or BF16\)/)
    expect(() => st.read('m')).toThrow(/i64.safetensors: no tensor "m"/)
    st.close()
  })
})
