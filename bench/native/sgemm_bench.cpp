// Correctness harness and benchmark for plw::cpu::sgemm (native/cpu/matmul.cpp and its AVX-512
// path native/cpu/matmul_avx512.cpp, which needs its own flags as in CMakeLists.txt):
//
//   g++ -O3 -march=native -fopenmp -std=c++17 -c native/cpu/matmul_avx512.cpp -mavx512f -mavx2 -mfma
//     -o /tmp/matmul_avx512.o
//   g++ -O3 -march=native -fopenmp -std=c++17 -I/work/main native/cpu/matmul.cpp native/cpu/cpu_info.cpp
//     /tmp/matmul_avx512.o bench/native/sgemm_bench.cpp -o /tmp/sgemm_bench
//   /tmp/sgemm_bench            # checks, then timings
//   /tmp/sgemm_bench --check    # checks only
//   /tmp/sgemm_bench --bench    # timings only
//   /tmp/sgemm_bench --hash     # hashes of results: compare OMP_NUM_THREADS=1 and =2 runs
//   a second argument avx2 | avx512 | both picks the kernel(s) (default: the one
//   PLW_CPU_KERNEL / the CPU selects); every line says which kernel ran.
//
// Checks (against a naive double-precision reference):
//   - all four transpose combinations, every M, N, K in 1..37, random lda/ldb/ldc padding,
//     alpha/beta cycling through several values, beta == 0 with a NaN-filled C;
//   - shapes that cross the MC/KC/NC block boundaries and shapes that make the thread grid
//     split M, N or both;
//   - padding of C (columns ldc > N) never written;
//   - bitwise-equal results for 1, 2, 3, 4 and 7 threads (the K reduction of each element
//     is done by one thread in a fixed order whatever the thread count).
// Error bound per element: |C - ref| <= 1e-5 * K * |alpha| * max|a| * max|b| + 1e-6 * |beta * c0|.
// (test/native/sgemm_check.cpp is the suite's check of both kernels; this is the long version.)
//
// Timings: median (and best) of several runs per shape, GFLOP/s and the fraction of this
// machine's fp32 peak = threads x clock x flops/cycle, both MEASURED (cpu_info.h):
//   clock       a chain of dependent integer adds on every thread, i.e. the boost clock the
//               cores really run at (~3.6 GHz on the Zen 4 of bench/RESULTS.md, where
//               /proc/cpuinfo "cpu MHz" under KVM is the nominal TSC clock, 2.596 GHz); both
//               are printed;
//   flops/cycle a register-only FMA loop at the vector width of the kernel that runs (256-bit
//               for avx2, 512-bit for avx512), rounded to the nearest power of two = FMA pipes
//               x lanes x 2: 32 for AVX2 on two 256-bit pipes; 32 for AVX-512 on Zen 4, which
//               double-pumps 256-bit pipes; 64 for AVX-512 on two 512-bit pipes (Intel server
//               parts, Zen 5). Both widths are printed.
// Each shape is also run with 1 thread and compared bitwise with the N-thread result, and 32 of
// its elements against the double reference. Baseline: the plain i-j-k triple loop (k
// innermost, rows split over the threads), timed on a row slice of the shape. The machine is
// shared: a high load average in the header or footer means the numbers are noisy, re-run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <omp.h>

#include "native/cpu/cpu_info.h"
#include "native/cpu/matmul.h"

using plw::cpu::sgemm;

namespace {

// ---------------------------------------------------------------- helpers

struct Rng {  // xorshift64*, uniform floats in [-1, 1)
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        return s * 0x2545F4914F6CDD1Dull;
    }
    float uniform() { return (float)((next() >> 40) * (1.0 / (1ull << 23)) - 1.0); }
    int below(int n) { return (int)(next() % (uint64_t)n); }
};

void fill(std::vector<float>& v, Rng& rng) {
    for (auto& x : v) x = rng.uniform();
}

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// op(A)(i,k) and op(B)(k,j) in the row-major storage of matmul.h.
inline float opA(bool ta, const float* A, int lda, int i, int k) {
    return ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
}
inline float opB(bool tb, const float* B, int ldb, int k, int j) {
    return tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
}

double ref_element(bool ta, bool tb, int K, const float* A, int lda, const float* B, int ldb, int i, int j) {
    double s = 0.0;
    for (int k = 0; k < K; ++k) s += (double)opA(ta, A, lda, i, k) * (double)opB(tb, B, ldb, k, j);
    return s;
}

const char* combo(bool ta, bool tb) { return ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"); }

// ---------------------------------------------------------------- correctness

struct CheckStats {
    long cases = 0, failures = 0, thread_mismatches = 0, pad_violations = 0;
    double worst_ratio = 0.0;  // max |err| / bound over all checked elements
};

// One sgemm call checked against the reference; with `threads_list`, also bitwise equality
// of the results for each thread count in it.
void check_case(CheckStats& st, Rng& rng, bool ta, bool tb, int M, int N, int K, float alpha, float beta,
                bool pad, const std::vector<int>& threads_list) {
    const int lda = (ta ? M : K) + (pad ? rng.below(5) : 0);
    const int ldb = (tb ? K : N) + (pad ? rng.below(5) : 0);
    const int ldc = N + (pad ? rng.below(5) : 0);
    std::vector<float> A((size_t)(ta ? K : M) * lda), B((size_t)(tb ? N : K) * ldb), C0((size_t)M * ldc);
    fill(A, rng);
    fill(B, rng);
    if (beta == 0.0f)
        std::fill(C0.begin(), C0.end(), std::nanf(""));  // must not be read
    else
        fill(C0, rng);
    const float pad_sentinel = 12345.0f;
    for (int i = 0; i < M; ++i)
        for (int j = N; j < ldc; ++j) C0[(size_t)i * ldc + j] = pad_sentinel;

    float maxA = 0.0f, maxB = 0.0f, maxC = 0.0f;
    for (float x : A) maxA = std::max(maxA, std::fabs(x));
    for (float x : B) maxB = std::max(maxB, std::fabs(x));
    if (beta != 0.0f)
        for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) maxC = std::max(maxC, std::fabs(C0[(size_t)i * ldc + j]));
    const double bound = 1e-5 * K * std::fabs(alpha) * maxA * maxB + 1e-6 * std::fabs(beta) * maxC + 1e-30;

    std::vector<float> C = C0;
    const int saved = omp_get_max_threads();
    sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
    st.cases++;
    bool bad = false;
    for (int i = 0; i < M; ++i) {
        for (int j = 0; j < ldc; ++j) {
            const float got = C[(size_t)i * ldc + j];
            if (j >= N) {
                if (std::memcmp(&got, &pad_sentinel, sizeof(float)) != 0) st.pad_violations++, bad = true;
                continue;
            }
            double ref = alpha == 0.0f ? 0.0 : (double)alpha * ref_element(ta, tb, K, A.data(), lda, B.data(), ldb, i, j);
            if (beta != 0.0f) ref += (double)beta * C0[(size_t)i * ldc + j];
            const double err = std::fabs((double)got - ref);
            if (!(err <= bound)) {  // also catches NaN
                if (!bad)
                    std::printf("  FAIL %s M=%d N=%d K=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d: C[%d,%d]=%g ref=%g\n",
                                combo(ta, tb), M, N, K, alpha, beta, lda, ldb, ldc, i, j, got, ref);
                bad = true;
            } else {
                st.worst_ratio = std::max(st.worst_ratio, err / bound);
            }
        }
    }
    for (int t : threads_list) {
        std::vector<float> Ct = C0;
        omp_set_num_threads(t);
        sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, Ct.data(), ldc);
        if (std::memcmp(Ct.data(), C.data(), C.size() * sizeof(float)) != 0) {
            std::printf("  THREADS MISMATCH %s M=%d N=%d K=%d with %d threads\n", combo(ta, tb), M, N, K, t);
            st.thread_mismatches++;
        }
    }
    omp_set_num_threads(saved);
    if (bad) st.failures++;
}

bool run_checks() {
    std::printf("== correctness (reference: double-precision triple loop)\n");
    Rng rng(42);
    const float alphas[] = {1.0f, -0.5f, 2.5f, 1.0f, 0.75f};
    const float betas[] = {0.0f, 1.0f, -1.5f, 0.3f, 0.0f, 1.0f};
    bool ok = true;

    // Every M, N, K in 1..37, each transpose combination.
    double t0 = now_s();
    for (int c = 0; c < 4; ++c) {
        const bool ta = c & 2, tb = c & 1;
        CheckStats st;
        long n = 0;
        for (int M = 1; M <= 37; ++M)
            for (int N = 1; N <= 37; ++N)
                for (int K = 1; K <= 37; ++K, ++n)
                    check_case(st, rng, ta, tb, M, N, K, alphas[n % 5], betas[n % 6], true, {});
        std::printf("  %s sizes 1..37^3: %ld cases, %ld failures, %ld pad violations, worst err/bound %.3g\n",
                    combo(ta, tb), st.cases, st.failures, st.pad_violations, st.worst_ratio);
        ok &= st.failures == 0 && st.pad_violations == 0;
    }
    std::printf("  (%.1f s)\n", now_s() - t0);

    // alpha == 0 (A, B not read) and K-only special cases, NaN C with beta == 0.
    {
        CheckStats st;
        for (int c = 0; c < 4; ++c) {
            const bool ta = c & 2, tb = c & 1;
            check_case(st, rng, ta, tb, 9, 21, 5, 0.0f, 0.0f, true, {1, 2});
            check_case(st, rng, ta, tb, 9, 21, 5, 0.0f, 2.0f, true, {1, 2});
            check_case(st, rng, ta, tb, 9, 21, 5, -3.0f, 0.0f, true, {1, 2});
        }
        std::printf("  alpha=0 / beta=0 NaN-C specials: %ld cases, %ld failures, %ld thread mismatches\n",
                    st.cases, st.failures, st.thread_mismatches);
        ok &= st.failures == 0 && st.thread_mismatches == 0 && st.pad_violations == 0;
    }

    // Block boundaries (MC=144, KC=256, NC=1024) and thread-grid splits, threads 1,2,3,4,7.
    struct Shape { int M, N, K; };
    const Shape shapes[] = {
        {151, 53, 275},   // M > MC, K > KC, N edge
        {300, 40, 600},   // several MC and KC blocks
        {13, 4100, 300},  // N > NC
        {5000, 20, 64},   // tall: grid splits M
        {20, 5000, 70},   // wide: grid splits N
        {401, 389, 517},  // both, odd everywhere
        {64, 2000, 768},  // LM-head-like
        {97, 61, 3000},   // long K, many KC blocks
    };
    t0 = now_s();
    for (int c = 0; c < 4; ++c) {
        const bool ta = c & 2, tb = c & 1;
        CheckStats st;
        int n = 0;
        for (const Shape& s : shapes) {
            check_case(st, rng, ta, tb, s.M, s.N, s.K, alphas[n % 5], betas[n % 6], true, {1, 2, 3, 4, 7});
            ++n;
        }
        std::printf("  %s block-crossing shapes: %ld cases, %ld failures, %ld pad violations, "
                    "%ld thread mismatches (1,2,3,4,7 threads), worst err/bound %.3g\n",
                    combo(ta, tb), st.cases, st.failures, st.pad_violations, st.thread_mismatches, st.worst_ratio);
        ok &= st.failures == 0 && st.thread_mismatches == 0 && st.pad_violations == 0;
    }
    std::printf("  (%.1f s)\n", now_s() - t0);
    std::printf("  correctness: %s\n", ok ? "PASS" : "FAIL");
    return ok;
}

// ---------------------------------------------------------------- peak

double nominal_ghz() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("cpu MHz", 0) == 0) return std::stod(line.substr(line.find(':') + 1)) / 1000.0;
    return 0.0;
}

// ---------------------------------------------------------------- benchmark

// Plain triple loop, k innermost, rows over the threads.
void naive_sgemm(bool ta, bool tb, int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                 float* C, int ldc) {
#pragma omp parallel for schedule(static) if ((double)M * N * K > 1e6)
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = 0.0f;
            for (int k = 0; k < K; ++k) s += opA(ta, A, lda, i, k) * opB(tb, B, ldb, k, j);
            C[(size_t)i * ldc + j] = s;
        }
}

struct BenchShape {
    const char* name;
    bool ta, tb;
    int M, N, K;
    float beta;
};

struct Timing {
    double median, best;  // seconds
};

template <class F>
Timing time_runs(F&& f, int min_runs, double min_total) {
    std::vector<double> ts;
    const double start = now_s();
    while ((int)ts.size() < min_runs || (now_s() - start < min_total && ts.size() < 25)) {
        const double t0 = now_s();
        f();
        ts.push_back(now_s() - t0);
    }
    std::sort(ts.begin(), ts.end());
    return {ts[ts.size() / 2], ts[0]};
}

std::string loadavg() {
    std::ifstream f("/proc/loadavg");
    std::string a;
    std::getline(f, a);
    return a;
}

bool run_bench() {
    const int threads = omp_get_max_threads();
    const double nominal = nominal_ghz(), measured = plw::cpu::measure_clock_ghz();
    const double ghz = measured > 0.0 ? measured : nominal;
    const double fpc256 = plw::cpu::measure_fma_flops_per_cycle(256, ghz);
    const double fpc512 = plw::cpu::measure_fma_flops_per_cycle(512, ghz);
    const std::string kernel = plw::cpu::sgemm_kernel_name();
    const int bits = kernel.rfind("avx512", 0) == 0 ? 512 : 256;
    const double fpc = bits == 512 ? fpc512 : fpc256;
    // Nearest power of two: the pipes x lanes x 2 that the loop measures (a measurement is a
    // little under it, or far under on a loaded machine: then the line below says so).
    const double flops = fpc > 0.0 ? std::exp2(std::round(std::log2(fpc))) : 32.0;
    const double peak = threads * ghz * flops;
    int mr, nr, kc, mc, nc;
    plw::cpu::sgemm_blocking(&mr, &nr, &kc, &mc, &nc);
    const plw::cpu::CacheSizes& cs = plw::cpu::cache_sizes();
    std::printf("\n== benchmark: %d threads, kernel %s (KC %d, MC %d, NC %d; L1d %ld KiB, L2 %ld KiB from %s) "
                "(load average before: %s)\n", threads, kernel.c_str(), kc, mc, nc, cs.l1d / 1024, cs.l2 / 1024,
                cs.source, loadavg().c_str());
    std::printf("  clock: %.3f GHz nominal (/proc/cpuinfo cpu MHz), %.3f GHz measured with all threads busy\n",
                nominal, measured);
    std::printf("  FMA loop, flops/cycle/thread: 256-bit %.1f, 512-bit %.1f%s\n", fpc256, fpc512,
                fpc512 > 0.0 ? "" : " (no AVX-512)");
    std::printf("  peak = %d threads x %.3f GHz x %.0f flops/cycle (%d-bit: %.0f FMA pipe(s) x %d lanes x 2, %s) = "
                "%.1f GFLOP/s\n", threads, ghz, flops, bits, flops / (bits / 16), bits / 32,
                fpc > 0.0 ? "measured" : "ASSUMED", peak);
    std::printf("  %-26s %4s %6s %6s %6s %9s %8s %7s %8s %7s %8s %8s  %s\n", "shape", "op", "M", "N", "K",
                "ms", "GFLOP/s", "%peak", "best", "%peak", "naive", "speedup", "1 vs N threads");

    const int V = 50257, C = 768;
    const BenchShape shapes[] = {
        {"issue: attn proj", false, false, 1024, C, C, 0.0f},
        {"issue: MLP c_fc", false, false, 1024, 4 * C, C, 0.0f},
        {"issue: LM head a.b^T", false, true, 256, 50304, C, 0.0f},
        {"head logits, chunk 64", false, true, 64, V, C, 0.0f},
        {"head logits, chunk 256", false, true, 256, V, C, 0.0f},
        {"head logits, Vp=50304", false, true, 128, 50304, C, 0.0f},
        {"head dhidden, chunk 64", false, false, 64, C, V, 0.0f},
        {"head dhidden, chunk 256", false, false, 256, C, V, 0.0f},
        {"head dwte +=, chunk 64", true, false, V, C, 64, 1.0f},
        {"head dwte +=, chunk 256", true, false, V, C, 256, 1.0f},
        {"qkv fwd BT=256", false, true, 256, 3 * C, C, 0.0f},
        {"fc fwd BT=256", false, true, 256, 4 * C, C, 0.0f},
        {"fcproj bwd dinp BT=256", false, false, 256, 4 * C, C, 0.0f},
        {"fc dW BT=256", true, false, 4 * C, C, 256, 1.0f},
        {"qkv fwd BT=8192", false, true, 8192, 3 * C, C, 0.0f},
        {"attproj fwd BT=8192", false, true, 8192, C, C, 0.0f},
        {"fc fwd BT=8192", false, true, 8192, 4 * C, C, 0.0f},
        {"fcproj fwd BT=8192", false, true, 8192, C, 4 * C, 0.0f},
        {"fc bwd dinp BT=8192", false, false, 8192, C, 4 * C, 0.0f},
        {"fc dW BT=8192", true, false, 4 * C, C, 8192, 1.0f},
        {"fcproj dW BT=8192", true, false, C, 4 * C, 8192, 1.0f},
        {"tiny 1x1x1", false, false, 1, 1, 1, 0.0f},
        {"tiny 7x13x5", false, true, 7, 13, 5, 0.0f},
        {"tiny 16^3", false, false, 16, 16, 16, 0.0f},
        {"small 64^3", false, true, 64, 64, 64, 0.0f},
        {"small 128^3", false, false, 128, 128, 128, 0.0f},
        {"gemv 1x768x768", false, true, 1, C, C, 0.0f},
        {"gemv 1xVx768", false, true, 1, V, C, 0.0f},
    };

    bool all_equal = true;
    Rng rng(7);
    for (const BenchShape& s : shapes) {
        const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
        std::vector<float> A((size_t)(s.ta ? s.K : s.M) * lda), B((size_t)(s.tb ? s.N : s.K) * ldb);
        std::vector<float> Cm((size_t)s.M * ldc), C1((size_t)s.M * ldc);
        fill(A, rng);
        fill(B, rng);
        fill(Cm, rng);
        const std::vector<float> C0 = Cm;
        const double flops = 2.0 * s.M * s.N * s.K;

        auto run = [&] { sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, Cm.data(), ldc); };
        run();  // warm up (pack buffers, page faults)
        const Timing tm = time_runs(run, flops > 1e9 ? 5 : 15, flops > 1e9 ? 1.0 : 0.3);
        const double t = tm.median;

        // Bitwise equality 1 vs `threads` threads, from the same initial C.
        Cm = C0;
        run();
        C1 = C0;
        omp_set_num_threads(1);
        sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, C1.data(), ldc);
        omp_set_num_threads(threads);
        const bool equal = std::memcmp(C1.data(), Cm.data(), Cm.size() * sizeof(float)) == 0;
        all_equal &= equal;

        // Spot-check 32 elements against the double reference.
        bool spot_ok = true;
        for (int r = 0; r < 32; ++r) {
            const int i = rng.below(s.M), j = rng.below(s.N);
            double ref = ref_element(s.ta, s.tb, s.K, A.data(), lda, B.data(), ldb, i, j);
            ref += (double)s.beta * C0[(size_t)i * ldc + j];
            spot_ok &= std::fabs(Cm[(size_t)i * ldc + j] - ref) <= 1e-5 * s.K + 1e-6;
        }

        // Baseline on a row slice (rows of op(A)) so that it stays under ~0.25 GFLOP.
        const int rows = std::max(1, std::min(s.M, (int)(1.25e8 / ((double)s.N * s.K))));
        std::vector<float> Cn((size_t)rows * ldc);
        const double tn =
            time_runs([&] { naive_sgemm(s.ta, s.tb, rows, s.N, s.K, A.data(), lda, B.data(), ldb, Cn.data(), ldc); },
                      1, 0.2)
                .median;
        const double naive_gflops = 2.0 * rows * s.N * s.K / tn / 1e9;

        const double gflops = flops / t / 1e9, best = flops / tm.best / 1e9;
        std::printf("  %-26s %4s %6d %6d %6d %9.3f %8.1f %6.1f%% %8.1f %6.1f%% %8.2f %7.0fx  %s%s\n", s.name,
                    combo(s.ta, s.tb), s.M, s.N, s.K, t * 1e3, gflops, 100.0 * gflops / peak, best,
                    100.0 * best / peak, naive_gflops, gflops / naive_gflops,
                    equal ? "equal" : "DIFFERENT", spot_ok ? "" : "  SPOT-CHECK FAILED");
    }
    std::printf("  (ms, GFLOP/s: median run; best: fastest run; naive: GFLOP/s of the plain i-j-k loop,\n"
                "   %d threads over rows, on the first rows of each shape; speedup: median vs naive)\n", threads);
    std::printf("  load average after: %s\n", loadavg().c_str());
    std::printf("  1 vs %d threads bitwise: %s\n", threads, all_equal ? "all equal" : "DIFFERENT");
    return all_equal;
}

// FNV-1a of the result bits of a few shapes, for comparing whole processes run with
// different OMP_NUM_THREADS (the in-process checks use omp_set_num_threads).
void run_hash() {
    struct Shape { bool ta, tb; int M, N, K; float beta; };
    const Shape shapes[] = {{false, true, 256, 50257, 768, 0.0f}, {false, false, 64, 768, 50257, 0.0f},
                            {true, false, 50257, 768, 256, 1.0f}, {false, true, 1024, 3072, 768, 0.0f},
                            {true, true, 401, 389, 517, -0.5f}};
    Rng rng(99);
    for (const Shape& s : shapes) {
        const int lda = s.ta ? s.M : s.K, ldb = s.tb ? s.K : s.N, ldc = s.N;
        std::vector<float> A((size_t)(s.ta ? s.K : s.M) * lda), B((size_t)(s.tb ? s.N : s.K) * ldb);
        std::vector<float> Cm((size_t)s.M * ldc);
        fill(A, rng);
        fill(B, rng);
        fill(Cm, rng);
        sgemm(s.ta, s.tb, s.M, s.N, s.K, 1.0f, A.data(), lda, B.data(), ldb, s.beta, Cm.data(), ldc);
        uint64_t h = 1469598103934665603ull;
        const unsigned char* p = reinterpret_cast<const unsigned char*>(Cm.data());
        for (size_t i = 0; i < Cm.size() * sizeof(float); ++i) h = (h ^ p[i]) * 1099511628211ull;
        std::printf("%s M=%d N=%d K=%d: %016llx\n", combo(s.ta, s.tb), s.M, s.N, s.K, (unsigned long long)h);
    }
}

}  // namespace

int main(int argc, char** argv) {
    bool check = true, bench = true;
    if (argc > 1 && std::strcmp(argv[1], "--check") == 0) bench = false;
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) check = false;
    std::vector<std::string> kernels = {""};  // "": the one the environment / CPU selects
    if (argc > 2) {
        const std::string k = argv[2];
        kernels = k == "both" ? std::vector<std::string>{"avx2", "avx512"} : std::vector<std::string>{k};
    }
    bool ok = true;
    for (const std::string& k : kernels) {
        if (!k.empty() && !plw::cpu::sgemm_set_kernel(k.c_str())) {
            std::printf("kernel %s: not available on this machine/build\n", k.c_str());
            ok = false;
            continue;
        }
        std::printf("#### kernel %s\n", plw::cpu::sgemm_kernel_name());
        if (argc > 1 && std::strcmp(argv[1], "--hash") == 0) {
            run_hash();
            continue;
        }
        if (check) ok &= run_checks();
        if (bench) ok &= run_bench();
    }
    return ok ? 0 : 1;
}
