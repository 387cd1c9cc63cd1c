/**
 * The GGUF container (version 3, little-endian), as llama.cpp's ggml/src/gguf.cpp reads it:
 *
 *   u32 magic "GGUF" · u32 version 3 · u64 tensor count · u64 metadata count
 *   metadata: string key · u32 value type · value   (strings are u64 length + UTF-8 bytes;
 *             an array is u32 element type · u64 count · elements)
 *   tensor infos: string name · u32 n_dims · u64 dims[n_dims] (innermost first: ggml's ne[0] is
 *             the row length) · u32 ggml type · u64 offset (from the start of the data section)
 *   padding to `general.alignment` (32 unless the metadata says otherwise)
 *   data: each tensor at its offset, every offset a multiple of the alignment
 *
 * Tensors are added with their shape in torch's order (outermost first, as safetensors and
 * plwtune name them); the writer reverses it into ggml's. Their data is produced lazily, one
 * tensor at a time, so a model is never held twice in memory. The file is written under a
 * temporary name and renamed into place (ts/atomic-write.ts): a failure leaves what was there.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { replaceFile, SaveInfo, writeAll, writing } from '../atomic-write'
import { f32BitsToBf16, f32BitsToF16 } from '../safetensors'
import { Q8_0_BLOCK, Q8_0_BLOCK_BYTES, quantizeQ8_0 } from './q8_0'

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3
export const GGUF_DEFAULT_ALIGNMENT = 32

/** Metadata value types (gguf.h's enum gguf_type). */
export enum GgufType {
  UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6, BOOL = 7, STRING = 8, ARRAY = 9,
  UINT64 = 10, INT64 = 11, FLOAT64 = 12,
}

/** The tensor types this writer produces (ggml.h's enum ggml_type). */
export enum GgmlType { F32 = 0, F16 = 1, Q8_0 = 8, BF16 = 30 }

/** general.file_type (llama.h's enum llama_ftype): what most tensors are. */
export const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7, bf16: 32 }

export type GgufDtype = 'f32' | 'f16' | 'bf16' | 'q8_0'
export const GGUF_DTYPES: readonly GgufDtype[] = ['f32', 'f16', 'bf16', 'q8_0']
export const GGML_TYPE_OF: Record<GgufDtype, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, bf16: GgmlType.BF16, q8_0: GgmlType.Q8_0 }

/** A metadata value with its type; arrays hold one element type. */
export type GgufValue =
  | { type: GgufType.STRING; value: string }
  | { type: GgufType.BOOL; value: boolean }
  | { type: GgufType.UINT8 | GgufType.INT8 | GgufType.UINT16 | GgufType.INT16 | GgufType.UINT32 | GgufType.INT32 | GgufType.FLOAT32 | GgufType.FLOAT64; value: number }
  | { type: GgufType.UINT64 | GgufType.INT64; value: bigint | number }
  | { type: GgufType.ARRAY; elementType: GgufType.STRING; value: readonly string[] }
  | { type: GgufType.ARRAY; elementType: GgufType.INT32 | GgufType.UINT32 | GgufType.FLOAT32; value: ArrayLike<number> }

export const gguf = {
  str: (value: string): GgufValue => ({ type: GgufType.STRING, value }),
  u32: (value: number): GgufValue => ({ type: GgufType.UINT32, value }),
  f32: (value: number): GgufValue => ({ type: GgufType.FLOAT32, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufType.BOOL, value }),
  strings: (value: readonly string[]): GgufValue => ({ type: GgufType.ARRAY, elementType: GgufType.STRING, value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: GgufType.ARRAY, elementType: GgufType.INT32, value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: GgufType.ARRAY, elementType: GgufType.FLOAT32, value }),
}

export interface GgufTensor {
  name: string
  /** Torch order (outermost first): a [out, in] weight is written with ggml dims [in, out]. */
  shape: number[]
  type: GgmlType
  /** The values, row-major in `shape`'s order, as float32; called once, when the tensor is written. */
  data: () => Float32Array
}

/** Bytes of one tensor stored as `type`. */
export function tensorBytes(shape: readonly number[], type: GgmlType): number {
  const n = shape.reduce((a, d) => a * d, 1)
  switch (type) {
    case GgmlType.F32: return 4 * n
    case GgmlType.F16: case GgmlType.BF16: return 2 * n
    case GgmlType.Q8_0: {
      const row = shape.length === 0 ? 1 : shape[shape.length - 1]
      if (row % Q8_0_BLOCK !== 0) throw new Error(`q8_0: a row of ${row} values is not a multiple of ${Q8_0_BLOCK}`)
      return (n / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES
    }
  }
}

/** A tensor's bytes in its ggml type (little-endian). */
export function encodeTensor(data: Float32Array, shape: readonly number[], type: GgmlType): Uint8Array {
  const n = shape.reduce((a, d) => a * d, 1)
  if (data.length !== n) throw new Error(`tensor data has ${data.length} values, its shape [${shape}] needs ${n}`)
  switch (type) {
    case GgmlType.F32: {
      if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, 4 * n)
      const out = new Uint8Array(4 * n)
      const dv = new DataView(out.buffer)
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, data[i], true)
      return out
    }
    case GgmlType.F16: case GgmlType.BF16: {
      const bits = new Uint32Array(data.buffer, data.byteOffset, n)
      const out = new Uint8Array(2 * n)
      const dv = new DataView(out.buffer)
      const conv = type === GgmlType.F16 ? f32BitsToF16 : f32BitsToBf16
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, conv(bits[i]), true)
      return out
    }
    case GgmlType.Q8_0:
      return quantizeQ8_0(data)
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1

const align = (x: number, a: number): number => Math.ceil(x / a) * a

/** Builds the bytes of the header, metadata and tensor infos (everything before the data). */
class ByteBuilder {
  private chunks: Uint8Array[] = []
  length = 0

  push(b: Uint8Array): void {
    this.chunks.push(b)
    this.length += b.length
  }

  private scalar(bytes: number, set: (dv: DataView) => void): void {
    const b = new Uint8Array(bytes)
    set(new DataView(b.buffer))
    this.push(b)
  }

  u8(x: number): void { this.scalar(1, (d) => d.setUint8(0, x)) }
  i8(x: number): void { this.scalar(1, (d) => d.setInt8(0, x)) }
  u16(x: number): void { this.scalar(2, (d) => d.setUint16(0, x, true)) }
  i16(x: number): void { this.scalar(2, (d) => d.setInt16(0, x, true)) }
  u32(x: number): void { this.scalar(4, (d) => d.setUint32(0, x, true)) }
  i32(x: number): void { this.scalar(4, (d) => d.setInt32(0, x, true)) }
  f32(x: number): void { this.scalar(4, (d) => d.setFloat32(0, x, true)) }
  f64(x: number): void { this.scalar(8, (d) => d.setFloat64(0, x, true)) }
  u64(x: number | bigint): void { this.scalar(8, (d) => d.setBigUint64(0, BigInt(x), true)) }
  i64(x: number | bigint): void { this.scalar(8, (d) => d.setBigInt64(0, BigInt(x), true)) }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8')
    this.u64(b.length)
    this.push(b)
  }

  /** Many int32/uint32/float32 values in one buffer (vocabularies hold 100k+ of them). */
  numbers(type: GgufType, xs: ArrayLike<number>): void {
    const b = new Uint8Array(4 * xs.length)
    const d = new DataView(b.buffer)
    for (let i = 0; i < xs.length; i++) {
      if (type === GgufType.INT32) d.setInt32(4 * i, xs[i], true)
      else if (type === GgufType.UINT32) d.setUint32(4 * i, xs[i], true)
      else d.setFloat32(4 * i, xs[i], true)
    }
    this.push(b)
  }

  bytes(): Uint8Array {
    return Buffer.concat(this.chunks, this.length)
  }
}

function checkInt(key: string, x: number, lo: number, hi: number): void {
  if (!Number.isInteger(x) || x < lo || x > hi) throw new RangeError(`GGUF metadata ${key}: ${x} is not an integer in [${lo}, ${hi}]`)
}

function writeValue(b: ByteBuilder, key: string, v: GgufValue): void {
  b.u32(v.type)
  switch (v.type) {
    case GgufType.STRING: b.str(v.value); break
    case GgufType.BOOL: b.u8(v.value ? 1 : 0); break
    case GgufType.UINT8: checkInt(key, v.value, 0, 0xff); b.u8(v.value); break
    case GgufType.INT8: checkInt(key, v.value, -0x80, 0x7f); b.i8(v.value); break
    case GgufType.UINT16: checkInt(key, v.value, 0, 0xffff); b.u16(v.value); break
    case GgufType.INT16: checkInt(key, v.value, -0x8000, 0x7fff); b.i16(v.value); break
    case GgufType.UINT32: checkInt(key, v.value, 0, 0xffffffff); b.u32(v.value); break
    case GgufType.INT32: checkInt(key, v.value, -0x80000000, 0x7fffffff); b.i32(v.value); break
    case GgufType.FLOAT32: b.f32(v.value); break
    case GgufType.FLOAT64: b.f64(v.value); break
    case GgufType.UINT64: b.u64(v.value); break
    case GgufType.INT64: b.i64(v.value); break
    case GgufType.ARRAY:
      b.u32(v.elementType)
      b.u64(v.value.length)
      if (v.elementType === GgufType.STRING) for (const s of v.value as readonly string[]) b.str(s)
      else b.numbers(v.elementType, v.value as ArrayLike<number>)
      break
  }
}

export interface GgufWriteOptions {
  /** Called after each tensor is written: (tensors done, total, bytes done, total bytes). */
  onTensor?: (done: number, total: number, bytesDone: number, bytesTotal: number) => void
  /** For a full disk's message: what is written (e.g. "the GGUF file"). */
  what?: string
}

/** Metadata and tensors gathered in order, then written in one pass. */
export class GgufWriter {
  private readonly kv = new Map<string, GgufValue>()
  private readonly tensors: GgufTensor[] = []
  private readonly names = new Set<string>()

  constructor(readonly alignment = GGUF_DEFAULT_ALIGNMENT) {
    if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) {
      throw new RangeError(`GGUF alignment must be a positive multiple of 8, received ${alignment}`)
    }
    if (alignment !== GGUF_DEFAULT_ALIGNMENT) this.set('general.alignment', gguf.u32(alignment))
  }

  set(key: string, value: GgufValue): this {
    if (key === '') throw new Error('GGUF metadata key is empty')
    this.kv.set(key, value)
    return this
  }

  get(key: string): GgufValue | undefined {
    return this.kv.get(key)
  }

  addTensor(t: GgufTensor): this {
    if (this.names.has(t.name)) throw new Error(`GGUF tensor ${t.name} added twice`)
    if (Buffer.byteLength(t.name, 'utf8') >= 64) throw new Error(`GGUF tensor name ${t.name} is longer than ggml's 63 bytes`)
    if (t.shape.length < 1 || t.shape.length > 4) throw new Error(`GGUF tensor ${t.name}: ${t.shape.length} dimensions (1 to 4)`)
    tensorBytes(t.shape, t.type) // checks q8_0 rows
    this.names.add(t.name)
    this.tensors.push(t)
    return this
  }

  get tensorList(): readonly GgufTensor[] {
    return this.tensors
  }

  /** Header, metadata and tensor infos; `offsets[i]` is tensor i's offset in the data section. */
  header(): { bytes: Uint8Array; offsets: number[]; dataBytes: number } {
    const b = new ByteBuilder()
    b.u32(GGUF_MAGIC)
    b.u32(GGUF_VERSION)
    b.u64(this.tensors.length)
    b.u64(this.kv.size)
    for (const [key, v] of this.kv) {
      b.str(key)
      writeValue(b, key, v)
    }
    const offsets: number[] = []
    let offset = 0
    for (const t of this.tensors) {
      b.str(t.name)
      b.u32(t.shape.length)
      for (let i = t.shape.length - 1; i >= 0; i--) b.u64(t.shape[i])
      b.u32(t.type)
      b.u64(offset)
      offsets.push(offset)
      offset = align(offset + tensorBytes(t.shape, t.type), this.alignment)
    }
    const head = b.bytes()
    const padded = new Uint8Array(align(head.length, this.alignment))
    padded.set(head)
    return { bytes: padded, offsets, dataBytes: offset }
  }

  /** Writes the whole file to `file` atomically (a temporary name, fsync, rename). */
  write(file: string, o: GgufWriteOptions = {}): void {
    const { bytes: head, offsets, dataBytes } = this.header()
    const save: SaveInfo = { what: o.what ?? 'the GGUF file', bytes: head.length + dataBytes, dir: path.dirname(path.resolve(file)) }
    replaceFile(file, (tmp) => {
      writing(tmp, () => {
        const fd = fs.openSync(tmp, 'w')
        try {
          writeAll(fd, head, 0, tmp)
          let done = 0
          for (let i = 0; i < this.tensors.length; i++) {
            const t = this.tensors[i]
            const data = encodeTensor(t.data(), t.shape, t.type)
            writeAll(fd, data, head.length + offsets[i], tmp)
            done += data.length
            o.onTensor?.(i + 1, this.tensors.length, done, dataBytes)
          }
          // The last tensor's padding: the data section's size is a multiple of the alignment.
          const end = head.length + dataBytes
          if (fs.fstatSync(fd).size < end) fs.ftruncateSync(fd, end)
          fs.fsyncSync(fd)
        } finally {
          fs.closeSync(fd)
        }
      })
    }, save)
  }
}
