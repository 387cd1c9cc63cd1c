/** Tensor lifecycle: round trips, bf16 rounding, disposal, locks, leaks, backend report. */
import { tensor, memoryStats, backendInfo, cpuBandwidth, weightedCrossEntropyBackward } from '../ts/native'
import * as v8 from 'node:v8'
import * as vm from 'node:vm'
import { bf16Round } from './support/reference'

describe('Tensor', () => {
  test('round trips float32 and int32, zero-fills without data', () => {
    const f = tensor([2, 3], { data: [1, 2, 3, 4, 5, 6.5] })
    expect(f.shape).toEqual([2, 3])
    expect(f.dtype).toBe('float32')
    expect(f.device).toBe('cpu')
    expect(f.byteLength).toBe(24)
    expect(Array.from(f.toArray())).toEqual([1, 2, 3, 4, 5, 6.5])
    const i = tensor([3], { dtype: 'int32', data: [-1, 0, 2 ** 31 - 1] })
    expect(Object.prototype.toString.call(i.toArray())).toBe('[object Int32Array]') // a native-realm object under jest
    expect(Array.from(i.toArray())).toEqual([-1, 0, 2 ** 31 - 1])
    expect(Array.from(tensor([4]).toArray())).toEqual([0, 0, 0, 0])
    const e = tensor([0, 5])
    expect(e.toArray().length).toBe(0)
  })

  test('bfloat16 stores round-to-nearest-even of the float32 values', () => {
    const xs = [1, 1.00390625, 1.005859375, -3.14159, 65504, 1e-20, Infinity, -0]
    const t = tensor([xs.length], { dtype: 'bfloat16', data: xs })
    expect(t.byteLength).toBe(2 * xs.length)
    expect(Array.from(t.toArray())).toEqual(xs.map(bf16Round))
    const nan = tensor([1], { dtype: 'bfloat16', data: [NaN] })
    expect(Number.isNaN(nan.toArray()[0])).toBe(true)
  })

  test('bad construction arguments are TypeErrors that say what was expected', () => {
    expect(() => tensor([2, -1])).toThrow(/non-negative integers/)
    expect(() => tensor([2.5])).toThrow(TypeError)
    // @ts-expect-error: not a dtype
    expect(() => tensor([2], { dtype: 'float16' })).toThrow(/'float32', 'bfloat16' or 'int32'/)
    // @ts-expect-error: not a device
    expect(() => tensor([2], { device: 'tpu' })).toThrow(/'cpu' or 'cuda'/)
    expect(() => tensor([3], { data: new Float32Array(2) })).toThrow(/3 elements/)
    expect(() => tensor([2], { dtype: 'int32', data: new Float32Array(2) })).toThrow(/Int32Array/)
  })

  test('dispose frees memory, is idempotent, and a disposed tensor refuses use', () => {
    const before = memoryStats()
    const t = tensor([1000])
    expect(memoryStats().cpuBytes).toBe(before.cpuBytes + 4000)
    expect(memoryStats().liveTensors).toBe(before.liveTensors + 1)
    t.dispose()
    t.dispose()
    expect(t.disposed).toBe(true)
    expect(memoryStats()).toEqual(before)
    expect(() => t.toArray()).toThrow(/disposed/)
    expect(() => t.fill(1)).toThrow(/disposed/)
  })

  test('a tensor written by a pending op is locked until the op settles', async () => {
    const logits = tensor([64, 20000])
    const targets = tensor([64], { dtype: 'int32' })
    const weights = tensor([64]); weights.fill(1)
    const pending = weightedCrossEntropyBackward(logits, targets, weights, 64)
    expect(() => logits.dispose()).toThrow(/in use by a pending operation/)
    expect(() => logits.toArray()).toThrow(/in use/)
    await expect(weightedCrossEntropyBackward(logits, targets, weights, 64)).rejects.toThrow(/in use by a pending operation/)
    await pending
    expect(() => logits.dispose()).not.toThrow()
  })

  test('no leak: disposed tensors and collected ones return memory to the baseline', async () => {
    v8.setFlagsFromString('--expose-gc')
    const gc = vm.runInNewContext('gc') as () => void
    const collect = async () => {
      for (let round = 0; round < 3; round++) {
        gc()
        await new Promise((r) => setImmediate(r)) // finalizers run between turns of the loop
      }
    }
    await collect() // tensors other tests dropped are freed first
    const before = memoryStats()
    for (let i = 0; i < 200; i++) tensor([256]).dispose()
    expect(memoryStats()).toEqual(before)
    // Dropped without dispose(): the finalizer must free them once V8 collects them.
    for (let i = 0; i < 200; i++) tensor([1024])
    expect(memoryStats().cpuBytes).toBeGreaterThanOrEqual(before.cpuBytes + 200 * 4096)
    await collect()
    expect(memoryStats().cpuBytes).toBe(before.cpuBytes)
    expect(memoryStats().liveTensors).toBe(before.liveTensors)
  })

  test('backendInfo says whether CUDA can run, and why not', () => {
    const info = backendInfo()
    expect(info.cpu.threads).toBeGreaterThan(0)
    if (!info.cuda.available) {
      expect(typeof info.cuda.reason).toBe('string')
      expect(() => tensor([2], { device: 'cuda' })).toThrow(/CUDA backend unavailable/)
    } else {
      expect(info.cuda.device).toMatch(/sm_/)
    }
  })

  test('cpuBandwidth measures a copy (the benchmarks\' memory floor) and refuses sizes it cannot use', () => {
    const gbs = cpuBandwidth(8 * 2 ** 20)
    // any real machine copies 8 MiB faster than 0.1 GB/s and slower than 100 TB/s
    expect(gbs).toBeGreaterThan(0.1)
    expect(gbs).toBeLessThan(1e5)
    for (const bad of [0, 1000, NaN, 17 * 2 ** 30]) expect(() => cpuBandwidth(bad)).toThrow(/between 1 MiB and 16 GiB/)
  })
})
