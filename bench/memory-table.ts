/**
 * The memory table of docs/models.md: what full fine-tuning of each model shape
 * (ts/arch/shapes.ts) takes, from the engine's own buffer list (planMemory: the same bill the
 * engine checks before allocating), on CUDA in bf16 mixed precision and on the CPU in f32.
 *
 *   node dist/bench/memory-table.js [--batch 1] [--seq 2048]
 */
import { planMemory } from '../ts/model'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { backendInfo } from '../ts/native'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}

const B = arg('batch', 1)
const T = arg('seq', 2048)
const gb = (x: number) => (x / 1e9).toFixed(1)
const lines = [
  `| model | parameters | CUDA bf16: state | CUDA bf16: activations (B=${B}, T=${T}) | CUDA bf16: total | CPU f32: total |`,
  '|---|---:|---:|---:|---:|---:|',
]
const cuda = backendInfo().cuda.built
for (const [name, config] of Object.entries(MODEL_SHAPES)) {
  const seq = Math.min(T, config.arch === 'gpt2' ? config.nPositions : config.maxPositions)
  const cpu = planMemory(config, { device: 'cpu', maxBatch: B, maxSeqLen: seq, precision: 'f32' })
  const params = cpu.parameters / 4
  const gpu = cuda ? planMemory(config, { device: 'cuda', maxBatch: B, maxSeqLen: seq, precision: 'bf16' }) : null
  const state = gpu ? gpu.parameters + gpu.gradients + gpu.optimizer : NaN
  lines.push(`| ${name}${seq < T ? ` (T=${seq})` : ''} | ${(params / 1e9).toFixed(2)}B | ${gpu ? gb(state) : '-'} GB | ` +
    `${gpu ? gb(gpu.activations + gpu.scratch) : '-'} GB | **${gpu ? gb(gpu.total) : '-'} GB** | ${gb(cpu.total)} GB |`)
}
console.log(lines.join('\n'))
