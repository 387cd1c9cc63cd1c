/**
 * The weights of a Hugging Face model directory: one `model.safetensors`, or shards
 * `model-00001-of-0000N.safetensors` … listed by `model.safetensors.index.json`
 * ({"metadata": {"total_size": bytes, ..}, "weight_map": {key: shard file}}).
 *
 * Reading opens shards lazily (headers only) and reads one tensor at a time through a file
 * descriptor, so a 16 GB checkpoint needs one tensor of JS memory, not 16 GB. When both
 * forms are present, model.safetensors wins, as in transformers' from_pretrained.
 *
 * Writing does what transformers' save_pretrained does, byte for byte where it is ours to
 * decide (checked against transformers 5.18 / huggingface_hub 1.33 / safetensors 0.8):
 *  - shards planned from names and shapes alone, before any data is read, by huggingface_hub's
 *    split_torch_state_dict_into_shards: tensors in the order given fill the current shard
 *    until the next would pass maxShardBytes; a tensor above the limit gets a shard of its own,
 *    placed where it is met (before the shard still being filled);
 *  - one shard is written as `model.safetensors` with no index; N shards as
 *    `model-0000i-of-0000N.safetensors` and an index that is `json.dumps(index, indent=2,
 *    sort_keys=True) + "\n"` with metadata {"total_parameters", "total_size"} (total_size:
 *    the sum of tensor bytes, headers not counted);
 *  - each shard through safetensors' writer (ts/safetensors.ts: sorted by name, {"format":"pt"}).
 *
 * A save is atomic in the sense that matters for a crash: every file is first written under
 * a temporary name (`.<name>.<pid>.tmp`) in the same directory and fsynced, which is where
 * nearly all of the time goes; only then are they renamed into place, the index last (or
 * model.safetensors last), and the files of the previous save that the new one does not
 * overwrite (shards of another count, a stale index or model.safetensors) removed after that.
 * A crash while writing leaves the previous save as it was; a crash during the renames leaves
 * the previous save readable too, except when both have the same shard count N > 1, where the
 * renames overwrite its shards one by one (the window is the few milliseconds of N renames).
 * A failure while writing (a full disk) removes the temporary files, so the space is free again,
 * and is reported as a WriteError (ts/atomic-write.ts) naming the file and the bytes needed.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import {
  LazyTensor, SafetensorsDType, SafetensorsError, SafetensorsFile, compareNames, dtypeBytes, isSupportedDtype, openSafetensors,
  writeSafetensorsLazy,
} from './safetensors'
import { WriteError, atDestination, fsyncDir, pidAlive, writeFileSynced, writing } from './atomic-write'

// The write helpers every saver shares live in ts/atomic-write.ts; these two were first defined here.
export { fsyncDir, pidAlive }

export type TensorDtype = SafetensorsDType

export const SINGLE_FILE = 'model.safetensors'
export const INDEX_FILE = 'model.safetensors.index.json'
/** transformers 4.x's default max_shard_size ("5GB"; 5.x's is "50GB"). */
export const DEFAULT_MAX_SHARD_BYTES = 5e9
const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/
const TEMP_NAME = /^\.(model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?)\.(\d+)\.tmp$/

/** A directory whose weights cannot be read or written: the message names the file and key. */
export class TensorDirError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'TensorDirError'
  }
}

export interface TensorInfo {
  /** The dtype in the file (any safetensors dtype; read() converts F32, F16 and BF16). */
  dtype: string
  shape: number[]
  /** The path of the file that holds it. */
  file: string
}

export interface TensorDir {
  readonly dir: string
  /** The weight files, in index order (one for model.safetensors). */
  readonly files: string[]
  /** The tensor names: header order for model.safetensors, index order for shards. */
  keys(): string[]
  has(key: string): boolean
  /** dtype, shape and file of one tensor (opens its shard's header, not its data). */
  info(key: string): TensorInfo
  /** One tensor as float32, read from its file at its offset. */
  read(key: string): Float32Array
  /** The dtype holding the most elements among F32/F16/BF16 tensors (F32 when there are none). */
  dominantDtype(): TensorDtype
  close(): void
}

// ---------------------------------------------------------------------------------------------
// reading

function readIndex(file: string): Map<string, string> {
  let json: unknown
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (err) {
    throw new TensorDirError(`${file}: not valid JSON (${(err as Error).message})`)
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new TensorDirError(`${file}: no "weight_map" object (expected {"metadata": {..}, "weight_map": {tensor: shard file}})`)
  }
  const out = new Map<string, string>()
  for (const [key, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
      throw new TensorDirError(`${file}: weight_map["${key}"] is ${JSON.stringify(shard)}, not a file name in the directory`)
    }
    out.set(key, shard)
  }
  return out
}

/** Opens the weights of a model directory (model.safetensors, else the index and its shards). */
export function openTensorDir(dir: string): TensorDir {
  const single = path.join(dir, SINGLE_FILE)
  const indexFile = path.join(dir, INDEX_FILE)
  let weightMap: Map<string, string> // key -> shard file name
  const opened = new Map<string, SafetensorsFile>() // shard file name -> open file
  const toTensorDirError = (err: unknown): never => {
    if (err instanceof SafetensorsError) throw new TensorDirError(err.message)
    throw err
  }
  if (fs.existsSync(single)) {
    let st: SafetensorsFile
    try {
      st = openSafetensors(single)
    } catch (err) {
      return toTensorDirError(err)
    }
    opened.set(SINGLE_FILE, st)
    weightMap = new Map([...st.tensors.keys()].map((k) => [k, SINGLE_FILE]))
  } else if (fs.existsSync(indexFile)) {
    weightMap = readIndex(indexFile)
    const firstKey = new Map<string, string>()
    for (const [key, shard] of weightMap) if (!firstKey.has(shard)) firstKey.set(shard, key)
    for (const [shard, key] of firstKey) {
      if (!fs.existsSync(path.join(dir, shard))) {
        const n = [...weightMap.values()].filter((s) => s === shard).length
        throw new TensorDirError(`${path.join(dir, shard)}: missing, but ${INDEX_FILE} puts ${n} tensor${n > 1 ? 's' : ''} ` +
          `there (first "${key}")`)
      }
    }
  } else {
    throw new TensorDirError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`)
  }
  const files = opened.has(SINGLE_FILE) ? [single] : [...new Set(weightMap.values())].map((f) => path.join(dir, f))

  const shardOf = (key: string): SafetensorsFile => {
    const shard = weightMap.get(key)
    if (shard === undefined) throw new TensorDirError(`${dir}: no tensor "${key}"`)
    let st = opened.get(shard)
    if (!st) {
      try {
        st = openSafetensors(path.join(dir, shard))
      } catch (err) {
        return toTensorDirError(err)
      }
      opened.set(shard, st)
    }
    if (!st.tensors.has(key)) throw new TensorDirError(`${st.path}: no tensor "${key}", though ${INDEX_FILE} puts it in this file`)
    return st
  }

  return {
    dir,
    files,
    keys: () => [...weightMap.keys()],
    has: (key) => weightMap.has(key),
    info(key) {
      const st = shardOf(key)
      const t = st.tensors.get(key)!
      return { dtype: t.dtype, shape: [...t.shape], file: st.path }
    },
    read(key) {
      const st = shardOf(key)
      try {
        return st.read(key)
      } catch (err) {
        return toTensorDirError(err)
      }
    },
    dominantDtype() {
      const count: Record<TensorDtype, number> = { F32: 0, BF16: 0, F16: 0 }
      for (const key of weightMap.keys()) {
        const t = shardOf(key).tensors.get(key)!
        if (isSupportedDtype(t.dtype)) count[t.dtype] += t.shape.reduce((a, d) => a * d, 1)
      }
      return (['F32', 'BF16', 'F16'] as const).reduce((best, d) => (count[d] > count[best] ? d : best), 'F32' as TensorDtype)
    },
    close() {
      for (const st of opened.values()) st.close()
      opened.clear()
    },
  }
}

// ---------------------------------------------------------------------------------------------
// shard planning

export interface ShardPlan {
  /** Files in write order, each with its tensor names in the order given. */
  shards: Array<{ file: string; names: string[]; bytes: number }>
  /** Sum of the tensors' data bytes (the index's metadata.total_size). */
  totalSize: number
  /** Sum of the tensors' element counts (the index's metadata.total_parameters). */
  totalParameters: number
}

const numelOf = (shape: number[]): number => shape.reduce((a, d) => a * d, 1)

/**
 * huggingface_hub's split_torch_state_dict_into_shards from names and shapes: greedy in the
 * order given; a tensor above maxShardBytes is a shard by itself, appended when met.
 */
export function planShards(tensors: Array<{ name: string; shape: number[] }>, dtype: TensorDtype,
  maxShardBytes: number = DEFAULT_MAX_SHARD_BYTES): ShardPlan {
  if (!isSupportedDtype(dtype)) throw new TensorDirError(`dtype ${String(dtype)} is not supported for writing (F32, F16 or BF16)`)
  if (!(maxShardBytes > 0)) throw new TensorDirError(`maxShardBytes must be a positive number of bytes, received ${maxShardBytes}`)
  const bytesPer = dtypeBytes(dtype)!
  const groups: Array<{ names: string[]; bytes: number }> = []
  let current: { names: string[]; bytes: number } = { names: [], bytes: 0 }
  let totalSize = 0, totalParameters = 0
  const seen = new Set<string>()
  for (const t of tensors) {
    if (seen.has(t.name)) throw new TensorDirError(`tensor "${t.name}" is given twice`)
    seen.add(t.name)
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new TensorDirError(`tensor "${t.name}": shape ${JSON.stringify(t.shape)} is not a list of non-negative integers`)
    }
    const bytes = numelOf(t.shape) * bytesPer
    totalSize += bytes
    totalParameters += numelOf(t.shape)
    if (bytes > maxShardBytes) {
      groups.push({ names: [t.name], bytes })
      continue
    }
    if (current.bytes + bytes > maxShardBytes) {
      groups.push(current)
      current = { names: [], bytes: 0 }
    }
    current.names.push(t.name)
    current.bytes += bytes
  }
  if (current.names.length > 0 || groups.length === 0) groups.push(current)
  const n = groups.length
  const pad = (i: number): string => String(i).padStart(5, '0')
  return {
    shards: groups.map((g, i) => ({ file: n === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`, ...g })),
    totalSize,
    totalParameters,
  }
}

/** Python's json.dumps(s) with ensure_ascii: JSON.stringify, then every non-ASCII or DEL code unit as \uXXXX. */
function pyJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * The text of model.safetensors.index.json for a sharded plan, as transformers writes it:
 * json.dumps({"metadata": {"total_parameters", "total_size"}, "weight_map"}, indent=2, sort_keys=True) + "\n".
 */
export function indexJson(plan: ShardPlan): string {
  const map: Array<[string, string]> = plan.shards.flatMap((s) => s.names.map((k): [string, string] => [k, s.file]))
  map.sort((a, b) => compareNames(a[0], b[0])) // sort_keys: code point order, as the UTF-8 byte order
  const entries = map.map(([k, f]) => `    ${pyJsonString(k)}: ${pyJsonString(f)}`)
  return '{\n' +
    '  "metadata": {\n' +
    `    "total_parameters": ${plan.totalParameters},\n` +
    `    "total_size": ${plan.totalSize}\n` +
    '  },\n' +
    `  "weight_map": ${entries.length ? `{\n${entries.join(',\n')}\n  }` : '{}'}\n` +
    '}\n'
}

// ---------------------------------------------------------------------------------------------
// writing

export interface WriteTensorDirOptions {
  /** The dtype to store (float32 values are rounded to nearest even). Default F32. */
  dtype?: TensorDtype
  /** Shard limit in bytes of tensor data (transformers' max_shard_size). Default 5e9. */
  maxShardBytes?: number
}

/**
 * Writes tensors into `dir` (created if needed) as model.safetensors, or as shards and an
 * index when they exceed maxShardBytes, replacing the weights of a previous save (other
 * files, config.json included, are left alone). Each tensor's read() is called once, in
 * shard order, and released before the next. Returns the plan written. A failure removes the
 * temporary files and leaves the previous weights; a file system error (a full disk) is a
 * WriteError naming the file and the bytes the weights need.
 */
export function writeTensorDir(dir: string, tensors: Iterable<LazyTensor>, o: WriteTensorDirOptions = {}): ShardPlan {
  const dtype = o.dtype ?? 'F32'
  const list = [...tensors]
  const plan = planShards(list, dtype, o.maxShardBytes ?? DEFAULT_MAX_SHARD_BYTES)
  const byName = new Map(list.map((t) => [t.name, t]))
  writing(dir, () => fs.mkdirSync(dir, { recursive: true }))

  // Temporary files of saves that crashed (their process is gone) are garbage.
  for (const f of fs.readdirSync(dir)) {
    const m = TEMP_NAME.exec(f)
    if (m && Number(m[4]) !== process.pid && !pidAlive(Number(m[4]))) fs.rmSync(path.join(dir, f), { force: true })
  }

  const temp = (file: string): string => path.join(dir, `.${file}.${process.pid}.tmp`)
  /** Writes `file` under its temporary name; a failure names it at its destination. */
  const writeTemp = (file: string, write: (tmp: string) => void): void => {
    try {
      write(temp(file))
    } catch (err) {
      throw atDestination(err, temp(file), path.join(dir, file))
    }
  }
  const written: string[] = []
  const failed = (err: unknown): never => {
    for (const f of written) fs.rmSync(f, { force: true })
    throw err instanceof WriteError ? err.with({ save: { what: 'the weights', bytes: plan.totalSize, dir } }) : err
  }
  try {
    for (const s of plan.shards) {
      written.push(temp(s.file))
      writeTemp(s.file, (tmp) => writeSafetensorsLazy(tmp, s.names.map((n) => byName.get(n)!), { dtype, metadata: { format: 'pt' } }))
    }
    if (plan.shards.length > 1) {
      written.push(temp(INDEX_FILE))
      writeTemp(INDEX_FILE, (tmp) => writeFileSynced(tmp, indexJson(plan)))
    }
  } catch (err) {
    failed(err)
  }
  fsyncDir(dir)

  // Commit. Until the last rename (or, for shards replacing a model.safetensors, its removal)
  // readers see the previous save; after it, the new one.
  const keep = new Set(plan.shards.map((s) => s.file))
  try {
    for (const s of plan.shards) writeTemp(s.file, (tmp) => fs.renameSync(tmp, path.join(dir, s.file)))
    if (plan.shards.length > 1) {
      fsyncDir(dir)
      writeTemp(INDEX_FILE, (tmp) => fs.renameSync(tmp, path.join(dir, INDEX_FILE)))
      keep.add(INDEX_FILE)
    }
  } catch (err) {
    failed(err) // the temporary files not renamed yet go (removing a renamed one is a no-op)
  }
  fsyncDir(dir)
  const stale = fs.readdirSync(dir).filter((f) => !keep.has(f) && (f === SINGLE_FILE || f === INDEX_FILE || SHARD_NAME.test(f)))
  stale.sort((a, b) => (a === SINGLE_FILE ? -1 : b === SINGLE_FILE ? 1 : 0)) // a stale model.safetensors shadows the new index: first
  for (const f of stale) fs.rmSync(path.join(dir, f), { force: true })
  if (stale.length) fsyncDir(dir)
  return plan
}
