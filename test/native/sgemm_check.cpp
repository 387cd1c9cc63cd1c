// Checks of the CPU SGEMM (native/cpu/matmul.cpp, matmul_avx512.cpp), run from ops_check.cpp's
// main (run_sgemm_checks); `plw_native_tests --sgemm` runs only these (test/native-ops.test.ts
// runs that once more with PLW_CPU_KERNEL=avx2). Every kernel this machine can run is checked:
// the AVX2 (or portable) one always, the AVX-512 one where sgemm_has_avx512(), switched with
// sgemm_set_kernel(); the kernel that was active at start must honour PLW_CPU_KERNEL.
//
//   reference   all four transpose combinations (the engine uses NN, NT, TN), odd sizes from
//               1x1x1 to shapes crossing every block boundary of both paths (MC, KC, NC and
//               the thread grid), padded lda/ldb/ldc, alpha/beta in {1, -0.5, 2.5, 0.75} x
//               {0, 1, -1.5, 0.3}: against a float64 triple loop
//   beta = 0    C filled with NaN comes out finite (never read); alpha = 0 leaves beta * C
//   padding     the columns ldc > N of C are never written (sentinel)
//   threads     bitwise equal results with 1, 2 and 3 OpenMP threads, per kernel
//   paths       AVX-512 vs AVX2 on the same inputs within the same tolerance, and bitwise
//               equal where both use the same KC and the base kernel is AVX2+FMA (the same FMA
//               chains and roundings then; the portable kernel of a build without FMA rounds
//               each product, and a KC picked for another L1d splits the sums elsewhere)
//
// Error metric (per element, not check.h's max_rel_err: a GEMM's rounding error scales with
// the sum of the magnitudes of its terms, not with the result, which may cancel to ~0):
//   err = max_ij |got_ij - ref_ij| / (|alpha| * sum_k |op(A)_ik op(B)_kj| + |beta c0_ij|)
// The worst-case f32 bound is ~(K + 2) * 2^-24 (a chain of K FMAs, then alpha and beta);
// measured ~1e-7; tolerance 1e-5 (K <= 600 here, worst case 3.6e-5 is never approached by
// random data); a wrong index or a lost block is off by O(1).
#include <omp.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../../native/cpu/cpu_info.h"
#include "../../native/cpu/matmul.h"
#include "check.h"

using namespace plw_check;

namespace {

constexpr double kTolSgemm = 1e-5;

struct Case {
    bool ta, tb;
    int M, N, K, lda, ldb, ldc;
    float alpha, beta;
    Vec A, B, C0;
    DVec ref, scale;  // float64 result and the error scale of each element
};

const char* combo(bool ta, bool tb) { return ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"); }

constexpr float kPad = 12345.0f;

Case make_case(bool ta, bool tb, int M, int N, int K, float alpha, float beta, int pad, Rng& r) {
    Case c{ta, tb, M, N, K, (ta ? M : K) + pad, (tb ? K : N) + pad, N + pad, alpha, beta, {}, {}, {}, {}, {}};
    c.A = randn(static_cast<size_t>(ta ? K : M) * c.lda, r);
    c.B = randn(static_cast<size_t>(tb ? N : K) * c.ldb, r);
    c.C0 = beta == 0.0f ? Vec(static_cast<size_t>(M) * c.ldc, std::nanf("")) : randn(static_cast<size_t>(M) * c.ldc, r);
    for (int i = 0; i < M; i++)
        for (int j = N; j < c.ldc; j++) c.C0[static_cast<size_t>(i) * c.ldc + j] = kPad;
    c.ref.assign(static_cast<size_t>(M) * N, 0.0);
    c.scale.assign(static_cast<size_t>(M) * N, 0.0);
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0, a = 0.0;
            for (int k = 0; k < K; k++) {
                const double x = ta ? c.A[static_cast<size_t>(k) * c.lda + i] : c.A[static_cast<size_t>(i) * c.lda + k];
                const double y = tb ? c.B[static_cast<size_t>(j) * c.ldb + k] : c.B[static_cast<size_t>(k) * c.ldb + j];
                s += x * y;
                a += std::fabs(x * y);
            }
            const double c0 = beta == 0.0f ? 0.0 : c.C0[static_cast<size_t>(i) * c.ldc + j];
            c.ref[static_cast<size_t>(i) * N + j] = alpha * s + beta * c0;
            c.scale[static_cast<size_t>(i) * N + j] = std::fabs(alpha) * a + std::fabs(beta * c0) + 1e-30;
        }
    }
    return c;
}

Vec run(const Case& c) {
    Vec C = c.C0;
    plw::cpu::sgemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, c.A.data(), c.lda, c.B.data(), c.ldb, c.beta, C.data(), c.ldc);
    return C;
}

// max_ij |got - ref| / scale over the valid part; +inf on NaN; pad_ok: ldc padding untouched.
double err_vs(const Case& c, const Vec& got, bool* pad_ok) {
    double e = 0.0;
    *pad_ok = true;
    for (int i = 0; i < c.M; i++) {
        for (int j = 0; j < c.ldc; j++) {
            const float g = got[static_cast<size_t>(i) * c.ldc + j];
            if (j >= c.N) {
                *pad_ok = *pad_ok && std::memcmp(&g, &kPad, sizeof g) == 0;
                continue;
            }
            const double d = std::fabs(g - c.ref[static_cast<size_t>(i) * c.N + j]) / c.scale[static_cast<size_t>(i) * c.N + j];
            e = std::isnan(d) ? INFINITY : std::max(e, d);
        }
    }
    return e;
}

// Element-wise difference of two results, on the same scale as err_vs.
double err_between(const Case& c, const Vec& x, const Vec& y) {
    double e = 0.0;
    for (int i = 0; i < c.M; i++)
        for (int j = 0; j < c.N; j++) {
            const size_t o = static_cast<size_t>(i) * c.ldc + j;
            const double d = std::fabs(static_cast<double>(x[o]) - y[o]) / c.scale[static_cast<size_t>(i) * c.N + j];
            e = std::isnan(d) ? INFINITY : std::max(e, d);
        }
    return e;
}

bool bitwise(const Vec& x, const Vec& y) { return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0; }

struct Kernel {
    const char* set_name;  // for sgemm_set_kernel
    std::string name;      // sgemm_kernel_name() once set
    int kc;
};

}  // namespace

void run_sgemm_checks() {
    using namespace plw::cpu;
    // The kernel at start must follow PLW_CPU_KERNEL (read at the first sgemm call, this one).
    const char* env = std::getenv("PLW_CPU_KERNEL");
    const std::string start = sgemm_kernel_name();
    const bool want_base = env && (std::string(env) == "avx2" || std::string(env) == "generic");
    const bool start_ok = want_base ? start.rfind("avx512", 0) != 0
                                    : (start.rfind("avx512", 0) == 0) == sgemm_has_avx512();
    const CpuFeatures& f = cpu_features();
    const CacheSizes& cs = cache_sizes();
    report(start_ok, fmt("sgemm kernel at start: %s (PLW_CPU_KERNEL=%s; CPU avx2=%d avx512f=%d bw=%d dq=%d vl=%d; "
                         "caches L1d %ld KiB, L2 %ld KiB, L3 %ld KiB from %s)",
                         start.c_str(), env ? env : "unset", f.avx2, f.avx512f, f.avx512bw, f.avx512dq, f.avx512vl,
                         cs.l1d / 1024, cs.l2 / 1024, cs.l3 / 1024, cs.source));

    std::vector<Kernel> kernels;
    for (const char* k : {"avx2", "avx512"}) {
        if (std::string(k) == "avx512" && !sgemm_has_avx512()) {
            std::printf("skip sgemm avx512 kernel: not supported by this CPU/OS/build\n");
            continue;
        }
        report(sgemm_set_kernel(k), fmt("sgemm_set_kernel(\"%s\")", k));
        int mr, nr, kc, mc, nc;
        sgemm_blocking(&mr, &nr, &kc, &mc, &nc);
        kernels.push_back({k, sgemm_kernel_name(), kc});
        std::printf("     kernel %s: tile %dx%d, KC %d, MC %d, NC %d\n", sgemm_kernel_name(), mr, nr, kc, mc, nc);
    }

    struct Shape {
        int M, N, K;
        bool threads;  // also check 1/2/3 threads bitwise
    };
    const Shape shapes[] = {
        {1, 1, 1, false},     {2, 3, 5, false},      {7, 13, 4, false},    {13, 31, 17, false},
        {15, 33, 37, false},  {14, 32, 16, false},   {29, 65, 300, true},  {6, 1100, 33, true},
        {151, 53, 275, true}, {300, 40, 600, true},  {259, 1057, 300, true},  // past MC, KC, NC of both kernels
        {5, 2500, 64, true},  {2000, 5, 48, true},   {64, 768, 70, true},
        // M = 18 x 14 + 4 (one stretched AVX-512 A block, a 4-row edge strip) and 252 + 66 (past the
        // stretch: a second block of 4 x 14 + 10 rows): the edge kernels of every even height
        {256, 40, 24, true},  {318, 33, 20, true},   {9, 45, 19, false},   {3, 70, 21, false},
    };
    const float alphas[] = {1.0f, -0.5f, 2.5f, 0.75f};
    const float betas[] = {0.0f, 1.0f, -1.5f, 0.3f};
    Rng r(20261205);
    int n = 0;
    for (const Shape& s : shapes) {
        for (int cmb = 0; cmb < 4; cmb++, n++) {
            const bool ta = cmb & 2, tb = cmb & 1;
            const float alpha = alphas[n % 4], beta = betas[(n / 4 + cmb) % 4];
            const Case c = make_case(ta, tb, s.M, s.N, s.K, alpha, beta, n % 3 == 0 ? 0 : 1 + n % 5, r);
            const std::string what = fmt("sgemm %s M=%d N=%d K=%d alpha=%g beta=%g lda=%d ldb=%d ldc=%d", combo(ta, tb),
                                         s.M, s.N, s.K, alpha, beta, c.lda, c.ldb, c.ldc);
            std::vector<Vec> results;
            for (const Kernel& k : kernels) {
                sgemm_set_kernel(k.set_name);
                Vec got = run(c);
                bool pad_ok;
                const double e = err_vs(c, got, &pad_ok);
                report(e <= kTolSgemm && pad_ok, fmt("%s [%s] vs float64  err=%.2e (tol %.0e)%s", what.c_str(),
                                                     k.name.c_str(), e, kTolSgemm, pad_ok ? "" : "  PADDING WRITTEN"));
                if (s.threads) check_threads(fmt("%s [%s]", what.c_str(), k.name.c_str()), [&] { return std::vector<Vec>{run(c)}; });
                results.push_back(std::move(got));
            }
            if (kernels.size() == 2) {
                const double d = err_between(c, results[0], results[1]);
                // Bitwise equal expected only against the AVX2+FMA kernel: the portable one (a build
                // without -mfma) rounds each product before adding it.
                const bool same_kc = kernels[0].kc == kernels[1].kc && kernels[0].name.rfind("avx2", 0) == 0;
                const bool bits = bitwise(results[0], results[1]);
                report(d <= kTolSgemm && (!same_kc || bits),
                       fmt("%s avx512 vs avx2  diff=%.2e (tol %.0e)%s", what.c_str(), d, kTolSgemm,
                           same_kc ? (bits ? ", bitwise equal (same KC)" : ", NOT bitwise equal with the same KC")
                                   : ", different KC or no FMA: not bitwise"));
            }
        }
    }

    // alpha = 0: C = beta * C without reading A or B (nullptr here), with beta = 0 over NaN.
    for (const Kernel& k : kernels) {
        sgemm_set_kernel(k.set_name);
        Vec C(6 * 9, std::nanf(""));
        sgemm(false, false, 6, 9, 4, 0.0f, nullptr, 4, nullptr, 9, 0.0f, C.data(), 9);
        bool zero = true;
        for (float x : C) zero = zero && x == 0.0f;
        Vec D(6 * 9, 2.0f);
        sgemm(true, true, 6, 9, 4, 0.0f, nullptr, 6, nullptr, 4, -1.5f, D.data(), 9);
        bool scaled = true;
        for (float x : D) scaled = scaled && x == -3.0f;
        report(zero && scaled, fmt("sgemm alpha=0 [%s]: beta=0 over NaN gives 0, beta=-1.5 scales C", k.name.c_str()));
    }
    sgemm_set_kernel(start.rfind("avx512", 0) == 0 ? "avx512" : "avx2");  // back to what the environment chose
}
