/** Model directories' weights: shard planning, the index, round trips, atomic replacement, and errors. */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { openTensorDir, writeTensorDir, planShards, indexJson, TensorDtype } from '../ts/tensor-dir'
import { LazyTensor, writeSafetensorsLazy, f32BitsToBf16, f32BitsToF16, f16BitsToF32 } from '../ts/safetensors'

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'plw-tdir-'))

/** Seeded tensors of the given shapes; values span many binades, with a few specials. */
function tensors(spec: Array<[string, number[]]>, seed = 1): Array<LazyTensor & { data: Float32Array }> {
  let s = seed
  return spec.map(([name, shape]) => {
    const data = new Float32Array(shape.reduce((a, d) => a * d, 1))
    for (let i = 0; i < data.length; i++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0
      data[i] = (s / 2 ** 32 - 0.5) * 2 ** ((s >>> 27) - 16)
    }
    if (data.length > 3) data.set([-0, 1 / 3, 65520], data.length - 3)
    return { name, shape, data, read: () => data }
  })
}

/** All files of a directory: name → bytes. */
function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]))
}

// Six F32 tensors planned with maxShardBytes = 100: z+y+x.1 fill 100 bytes, x.10 (120 bytes) is a shard by
// itself, appended when met, so before the shard still being filled (huggingface_hub does the same), w+x.2 last.
const SPEC: Array<[string, number[]]> = [['z', [5]], ['y', [2, 5]], ['x.1', [10]], ['x.10', [3, 10]], ['w', [4]], ['x.2', [20]]]

describe('shard planning and the index', () => {
  test('greedy in the order given; a tensor above the limit gets its own shard; HF names', () => {
    const plan = planShards(SPEC.map(([name, shape]) => ({ name, shape })), 'F32', 100)
    expect(plan.shards).toEqual([
      { file: 'model-00001-of-00003.safetensors', names: ['x.10'], bytes: 120 },
      { file: 'model-00002-of-00003.safetensors', names: ['z', 'y', 'x.1'], bytes: 100 },
      { file: 'model-00003-of-00003.safetensors', names: ['w', 'x.2'], bytes: 96 },
    ])
    expect(plan.totalSize).toBe(316)
    expect(plan.totalParameters).toBe(79)
    // In BF16 everything fits 200 bytes: one model.safetensors.
    expect(planShards(SPEC.map(([name, shape]) => ({ name, shape })), 'BF16', 200).shards)
      .toEqual([{ file: 'model.safetensors', names: ['z', 'y', 'x.1', 'x.10', 'w', 'x.2'], bytes: 158 }])
    expect(planShards([], 'F32').shards).toEqual([{ file: 'model.safetensors', names: [], bytes: 0 }])
    expect(() => planShards([{ name: 'a', shape: [1] }, { name: 'a', shape: [2] }], 'F32')).toThrow(/"a" is given twice/)
    expect(() => planShards([{ name: 'a', shape: [1.5] }], 'F32')).toThrow(/"a": shape \[1.5\] is not a list of non-negative integers/)
    expect(() => planShards([], 'F8' as TensorDtype)).toThrow(/dtype F8 is not supported for writing \(F32, F16 or BF16\)/)
    expect(() => planShards([], 'F32', 0)).toThrow(/maxShardBytes must be a positive number/)
  })

  test('the index is transformers\' json.dumps(indent=2, sort_keys=True) + newline', () => {
    const plan = planShards(SPEC.map(([name, shape]) => ({ name, shape })), 'F32', 100)
    expect(indexJson(plan)).toBe(`{
  "metadata": {
    "total_parameters": 79,
    "total_size": 316
  },
  "weight_map": {
    "w": "model-00003-of-00003.safetensors",
    "x.1": "model-00002-of-00003.safetensors",
    "x.10": "model-00001-of-00003.safetensors",
    "x.2": "model-00003-of-00003.safetensors",
    "y": "model-00002-of-00003.safetensors",
    "z": "model-00002-of-00003.safetensors"
  }
}
`)
    // Non-ASCII keys are escaped as Python's ensure_ascii does; "0" sorts as a string, not first as a JS index.
    const odd = planShards([{ name: 'é.w', shape: [1] }, { name: '𝑥', shape: [1] }, { name: 'b', shape: [1] }, { name: '0', shape: [1] }], 'F32', 4)
    expect(indexJson(odd)).toContain('"weight_map": {\n    "0": "model-00004-of-00004.safetensors",\n' +
      '    "b": "model-00003-of-00004.safetensors",\n    "\\u00e9.w": "model-00001-of-00004.safetensors",\n' +
      '    "\\ud835\\udc65": "model-00002-of-00004.safetensors"\n  }')
  })
})

describe('writeTensorDir and openTensorDir', () => {
  test('a sharded save: the files, the index, the values, each tensor read once in file order', () => {
    const d = tmp()
    const ts = tensors(SPEC)
    const calls: string[] = []
    const plan = writeTensorDir(d, ts.map((t) => ({ ...t, read: () => (calls.push(t.name), t.data) })), { dtype: 'F32', maxShardBytes: 100 })
    expect(calls).toEqual(['x.10', 'x.1', 'y', 'z', 'w', 'x.2']) // shard by shard, sorted by name within a shard
    expect(fs.readdirSync(d).sort()).toEqual(['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors', 'model.safetensors.index.json'])
    expect(fs.readFileSync(path.join(d, 'model.safetensors.index.json'), 'utf8')).toBe(indexJson(plan))
    const dir = openTensorDir(d)
    expect(dir.keys()).toEqual(['w', 'x.1', 'x.10', 'x.2', 'y', 'z'])
    expect(dir.files.map((f) => path.basename(f))).toEqual(['model-00003-of-00003.safetensors', 'model-00002-of-00003.safetensors',
      'model-00001-of-00003.safetensors'])
    expect(dir.info('y')).toEqual({ dtype: 'F32', shape: [2, 5], file: path.join(d, 'model-00002-of-00003.safetensors') })
    for (const t of ts) expect(Buffer.from(dir.read(t.name).buffer).equals(Buffer.from(t.data.buffer))).toBe(true)
    expect(dir.dominantDtype()).toBe('F32')
    dir.close()
  })

  test.each([['F32'], ['BF16'], ['F16']] as Array<[TensorDtype]>)('%s: save → load → save is byte-identical, single and sharded; values rounded to nearest even', (dtype) => {
    const ts = tensors(SPEC, 7)
    for (const maxShardBytes of [1e9, 50]) {
      const d1 = tmp(), d2 = tmp()
      writeTensorDir(d1, ts, { dtype, maxShardBytes })
      const a = openTensorDir(d1)
      expect(a.dominantDtype()).toBe(dtype)
      writeTensorDir(d2, ts.map((t) => ({ name: t.name, shape: a.info(t.name).shape, read: () => a.read(t.name) })), { dtype, maxShardBytes })
      expect(snapshot(d2)).toEqual(snapshot(d1))
      expect(fs.existsSync(path.join(d1, 'model.safetensors'))).toBe(maxShardBytes === 1e9)
      for (const t of ts) {
        const u = new Uint32Array(t.data.buffer)
        const want = Array.from(u, (x) => (dtype === 'F32' ? x : dtype === 'BF16' ? (f32BitsToBf16(x) << 16) >>> 0
          : new Uint32Array(new Float32Array([f16BitsToF32(f32BitsToF16(x))]).buffer)[0]))
        expect(a.info(t.name).dtype).toBe(dtype)
        expect(Array.from(new Uint32Array(a.read(t.name).buffer))).toEqual(want)
      }
      a.close()
    }
  })

  test('a new save replaces the previous one: other shard counts, a stale index or model.safetensors are removed', () => {
    const d = tmp()
    fs.writeFileSync(path.join(d, 'config.json'), '{}')
    fs.writeFileSync(path.join(d, 'model-card.md'), 'kept')
    const others = ['config.json', 'model-card.md']
    const ts = tensors(SPEC, 3)
    writeTensorDir(d, ts, { maxShardBytes: 100 }) // 3 shards
    writeTensorDir(d, ts, { maxShardBytes: 250 }) // 2 shards: the 3 old ones go
    expect(fs.readdirSync(d).sort()).toEqual([...others, 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
      'model.safetensors.index.json'].sort())
    expect(openTensorDir(d).info('x.2').file).toBe(path.join(d, 'model-00002-of-00002.safetensors'))
    writeTensorDir(d, ts.slice(0, 2), { dtype: 'BF16' }) // one file: shards and index go
    expect(fs.readdirSync(d).sort()).toEqual([...others, 'model.safetensors'].sort())
    expect(openTensorDir(d).keys()).toEqual(['y', 'z'])
    writeTensorDir(d, ts, { maxShardBytes: 250 }) // shards again: model.safetensors (which would shadow them) goes
    expect(fs.readdirSync(d).sort()).toEqual([...others, 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors',
      'model.safetensors.index.json'].sort())
    // Same shard count, other contents: the shards are overwritten and read back as the new save.
    const ts2 = tensors(SPEC, 4)
    writeTensorDir(d, ts2, { maxShardBytes: 250 })
    const dir = openTensorDir(d)
    for (const t of ts2) expect(Array.from(dir.read(t.name))).toEqual(Array.from(t.data))
    dir.close()
    expect(fs.readFileSync(path.join(d, 'model-card.md'), 'utf8')).toBe('kept')
  })

  test('a save that fails midway leaves the previous save untouched and no temporary files; crashed saves\' leftovers are removed', () => {
    const d = tmp()
    const ts = tensors(SPEC, 5)
    writeTensorDir(d, ts, { maxShardBytes: 100, dtype: 'BF16' })
    const before = snapshot(d)
    const failing = ts.map((t) => (t.name === 'w' ? { ...t, read: (): Float32Array => { throw new Error('disk on fire') } } : t))
    expect(() => writeTensorDir(d, failing, { maxShardBytes: 50 })).toThrow('disk on fire') // 'w' is in the last shard
    expect(snapshot(d)).toEqual(before)
    const wrong = ts.map((t) => (t.name === 'y' ? { ...t, read: () => new Float32Array(3) } : t))
    expect(() => writeTensorDir(d, wrong)).toThrow(/"y": read\(\) gave 3 float32 values for shape \[2,5\] \(10 values\)/)
    expect(snapshot(d)).toEqual(before)
    // The temporary files of a save whose process died (pid 99999999 cannot exist) are garbage.
    fs.writeFileSync(path.join(d, '.model-00001-of-00002.safetensors.99999999.tmp'), 'partial')
    fs.writeFileSync(path.join(d, '.model.safetensors.index.json.99999999.tmp'), 'partial')
    writeTensorDir(d, ts, { dtype: 'BF16' })
    expect(fs.readdirSync(d)).toEqual(['model.safetensors'])
  })

  test('model.safetensors wins over an index, as in from_pretrained; the dominant dtype counts elements', () => {
    const d = tmp()
    writeSafetensorsLazy(path.join(d, 'a.safetensors'), tensors([['big', [100]], ['small', [2]]]), { dtype: 'BF16' })
    writeSafetensorsLazy(path.join(d, 'b.safetensors'), tensors([['mid', [60]], ['tiny', [1]]]), { dtype: 'F32' })
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: {
      big: 'a.safetensors', small: 'a.safetensors', mid: 'b.safetensors', tiny: 'b.safetensors' } }))
    const dir = openTensorDir(d)
    expect(dir.keys()).toEqual(['big', 'small', 'mid', 'tiny'])
    expect(dir.dominantDtype()).toBe('BF16')
    expect(dir.info('mid').dtype).toBe('F32')
    dir.close()
    writeSafetensorsLazy(path.join(d, 'model.safetensors'), tensors([['only', [3]]]), { dtype: 'F16' })
    const single = openTensorDir(d)
    expect(single.keys()).toEqual(['only'])
    expect(single.dominantDtype()).toBe('F16')
    single.close()
  })

  test('errors name the file and the key: missing shard, key missing in its shard, bad dtype, bad header, bad index', () => {
    const d = tmp()
    writeTensorDir(d, tensors(SPEC), { maxShardBytes: 100 })
    const index = path.join(d, 'model.safetensors.index.json')
    const shard = (i: number) => path.join(d, `model-0000${i}-of-00003.safetensors`)
    const map = JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map: Record<string, string> }

    fs.writeFileSync(index, JSON.stringify({ ...map, weight_map: { ...map.weight_map, w: 'model-00001-of-00003.safetensors' } }))
    const dir = openTensorDir(d)
    expect(() => dir.info('w')).toThrow(`${shard(1)}: no tensor "w", though model.safetensors.index.json puts it in this file`)
    expect(() => dir.read('nope')).toThrow(`${d}: no tensor "nope"`)
    dir.close()

    fs.writeFileSync(index, JSON.stringify(map))
    fs.renameSync(shard(2), shard(2) + '.away')
    expect(() => openTensorDir(d)).toThrow(`${shard(2)}: missing, but model.safetensors.index.json puts 3 tensors there (first "x.1")`)
    fs.renameSync(shard(2) + '.away', shard(2))

    // A shard with an I64 tensor: its header reads, its data does not.
    const head = '{"x.10":{"dtype":"I64","shape":[3,10],"data_offsets":[0,240]}}'
    const len = Buffer.alloc(8)
    len.writeBigUInt64LE(BigInt(head.length))
    fs.writeFileSync(shard(1), Buffer.concat([len, Buffer.from(head), Buffer.alloc(240)]))
    const d2 = openTensorDir(d)
    expect(d2.info('x.10')).toEqual({ dtype: 'I64', shape: [3, 10], file: shard(1) })
    expect(() => d2.read('x.10')).toThrow(`${shard(1)}: tensor "x.10": dtype I64 is not supported (F32, F16 or BF16)`)
    expect(d2.dominantDtype()).toBe('F32')
    d2.close()

    len.writeBigUInt64LE(4n)
    fs.writeFileSync(shard(3), Buffer.concat([len, Buffer.from('{"w"')]))
    expect(() => openTensorDir(d).info('w')).toThrow(new RegExp(`^${shard(3)}: header is not valid JSON at byte 12`))

    fs.writeFileSync(index, '{"weight_map": ')
    expect(() => openTensorDir(d)).toThrow(new RegExp(`^${index}: not valid JSON`))
    fs.writeFileSync(index, '{"metadata": {}}')
    expect(() => openTensorDir(d)).toThrow(`${index}: no "weight_map" object`)
    fs.writeFileSync(index, '{"weight_map": {"a": "../elsewhere.safetensors"}}')
    expect(() => openTensorDir(d)).toThrow(`${index}: weight_map["a"] is "../elsewhere.safetensors", not a file name in the directory`)
    expect(() => openTensorDir(tmp())).toThrow(/: no model.safetensors or model.safetensors.index.json$/)
  })
})
