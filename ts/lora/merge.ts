/**
 * Merging a LoRA adapter into its base weight: W' = W + scaling·B·A, in the weight's own
 * layout. Each element's r products are summed in f64 (k = 0 … r-1, in that order; a product
 * of two f32 values is exact in f64), scaled, added to W in f64 and rounded to f32 once, so
 * the result does not depend on the loop order below.
 */

/**
 * W + scaling·B·A, a new array in W's layout:
 *  - 'OutIn' (nn.Linear): weight (OC, IC), W'[o][i] = W[o][i] + scaling·Σ_k B[o][k]·A[k][i];
 *  - 'InOut' (GPT-2's Conv1D): weight (IC, OC), W'[i][o] = W[i][o] + scaling·Σ_k A[k][i]·B[o][k].
 * A is (r, IC), B is (OC, r), both row-major.
 */
export function mergeDelta(layout: 'InOut' | 'OutIn', weight: Float32Array, A: Float32Array, B: Float32Array,
  IC: number, OC: number, r: number, scaling: number): Float32Array {
  if (layout !== 'InOut' && layout !== 'OutIn') throw new Error(`mergeDelta: layout must be 'InOut' or 'OutIn', received ${String(layout)}`)
  for (const [what, got, want] of [['weight', weight.length, OC * IC], ['A', A.length, r * IC], ['B', B.length, OC * r]] as const) {
    if (got !== want) {
      throw new Error(`mergeDelta: ${what} has ${got} values, expected ${want} (IC ${IC}, OC ${OC}, r ${r})`)
    }
  }
  // Both layouts are rows × cols = W + scaling·L·R with L (rows, r) and R (r, cols):
  // OutIn: L = B, R = A; InOut: L = Aᵀ, R = Bᵀ (both transposes are small: r × IC, r × OC).
  if (layout === 'OutIn') return addProduct(weight, B, A, OC, IC, r, scaling)
  const At = new Float32Array(IC * r)
  for (let k = 0; k < r; k++) for (let i = 0; i < IC; i++) At[i * r + k] = A[k * IC + i]
  const Bt = new Float32Array(r * OC)
  for (let o = 0; o < OC; o++) for (let k = 0; k < r; k++) Bt[k * OC + o] = B[o * r + k]
  return addProduct(weight, At, Bt, IC, OC, r, scaling)
}

/**
 * out (rows, cols) = W + scaling·L·R, L (rows, r), R (r, cols), row-major. Row by row: acc[c]
 * gathers Σ_k L[row][k]·R[k][c] streaming R's rows, four k at a time; the additions happen in
 * the order k = 0, 1, … all the same (acc + p0 + p1 + p2 + p3 is evaluated left to right).
 */
function addProduct(W: Float32Array, L: Float32Array, R: Float32Array, rows: number, cols: number, r: number,
  scaling: number): Float32Array {
  const out = new Float32Array(rows * cols)
  const acc = new Float64Array(cols)
  for (let row = 0; row < rows; row++) {
    acc.fill(0)
    const l0 = row * r
    let k = 0
    for (; k + 4 <= r; k += 4) {
      const x0 = L[l0 + k], x1 = L[l0 + k + 1], x2 = L[l0 + k + 2], x3 = L[l0 + k + 3]
      const r0 = k * cols, r1 = r0 + cols, r2 = r1 + cols, r3 = r2 + cols
      for (let c = 0; c < cols; c++) acc[c] = acc[c] + x0 * R[r0 + c] + x1 * R[r1 + c] + x2 * R[r2 + c] + x3 * R[r3 + c]
    }
    for (; k < r; k++) {
      const x = L[l0 + k], r0 = k * cols
      for (let c = 0; c < cols; c++) acc[c] += x * R[r0 + c]
    }
    const w0 = row * cols
    for (let c = 0; c < cols; c++) out[w0 + c] = W[w0 + c] + scaling * acc[c]
  }
  return out
}
