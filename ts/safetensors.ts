/**
 * The safetensors format: 8 bytes of little-endian header length, a JSON header
 * { __metadata__?: {..}, name: { dtype, shape, data_offsets: [begin, end] }, .. }, then the raw
 * little-endian tensor bytes, every byte of them belonging to exactly one tensor.
 *
 * Reading goes tensor by tensor through a file descriptor and positioned reads (a 16 GB
 * checkpoint never sits in the JS heap; one tensor at a time does), widening F16 and BF16 to
 * float32 exactly. Writing is streamed: each tensor is asked for its values (`read()`) only
 * when its turn comes, converted in small chunks and written, so a file holds one tensor in
 * memory at a time.
 *
 * Files are written the way Hugging Face's safetensors library (`safetensors.torch.save_file`,
 * which transformers' save_pretrained calls with metadata {"format":"pt"}) writes them, so that
 * the bytes are the same as torch's for the same tensors (checked against safetensors 0.8):
 *  - tensors sorted by dtype, widest first, then by name in byte order (its Rust `prepare`
 *    sorts this way; one dtype per file here, so by name), the data in the header's order,
 *  - "__metadata__" first, then each tensor as {"dtype","shape","data_offsets"}, compact JSON,
 *  - the header padded with spaces to a multiple of 8 bytes.
 * So save → load → save is byte-identical, and the order tensors are given in does not matter.
 *
 * Conversions from float32 round to nearest, ties to even (torch's and the hardware's rule):
 * BF16 keeps the top 16 bits after rounding; F16 overflows to ±inf from 65520 up, rounds into
 * the subnormals (2^-24 is the smallest) and flushes below 2^-25 to ±0. A NaN stays a quiet
 * NaN with its sign and top payload bits: the canonical f32 NaN 0x7fc00000 becomes 0x7e00 in
 * F16 (as torch 2.13 on CPU writes it) and 0x7fc0 in BF16 (as torch's scalar cast does; its CPU
 * tensor cast writes 0xffff for every NaN, so there alone the bytes differ from torch's).
 * Every non-NaN float32 converts as torch 2.13's CPU casts do (checked on 13.5M bit patterns).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { writeAll, writing } from './atomic-write'

// Tensor bytes are little-endian; on a little-endian host they are copied, not converted.
const LITTLE_ENDIAN = os.endianness() === 'LE'

/** The dtypes this module converts to and from float32. */
export type SafetensorsDType = 'F32' | 'F16' | 'BF16'

export interface TensorEntry {
  dtype: string
  shape: number[]
  /** Byte range of the tensor's data in the file (absolute offsets). */
  begin: number
  end: number
}

export interface SafetensorsFile {
  path: string
  metadata: Record<string, string>
  /** The tensors in header order (for files written by safetensors: sorted by name). */
  tensors: Map<string, TensorEntry>
  /** The tensor as float32 (F16 and BF16 are widened exactly); other dtypes are an error. */
  read(name: string): Float32Array
  close(): void
}

/** A tensor whose values are produced only when it is written. */
export interface LazyTensor {
  name: string
  shape: number[]
  read(): Float32Array
}

// Bytes per element of the safetensors dtypes. Unknown dtypes (F4, ..) can be read as headers, not as data.
const BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4,
  F64: 8, I64: 8, U64: 8, C64: 8,
}

/** Bytes per element of a safetensors dtype, or undefined for one this module does not know. */
export function dtypeBytes(dtype: string): number | undefined {
  return Object.prototype.hasOwnProperty.call(BYTES, dtype) ? BYTES[dtype] : undefined
}

export function isSupportedDtype(dtype: string): dtype is SafetensorsDType {
  return dtype === 'F32' || dtype === 'F16' || dtype === 'BF16'
}

/** The safetensors library refuses headers above 100 MB; so do we (a corrupt length would allocate it). */
const MAX_HEADER_BYTES = 100_000_000
/** Elements converted per chunk while reading or writing (4 MiB of float32). */
const CHUNK = 1 << 20
/** Largest single read handed to the OS (Linux moves at most ~2 GiB per call). */
const IO_BYTES = 1 << 30

export class SafetensorsError extends Error {
  constructor(path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'SafetensorsError'
  }
}

// ---------------------------------------------------------------------------------------------
// float32 <-> F16 / BF16 bits

/** float32 bits → BF16 bits, round to nearest even; NaN stays a quiet NaN with its sign. */
export function f32BitsToBf16(u: number): number {
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x0040) & 0xffff
  return ((u >>> 0) + 0x7fff + ((u >>> 16) & 1)) >>> 16 // the carry rounds up into the exponent (max → inf)
}

/** float32 bits → IEEE half bits, round to nearest even, ±inf from 65520, subnormals rounded. */
export function f32BitsToF16(u: number): number {
  const sign = (u >>> 16) & 0x8000
  const a = u & 0x7fffffff
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff) // NaN: quiet, top payload bits kept
  if (a >= 0x477ff000) return sign | 0x7c00 // >= 65520 (halfway 65504..65536, ties to the even inf), and inf
  if (a >= 0x38800000) { // >= 2^-14: a normal half; rebias the exponent (127 → 15), round off 13 bits
    const b = a - 0x38000000
    return sign | ((b + 0xfff + ((b >>> 13) & 1)) >>> 13)
  }
  const e = a >>> 23
  if (e < 102) return sign // below 2^-25 (f32 subnormals included): ±0
  // A half subnormal: value / 2^-24 = mantissa >> (126 - e), rounded to even; 0x400 is the smallest normal.
  const m = (a & 0x7fffff) | 0x800000
  const shift = 126 - e // 14 .. 24
  const half = 1 << (shift - 1)
  const rest = m & ((1 << shift) - 1)
  let r = m >>> shift
  if (rest > half || (rest === half && (r & 1) === 1)) r++
  return sign | r
}

let f16Table: Uint32Array | undefined
/** All 65536 half values as float32 bits (exact; NaN payloads kept). */
function halfTable(): Uint32Array {
  if (f16Table) return f16Table
  const t = new Uint32Array(65536)
  const f = new Float32Array(1), fu = new Uint32Array(f.buffer)
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16, exp = (h >>> 10) & 0x1f, frac = h & 0x3ff
    if (exp === 0) {
      f[0] = frac * 2 ** -24 // exact in float32
      t[h] = sign | fu[0]
    } else if (exp === 31) {
      t[h] = sign | 0x7f800000 | (frac << 13)
    } else {
      t[h] = sign | ((exp + 112) << 23) | (frac << 13)
    }
  }
  f16Table = t
  return t
}

/** IEEE half bits → the float32 value (exact). */
export function f16BitsToF32(h: number): number {
  return new Float32Array(new Uint32Array([halfTable()[h & 0xffff]]).buffer)[0]
}

/** BF16 bits → the float32 value (exact). */
export function bf16BitsToF32(h: number): number {
  return new Float32Array(new Uint32Array([(h & 0xffff) << 16]).buffer)[0]
}

// ---------------------------------------------------------------------------------------------
// I/O helpers: whole reads and writes at a position (the OS may move fewer bytes per call)

function readFully(fd: number, buf: Uint8Array, position: number, path: string): void {
  let done = 0
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, Math.min(buf.length - done, IO_BYTES), position + done)
    if (n === 0) throw new SafetensorsError(path, `unexpected end of file at byte ${position + done}`)
    done += n
  }
}

const numelOf = (shape: number[]): number => shape.reduce((a, d) => a * d, 1)

// ---------------------------------------------------------------------------------------------
// reading

/** Where in the file (byte offset) a JSON.parse error of the header points. */
function jsonErrorOffset(json: string, headerBytes: number, message: string): number {
  const m = /at position (\d+)/.exec(message)
  return 8 + (m ? Buffer.byteLength(json.slice(0, Number(m[1]))) : headerBytes)
}

export function openSafetensors(path: string): SafetensorsFile {
  const fd = fs.openSync(path, 'r')
  try {
    const size = fs.fstatSync(fd).size
    if (size < 8) throw new SafetensorsError(path, `${size} bytes is too short to be a safetensors file`)
    const head = Buffer.alloc(8)
    readFully(fd, head, 0, path)
    const headerLen = Number(head.readBigUInt64LE(0))
    if (headerLen < 2) throw new SafetensorsError(path, `header length ${headerLen} (bytes 0-7) is too small for a JSON header`)
    if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > size) {
      throw new SafetensorsError(path, `header length ${headerLen} (bytes 0-7) does not fit in a ${size}-byte file`)
    }
    const raw = Buffer.alloc(headerLen)
    readFully(fd, raw, 8, path)
    const json = raw.toString('utf8')
    let header: unknown
    try {
      header = JSON.parse(json)
    } catch (err) {
      const msg = (err as Error).message
      throw new SafetensorsError(path, `header is not valid JSON at byte ${jsonErrorOffset(json, headerLen, msg)} (${msg})`)
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) {
      throw new SafetensorsError(path, 'header (byte 8) is not a JSON object')
    }
    const dataStart = 8 + headerLen
    const dataBytes = size - dataStart
    const tensors = new Map<string, TensorEntry>()
    let metadata: Record<string, string> = {}
    for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') {
        if (typeof value !== 'object' || value === null || Array.isArray(value) ||
          !Object.values(value).every((x) => typeof x === 'string')) {
          throw new SafetensorsError(path, 'header: "__metadata__" must map strings to strings')
        }
        metadata = value as Record<string, string>
        continue
      }
      const v = (value ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
      const shape = v.shape as number[]
      const offsets = v.data_offsets as number[]
      const nonNegInt = (x: unknown): boolean => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0
      if (typeof v.dtype !== 'string' || !Array.isArray(shape) || !shape.every(nonNegInt) ||
        !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(nonNegInt)) {
        throw new SafetensorsError(path, `header: tensor "${name}": malformed entry ${JSON.stringify(value)} ` +
          '(expected {"dtype": string, "shape": [int], "data_offsets": [begin, end]})')
      }
      const [b, e] = offsets
      if (e < b || e > dataBytes) {
        throw new SafetensorsError(path, `tensor "${name}": data_offsets [${b}, ${e}] (file bytes ${dataStart + b}-${dataStart + e}) ` +
          `run past the end of the ${size}-byte file`)
      }
      const bytes = dtypeBytes(v.dtype)
      if (bytes !== undefined && e - b !== numelOf(shape) * bytes) {
        throw new SafetensorsError(path, `tensor "${name}": ${e - b} bytes at file byte ${dataStart + b} for ${v.dtype} shape [${shape}] ` +
          `(expected ${numelOf(shape) * bytes})`)
      }
      tensors.set(name, { dtype: v.dtype, shape, begin: dataStart + b, end: dataStart + e })
    }
    // Like the safetensors library: the tensors tile the data area, no gaps, no overlaps, nothing after.
    let at = dataStart
    for (const [name, t] of [...tensors].sort((x, y) => x[1].begin - y[1].begin || x[1].end - y[1].end)) {
      if (t.begin !== at) {
        throw new SafetensorsError(path, `tensor "${name}": data starts at file byte ${t.begin}, expected ${at} ` +
          `(tensors must cover the data area without ${t.begin < at ? 'overlap' : 'gaps'})`)
      }
      at = t.end
    }
    if (at !== size) throw new SafetensorsError(path, `${size - at} bytes at file byte ${at} belong to no tensor`)

    return {
      path,
      metadata,
      tensors,
      read(name: string): Float32Array {
        const t = tensors.get(name)
        if (!t) throw new SafetensorsError(path, `no tensor "${name}"`)
        if (!isSupportedDtype(t.dtype)) {
          throw new SafetensorsError(path, `tensor "${name}": dtype ${t.dtype} is not supported (F32, F16 or BF16)`)
        }
        const n = numelOf(t.shape)
        const out = new Float32Array(n)
        if (t.dtype === 'F32') {
          const bytes = new Uint8Array(out.buffer)
          readFully(fd, bytes, t.begin, path)
          if (!LITTLE_ENDIAN) Buffer.from(out.buffer).swap32()
          return out
        }
        const out32 = new Uint32Array(out.buffer)
        const scratch = new Uint16Array(Math.min(n, CHUNK))
        const scratchBytes = new Uint8Array(scratch.buffer)
        const table = t.dtype === 'F16' ? halfTable() : undefined
        for (let i0 = 0; i0 < n; i0 += CHUNK) {
          const m = Math.min(CHUNK, n - i0)
          readFully(fd, scratchBytes.subarray(0, 2 * m), t.begin + 2 * i0, path)
          if (!LITTLE_ENDIAN) Buffer.from(scratch.buffer, 0, 2 * m).swap16()
          if (table) for (let i = 0; i < m; i++) out32[i0 + i] = table[scratch[i]]
          else for (let i = 0; i < m; i++) out32[i0 + i] = scratch[i] << 16
        }
        return out
      },
      close: () => fs.closeSync(fd),
    }
  } catch (err) {
    fs.closeSync(fd)
    throw err
  }
}

// ---------------------------------------------------------------------------------------------
// writing

/** Byte-order comparison of the UTF-8 names (Rust's String order, which is code point order). */
export function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

function checkShape(path: string, name: string, shape: unknown): void {
  if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(path, `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`)
  }
}

/**
 * The header (8-byte length + JSON padded with spaces to a multiple of 8) for tensors of one
 * dtype, in the order given, and their data size. Built by hand, not with JSON.stringify on
 * an object, because JS objects put integer-like keys ("0", "12") first.
 */
function headerBytes(tensors: Array<{ name: string; shape: number[] }>, dtype: SafetensorsDType,
  metadata: Record<string, string> | null): { head: Buffer; dataBytes: number } {
  const parts: string[] = []
  if (metadata) parts.push(`"__metadata__":{${Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`)
  let offset = 0
  for (const t of tensors) {
    const bytes = numelOf(t.shape) * BYTES[dtype]
    parts.push(`${JSON.stringify(t.name)}:{"dtype":"${dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`)
    offset += bytes
  }
  let json = `{${parts.join(',')}}`
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8)
  const head = Buffer.alloc(8 + Buffer.byteLength(json))
  head.writeBigUInt64LE(BigInt(head.length - 8))
  head.write(json, 8, 'utf8')
  return { head, dataBytes: offset }
}

/** Converts and writes one tensor's values at `position` of `file`, CHUNK elements at a time. */
function writeData(fd: number, position: number, data: Float32Array, dtype: SafetensorsDType, file: string): void {
  const n = data.length
  if (dtype === 'F32') {
    if (LITTLE_ENDIAN) {
      writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), position, file)
      return
    }
    for (let i0 = 0; i0 < n; i0 += CHUNK) {
      const chunk = Buffer.from(data.slice(i0, Math.min(n, i0 + CHUNK)).buffer).swap32()
      writeAll(fd, chunk, position + 4 * i0, file)
    }
    return
  }
  const src = new Uint32Array(data.buffer, data.byteOffset, n) // the bits, NaN payloads included
  const dst = new Uint16Array(Math.min(n, CHUNK))
  const bytes = Buffer.from(dst.buffer)
  for (let i0 = 0; i0 < n; i0 += CHUNK) {
    const m = Math.min(CHUNK, n - i0)
    // Two loops, not one through a function variable: each call site then sees one function and inlines it.
    if (dtype === 'BF16') for (let i = 0; i < m; i++) dst[i] = f32BitsToBf16(src[i0 + i])
    else for (let i = 0; i < m; i++) dst[i] = f32BitsToF16(src[i0 + i])
    const chunk = bytes.subarray(0, 2 * m)
    if (!LITTLE_ENDIAN) chunk.swap16()
    writeAll(fd, chunk, position + 2 * i0, file)
  }
}

export interface WriteSafetensorsOptions {
  /** The dtype every tensor is stored in (converted from float32). Default F32. */
  dtype?: SafetensorsDType
  /** The header's "__metadata__"; null writes none. Default {"format":"pt"}, as transformers writes. */
  metadata?: Record<string, string> | null
}

/**
 * Writes tensors to `path` (created or truncated; not atomic: callers write a temporary name
 * and rename), in safetensors' order (by name), calling each `read()` once, when its data is
 * written, and keeping no reference to it afterwards. fsyncs before returning. Returns the
 * file's size in bytes. A failure removes the partly written file; a file system error (a full
 * disk) is a WriteError (ts/atomic-write.ts) naming `path`.
 */
export function writeSafetensorsLazy(path: string, tensors: Iterable<LazyTensor>, o: WriteSafetensorsOptions = {}): number {
  const dtype = o.dtype ?? 'F32'
  if (!isSupportedDtype(dtype)) throw new SafetensorsError(path, `dtype ${String(dtype)} is not supported for writing (F32, F16 or BF16)`)
  const list = [...tensors]
  const seen = new Set<string>()
  for (const t of list) {
    if (typeof t.name !== 'string' || t.name === '__metadata__') throw new SafetensorsError(path, `tensor name ${JSON.stringify(t.name)} is not allowed`)
    if (seen.has(t.name)) throw new SafetensorsError(path, `tensor "${t.name}" is given twice`)
    seen.add(t.name)
    checkShape(path, t.name, t.shape)
  }
  // One dtype per file: the library's (dtype, name) order reduces to the name order.
  list.sort((a, b) => compareNames(a.name, b.name))
  const { head, dataBytes } = headerBytes(list, dtype, o.metadata === undefined ? { format: 'pt' } : o.metadata)
  const fd = writing(path, () => fs.openSync(path, 'w'))
  let position: number
  try {
    writeAll(fd, head, 0, path)
    position = head.length
    for (const t of list) {
      const data = t.read()
      const n = numelOf(t.shape)
      // Checked by tag, not instanceof: a Float32Array from the native addon or another realm (jest's) is one too.
      const isF32 = Object.prototype.toString.call(data) === '[object Float32Array]'
      if (!isF32 || data.length !== n) {
        throw new SafetensorsError(path, `tensor "${t.name}": read() gave ${isF32 ? `${data.length} float32 values` :
          'no Float32Array'} for shape [${t.shape}] (${n} values)`)
      }
      writeData(fd, position, data, dtype, path)
      position += n * BYTES[dtype]
    }
    if (position !== head.length + dataBytes) throw new SafetensorsError(path, 'internal error: data size differs from the header')
    writing(path, () => fs.fsyncSync(fd))
  } catch (err) {
    try { fs.closeSync(fd) } catch { /* the first error is the one to report */ }
    fs.rmSync(path, { force: true }) // a partial file is garbage, and it holds the space a full disk needs
    throw err
  }
  try {
    writing(path, () => fs.closeSync(fd))
  } catch (err) {
    fs.rmSync(path, { force: true })
    throw err
  }
  return position
}

/** The size in bytes of the file writeSafetensorsLazy would write, from names and shapes alone. */
export function safetensorsFileBytes(tensors: Array<{ name: string; shape: number[] }>, dtype: SafetensorsDType = 'F32',
  metadata: Record<string, string> | null = { format: 'pt' }): number {
  const sorted = [...tensors].sort((a, b) => compareNames(a.name, b.name))
  const { head, dataBytes } = headerBytes(sorted, dtype, metadata)
  return head.length + dataBytes
}

/**
 * Writes float32 tensors held in memory (the original API; see writeSafetensorsLazy for the
 * streamed form, which this calls): sorted by name, F32, not atomic (the caller renames).
 */
export function writeSafetensors(path: string, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>,
  metadata: Record<string, string> = { format: 'pt' }): void {
  writeSafetensorsLazy(path, tensors.map((t) => ({ name: t.name, shape: t.shape, read: () => t.data })), { dtype: 'F32', metadata })
}
