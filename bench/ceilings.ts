/**
 * The ceilings every benchmark row is measured against ("% of floor" = floor time / our time).
 *
 * - GPU: vendor datasheet figures from a table keyed by the device name (dense, no sparsity).
 *   An unknown device gets no floor ("unknown device"); PLW_GPU_BANDWIDTH_GBS,
 *   PLW_GPU_BF16_TFLOPS and PLW_GPU_TF32_TFLOPS override or supply the figures.
 * - CPU bandwidth: MEASURED in the run, as a memcpy of a 512 MiB buffer with every OpenMP
 *   thread copying its own slice at once (cpuBandwidth(), native/cpu/cpu_info.h; bytes = read +
 *   write), which is what the multi-threaded kernels can draw. The single-thread copy (a
 *   TypedArray.set(), the floor of bench/RESULTS.md's sections before commit 12f3368) is printed
 *   beside it. A kernel that updates in place can still beat a copy (no second buffer's lines
 *   to fetch), so a CPU "% of floor" a little above 100 % is possible.
 * - CPU fp32 peak: PLW_CPU_PEAK_GFLOPS, else threads x GHz x flops/cycle/core, all MEASURED
 *   in the run by the native probe (cpuPeak(), native/cpu/cpu_info.h): the GHz with every
 *   thread busy (a chain of dependent adds, as bench/RESULTS.md's AMD section did: /proc/cpuinfo's
 *   "cpu MHz" is the base clock under a hypervisor), the flops/cycle from a register-only FMA
 *   loop at the vector width of the SGEMM kernel that runs (512-bit for 'avx512 14x32',
 *   256-bit for 'avx2 6x16'), rounded to the nearest power of two (16, 32, 64: the FMA pipes x
 *   lanes x 2 really there; Zen 4 double-pumps 256-bit pipes, so 32 at either width; Intel
 *   server parts and Zen 5 have two 512-bit pipes, 64). Every figure is printed with the peak.
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import { backendInfo, cpuBandwidth, cpuPeak } from '../ts/native'

export interface GpuCeilings {
  /** The table row that matched, or 'unknown device'. */
  label: string
  /** HBM bandwidth in GB/s (1e9 bytes/s); NaN when unknown. */
  bandwidthGBs: number
  /** Dense bf16 tensor-core peak in TFLOP/s; NaN when unknown. */
  bf16Tflops: number
  /** Dense TF32 tensor-core peak in TFLOP/s (the f32 GEMMs run as TF32); NaN when unknown. */
  tf32Tflops: number
  /** Where the figures come from, one line each. */
  notes: string[]
}

export interface CpuCeilings {
  model: string
  threads: number
  simd: string
  /** The SGEMM kernel that ran ('avx512 14x32', 'avx2 6x16', 'generic 6x16'). */
  kernel: string
  /** Measured all-thread copy bandwidth, GB/s (read + write bytes). */
  bandwidthGBs: number
  /** fp32 peak in GFLOP/s. */
  peakGflops: number
  notes: string[]
}

interface GpuRow {
  label: string
  match: (name: string) => boolean
  bandwidthGBs: number
  bf16Tflops: number
  tf32Tflops: number
}

/** Datasheet figures (NVIDIA), dense tensor-core math. Order matters: first match wins. */
const GPU_TABLE: GpuRow[] = [
  { label: 'NVIDIA H200 (SXM)', match: (n) => /H200/i.test(n), bandwidthGBs: 4800, bf16Tflops: 989, tf32Tflops: 494 },
  { label: 'NVIDIA H100 PCIe', match: (n) => /H100/i.test(n) && /PCIe/i.test(n), bandwidthGBs: 2000, bf16Tflops: 756, tf32Tflops: 378 },
  {
    label: 'NVIDIA H100 SXM',
    match: (n) => /H100/i.test(n) && /(SXM|HBM3)/i.test(n) && !/NVL/i.test(n),
    bandwidthGBs: 3350,
    bf16Tflops: 989,
    tf32Tflops: 494,
  },
  {
    label: 'NVIDIA A100 80GB SXM',
    match: (n) => /A100/i.test(n) && /SXM/i.test(n) && /80\s*GB/i.test(n),
    bandwidthGBs: 2000,
    bf16Tflops: 312,
    tf32Tflops: 156,
  },
]

function envNumber(name: string): number | undefined {
  const raw = process.env[name]
  if (raw === undefined || raw.trim() === '') return undefined
  const x = Number(raw)
  if (!Number.isFinite(x) || x <= 0) throw new Error(`bench: Expected a positive number for ${name} but received '${raw}'`)
  return x
}

export function gpuCeilings(deviceName: string): GpuCeilings {
  const row = GPU_TABLE.find((r) => r.match(deviceName))
  const notes: string[] = []
  let out: GpuCeilings
  if (row) {
    out = { label: row.label, bandwidthGBs: row.bandwidthGBs, bf16Tflops: row.bf16Tflops, tf32Tflops: row.tf32Tflops, notes }
    notes.push(`GPU ceilings from the datasheet table (${row.label}): ${row.bandwidthGBs} GB/s HBM, ` +
      `${row.bf16Tflops} TFLOP/s bf16 dense, ${row.tf32Tflops} TFLOP/s TF32 dense`)
  } else {
    out = { label: 'unknown device', bandwidthGBs: NaN, bf16Tflops: NaN, tf32Tflops: NaN, notes }
    notes.push(`GPU ceilings: unknown device '${deviceName}' (not in the table): no % of floor unless ` +
      'PLW_GPU_BANDWIDTH_GBS / PLW_GPU_BF16_TFLOPS / PLW_GPU_TF32_TFLOPS are set')
  }
  const bw = envNumber('PLW_GPU_BANDWIDTH_GBS')
  const bf = envNumber('PLW_GPU_BF16_TFLOPS')
  const tf = envNumber('PLW_GPU_TF32_TFLOPS')
  if (bw !== undefined) { out.bandwidthGBs = bw; notes.push(`GPU bandwidth overridden by PLW_GPU_BANDWIDTH_GBS = ${bw} GB/s`) }
  if (bf !== undefined) { out.bf16Tflops = bf; notes.push(`GPU bf16 peak overridden by PLW_GPU_BF16_TFLOPS = ${bf} TFLOP/s`) }
  if (tf !== undefined) { out.tf32Tflops = tf; notes.push(`GPU TF32 peak overridden by PLW_GPU_TF32_TFLOPS = ${tf} TFLOP/s`) }
  return out
}

/** "model name" and the first "cpu MHz" of /proc/cpuinfo, where there is one. */
export function cpuModel(): { model: string; mhz: number | null } {
  let text = ''
  try {
    text = fs.readFileSync('/proc/cpuinfo', 'utf8')
  } catch {
    // not Linux: fall back on os.cpus()
  }
  const model = /^model name\s*:\s*(.+)$/m.exec(text)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown CPU'
  const mhzText = /^cpu MHz\s*:\s*([\d.]+)$/m.exec(text)?.[1]
  const mhz = mhzText !== undefined ? Number(mhzText) : null
  return { model, mhz: mhz !== null && Number.isFinite(mhz) && mhz > 0 ? mhz : null }
}

/**
 * Single-thread copy bandwidth: TypedArray.set() of `bytes` (512 MiB by default) into a second
 * buffer, `repeats` times after one untimed copy (which also faults the pages in); the best
 * run counts, bytes = read + write.
 */
export function measureCopyBandwidth(bytes = 512 * 1024 * 1024, repeats = 5): number {
  const n = Math.floor(bytes / 8)
  const src = new Float64Array(n)
  const dst = new Float64Array(n)
  for (let i = 0; i < n; i += 512) src[i] = i // touch every page of the source
  dst.set(src)
  let best = Infinity
  for (let r = 0; r < repeats; r++) {
    const t0 = process.hrtime.bigint()
    dst.set(src)
    const dt = Number(process.hrtime.bigint() - t0) / 1e9
    best = Math.min(best, dt)
  }
  if (dst[512] !== 512) throw new Error('bench: the bandwidth probe copied wrong data')
  return (2 * n * 8) / best / 1e9
}

/** Nearest power of two (in log scale) of a measured flops/cycle: the pipes x lanes x 2 it measures. */
function roundFlops(x: number): number {
  return 2 ** Math.round(Math.log2(x))
}

/**
 * fp32 flops per cycle per core of the kernel that runs, from the measured FMA throughput at its
 * vector width; the SIMD level's assumption where nothing was measured (not x86-64).
 */
function flopsPerCycle(kernel: string, simd: string, fpc256: number, fpc512: number): { flops: number; why: string } {
  const bits = kernel.startsWith('avx512') ? 512 : kernel.startsWith('avx2') ? 256 : 0
  const measured = bits === 512 ? fpc512 : bits === 256 ? fpc256 : 0
  if (measured > 0) {
    const flops = roundFlops(measured)
    const lanes = bits / 32
    return {
      flops,
      why: `${flops} fp32 flops/cycle/core MEASURED for kernel ${kernel}: ${bits}-bit FMA loop at ${measured.toFixed(1)} ` +
        `flops/cycle (= ${flops / (2 * lanes)} FMA pipe(s) x ${lanes} lanes x 2; ` +
        `256-bit: ${fpc256.toFixed(1)}, 512-bit: ${fpc512 > 0 ? fpc512.toFixed(1) : 'n/a'})`,
    }
  }
  if (simd === 'avx512' || simd === 'avx2+fma') {
    return { flops: 32, why: `${simd}: 32 fp32 flops/cycle/core ASSUMED (two 256-bit FMA pipes: 2 x 8 lanes x 2)` }
  }
  return { flops: 8, why: `${simd}: 8 fp32 flops/cycle/core ASSUMED (no FMA)` }
}

export function cpuCeilings(options: { quick?: boolean } = {}): CpuCeilings {
  const info = backendInfo().cpu
  const { model, mhz } = cpuModel()
  const notes: string[] = []
  const bytes = options.quick ? 128 * 1024 * 1024 : 512 * 1024 * 1024
  const singleGBs = measureCopyBandwidth(bytes, options.quick ? 3 : 5)
  const allGBs = cpuBandwidth(bytes)
  const bandwidthGBs = allGBs > 0 ? allGBs : singleGBs
  notes.push(`CPU bandwidth: ${bandwidthGBs.toFixed(1)} GB/s MEASURED now: ` +
    (allGBs > 0 ? `memcpy of ${bytes / 2 ** 20} MiB by all ${info.threads} threads at once, best of 5` : 'the all-thread probe could not allocate its buffers; single-thread figure') +
    `, bytes = read + write (single-thread TypedArray.set: ${singleGBs.toFixed(1)} GB/s)`)
  const env = envNumber('PLW_CPU_PEAK_GFLOPS')
  let peakGflops: number
  if (env !== undefined) {
    peakGflops = env
    notes.push(`CPU fp32 peak: ${env} GFLOP/s from PLW_CPU_PEAK_GFLOPS`)
  } else {
    const probe = cpuPeak()
    const measuredGhz = probe.ghz > 0 ? probe.ghz : null
    const ghz = measuredGhz ?? (mhz !== null ? mhz / 1000 : 3.0)
    const f = flopsPerCycle(info.kernel, info.simd, probe.flopsPerCycle256, probe.flopsPerCycle512)
    peakGflops = info.threads * ghz * f.flops
    const clock = measuredGhz !== null
      ? `MEASURED with all threads busy (dependent adds; /proc/cpuinfo says ${mhz !== null ? (mhz / 1000).toFixed(2) : 'nothing'})`
      : mhz !== null ? '"cpu MHz" of /proc/cpuinfo: the clock it reports, often the base clock' : 'ASSUMED: no "cpu MHz" in /proc/cpuinfo'
    notes.push(`CPU fp32 peak: ${peakGflops.toFixed(0)} GFLOP/s = ${info.threads} threads x ` +
      `${ghz.toFixed(2)} GHz (${clock}) x ${f.why}; set PLW_CPU_PEAK_GFLOPS to override (threads may be SMT siblings)`)
  }
  return { model, threads: info.threads, simd: info.simd, kernel: info.kernel, bandwidthGBs, peakGflops, notes }
}
