// Child process for test/determinism.test.ts: runs every CPU kernel on fixed inputs with
// the OMP_NUM_THREADS it was started with, and prints a SHA-256 of all the output bits.
// It loads the addon directly (not ts/native.ts) because it runs outside jest's transpiler.
'use strict'
const crypto = require('node:crypto')
const path = require('node:path')
const b = require(path.join(__dirname, '..', '..', 'build', 'Release', 'plwtune.node'))

function data(n, seed) {
  const out = new Float32Array(n)
  let s = seed >>> 0
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    out[i] = (s / 4294967296 - 0.5) * 4
  }
  return out
}
const T = (shape, dtype, d) => new b.Tensor(shape, dtype, 'cpu', d)

;(async () => {
  const hash = crypto.createHash('sha256')
  const add = (t) => hash.update(Buffer.from(t.toArray().buffer))
  const N = 96, V = 3001, C = 64
  const targets = T([N], 'int32', Int32Array.from({ length: N }, (_, i) => (i * 37) % V))
  const weights = T([N], 'float32', Float32Array.from({ length: N }, (_, i) => (i % 3 ? 1 : 0.1)))
  const logits = T([N, V], 'float32', data(N * V, 1))
  const losses = T([N], 'float32')
  await b.weightedCrossEntropyBackward(logits, targets, weights, 50, logits, V, losses)
  add(logits); add(losses)
  const hidden = T([N, C], 'float32', data(N * C, 2)), wte = T([V, C], 'float32', data(V * C, 3))
  const dh = T([N, C], 'float32'), dw = T([V, C], 'float32')
  const s = await b.fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, 50, dh, dw, V, 40, losses)
  add(dh); add(dw); hash.update(String(s.lossSum))
  const tok = T([N], 'int32', Int32Array.from({ length: N }, (_, i) => i % 17)), pos = T([N], 'int32', Int32Array.from({ length: N }, (_, i) => i % 32))
  const dwpe = T([32, C], 'float32')
  await b.embeddingBackward(dw, dwpe, dh, tok, pos)
  add(dw); add(dwpe)
  const m = T([V, C], 'float32'), v = T([V, C], 'float32')
  const r = await b.adamw([wte], [dw], [m], [v], [true], { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, maxGradNorm: 1 })
  add(wte); hash.update(String(r.gradNorm))
  process.stdout.write(hash.digest('hex'))
})().catch((e) => { console.error(e); process.exit(1) })
