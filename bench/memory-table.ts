/**
 * The memory tables of docs/models.md and docs/lora.md: what fine-tuning each model shape
 * (ts/arch/shapes.ts) takes, from the engine's own buffer list (planMemory: the same bill the
 * engine checks before allocating), on CUDA in bf16 mixed precision and on the CPU in f32.
 * With --lora R: LoRA rank R (alpha 2R) on all linear layers, next to full fine-tuning.
 *
 *   node dist/bench/memory-table.js [--batch 1] [--seq 2048] [--lora 16]
 */
import { planMemory } from '../ts/model'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { LINEAR_MODULES } from '../ts/lora/settings'
import { backendInfo } from '../ts/native'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}

const B = arg('batch', 1)
const T = arg('seq', 2048)
const R = arg('lora', 0)
const gb = (x: number) => (x / 1e9).toFixed(1)
const cuda = backendInfo().cuda.built
const lines = R > 0
  ? [`| model | parameters | adapters (r=${R}) | CUDA bf16 LoRA: state | activations (B=${B}, T=${T}) | **CUDA bf16 LoRA: total** | ` +
    'CUDA bf16 full: total | CPU f32 LoRA: total |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  : [`| model | parameters | CUDA bf16: state | CUDA bf16: activations (B=${B}, T=${T}) | CUDA bf16: total | CPU f32: total |`,
    '|---|---:|---:|---:|---:|---:|']
for (const [name, config] of Object.entries(MODEL_SHAPES)) {
  const seq = Math.min(T, config.arch === 'gpt2' ? config.nPositions : config.maxPositions)
  const plan = (device: 'cpu' | 'cuda', lora: boolean) => planMemory(config, { device, maxBatch: B, maxSeqLen: seq,
    precision: device === 'cpu' ? 'f32' : 'bf16', lora: lora ? { r: R, alpha: 2 * R, dropout: 0, rslora: false, targets: LINEAR_MODULES[config.arch] } : undefined })
  const full = plan('cpu', false)
  const params = full.parameters / 4
  const label = `${name}${seq < T ? ` (T=${seq})` : ''}`
  if (R > 0) {
    const cpu = plan('cpu', true)
    const adapters = cpu.gradients / 4
    const gpu = cuda ? plan('cuda', true) : null
    const gpuFull = cuda ? plan('cuda', false) : null
    lines.push(`| ${label} | ${(params / 1e9).toFixed(2)}B | ${(adapters / 1e6).toFixed(1)}M | ` +
      `${gpu ? gb(gpu.parameters + gpu.gradients + gpu.optimizer) : '-'} GB | ${gpu ? gb(gpu.activations + gpu.scratch) : '-'} GB | ` +
      `**${gpu ? gb(gpu.total) : '-'} GB** | ${gpuFull ? gb(gpuFull.total) : '-'} GB | ${gb(cpu.total)} GB |`)
    continue
  }
  const gpu = cuda ? plan('cuda', false) : null
  const state = gpu ? gpu.parameters + gpu.gradients + gpu.optimizer : NaN
  lines.push(`| ${label} | ${(params / 1e9).toFixed(2)}B | ${gpu ? gb(state) : '-'} GB | ` +
    `${gpu ? gb(gpu.activations + gpu.scratch) : '-'} GB | **${gpu ? gb(gpu.total) : '-'} GB** | ${gb(full.total)} GB |`)
}
console.log(lines.join('\n'))
