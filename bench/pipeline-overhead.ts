/**
 * Per-step pipeline cost outside the engine: collating a step of 8 examples of ~1,000 tokens
 * (GPT-2 124M at T = 1024), padded and packed. Tokenization happens once before training and
 * is measured in docs/data.md. Run: `npm run build:ts && node dist/bench/pipeline-overhead.js`.
 */
import { BatchLoader } from '../ts/data/loader'
import { EncodedExample } from '../ts/data/example'

const examples: EncodedExample[] = Array.from({ length: 4096 }, (_, i) => {
  const n = 900 + ((i * 37) % 124) // 900–1023 ids: 300 prompt, the rest completion
  return {
    ids: Int32Array.from({ length: n }, (_, j) => (i * 31 + j * 7) % 50257),
    kinds: Uint8Array.from({ length: n }, (_, j) => (j < 300 ? 1 : 2)),
    weights: null,
  } as unknown as EncodedExample
})

for (const packing of [false, true]) {
  const loader = new BatchLoader(examples, { batchSize: 8, promptLossWeight: 0.1, seed: 1, packing, maxLength: 1024 })
  loader.step(0, 0) // warm-up
  const steps = 200
  const t0 = process.hrtime.bigint()
  for (let s = 0; s < steps; s++) loader.step(0, s % loader.stepsPerEpoch)
  const ms = Number(process.hrtime.bigint() - t0) / 1e6 / steps
  process.stdout.write(`${packing ? 'packed' : 'padded'}: ${ms.toFixed(3)} ms per step of 8 examples × ~1,000 tokens\n`)
}
