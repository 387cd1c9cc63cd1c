/**
 * Independent float64 references for the kernels, written from the math (DESIGN.md "The loss
 * contract", torch.optim.AdamW's documented update), sharing no code with the native side.
 */

/** Seeded PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export function randn(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n)
  for (let i = 0; i < n; i++) {
    const u = Math.max(rand(), 1e-12)
    out[i] = scale * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand())
  }
  return out
}

export function randInt(n: number, hi: number, rand: () => number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rand() * hi))
}

/** Round to bfloat16 (nearest even), as the native side stores it. */
export function bf16Round(x: number): number {
  const f = new Float32Array([x])
  const u = new Uint32Array(f.buffer)
  const bias = 0x7fff + ((u[0] >>> 16) & 1)
  u[0] = ((u[0] + bias) >>> 16) << 16
  return f[0]
}

/** Per-row CE and the weighted sums, in float64. logits row stride Vp, real vocab V. */
export function crossEntropyRef(logits: ArrayLike<number>, targets: ArrayLike<number>, weights: ArrayLike<number>,
  N: number, V: number, Vp = V): { losses: Float64Array; lossSum: number; weightSum: number } {
  const losses = new Float64Array(N)
  let lossSum = 0
  let weightSum = 0
  for (let n = 0; n < N; n++) {
    if (weights[n] === 0) continue
    let m = -Infinity
    for (let v = 0; v < V; v++) m = Math.max(m, logits[n * Vp + v])
    let s = 0
    for (let v = 0; v < V; v++) s += Math.exp(logits[n * Vp + v] - m)
    losses[n] = Math.log(s) + m - logits[n * Vp + targets[n]]
    lossSum += weights[n] * losses[n]
    weightSum += weights[n]
  }
  return { losses, lossSum, weightSum }
}

/** dlogits = w/norm · (softmax − onehot), zero on padding columns and zero-weight rows. */
export function crossEntropyGradRef(logits: ArrayLike<number>, targets: ArrayLike<number>, weights: ArrayLike<number>,
  normalizer: number, N: number, V: number, Vp = V): Float64Array {
  const d = new Float64Array(N * Vp)
  for (let n = 0; n < N; n++) {
    if (weights[n] === 0) continue
    let m = -Infinity
    for (let v = 0; v < V; v++) m = Math.max(m, logits[n * Vp + v])
    let s = 0
    for (let v = 0; v < V; v++) s += Math.exp(logits[n * Vp + v] - m)
    const g = weights[n] / normalizer
    for (let v = 0; v < V; v++) d[n * Vp + v] = (g * Math.exp(logits[n * Vp + v] - m)) / s
    d[n * Vp + targets[n]] -= g
  }
  return d
}

/** C (M,N) = op(A) · op(B), row-major, float64. */
export function matmulRef(A: ArrayLike<number>, B: ArrayLike<number>, M: number, N: number, K: number,
  transA = false, transB = false): Float64Array {
  const C = new Float64Array(M * N)
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0
      for (let k = 0; k < K; k++) {
        const a = transA ? A[k * M + i] : A[i * K + k]
        const b = transB ? B[j * K + k] : B[k * N + j]
        s += a * b
      }
      C[i * N + j] = s
    }
  }
  return C
}

/** ‖a − b‖ / ‖b‖ over whole tensors; NaN or Inf anywhere gives Infinity so it never passes. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`)
  let num = 0
  let den = 0
  for (let i = 0; i < a.length; i++) {
    if (!Number.isFinite(a[i]) || !Number.isFinite(b[i])) return Infinity
    num += (a[i] - b[i]) ** 2
    den += b[i] ** 2
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den)
}

/** Largest |a − b|; NaN anywhere gives Infinity. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i])
    if (!Number.isFinite(d)) return Infinity
    m = Math.max(m, d)
  }
  return m
}
