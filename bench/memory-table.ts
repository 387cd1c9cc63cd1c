/**
 * The memory tables of docs/models.md and docs/lora.md: what fine-tuning each model shape
 * (ts/arch/shapes.ts) takes, from the engine's own buffer list (planMemory: the same bill the
 * engine checks before allocating), on CUDA in bf16 mixed precision and on the CPU in f32.
 * With --lora R: LoRA rank R (alpha 2R) on all linear layers, next to full fine-tuning.
 * --recompute MODE plans that mode (default auto: fused attention); --recompute-table prints
 * CUDA bf16 totals of none | attention | block side by side instead (docs/memory.md).
 *
 *   node dist/bench/memory-table.js [--batch 1] [--seq 2048] [--lora 16] [--recompute auto] [--recompute-table]
 */
import { planMemory } from '../ts/model'
import { MODEL_SHAPES } from '../ts/arch/shapes'
import { LINEAR_MODULES } from '../ts/lora/settings'
import { backendInfo, Recompute, RECOMPUTE_MODES } from '../ts/native'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : fallback
}

const B = arg('batch', 1)
const T = arg('seq', 2048)
const R = arg('lora', 0)
const modeAt = process.argv.indexOf('--recompute')
const recompute = (modeAt > 0 ? process.argv[modeAt + 1] : 'auto') as Recompute
if (!RECOMPUTE_MODES.includes(recompute)) throw new Error(`--recompute: expected one of ${RECOMPUTE_MODES.join(', ')}`)
const sideBySide = process.argv.includes('--recompute-table')
const gb = (x: number) => (x / 1e9).toFixed(1)
const cuda = backendInfo().cuda.built
const lines = sideBySide
  ? [`| model | ${R > 0 ? `LoRA r=${R}` : 'full'}, B=${B} | none | attention | block |`, '|---|---|---:|---:|---:|']
  : R > 0
  ? [`| model | parameters | adapters (r=${R}) | CUDA bf16 LoRA: state | activations (B=${B}, T=${T}) | **CUDA bf16 LoRA: total** | ` +
    'CUDA bf16 full: total | CPU f32 LoRA: total |', '|---|---:|---:|---:|---:|---:|---:|---:|']
  : [`| model | parameters | CUDA bf16: state | CUDA bf16: activations (B=${B}, T=${T}) | CUDA bf16: total | CPU f32: total |`,
    '|---|---:|---:|---:|---:|---:|']
for (const [name, config] of Object.entries(MODEL_SHAPES)) {
  const seq = Math.min(T, config.arch === 'gpt2' ? config.nPositions : config.maxPositions)
  const plan = (device: 'cpu' | 'cuda', lora: boolean, mode: Recompute = recompute) => planMemory(config, { device, maxBatch: B,
    maxSeqLen: seq, precision: device === 'cpu' ? 'f32' : 'bf16', recompute: mode,
    lora: lora ? { r: R, alpha: 2 * R, dropout: 0, rslora: false, targets: LINEAR_MODULES[config.arch] } : undefined })
  const full = plan('cpu', false)
  const params = full.parameters / 4
  const label = `${name}${seq < T ? ` (T=${seq})` : ''}`
  if (sideBySide) {
    if (!cuda) throw new Error('--recompute-table plans for CUDA: this build has no CUDA backend')
    const totals = (['none', 'attention', 'block'] as const).map((m) => `${gb(plan('cuda', R > 0, m).total)} GB`)
    lines.push(`| ${label} | T=${seq} | ${totals.join(' | ')} |`)
    continue
  }
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
