/**
 * A chat's next turn with the KV cache kept (generate's reuseCache) and without: the time to
 * the first token of a prompt that continues the previous generation (its prompt, its answer,
 * then a new message), on random weights of a model's shape. Run: `npm run build:ts && node
 * dist/bench/chat-turn.js [SHAPE] [HISTORY] [NEW]` (defaults SmolLM2-135M, 600 tokens of
 * history, a 40-token message; the shapes are ts/arch/shapes.ts's).
 */
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { Device } from '../ts/native'
import { initModel } from '../ts/model'

async function main(): Promise<void> {
  const [shapeArg, historyArg, turnArg, deviceArg] = process.argv.slice(2)
  const shape = shapeArg ?? 'SmolLM2-135M'
  const cfg = MODEL_SHAPES[shape]
  if (cfg === undefined) throw new Error(`unknown shape ${shape}: one of ${Object.keys(MODEL_SHAPES).join(', ')}`)
  const device = (deviceArg ?? 'cpu') as Device
  const model = await initModel(cfg, { seed: 1, device, precision: 'f32', maxBatch: 1, maxSeqLen: 1024 })
  let x = 7
  const token = (): number => (x = (x * 1103515245 + 12345) % 2147483648) % cfg.vocabSize
  const history = Array.from({ length: Number(historyArg ?? 600) }, token)
  const message = Array.from({ length: Number(turnArg ?? 40) }, token)
  const answer = 16
  process.stdout.write(`${shape} on ${device}: history ${history.length} tokens, answer ${answer}, new message ${message.length}\n`)
  for (let rep = 0; rep < 3; rep++) {
    for (const reuseCache of [false, true]) {
      const first = await model.generate(history, { maxNewTokens: answer, reuseCache })
      const next = [...history, ...first.tokens, ...message]
      const t0 = process.hrtime.bigint()
      const g = await model.generate(next, { maxNewTokens: 1, reuseCache })
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      process.stdout.write(`  reuseCache ${String(reuseCache).padEnd(5)}: first token of the next turn in ${ms.toFixed(1)} ms ` +
        `(${g.reusedTokens} of ${next.length} prompt tokens from the cache)\n`)
    }
  }
  model.dispose()
}

main().catch((err: unknown) => { process.stderr.write(`${(err as Error).message}\n`); process.exit(1) })
