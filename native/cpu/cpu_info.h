// What the CPU backend was compiled for and what the CPU it runs on has, for the kernels'
// runtime dispatch (matmul.cpp), backendInfo() and benchmark reports.
#pragma once
#include <cstddef>

namespace plw::cpu {

const char* simd_level();  // compile time (-march): "avx512", "avx2+fma", "avx", "sse2" or "generic"
int max_threads();         // OpenMP threads the kernels use

// Run time, from CPUID (and XGETBV for what the OS saves on a context switch): the CPU may have
// more than the build targets (a portable build on a newer CPU) or less (never run a kernel
// that needs what this says is missing). All false off x86-64.
struct CpuFeatures {
    bool avx2 = false;     // AVX2 and FMA, YMM state enabled by the OS
    bool avx512f = false;  // AVX-512F, plus opmask/ZMM state enabled by the OS (XCR0 bits 5-7)
    bool avx512bw = false, avx512dq = false, avx512vl = false;  // same OS condition
};
const CpuFeatures& cpu_features();  // read once

// Data cache sizes of one core (L1d, L2) and of the last level (L3), in bytes, read from CPUID
// (leaf 4 on Intel, 0x8000001D or 0x80000005/6 on AMD), else from
// /sys/devices/system/cpu/cpu0/cache; a size that neither gives is the fallback below and
// `source` says "assumed". Under a hypervisor these are what it reports.
struct CacheSizes {
    long l1d = 32 * 1024, l2 = 1024 * 1024, l3 = 8 * 1024 * 1024;
    const char* source = "assumed";  // "cpuid leaf 4", "cpuid 0x8000001D", "cpuid 0x80000005/6", "sysfs", "assumed"
};
const CacheSizes& cache_sizes();  // read once

// The fp32 peak as measured, for benchmark reports (bench/ceilings.ts, bench/native/sgemm_bench.cpp).
// Each probe runs on every OpenMP thread at once, best of 3 runs, ~0.1-0.3 s in all, timed by
// each thread's CPU time (CLOCK_THREAD_CPUTIME_ID), so other processes do not lower them.
//   measure_clock_ghz         a chain of dependent integer adds (1 cycle each): the clock the
//                             cores really run at with all threads busy (under a hypervisor
//                             /proc/cpuinfo's "cpu MHz" is the nominal TSC clock); 0 off x86-64
//   measure_fma_flops_per_cycle  fp32 flops per cycle per thread of a register-only loop of
//                             independent FMAs at `bits` = 256 (ymm) or 512 (zmm) wide, at the
//                             clock `ghz`; 0 where the CPU lacks that width. It counts the FMA
//                             pipes really there: 2 x 8 lanes x 2 = 32 for AVX2 on two 256-bit
//                             pipes; 512-bit on Zen 4 (double-pumped 256-bit pipes) also 32;
//                             on two 512-bit pipes (Intel server parts, Zen 5) 64.
double measure_clock_ghz();
double measure_fma_flops_per_cycle(int bits, double ghz);

// The memory floor as measured: GB/s (read + write bytes) of a memcpy of `bytes` into a second
// buffer of that size, every OpenMP thread copying its own slice at once (what the multi-threaded
// kernels can draw), best of `repeats` after a first touch. Wall time: a loaded machine lowers it.
// 0 when the buffers cannot be allocated.
double measure_copy_bandwidth_gbs(size_t bytes, int repeats);

}  // namespace plw::cpu
