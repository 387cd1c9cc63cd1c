/**
 * The safetensors format: 8 bytes of little-endian header length, a JSON header
 * { name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {..} }, then the raw
 * little-endian tensor bytes. Reading goes tensor by tensor through a file descriptor (a
 * 1.5B-parameter f32 file is larger than one Node Buffer); writing is deterministic (tensors
 * in the order given, header padded with spaces to 8 bytes) so that save → load → save is
 * byte-identical.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'

// Tensor bytes are little-endian; on a little-endian host they are copied, not converted.
const LITTLE_ENDIAN = os.endianness() === 'LE'

export type SafetensorsDType = 'F32' | 'F16' | 'BF16'

export interface TensorEntry {
  dtype: string
  shape: number[]
  begin: number
  end: number
}

export interface SafetensorsFile {
  path: string
  metadata: Record<string, string>
  tensors: Map<string, TensorEntry>
  /** The tensor as float32 (F16 and BF16 are widened exactly). */
  read(name: string): Float32Array
  close(): void
}

const BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 }

export class SafetensorsError extends Error {
  constructor(path: string, message: string) {
    super(`${path}: ${message}`)
    this.name = 'SafetensorsError'
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exp = (h >> 10) & 0x1f
  const frac = h & 0x3ff
  if (exp === 0) return sign * frac * 2 ** -24
  if (exp === 31) return frac ? NaN : sign * Infinity
  return sign * (1 + frac / 1024) * 2 ** (exp - 15)
}

export function openSafetensors(path: string): SafetensorsFile {
  const fd = fs.openSync(path, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const head = Buffer.alloc(8)
    if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw new SafetensorsError(path, 'too short to be a safetensors file')
    const headerLen = Number(head.readBigUInt64LE(0))
    if (headerLen <= 0 || 8 + headerLen > size) throw new SafetensorsError(path, `header length ${headerLen} does not fit in a ${size}-byte file`)
    const json = Buffer.alloc(headerLen)
    fs.readSync(fd, json, 0, headerLen, 8)
    let header: Record<string, unknown>
    try {
      header = JSON.parse(json.toString('utf8')) as Record<string, unknown>
    } catch (err) {
      throw new SafetensorsError(path, `header is not valid JSON (${(err as Error).message})`)
    }
    const dataStart = 8 + headerLen
    const tensors = new Map<string, TensorEntry>()
    let metadata: Record<string, string> = {}
    for (const [name, value] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = value as Record<string, string>
        continue
      }
      const v = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
      const offsets = v.data_offsets as number[]
      if (typeof v.dtype !== 'string' || !Array.isArray(v.shape) || !Array.isArray(offsets) || offsets.length !== 2) {
        throw new SafetensorsError(path, `tensor "${name}": malformed header entry`)
      }
      const [b, e] = offsets
      const numel = (v.shape as number[]).reduce((a, d) => a * d, 1)
      if (BYTES[v.dtype] !== undefined && e - b !== numel * BYTES[v.dtype]) {
        throw new SafetensorsError(path, `tensor "${name}": ${e - b} bytes for ${v.dtype} shape [${v.shape}]`)
      }
      if (dataStart + e > size) throw new SafetensorsError(path, `tensor "${name}": data runs past the end of the file`)
      tensors.set(name, { dtype: v.dtype, shape: v.shape as number[], begin: dataStart + b, end: dataStart + e })
    }
    return {
      path,
      metadata,
      tensors,
      read(name: string): Float32Array {
        const t = tensors.get(name)
        if (!t) throw new SafetensorsError(path, `no tensor "${name}"`)
        const raw = Buffer.alloc(t.end - t.begin)
        fs.readSync(fd, raw, 0, raw.length, t.begin)
        const n = t.shape.reduce((a, d) => a * d, 1)
        const out = new Float32Array(n)
        if (t.dtype === 'F32' && LITTLE_ENDIAN) {
          out.set(new Float32Array(raw.buffer, raw.byteOffset, n))
        } else if (t.dtype === 'F32') {
          for (let i = 0; i < n; i++) out[i] = raw.readFloatLE(4 * i)
        } else if (t.dtype === 'BF16') {
          const u = new Uint32Array(out.buffer)
          for (let i = 0; i < n; i++) u[i] = raw.readUInt16LE(2 * i) << 16
        } else if (t.dtype === 'F16') {
          for (let i = 0; i < n; i++) out[i] = halfToFloat(raw.readUInt16LE(2 * i))
        } else {
          throw new SafetensorsError(path, `tensor "${name}": dtype ${t.dtype} is not supported (F32, F16 or BF16)`)
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

/** Writes f32 tensors, in the order given, to `path` (not atomically: the caller renames). */
export function writeSafetensors(path: string, tensors: Array<{ name: string; shape: number[]; data: Float32Array }>,
  metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata }
  let offset = 0
  for (const t of tensors) {
    const bytes = t.data.length * 4
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + bytes] }
    offset += bytes
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8)
  const head = Buffer.alloc(8)
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)))
  const fd = fs.openSync(path, 'w')
  try {
    fs.writeSync(fd, head)
    fs.writeSync(fd, Buffer.from(json, 'utf8'))
    for (const t of tensors) {
      if (LITTLE_ENDIAN) {
        fs.writeSync(fd, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))
      } else {
        const le = Buffer.alloc(t.data.length * 4)
        for (let i = 0; i < t.data.length; i++) le.writeFloatLE(t.data[i], 4 * i)
        fs.writeSync(fd, le)
      }
    }
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}
