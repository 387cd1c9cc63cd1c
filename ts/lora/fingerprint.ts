/**
 * The fingerprint of a base model directory, kept next to an adapter (plwtune_base.json) so
 * that an adapter is never applied to another base than the one it was trained on. It is
 * cheap even for a 15 GB model: the weight files' sizes, and SHA-256 of config.json and of
 * the tensor index — model.safetensors.index.json when sharded, else the single file's
 * safetensors header (8-byte length + JSON: every name, dtype, shape and offset), not its data.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'
import { INDEX_FILE, SINGLE_FILE, openTensorDir } from '../tensor-dir'

export interface BaseFingerprint {
  /** The base directory's absolute path when the fingerprint was taken. */
  path: string
  /** Total size in bytes of model.safetensors or of the shards. */
  bytes: number
  /** SHA-256 (hex) of config.json's bytes. */
  configSha256: string
  /** SHA-256 (hex) of model.safetensors.index.json's bytes, or of model.safetensors' header. */
  indexSha256: string
}

const sha256 = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex')

/** The 8-byte length and the JSON header of a safetensors file (its data is not read). */
function safetensorsHeader(file: string): Buffer {
  const fd = fs.openSync(file, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const head = Buffer.alloc(8)
    if (size < 8 || fs.readSync(fd, head, 0, 8, 0) !== 8) throw new Error(`${file}: too short to be a safetensors file`)
    const len = Number(head.readBigUInt64LE(0))
    if (8 + len > size) throw new Error(`${file}: header length ${len} does not fit in a ${size}-byte file`)
    const out = Buffer.alloc(8 + len)
    head.copy(out)
    let done = 0
    while (done < len) {
      const n = fs.readSync(fd, out, 8 + done, len - done, 8 + done)
      if (n === 0) throw new Error(`${file}: unexpected end of file in the header`)
      done += n
    }
    return out
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The fingerprint of the model directory `dir` (model.safetensors wins over an index when
 * both are present, as when loading).
 */
export function baseFingerprint(dir: string): BaseFingerprint {
  const configFile = path.join(dir, 'config.json')
  if (!fs.existsSync(configFile)) throw new Error(`${dir}: no config.json (expected a Hugging Face model directory)`)
  const configSha256 = sha256(fs.readFileSync(configFile))
  const single = path.join(dir, SINGLE_FILE)
  if (fs.existsSync(single)) {
    return { path: path.resolve(dir), bytes: fs.statSync(single).size, configSha256, indexSha256: sha256(safetensorsHeader(single)) }
  }
  const index = path.join(dir, INDEX_FILE)
  if (!fs.existsSync(index)) throw new Error(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`)
  const files = openTensorDir(dir) // the shard list, with the index's own checks
  try {
    const bytes = files.files.reduce((sum, f) => sum + fs.statSync(f).size, 0)
    return { path: path.resolve(dir), bytes, configSha256, indexSha256: sha256(fs.readFileSync(index)) }
  } finally {
    files.close()
  }
}

/**
 * Throws when the model in `dir` is not the base the adapter in `adapterDir` was trained on
 * (`expected`), saying which of size, config.json and tensor index differ. The path alone may
 * differ: a base that was moved or copied is the same base.
 */
export function checkBase(dir: string, expected: BaseFingerprint, adapterDir: string): void {
  const actual = baseFingerprint(dir)
  const differs: string[] = []
  if (actual.bytes !== expected.bytes) differs.push(`weight files of ${actual.bytes} bytes, not ${expected.bytes}`)
  if (actual.configSha256 !== expected.configSha256) differs.push('a different config.json')
  if (actual.indexSha256 !== expected.indexSha256) {
    differs.push(`a different tensor index (${fs.existsSync(path.join(dir, SINGLE_FILE)) ? `${SINGLE_FILE} header` : INDEX_FILE})`)
  }
  if (differs.length === 0) return
  throw new Error(`${adapterDir}: this adapter was trained on the base model ${expected.path}, and ${path.resolve(dir)} differs ` +
    `from it: ${differs.join(', ')}. Pass that base with --model ${expected.path} (or a copy of it); an adapter applied to ` +
    'another model computes something else.')
}

/** Reads a fingerprint written by JSON.stringify (plwtune_base.json); the message names the file and field. */
export function parseFingerprint(json: unknown, file: string): BaseFingerprint {
  const o = json as Record<string, unknown> | null
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error(`${file}: expected a JSON object`)
  const str = (k: string): string => {
    if (typeof o[k] !== 'string' || o[k] === '') throw new Error(`${file}: field "${k}" must be a non-empty string, received ${JSON.stringify(o[k])}`)
    return o[k] as string
  }
  const bytes = o.bytes
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new Error(`${file}: field "bytes" must be a non-negative integer, received ${JSON.stringify(bytes)}`)
  }
  return { path: str('path'), bytes, configSha256: str('configSha256'), indexSha256: str('indexSha256') }
}
