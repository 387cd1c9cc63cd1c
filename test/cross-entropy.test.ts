/**
 * weighted_cross_entropy on the CPU backend against the float64 reference, finite
 * differences, and the prompt-loss-weight identities of the loss contract.
 *
 * Tolerances: the kernel keeps softmax statistics in f32 with an exp accurate to ~2 ulp,
 * so per-row losses agree with float64 to ~1e-6 relative (f32 epsilon 1.2e-7 times the
 * log-sum-exp's conditioning); we allow 1e-5. bf16 logits are compared with a reference
 * fed the same bf16-rounded values, so the same bound holds for the loss; the bf16
 * gradient itself is stored with 8 bits of mantissa, hence 1e-2.
 */
import {
  tensor, weightedCrossEntropyForward, weightedCrossEntropyBackward, Tensor,
} from '../ts/native'
import { rng, randn, randInt, crossEntropyRef, crossEntropyGradRef, relError, maxAbsDiff, bf16Round } from './support/reference'

interface Case { N: number; V: number; Vp: number; w: Float32Array; logits: Float32Array; targets: Int32Array }

function makeCase(N: number, V: number, Vp: number, seed: number, scale = 3): Case {
  const r = rng(seed)
  const logits = randn(N * Vp, r, scale)
  const targets = randInt(N, V, r)
  const w = Float32Array.from({ length: N }, (_, i) => (i % 5 === 0 ? 0 : i % 3 === 0 ? 0.1 : 1))
  return { N, V, Vp, w, logits, targets }
}

function upload(c: Case, dtype: 'float32' | 'bfloat16' = 'float32'): { logits: Tensor; targets: Tensor; weights: Tensor } {
  return {
    logits: tensor([c.N, c.Vp], { dtype, data: c.logits }),
    targets: tensor([c.N], { dtype: 'int32', data: c.targets }),
    weights: tensor([c.N], { data: c.w }),
  }
}

describe('weighted cross-entropy (cpu) against float64', () => {
  const shapes: Array<[number, number, number]> = [[1, 1, 1], [3, 2, 2], [17, 50, 50], [33, 1000, 1024], [8, 50257, 50304]]
  test.each(shapes)('forward N=%d V=%d Vp=%d', async (N, V, Vp) => {
    const c = makeCase(N, V, Vp, N * 7 + V)
    const t = upload(c)
    const losses = tensor([N])
    const out = await weightedCrossEntropyForward(t.logits, t.targets, t.weights, { vocabSize: V, losses })
    const ref = crossEntropyRef(c.logits, c.targets, c.w, N, V, Vp)
    expect(relError(losses.toArray(), ref.losses)).toBeLessThan(1e-5)
    expect(Math.abs(out.lossSum - ref.lossSum)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.lossSum)))
    expect(out.weightSum).toBeCloseTo(ref.weightSum, 5)
  })

  test.each(shapes)('backward N=%d V=%d Vp=%d (out of place, padding zeroed)', async (N, V, Vp) => {
    const c = makeCase(N, V, Vp, N * 11 + V)
    const t = upload(c)
    const dlogits = tensor([N, Vp])
    dlogits.fill(123) // must be fully overwritten, padding included
    const norm = 7.5
    const out = await weightedCrossEntropyBackward(t.logits, t.targets, t.weights, norm, { dlogits, vocabSize: V })
    const ref = crossEntropyRef(c.logits, c.targets, c.w, N, V, Vp)
    const gref = crossEntropyGradRef(c.logits, c.targets, c.w, norm, N, V, Vp)
    expect(relError(dlogits.toArray(), gref)).toBeLessThan(1e-5)
    expect(maxAbsDiff(dlogits.toArray(), gref)).toBeLessThan(1e-6)
    expect(Math.abs(out.lossSum - ref.lossSum)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(ref.lossSum)))
  })

  test('backward in place equals out of place bit for bit', async () => {
    const c = makeCase(40, 300, 320, 5)
    const a = upload(c)
    const b = upload(c)
    const separate = tensor([40, 320])
    await weightedCrossEntropyBackward(a.logits, a.targets, a.weights, 3, { dlogits: separate, vocabSize: 300 })
    await weightedCrossEntropyBackward(b.logits, b.targets, b.weights, 3, { vocabSize: 300 }) // in place
    expect(Buffer.from(b.logits.toArray().buffer).equals(Buffer.from(separate.toArray().buffer))).toBe(true)
  })

  test('bfloat16 logits: loss against a reference on the same rounded values, gradient to bf16 precision', async () => {
    const c = makeCase(24, 700, 704, 9)
    const rounded = c.logits.map(bf16Round)
    const t = upload(c, 'bfloat16')
    expect(relError(t.logits.toArray(), rounded)).toBe(0)
    const losses = tensor([24])
    const out = await weightedCrossEntropyBackward(t.logits, t.targets, t.weights, 2, { vocabSize: 700, losses })
    const ref = crossEntropyRef(rounded, c.targets, c.w, 24, 700, 704)
    const gref = crossEntropyGradRef(rounded, c.targets, c.w, 2, 24, 700, 704)
    expect(relError(losses.toArray(), ref.losses)).toBeLessThan(1e-5)
    expect(Math.abs(out.lossSum - ref.lossSum)).toBeLessThan(1e-5 * ref.lossSum)
    expect(relError(t.logits.toArray(), gref)).toBeLessThan(1e-2)
  })

  test('gradient matches central finite differences of the loss', async () => {
    // Small V and moderate logits so an f32 forward resolves an h = 1e-2 step well.
    const N = 6, V = 9
    const c = makeCase(N, V, V, 21, 1)
    const norm = 4
    const loss = async (x: Float32Array): Promise<number> => {
      const t = upload({ ...c, logits: x })
      return (await weightedCrossEntropyForward(t.logits, t.targets, t.weights)).lossSum / norm
    }
    const t = upload(c)
    await weightedCrossEntropyBackward(t.logits, t.targets, t.weights, norm)
    const grad = t.logits.toArray()
    const h = 1e-2
    const fd = new Float64Array(N * V)
    for (let i = 0; i < N * V; i++) {
      const plus = Float32Array.from(c.logits); plus[i] += h
      const minus = Float32Array.from(c.logits); minus[i] -= h
      fd[i] = ((await loss(plus)) - (await loss(minus))) / (2 * h)
    }
    // Central differences err by O(h^2 * f''') ~ 1e-5 here, f32 rounding by ~1e-7/h = 1e-5.
    expect(maxAbsDiff(grad, fd)).toBeLessThan(1e-4)
    expect(relError(grad, fd)).toBeLessThan(1e-3)
  })

  test('deterministic: two runs give the same bits', async () => {
    const c = makeCase(64, 5000, 5000, 3)
    const runs: Buffer[] = []
    for (let k = 0; k < 2; k++) {
      const t = upload(c)
      const losses = tensor([64])
      await weightedCrossEntropyBackward(t.logits, t.targets, t.weights, 1, { losses })
      runs.push(Buffer.concat([Buffer.from(t.logits.toArray().buffer), Buffer.from(losses.toArray().buffer)]))
    }
    expect(runs[0].equals(runs[1])).toBe(true)
  })

  test('NaN in a weighted row comes out as a NaN loss, never a number', async () => {
    const c = makeCase(2, 10, 10, 4)
    c.logits[3] = NaN
    c.w[0] = 1
    const t = upload(c)
    const out = await weightedCrossEntropyForward(t.logits, t.targets, t.weights)
    expect(Number.isNaN(out.lossSum)).toBe(true)
  })
})

describe('prompt loss weight identities (the loss contract)', () => {
  const N = 48, V = 97
  const r = rng(77)
  const logits = randn(N * V, r, 2)
  const targets = randInt(N, V, r)
  // A row is "prompt" (isPrompt) or "completion"; the last 4 rows are padding.
  const isPrompt = Array.from({ length: N }, (_, i) => i % 4 !== 3)
  const isPad = Array.from({ length: N }, (_, i) => i >= N - 4)
  const weightsFor = (lambda: number): Float32Array =>
    Float32Array.from({ length: N }, (_, i) => (isPad[i] ? 0 : isPrompt[i] ? lambda : 1))
  const run = async (w: Float32Array) => {
    const losses = tensor([N])
    const s = await weightedCrossEntropyForward(tensor([N, V], { data: logits }), tensor([N], { dtype: 'int32', data: targets }),
      tensor([N], { data: w }), { losses })
    return { ...s, losses: losses.toArray() }
  }

  test('λ = 0 equals the mean CE over completion tokens (prompt masking)', async () => {
    const s = await run(weightsFor(0))
    const ref = crossEntropyRef(logits, targets, weightsFor(1), N, V)
    const completion = ref.losses.filter((_, i) => !isPad[i] && !isPrompt[i])
    const mean = completion.reduce((a, b) => a + b, 0) / completion.length
    expect(s.weightSum).toBe(completion.length)
    expect(s.lossSum / s.weightSum).toBeCloseTo(mean, 5)
  })

  test('λ = 1 equals the plain mean CE over every non-padding token', async () => {
    const s = await run(weightsFor(1))
    const ref = crossEntropyRef(logits, targets, weightsFor(1), N, V)
    const all = ref.losses.filter((_, i) => !isPad[i])
    expect(s.weightSum).toBe(N - 4)
    expect(s.lossSum / s.weightSum).toBeCloseTo(all.reduce((a, b) => a + b, 0) / all.length, 5)
  })

  test('0 < λ < 1 weights prompt tokens by λ: L = (λ·Σprompt + Σcompletion) / (λ·#prompt + #completion)', async () => {
    const lambda = 0.1
    const s = await run(weightsFor(lambda))
    const ref = crossEntropyRef(logits, targets, weightsFor(1), N, V)
    let p = 0, c = 0, np = 0, nc = 0
    ref.losses.forEach((l, i) => {
      if (isPad[i]) return
      if (isPrompt[i]) { p += l; np++ } else { c += l; nc++ }
    })
    expect(s.lossSum / s.weightSum).toBeCloseTo((lambda * p + c) / (lambda * np + nc), 5)
  })

  test('normalizer over two micro-batches equals one big batch (loss and gradients)', async () => {
    const w = weightsFor(0.25)
    const norm = w.reduce((a, b) => a + b, 0) // Σw over the whole optimizer step
    const whole = tensor([N, V], { data: logits })
    const full = await weightedCrossEntropyBackward(whole, tensor([N], { dtype: 'int32', data: targets }), tensor([N], { data: w }), norm)
    const half = N / 2
    let lossSum = 0
    const grads: Float32Array[] = []
    for (const [lo, hi] of [[0, half], [half, N]]) {
      const part = tensor([hi - lo, V], { data: logits.slice(lo * V, hi * V) })
      const s = await weightedCrossEntropyBackward(part, tensor([hi - lo], { dtype: 'int32', data: targets.slice(lo, hi) }),
        tensor([hi - lo], { data: w.slice(lo, hi) }), norm)
      lossSum += s.lossSum
      grads.push(part.toArray() as Float32Array)
    }
    expect(lossSum / norm).toBeCloseTo(full.lossSum / norm, 6)
    const joined = new Float32Array(N * V)
    joined.set(grads[0], 0)
    joined.set(grads[1], half * V)
    // Rows are independent, so the micro-batched gradient is the same bits as the whole.
    expect(Buffer.from(joined.buffer).equals(Buffer.from(whole.toArray().buffer))).toBe(true)
  })
})

describe('weighted cross-entropy argument errors', () => {
  const c = makeCase(4, 10, 10, 1)
  const fresh = () => upload(c)

  test('a target outside [0, V) with a non-zero weight is a RangeError naming the row', async () => {
    const t = fresh()
    const bad = Int32Array.from(c.targets); bad[2] = 10
    const w = Float32Array.from([1, 1, 1, 1])
    await expect(weightedCrossEntropyForward(t.logits, tensor([4], { dtype: 'int32', data: bad }), tensor([4], { data: w })))
      .rejects.toThrow(/targets\[2\] = 10 has weight 1/)
    await expect(weightedCrossEntropyBackward(t.logits, tensor([4], { dtype: 'int32', data: bad }), tensor([4], { data: w }), 1))
      .rejects.toThrow(RangeError)
    const neg = Int32Array.from(c.targets); neg[1] = -1
    await expect(weightedCrossEntropyForward(t.logits, tensor([4], { dtype: 'int32', data: neg }), tensor([4], { data: w })))
      .rejects.toThrow(/\[0, 10\)/)
  })

  test('the same target is fine when its weight is 0 (padding), and contributes nothing', async () => {
    const t = fresh()
    const bad = Int32Array.from(c.targets); bad[2] = -100
    const w = Float32Array.from([1, 1, 0, 1])
    const s = await weightedCrossEntropyForward(t.logits, tensor([4], { dtype: 'int32', data: bad }), tensor([4], { data: w }))
    expect(s.weightSum).toBe(3)
  })

  test('vocabSize beyond the row length is rejected', async () => {
    const t = fresh()
    await expect(weightedCrossEntropyForward(t.logits, t.targets, t.weights, { vocabSize: 11 })).rejects.toThrow(/vocabSize/)
  })

  test('a zero, negative or NaN normalizer is a RangeError', async () => {
    for (const norm of [0, -1, NaN, Infinity]) {
      const t = fresh()
      await expect(weightedCrossEntropyBackward(t.logits, t.targets, t.weights, norm)).rejects.toThrow(RangeError)
      await expect(weightedCrossEntropyBackward(t.logits, t.targets, t.weights, norm)).rejects.toThrow(/normalizer/)
    }
  })

  test('shape and dtype mismatches name the argument', async () => {
    const t = fresh()
    await expect(weightedCrossEntropyForward(t.logits, tensor([3], { dtype: 'int32' }), t.weights))
      .rejects.toThrow(/Expected size 4 in dimension 0 \(one target per row\) for targets but received int32 \[3\]/)
    await expect(weightedCrossEntropyForward(t.logits, tensor([4]), t.weights)).rejects.toThrow(/Expected int32 for targets/)
    await expect(weightedCrossEntropyForward(t.logits, t.targets, tensor([4], { dtype: 'int32' }))).rejects.toThrow(/Expected float32 for weights/)
    await expect(weightedCrossEntropyForward(tensor([4, 10], { dtype: 'int32' }), t.targets, t.weights)).rejects.toThrow(/logits/)
    await expect(weightedCrossEntropyForward(tensor([40]), t.targets, t.weights)).rejects.toThrow(/2-d tensor/)
    await expect(weightedCrossEntropyBackward(t.logits, t.targets, t.weights, 1, { dlogits: tensor([4, 9]) })).rejects.toThrow(/dlogits/)
    await expect(weightedCrossEntropyBackward(t.logits, t.targets, t.weights, 1, { dlogits: tensor([4, 10], { dtype: 'bfloat16' }) }))
      .rejects.toThrow(TypeError)
    await expect(weightedCrossEntropyForward(t.logits, t.targets, t.weights, { losses: tensor([5]) })).rejects.toThrow(/losses/)
    // @ts-expect-error: a plain array is not a tensor
    await expect(weightedCrossEntropyForward([1, 2], t.targets, t.weights)).rejects.toThrow(/Expected a Tensor for logits but received an array/)
  })

  test('a disposed tensor is rejected, not read', async () => {
    const t = fresh()
    t.weights.dispose()
    await expect(weightedCrossEntropyForward(t.logits, t.targets, t.weights)).rejects.toThrow(/weights.*disposed/)
  })
})
