/**
 * ggml's Q8_0: blocks of 32 values along a row, each block 34 bytes — an f16 scale d then 32
 * int8 q, value ≈ d·q. As ggml's reference quantizer: d = max|x| / 127 (in f32), q =
 * round(x / d) half away from zero (so |q| ≤ 127), and d stored as f16. The error per value is
 * at most d/2 from rounding q plus 127·|d − f16(d)| from storing d (half an f16 ulp: relative
 * 2^-11 for a normal d, absolute 2^-25 below 2^-14), so |x − f16(d)·q| ≤ max|x|·(1/254 + 2^-11)
 * within a block whose d is a normal f16 (max|x| ≥ 127·2^-14 ≈ 0.0078).
 */
import { f16BitsToF32, f32BitsToF16 } from '../safetensors'

export const Q8_0_BLOCK = 32
export const Q8_0_BLOCK_BYTES = 2 + Q8_0_BLOCK

/** Q8_0 bytes of `x` (length a multiple of 32: rows are whole blocks). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_0_BLOCK !== 0) throw new RangeError(`q8_0: ${x.length} values is not a multiple of ${Q8_0_BLOCK}`)
  const blocks = x.length / Q8_0_BLOCK
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES)
  const dv = new DataView(out.buffer)
  const f = new Float32Array(1)
  const bits = new Uint32Array(f.buffer)
  for (let b = 0; b < blocks; b++) {
    const x0 = b * Q8_0_BLOCK
    let amax = 0
    for (let j = 0; j < Q8_0_BLOCK; j++) amax = Math.max(amax, Math.abs(x[x0 + j]))
    f[0] = amax / 127
    const d = f[0]
    const id = d !== 0 ? Math.fround(1 / d) : 0
    const o = b * Q8_0_BLOCK_BYTES
    dv.setUint16(o, f32BitsToF16(bits[0]), true)
    for (let j = 0; j < Q8_0_BLOCK; j++) {
      const v = Math.fround(x[x0 + j] * id)
      const q = v < 0 ? -Math.round(-v) : Math.round(v) // roundf: halves away from zero
      dv.setInt8(o + 2 + j, q)
    }
  }
  return out
}

/** The values a Q8_0 buffer holds (d16·q). */
export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n)
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  for (let b = 0; b < n / Q8_0_BLOCK; b++) {
    const o = b * Q8_0_BLOCK_BYTES
    const d = f16BitsToF32(dv.getUint16(o, true))
    for (let j = 0; j < Q8_0_BLOCK; j++) out[b * Q8_0_BLOCK + j] = d * dv.getInt8(o + 2 + j)
  }
  return out
}
