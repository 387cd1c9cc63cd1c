/**
 * plwtune microbenchmarks: the loss kernels, the fused LM head, AdamW, the CPU SGEMM, fused
 * attention and whole training steps, each against its floor (memory bandwidth or FLOP peak, see
 * ceilings.ts) and against PyTorch on the same device, sizes and dtypes (torch_peer.py, when
 * torch imports).
 *
 *   npm run bench                               every device this machine has, full sizes
 *   npm run bench -- --device cpu --only ce,adamw
 *   npm run bench -- --quick --json out.json    small sizes, results also as JSON
 *
 * Options: --device cpu|cuda|all (default all available), --only ce|head|adamw|sgemm|attn|train[,...],
 * --quick, --json FILE, --no-peer (skip PyTorch). bench/RESULTS.md says how results are recorded.
 * Environment: PLW_PYTHON (the interpreter for the peer, default python3), PLW_CPU_PEAK_GFLOPS,
 * PLW_GPU_BANDWIDTH_GBS, PLW_GPU_BF16_TFLOPS, PLW_GPU_TF32_TFLOPS (ceilings, see ceilings.ts).
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { backendInfo, Device } from '../ts/native'
import { cpuCeilings, cpuModel, gpuCeilings, CpuCeilings, GpuCeilings } from './ceilings'
import { BenchCase, measure, Timing, timingFor } from './harness'
import { crossEntropyCases } from './cross-entropy'
import { fusedHeadCases } from './fused-head'
import { adamwCases } from './adamw'
import { sgemmCases } from './sgemm'
import { attentionCases } from './attention'
import { isTrainCase, trainFigures, trainStepCases, trainSummary, TrainCase } from './train-step'
import { runPeer, torchAvailable, PeerResult } from './peer'

const FAMILIES: Record<string, (device: Device, quick: boolean) => BenchCase[]> = {
  ce: crossEntropyCases,
  head: fusedHeadCases,
  adamw: adamwCases,
  sgemm: sgemmCases,
  attn: attentionCases,
  train: trainStepCases,
}

interface Options {
  devices: Device[]
  only: string[]
  quick: boolean
  json: string | null
  peer: boolean
}

function usage(): string {
  return 'usage: node dist/bench/run.js [--device cpu|cuda|all] [--only ' + Object.keys(FAMILIES).join('|') +
    '[,...]] [--quick] [--json FILE] [--no-peer]'
}

function parseArgs(argv: string[]): Options {
  const info = backendInfo()
  let device = 'all'
  let only = Object.keys(FAMILIES)
  let quick = false
  let json: string | null = null
  let peer = true
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const value = (): string => {
      const v = argv[++i]
      if (v === undefined) throw new Error(`bench: Expected a value after ${a}\n${usage()}`)
      return v
    }
    if (a === '--device') device = value()
    else if (a.startsWith('--device=')) device = a.slice('--device='.length)
    else if (a === '--only') only = value().split(',')
    else if (a.startsWith('--only=')) only = a.slice('--only='.length).split(',')
    else if (a === '--quick') quick = true
    else if (a === '--json') json = value()
    else if (a.startsWith('--json=')) json = a.slice('--json='.length)
    else if (a === '--no-peer') peer = false
    else if (a === '--help' || a === '-h') { process.stdout.write(usage() + '\n'); process.exit(0) }
    else throw new Error(`bench: Expected an option but received '${a}'\n${usage()}`)
  }
  only = only.map((s) => s.trim()).filter((s) => s.length > 0)
  for (const f of only) {
    if (!(f in FAMILIES)) throw new Error(`bench: Expected one of ${Object.keys(FAMILIES).join(', ')} for --only but received '${f}'`)
  }
  let devices: Device[]
  if (device === 'cpu') devices = ['cpu']
  else if (device === 'cuda') {
    if (!info.cuda.available) throw new Error(`bench: --device cuda, but CUDA is not available: ${info.cuda.reason}`)
    devices = ['cuda']
  } else if (device === 'all') devices = info.cuda.available ? ['cpu', 'cuda'] : ['cpu']
  else throw new Error(`bench: Expected cpu, cuda or all for --device but received '${device}'`)
  return { devices, only, quick, json, peer }
}

interface Row {
  id: string
  family: string
  name: string
  shape: string
  dtype: string
  device: Device
  timing: Timing | null
  error: string | null
  /** GB/s for bandwidth floors, GFLOP/s for FLOP floors. */
  throughput: number | null
  throughputUnit: string
  floorMs: number | null
  floorBasis: string
  /** floor time / our time, in % (100 = at the ceiling). */
  pctOfFloor: number | null
  torch: PeerResult | null
  torchError: string | null
  /** our median / torch median: < 1 means plwtune is faster. */
  oursOverTorch: number | null
  /** Family-specific figures (train: tokens/s, MFU, memory), for --json. */
  extra?: Record<string, unknown>
}

interface DeviceReport {
  device: Device
  description: string
  ceilingNotes: string[]
  cpu?: CpuCeilings
  gpu?: GpuCeilings
  peerNote: string
  rows: Row[]
  /** The training-step summary (tokens/s, MFU, memory, torch variants), '' without train cases. */
  trainSummary: string
}

function floorOf(c: BenchCase, cpu: CpuCeilings | undefined, gpu: GpuCeilings | undefined): { ms: number | null; basis: string } {
  if (c.floor.kind === 'bandwidth') {
    const gbs = c.device === 'cpu' ? cpu?.bandwidthGBs : gpu?.bandwidthGBs
    const bytes = c.floor.bytes
    if (gbs === undefined || !Number.isFinite(gbs)) return { ms: null, basis: `${fmtBytes(bytes)} / unknown bandwidth` }
    return { ms: bytes / (gbs * 1e9) * 1e3, basis: `${fmtBytes(bytes)} / ${gbs.toFixed(0)} GB/s` }
  }
  const flops = c.floor.flops
  let gflops: number | undefined
  if (c.device === 'cpu') gflops = cpu?.peakGflops
  else gflops = c.floor.precision === 'bf16' ? (gpu?.bf16Tflops ?? NaN) * 1e3 : (gpu?.tf32Tflops ?? NaN) * 1e3
  if (gflops === undefined || !Number.isFinite(gflops)) return { ms: null, basis: `${(flops / 1e9).toFixed(1)} GFLOP / unknown peak` }
  return { ms: flops / (gflops * 1e9) * 1e3, basis: `${(flops / 1e9).toFixed(1)} GFLOP / ${gflops.toFixed(0)} GFLOP/s ${c.floor.precision}` }
}

function fmtBytes(b: number): string {
  return b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(1)} MB`
}

function fmtMs(ms: number): string {
  return ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3)
}

function fmtThroughput(r: Row): string {
  if (r.throughput === null) return '-'
  if (r.throughputUnit === 'GB/s') return `${r.throughput.toFixed(1)} GB/s`
  if (r.device === 'cuda') return `${(r.throughput / 1e3).toFixed(1)} TFLOP/s`
  return `${r.throughput.toFixed(1)} GFLOP/s`
}

async function runCase(c: BenchCase, quick: boolean, cpu: CpuCeilings | undefined, gpu: GpuCeilings | undefined): Promise<Row> {
  const floor = floorOf(c, cpu, gpu)
  const row: Row = {
    id: c.id, family: c.family, name: c.name, shape: c.shape, dtype: c.dtype, device: c.device,
    timing: null, error: null, throughput: null, throughputUnit: c.floor.kind === 'bandwidth' ? 'GB/s' : 'GFLOP/s',
    floorMs: floor.ms, floorBasis: floor.basis, pctOfFloor: null, torch: null, torchError: null, oursOverTorch: null,
  }
  const t0 = Date.now()
  process.stdout.write(`  ${c.id} ... `)
  let prepared: Awaited<ReturnType<BenchCase['prepare']>> | null = null
  try {
    prepared = await c.prepare()
    const p = prepared
    const timing = await measure(c.id, () => p.run(), timingFor(c, quick))
    row.timing = timing
    const seconds = timing.medianMs / 1e3
    row.throughput = c.floor.kind === 'bandwidth' ? c.floor.bytes / seconds / 1e9 : c.floor.flops / seconds / 1e9
    if (floor.ms !== null) row.pctOfFloor = (floor.ms / timing.medianMs) * 100
    process.stdout.write(`${fmtMs(timing.medianMs)} ms (median of ${timing.samples}; ${((Date.now() - t0) / 1e3).toFixed(1)} s)\n`)
  } catch (err) {
    row.error = (err as Error).message
    process.stdout.write(`FAILED: ${row.error}\n`)
  } finally {
    prepared?.dispose()
  }
  return row
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n)
}

function table(rows: Row[]): string {
  const header = ['benchmark', 'shape', 'dtype', 'time ms', '±rme', 'throughput', '% of floor', 'torch ms', 'ours/torch']
  const right = [false, false, false, true, true, true, true, true, true]
  const cells = rows.map((r) => [
    r.name,
    r.shape,
    r.dtype,
    r.timing ? fmtMs(r.timing.medianMs) : 'FAILED',
    r.timing ? `${r.timing.rme.toFixed(1)}%` : '-',
    fmtThroughput(r),
    r.pctOfFloor !== null ? `${r.pctOfFloor.toFixed(1)}%` : '-',
    r.torch ? fmtMs(r.torch.ms) : r.torchError ? 'error' : '-',
    r.oursOverTorch !== null ? r.oursOverTorch.toFixed(2) : '-',
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (c: string[]): string => '| ' + c.map((x, i) => pad(x, widths[i], right[i])).join(' | ') + ' |'
  const sep = '|' + widths.map((w, i) => (right[i] ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'
  return [line(header), sep, ...cells.map(line)].join('\n')
}

function describeDevice(device: Device, cpu: CpuCeilings | undefined): string {
  const info = backendInfo()
  if (device === 'cpu') {
    const c = cpu ?? { model: cpuModel().model, threads: info.cpu.threads, simd: info.cpu.simd, kernel: info.cpu.kernel }
    return `cpu: ${c.model}, ${c.threads} OpenMP threads, SIMD ${c.simd}, SGEMM kernel ${c.kernel} (${os.cpus().length} logical CPUs, ` +
      `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB RAM)`
  }
  return `cuda: ${info.cuda.device ?? 'unknown'} (cuBLASLt ${info.cuda.cublasLt ? 'yes' : 'no'}); host CPU ${cpuModel().model}`
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2))
  const date = new Date().toISOString()
  const command = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`.trim()
  const info = backendInfo()
  process.stdout.write(`plwtune bench — ${date}\n`)
  process.stdout.write(`command: ${command}\n`)
  process.stdout.write(`node ${process.version}, ${os.platform()} ${os.arch()}; backend: cpu ${info.cpu.threads} threads ` +
    `${info.cpu.simd}; cuda ${info.cuda.available ? info.cuda.device : `not available (${info.cuda.reason})`}\n`)
  const load = os.loadavg()[0]
  process.stdout.write(`load average at start: ${load.toFixed(2)} over ${os.cpus().length} logical CPUs` +
    `${load > 0.5 ? ' (other processes are running: CPU figures may be low and noisy)' : ''}\n`)
  process.stdout.write(`families: ${opts.only.join(', ')}${opts.quick ? ' (--quick: small sizes, short time boxes)' : ''}\n`)
  process.stdout.write('time = median wall time of `await op()` (tinybench, warm-up first); ±rme = relative margin of error of the mean; ' +
    '% of floor = floor time / time; ours/torch < 1 means plwtune is faster\n')

  let peerOk = false
  let torchVersion = ''
  if (opts.peer) {
    const t = torchAvailable()
    peerOk = t.ok
    torchVersion = t.version
    if (!t.ok) process.stdout.write('PyTorch not found: peer timings skipped\n')
    else process.stdout.write(`PyTorch ${t.version}: peer timings in the same run (bench/torch_peer.py)\n`)
  } else {
    process.stdout.write('PyTorch peer: off (--no-peer)\n')
  }

  const reports: DeviceReport[] = []
  for (const device of opts.devices) {
    const cases = opts.only.flatMap((f) => FAMILIES[f](device, opts.quick))
    process.stdout.write(`\n== ${device} ==\n`)
    let cpu: CpuCeilings | undefined
    let gpu: GpuCeilings | undefined
    if (device === 'cpu') {
      process.stdout.write('  measuring the CPU copy bandwidth ...\n')
      cpu = cpuCeilings({ quick: opts.quick })
    } else {
      gpu = gpuCeilings(info.cuda.device ?? '')
    }
    const notes = (cpu?.notes ?? gpu?.notes ?? [])
    const rows: Row[] = []
    if (cases.length === 0) process.stdout.write('  (no benchmark of the chosen families runs on this device)\n')
    for (const c of cases) rows.push(await runCase(c, opts.quick, cpu, gpu))

    let peerNote = opts.peer ? 'none (no PyTorch)' : 'none (--no-peer)'
    if (peerOk && cases.length > 0) {
      if (global.gc) global.gc() // let our freed tensors go before torch allocates its own
      const { run, why } = runPeer(device, cases, (c) => timingFor(c, opts.quick), info.cpu.threads)
      if (!run) {
        peerNote = `PyTorch ${torchVersion}: peer failed: ${why}`
      } else {
        peerNote = `PyTorch ${run.torch} on ${run.device ?? device}`
        for (const r of rows) {
          const p = run.results[r.id]
          if (p) {
            r.torch = p
            if (r.timing) r.oursOverTorch = r.timing.medianMs / p.ms
          } else {
            r.torchError = run.errors[r.id] ?? run.errors['*'] ?? null
          }
        }
      }
    }
    const trainItems: Array<{ c: TrainCase; row: Row }> = []
    cases.forEach((c, i) => { if (isTrainCase(c)) trainItems.push({ c, row: rows[i] }) })
    for (const { c, row } of trainItems) row.extra = trainFigures(c, row, cpu, gpu)
    reports.push({ device, description: describeDevice(device, cpu), ceilingNotes: notes, cpu, gpu, peerNote, rows,
      trainSummary: trainSummary(device, trainItems, cpu, gpu) })
  }

  // The report: one table per device, with what it ran on and the ceilings it was held to.
  process.stdout.write(`\n\n# plwtune bench results — ${date}\n`)
  for (const r of reports) {
    process.stdout.write(`\n## ${r.description}\n\n`)
    for (const n of r.ceilingNotes) process.stdout.write(`- ${n}\n`)
    process.stdout.write(`- peer: ${r.peerNote}\n\n`)
    process.stdout.write(table(r.rows) + '\n\n')
    if (r.cpu) {
      const over = r.rows.filter((row) => row.pctOfFloor !== null && row.pctOfFloor > 100)
      if (over.some((row) => row.throughputUnit !== 'GB/s') && process.env.PLW_CPU_PEAK_GFLOPS === undefined) {
        process.stdout.write('  note: a GEMM ran above the ESTIMATED fp32 peak, so the estimate is low: "cpu MHz" is often the ' +
          'base clock (under a hypervisor always), not the boost clock; set PLW_CPU_PEAK_GFLOPS for a true peak.\n')
      }
      if (over.some((row) => row.throughputUnit === 'GB/s')) {
        process.stdout.write('  note: a memory-bound op ran above the all-thread copy bandwidth: an update in place moves ' +
          'its lines once each way, where a copy also fetches the destination\'s.\n')
      }
      if (over.length > 0) process.stdout.write('\n')
    }
    for (const row of r.rows) {
      const extra: string[] = [`floor ${row.floorBasis}`]
      if (row.timing) extra.push(`mean ${fmtMs(row.timing.meanMs)} ms, min ${fmtMs(row.timing.minMs)}, n=${row.timing.samples}`)
      if (row.torch) {
        const t = row.torch
        extra.push(`torch: ${t.what}` + (t.step_ms !== undefined ? `; torch step alone ${fmtMs(t.step_ms)} ms` : '') +
          (t.fused_ms !== undefined ? `; torch fused=True clip + step ${fmtMs(t.fused_ms)} ms` : '') +
          (t.fused_error !== undefined ? `; torch fused=True: ${t.fused_error}` : ''))
      }
      if (row.torchError) extra.push(`torch error: ${row.torchError}`)
      if (row.error) extra.push(`error: ${row.error}`)
      process.stdout.write(`  ${row.id}: ${extra.join('; ')}\n`)
    }
    if (r.trainSummary) process.stdout.write(`\n### training step (${r.device})\n\n${r.trainSummary}`)
  }
  if (!opts.devices.includes('cuda')) {
    process.stdout.write(`\n(cuda: not run — ${info.cuda.available ? 'not selected' : info.cuda.reason})\n`)
  }

  if (opts.json) {
    const out = {
      date,
      command,
      node: process.version,
      backend: info,
      quick: opts.quick,
      loadAverage: os.loadavg(),
      torch: peerOk ? torchVersion : null,
      devices: reports,
    }
    fs.writeFileSync(opts.json, JSON.stringify(out, null, 2) + '\n')
    process.stdout.write(`\nresults written to ${opts.json}\n`)
  }
  if (reports.some((r) => r.rows.some((row) => row.error !== null))) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
  process.exit(1)
})
