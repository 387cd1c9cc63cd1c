// Compiled with the CPU kernels' flags (-march), so simd_level() reports what they use; the
// CPUID/XGETBV probes use no instruction beyond the baseline x86-64 (cpuid, xgetbv by
// inline asm, executed only where CPUID says OSXSAVE is set).
#include "cpu_info.h"

#include <omp.h>

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define PLW_X86 1
#else
#define PLW_X86 0
#endif

namespace plw::cpu {

const char* simd_level() {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2+fma";
#elif defined(__AVX__)
    return "avx";
#elif defined(__SSE2__)
    return "sse2";
#else
    return "generic";
#endif
}

int max_threads() { return omp_get_max_threads(); }

namespace {

#if PLW_X86
struct Regs {
    unsigned a = 0, b = 0, c = 0, d = 0;
};

// CPUID leaf/subleaf; all zero when the leaf is above the CPU's maximum.
Regs cpuid(unsigned leaf, unsigned sub = 0) {
    Regs r;
    const unsigned max = __get_cpuid_max(leaf & 0x80000000u, nullptr);
    if (max == 0 || leaf > max) return r;
    __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
    return r;
}

unsigned long long xgetbv0() {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<unsigned long long>(hi) << 32) | lo;
}
#endif

CpuFeatures detect_features() {
    CpuFeatures f;
#if PLW_X86
    const Regs l1 = cpuid(1), l7 = cpuid(7, 0);
    const bool osxsave = (l1.c >> 27) & 1, avx = (l1.c >> 28) & 1, fma = (l1.c >> 12) & 1;
    if (!osxsave || !avx) return f;
    const unsigned long long xcr0 = xgetbv0();
    const bool ymm_state = (xcr0 & 0x6) == 0x6;              // SSE + AVX state
    const bool zmm_state = ymm_state && (xcr0 & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
    f.avx2 = ymm_state && fma && ((l7.b >> 5) & 1);
    f.avx512f = zmm_state && fma && ((l7.b >> 16) & 1);
    f.avx512dq = f.avx512f && ((l7.b >> 17) & 1);
    f.avx512bw = f.avx512f && ((l7.b >> 30) & 1);
    f.avx512vl = f.avx512f && ((l7.b >> 31) & 1);
#endif
    return f;
}

// Size in bytes of a deterministic-cache-parameters subleaf (leaf 4 and 0x8000001D share the layout).
#if PLW_X86
long cache_bytes(const Regs& r) {
    const long ways = ((r.b >> 22) & 0x3ff) + 1, parts = ((r.b >> 12) & 0x3ff) + 1;
    const long line = (r.b & 0xfff) + 1, sets = static_cast<long>(r.c) + 1;
    return ways * parts * line * sets;
}

// Walks leaf 4 or 0x8000001D; true if it listed any cache.
bool cache_leaf(unsigned leaf, CacheSizes& out) {
    bool any = false;
    for (unsigned i = 0; i < 16; ++i) {
        const Regs r = cpuid(leaf, i);
        const unsigned type = r.a & 31, level = (r.a >> 5) & 7;
        if (type == 0) break;
        if (type == 2) continue;  // instruction cache
        any = true;
        if (level == 1) out.l1d = cache_bytes(r);
        if (level == 2) out.l2 = cache_bytes(r);
        if (level == 3) out.l3 = cache_bytes(r);
    }
    return any;
}
#endif

// "48K", "1024K", "32M" -> bytes; 0 when unreadable.
long sysfs_size(int index) {
    char path[96];
    std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
    std::FILE* f = std::fopen(path, "r");
    if (!f) return 0;
    long v = 0;
    char unit = 0;
    const int n = std::fscanf(f, "%ld%c", &v, &unit);
    std::fclose(f);
    if (n < 1) return 0;
    return unit == 'K' ? v * 1024 : unit == 'M' ? v * 1024 * 1024 : v;
}

int sysfs_int(int index, const char* name) {
    char path[96];
    std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", index, name);
    std::FILE* f = std::fopen(path, "r");
    if (!f) return -1;
    int v = -1;
    if (std::fscanf(f, "%d", &v) != 1) v = -1;
    std::fclose(f);
    return v;
}

bool sysfs_caches(CacheSizes& out) {
    bool any = false;
    for (int i = 0; i < 8; ++i) {
        const long size = sysfs_size(i);
        if (size <= 0) continue;
        char path[96], type[16] = {};
        std::snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", i);
        if (std::FILE* f = std::fopen(path, "r")) {
            if (std::fscanf(f, "%15s", type) != 1) type[0] = 0;
            std::fclose(f);
        }
        if (std::strcmp(type, "Instruction") == 0) continue;
        const int level = sysfs_int(i, "level");
        any = true;
        if (level == 1) out.l1d = size;
        if (level == 2) out.l2 = size;
        if (level == 3) out.l3 = size;
    }
    return any;
}

CacheSizes detect_caches() {
    CacheSizes s;
#if PLW_X86
    if (cache_leaf(4, s)) {
        s.source = "cpuid leaf 4";
        return s;
    }
    if (cache_leaf(0x8000001Du, s)) {
        s.source = "cpuid 0x8000001D";
        return s;
    }
    // AMD's older leaves: L1d KiB in 0x80000005 ECX[31:24], L2 KiB in 0x80000006 ECX[31:16],
    // L3 in 512 KiB units in 0x80000006 EDX[31:18]. Intel returns 0 for the first.
    const Regs l5 = cpuid(0x80000005u), l6 = cpuid(0x80000006u);
    if ((l5.c >> 24) != 0 && (l6.c >> 16) != 0) {
        s.l1d = static_cast<long>(l5.c >> 24) * 1024;
        s.l2 = static_cast<long>(l6.c >> 16) * 1024;
        if ((l6.d >> 18) != 0) s.l3 = static_cast<long>(l6.d >> 18) * 512 * 1024;
        s.source = "cpuid 0x80000005/6";
        return s;
    }
#endif
    if (sysfs_caches(s)) s.source = "sysfs";
    return s;
}


// ---------------------------------------------------------------- peak probes

// CPU time of the calling thread: the probes then measure cycles the thread really ran, not
// the time it waited while other processes had its core (a loaded machine gives the same
// clock and flops/cycle as a quiet one). Wall time where there is no thread clock.
double now_s() {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0) return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

#if PLW_X86
// GFLOP/s of one thread's register-only FMA loop: 12 independent chains (enough for 2 pipes
// x 4-5 cycles of latency), `iters` iterations. The target attributes make only these two
// functions use the wider instructions; they run only where cpu_features() has them.
__attribute__((target("avx2,fma"), noinline)) double fma_loop_256(long iters) {
    __m256 a0 = _mm256_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m256 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    const double t0 = now_s();
    for (long it = 0; it < iters; ++it) {
        a0 = _mm256_fmadd_ps(a0, x, y), a1 = _mm256_fmadd_ps(a1, x, y), a2 = _mm256_fmadd_ps(a2, x, y);
        a3 = _mm256_fmadd_ps(a3, x, y), a4 = _mm256_fmadd_ps(a4, x, y), a5 = _mm256_fmadd_ps(a5, x, y);
        a6 = _mm256_fmadd_ps(a6, x, y), a7 = _mm256_fmadd_ps(a7, x, y), a8 = _mm256_fmadd_ps(a8, x, y);
        a9 = _mm256_fmadd_ps(a9, x, y), a10 = _mm256_fmadd_ps(a10, x, y), a11 = _mm256_fmadd_ps(a11, x, y);
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7),
                         "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    const double t = now_s() - t0;
    volatile float sink = _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(a0, a11), _mm256_add_ps(a5, a6)));
    (void)sink;
    return 2.0 * 8 * 12 * iters / t / 1e9;
}

__attribute__((target("avx512f"), noinline)) double fma_loop_512(long iters) {
    __m512 a0 = _mm512_set1_ps(1.0f), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
    __m512 a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0, a11 = a0;
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    const double t0 = now_s();
    for (long it = 0; it < iters; ++it) {
        a0 = _mm512_fmadd_ps(a0, x, y), a1 = _mm512_fmadd_ps(a1, x, y), a2 = _mm512_fmadd_ps(a2, x, y);
        a3 = _mm512_fmadd_ps(a3, x, y), a4 = _mm512_fmadd_ps(a4, x, y), a5 = _mm512_fmadd_ps(a5, x, y);
        a6 = _mm512_fmadd_ps(a6, x, y), a7 = _mm512_fmadd_ps(a7, x, y), a8 = _mm512_fmadd_ps(a8, x, y);
        a9 = _mm512_fmadd_ps(a9, x, y), a10 = _mm512_fmadd_ps(a10, x, y), a11 = _mm512_fmadd_ps(a11, x, y);
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6), "+v"(a7),
                         "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    const double t = now_s() - t0;
    volatile float sink = _mm512_cvtss_f32(_mm512_add_ps(_mm512_add_ps(a0, a11), _mm512_add_ps(a5, a6)));
    (void)sink;
    return 2.0 * 16 * 12 * iters / t / 1e9;
}
#endif

}  // namespace

double measure_clock_ghz() {
#if defined(__x86_64__)
    double best = 0.0;
    for (int rep = 0; rep < 3; ++rep) {
        double sum = 0.0;
        int team = 1;
#pragma omp parallel reduction(+ : sum)
        {
            unsigned long long x = 0;
            long n = 20'000'000;
            const double t0 = now_s();
            __asm__ volatile(".p2align 4\n1:\n.rept 16\nadd $1, %0\n.endr\ndec %1\njnz 1b\n" : "+r"(x), "+r"(n));
            sum += 16.0 * 20'000'000 / (now_s() - t0) / 1e9;
#pragma omp master
            team = omp_get_num_threads();
        }
        best = sum / team > best ? sum / team : best;
    }
    return best;
#else
    return 0.0;
#endif
}

double measure_fma_flops_per_cycle(int bits, double ghz) {
#if PLW_X86
    const CpuFeatures& f = cpu_features();
    if (ghz <= 0.0 || (bits == 256 && !f.avx2) || (bits == 512 && !f.avx512f) || (bits != 256 && bits != 512))
        return 0.0;
    double best = 0.0;
    for (int rep = 0; rep < 3; ++rep) {
        double sum = 0.0;
        int team = 1;
#pragma omp parallel reduction(+ : sum)
        {
            sum += bits == 512 ? fma_loop_512(10'000'000) : fma_loop_256(10'000'000);
#pragma omp master
            team = omp_get_num_threads();
        }
        best = sum / team > best ? sum / team : best;
    }
    return best / ghz;
#else
    (void)bits, (void)ghz;
    return 0.0;
#endif
}

double measure_copy_bandwidth_gbs(size_t bytes, int repeats) {
    const size_t n = bytes / sizeof(float);
    std::unique_ptr<float[]> src(new (std::nothrow) float[n]), dst(new (std::nothrow) float[n]);
    if (!src || !dst || n == 0) return 0.0;
    // Each thread copies its own contiguous slice, and first touched the same slice (the pages
    // then sit on its memory node where there are several).
    auto slice = [n](int t, int team, size_t* lo, size_t* hi) {
        *lo = n * t / team;
        *hi = n * (t + 1) / team;
    };
#pragma omp parallel
    {
        size_t lo, hi;
        slice(omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        for (size_t i = lo; i < hi; ++i) src[i] = static_cast<float>(i & 1023);
        std::memset(dst.get() + lo, 0, (hi - lo) * sizeof(float));
    }
    double best = 0.0;
    for (int rep = 0; rep < repeats; ++rep) {
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel
        {
            size_t lo, hi;
            slice(omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
            std::memcpy(dst.get() + lo, src.get() + lo, (hi - lo) * sizeof(float));
        }
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double gbs = 2.0 * n * sizeof(float) / t / 1e9;
        best = gbs > best ? gbs : best;
    }
    return dst[n - 1] == src[n - 1] ? best : 0.0;
}


const CpuFeatures& cpu_features() {
    static const CpuFeatures f = detect_features();
    return f;
}

const CacheSizes& cache_sizes() {
    static const CacheSizes s = detect_caches();
    return s;
}

}  // namespace plw::cpu
