// Single-precision GEMM for the CPU backend: C (M,N) = alpha * op(A) (M,K) . op(B) (K,N) + beta * C.
// Row-major throughout; see matmul.h for the contract.
//
// Structure (BLIS / GotoBLAS). For one thread's block of C:
//
//   for jc in N step NC                 B panel  op(B)[pc:pc+KC, jc:jc+NC]  -> L2/L3
//     for pc in K step KC                 packed into NR-wide column strips, each KC x NR
//       pack B
//       for ic in M step MC              A block  op(A)[ic:ic+MC, pc:pc+KC]  -> L2
//         pack A                           packed into MR-tall row strips, each MR x KC
//         for jr in NC step NR           one B strip (KC x NR) stays in L1 ...
//           for ir in MC step MR         ... while the A strips stream past it from L2
//             micro-kernel: C[MR x NR] (+)= A strip . B strip, accumulated in registers
//
// The four transpose combinations are handled only by the packing routines; the kernel
// sees the same packed layout for all of them. Edge strips are zero-padded when packed,
// and an edge tile of C goes through a small MR x NR buffer (masked store), so every C
// element is computed by the same instructions wherever its tile lies. The first KC block
// applies beta (beta == 0: C is only written), the later ones accumulate onto C.
//
// Blocking for this machine (AMD EPYC Zen 4 under KVM, 2 cores; per core 32 KiB L1d 8-way
// and 1 MiB L2, 32 MiB L3 shared; AVX2 + FMA: 2 FMA pipes x 8 fp32 lanes per cycle):
//   MR x NR = 6 x 16  12 ymm accumulators + 2 for the B row + 1 broadcast of A = 15 of the
//                     16 ymm registers of AVX2. 12 independent FMA chains cover the FMA
//                     latency (4 cycles x 2 pipes = 8 needed); per k step 12 FMAs (6 cycles)
//                     against 2 loads + 6 broadcasts, well under the 3 loads per cycle.
//   KC = 256          B strip KC*NR*4 = 16 KiB + A strip KC*MR*4 = 6 KiB = 22 KiB, inside the
//                     32 KiB L1d; each C tile load/store is amortized over 256 FMAs per
//                     accumulator. (384 and 512 measured the same on the big shapes and
//                     slower on the small-M LM-head ones.)
//   MC = 144          A block MC*KC*4 = 144 KiB in the 1 MiB L2, next to the part of the B
//                     panel and the C tiles passing through (96..240 measured within noise).
//   NC = 1024         B panel KC*NC*4 = 1 MiB: a thread's B panel and the C block it updates
//                     across the KC blocks stay in L2/L3 even when the other operand streams
//                     from DRAM (the LM head: 4080 was 15-20% slower there, 512 the same).
//                     A is re-packed once per NC columns: at most 1/64 of the FMAs' work.
//
// Packing: B^T (the transposed weights of the forward matmuls and of the LM head) is packed
// with 8x8 AVX transposes; source rows are walked PACK_ROWS at a time and the next rows are
// prefetched, as each row segment (kc or NC floats) is too short for the hardware prefetcher.
//
// Threading: C is cut into a tm x tn grid of blocks (tm * tn <= threads), one per thread,
// each thread running the loops above on its block with its own pack buffers (thread_local,
// grown on demand, so no allocation per call in steady state). The grid is chosen by a cost
// model (compute of the largest block + its packing: splitting N makes each thread pack only
// its part of B; splitting M makes every thread pack all of B). Problems too small to repay
// the fork run on the calling thread. K is never split, and the K blocking (KC) does not
// depend on the thread count, so each C element is reduced by one thread in one fixed order:
// results are bitwise identical for any number of threads.
//
// Dispatch (sgemm_kernel_name() says which ran): where the CPU and the OS support AVX-512F
// (cpu_features(): CPUID + XGETBV, read at run time, whatever -march the library was built
// with), the AVX-512 path of matmul_avx512.cpp (14 x 32 tiles on zmm registers, compiled with
// its own -mavx512f flags) runs; elsewhere this file's path above (6 x 16 on ymm with AVX2+FMA,
// or the portable kernel when the build has no AVX2), so a library built for AVX2 runs on
// AVX2-only CPUs and never executes an AVX-512 instruction there. PLW_CPU_KERNEL=avx2 in the
// environment (read at the first call) forces this file's path where both exist;
// PLW_CPU_KERNEL=avx512 or auto (or unset) takes AVX-512 where the CPU has it;
// sgemm_set_kernel() switches in-process (the tests run both paths).
//
// The AVX-512 blocking is computed once from the cache sizes read at run time (cpu_info.h):
//   KC  the B strip (KC x 32 floats) fills at most 2/3 of the L1d, a multiple of 16 in
//       [128, 512]: 256 for a 48 KiB L1d (Zen 5, Ice Lake / Sapphire Rapids), 160 for 32 KiB
//       (Skylake-X, Zen 4). The A strip (14 x KC) streams past it from L2.
//   MC  the A block (MC x KC) takes at most 1/4 of the L2, a multiple of 14 in [14*4, 14*36]:
//       at KC = 256, 252 rows for 1 MiB, 504 for 2 MiB. The last block of a thread's rows may
//       be up to a quarter taller rather than leave a thin remainder (avx512::a_block_rows).
//   NC  the B panel (KC x NC) takes at most the L2, a multiple of 32 in [512, 4096]: 1024
//       at KC = 256 and 1 MiB of L2.
// Both paths do the same arithmetic per C element (an FMA chain in k order within a KC block,
// then C = alpha * acc + beta * C): where their KC is the same (256, a 48 KiB L1d) they give
// bitwise equal results; elsewhere they differ by the rounding of the partial sums only (see
// test/native/sgemm_check.cpp for the tolerance). On a given machine and path the result is
// bitwise the same for any thread count.
#include "matmul.h"

#include "cpu_info.h"
#include "matmul_avx512.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PLW_SGEMM_AVX2 1
#else
#define PLW_SGEMM_AVX2 0
#endif

namespace plw::cpu {

namespace {

using idx = std::ptrdiff_t;

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int KC = 256;
constexpr int MC = 144;   // multiple of MR
constexpr int NC = 1024;  // multiple of NR
static_assert(MC % MR == 0 && NC % NR == 0, "MC, NC must be multiples of MR, NR");

// ---------------------------------------------------------------- pack buffers

// A 64-byte aligned float buffer that only grows; one per thread and per operand.
struct PackBuffer {
    float* data = nullptr;
    size_t capacity = 0;  // floats
    ~PackBuffer() { std::free(data); }
    // Returns nullptr when the allocation fails (the caller reports it after the parallel region).
    float* get(size_t floats) {
        if (floats > capacity) {
            std::free(data);
            size_t bytes = (floats * sizeof(float) + 63) / 64 * 64;
            data = static_cast<float*>(std::aligned_alloc(64, bytes));
            capacity = data ? floats : 0;
        }
        return data;
    }
};

thread_local PackBuffer tls_pack_a;  // (MC/MR strips, KC, MR)
thread_local PackBuffer tls_pack_b;  // (NC/NR strips, KC, NR)

// ---------------------------------------------------------------- packing

// Rows of the source taken together by the packing routines when they walk a strided
// dimension: each source row (and its page) is visited once per group, not once per strip.
constexpr int PACK_ROWS = 8;

// op(A)[i0:i0+mc, p0:p0+kc] -> Ap as ceil(mc/MR) strips, each (kc, MR), rows past mc zero.
// Strip s starts at Ap + s * kc * MR.
void pack_a(bool trans, int mc, int kc, const float* A, idx lda, idx i0, idx p0, float* Ap) {
    if (trans) {
        // op(A)(i,k) = A[k*lda + i]: row k of A holds op(A)[i0:i0+mc, k] contiguously.
        for (int k0 = 0; k0 < kc; k0 += PACK_ROWS) {
            const int k1 = std::min(kc, k0 + PACK_ROWS);
            for (int is = 0; is < mc; is += MR) {
                const int mr = std::min(MR, mc - is);
                float* dst = Ap + (idx)is * kc;
                for (int k = k0; k < k1; ++k) {
                    const float* src = A + (p0 + k) * lda + i0 + is;
                    for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? src[i] : 0.0f;
                }
            }
        }
        return;
    }
    // op(A)(i,k) = A[i*lda + k]: MR rows read side by side, written with stride MR.
    for (int is = 0; is < mc; is += MR) {
        const int mr = std::min(MR, mc - is);
        float* dst = Ap + (idx)is * kc;
        const float* src = A + (i0 + is) * lda + p0;
        if (mr == MR) {
            const float* r0 = src;
            const float* r1 = src + lda;
            const float* r2 = src + 2 * lda;
            const float* r3 = src + 3 * lda;
            const float* r4 = src + 4 * lda;
            const float* r5 = src + 5 * lda;
            for (int k = 0; k < kc; ++k) {
                float* d = dst + k * MR;
                d[0] = r0[k];
                d[1] = r1[k];
                d[2] = r2[k];
                d[3] = r3[k];
                d[4] = r4[k];
                d[5] = r5[k];
            }
        } else {
            for (int k = 0; k < kc; ++k)
                for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? src[i * lda + k] : 0.0f;
        }
    }
}

#if PLW_SGEMM_AVX2
// Transposes the 8x8 block at src (row stride lds) into dst (row stride ldd).
inline void transpose_8x8(const float* src, idx lds, float* dst, idx ldd) {
    __m256 r0 = _mm256_loadu_ps(src + 0 * lds), r1 = _mm256_loadu_ps(src + 1 * lds);
    __m256 r2 = _mm256_loadu_ps(src + 2 * lds), r3 = _mm256_loadu_ps(src + 3 * lds);
    __m256 r4 = _mm256_loadu_ps(src + 4 * lds), r5 = _mm256_loadu_ps(src + 5 * lds);
    __m256 r6 = _mm256_loadu_ps(src + 6 * lds), r7 = _mm256_loadu_ps(src + 7 * lds);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_store_ps(dst + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_store_ps(dst + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_store_ps(dst + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_store_ps(dst + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_store_ps(dst + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_store_ps(dst + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_store_ps(dst + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_store_ps(dst + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#endif

// op(B)[p0:p0+kc, j0:j0+nc] -> Bp as ceil(nc/NR) strips, each (kc, NR), columns past nc zero.
// Strip s starts at Bp + s * kc * NR.
void pack_b(bool trans, int kc, int nc, const float* B, idx ldb, idx p0, idx j0, float* Bp) {
    if (!trans) {
        // op(B)(k,j) = B[k*ldb + j]: row k of B holds op(B)[k, j0:j0+nc] contiguously.
        for (int k0 = 0; k0 < kc; k0 += PACK_ROWS) {
            const int k1 = std::min(kc, k0 + PACK_ROWS);
            for (int js = 0; js < nc; js += NR) {
                const int nr = std::min(NR, nc - js);
                float* dst = Bp + (idx)js * kc;
                for (int k = k0; k < k1; ++k) {
                    const float* src = B + (p0 + k) * ldb + j0 + js;
                    if (nr == NR) {
                        // The same columns PACK_ROWS rows down, needed by the next group.
                        if (k + PACK_ROWS < kc) __builtin_prefetch(src + PACK_ROWS * ldb, 0, 2);
                        std::memcpy(dst + k * NR, src, NR * sizeof(float));
                    } else {
                        for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < nr ? src[j] : 0.0f;
                    }
                }
            }
        }
        return;
    }
    // op(B)(k,j) = B[j*ldb + k]: a transpose, NR rows of B (contiguous in k) per strip.
    for (int js = 0; js < nc; js += NR) {
        const int nr = std::min(NR, nc - js);
        float* dst = Bp + (idx)js * kc;
        const float* src = B + (j0 + js) * ldb + p0;
        int k = 0;
#if PLW_SGEMM_AVX2
        if (nr == NR) {
            // The next strip's rows are fetched one strip ahead: each row segment is only kc
            // floats, too short for the hardware prefetcher to run ahead of this loop.
            const float* next = src + NR * ldb;
            const int next_rows = std::max(0, std::min(NR, nc - js - NR));
            for (; k + 8 <= kc; k += 8) {
                if (k % 16 == 0)  // one cache line of each row per 16 k
                    for (int j = 0; j < next_rows; ++j) __builtin_prefetch(next + j * ldb + k, 0, 2);
                transpose_8x8(src + k, ldb, dst + k * NR, NR);
                transpose_8x8(src + 8 * ldb + k, ldb, dst + k * NR + 8, NR);
            }
        }
#endif
        for (; k < kc; ++k)
            for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < nr ? src[j * ldb + k] : 0.0f;
    }
}

// ---------------------------------------------------------------- micro-kernel

// C[MR x NR] = alpha * a . b + beta * C, a: (kc, MR) packed, b: (kc, NR) packed, 32-byte aligned.
// beta == 0: C is not read.
#if PLW_SGEMM_AVX2
void kernel(int kc, const float* a, const float* b, float* c, idx ldc, float alpha, float beta) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int i = 0; i < MR; ++i) {  // the C tile is needed at the end: fetch it now
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 4
    for (int k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = _mm256_load_ps(b + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a + 0);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a + 4);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a + 5);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
        a += MR;
        b += NR;
    }
    const __m256 va = _mm256_set1_ps(alpha);
    const __m256 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    if (beta == 0.0f) {
        for (int i = 0; i < MR; ++i) {
            _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
            _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
        }
    } else {
        const __m256 vb = _mm256_set1_ps(beta);
        for (int i = 0; i < MR; ++i) {
            float* ci = c + i * ldc;
            _mm256_storeu_ps(ci, _mm256_fmadd_ps(va, acc[i][0], _mm256_mul_ps(vb, _mm256_loadu_ps(ci))));
            _mm256_storeu_ps(ci + 8, _mm256_fmadd_ps(va, acc[i][1], _mm256_mul_ps(vb, _mm256_loadu_ps(ci + 8))));
        }
    }
}
#else
// Portable version with GCC/Clang vector extensions (lowered to whatever SIMD the target has).
// Vectors stay local (no v8f parameters or returns: their ABI depends on the target).
typedef float v8f __attribute__((vector_size(32)));

void kernel(int kc, const float* a, const float* b, float* c, idx ldc, float alpha, float beta) {
    v8f acc[MR][2] = {};
    for (int k = 0; k < kc; ++k) {
        v8f b0, b1;
        std::memcpy(&b0, b, sizeof(v8f));
        std::memcpy(&b1, b + 8, sizeof(v8f));
        for (int i = 0; i < MR; ++i) {
            const v8f av = v8f{} + a[i];
            acc[i][0] += av * b0;
            acc[i][1] += av * b1;
        }
        a += MR;
        b += NR;
    }
    const v8f va = v8f{} + alpha;
    const v8f vb = v8f{} + beta;
    for (int i = 0; i < MR; ++i) {
        for (int h = 0; h < 2; ++h) {
            float* ch = c + i * ldc + 8 * h;
            v8f out = va * acc[i][h];
            if (beta != 0.0f) {
                v8f old;
                std::memcpy(&old, ch, sizeof(v8f));
                out += vb * old;
            }
            std::memcpy(ch, &out, sizeof(v8f));
        }
    }
}
#endif

// C[mc x nc] (+)= packed A block . packed B panel, tile by tile.
void macro_kernel(int mc, int nc, int kc, float alpha, const float* Ap, const float* Bp, float beta,
                  float* C, idx ldc) {
    for (int jr = 0; jr < nc; jr += NR) {
        const int nr = std::min(NR, nc - jr);
        const float* b = Bp + (idx)jr * kc;
        for (int ir = 0; ir < mc; ir += MR) {
            const int mr = std::min(MR, mc - ir);
            const float* a = Ap + (idx)ir * kc;
            float* c = C + ir * ldc + jr;
            if (mr == MR && nr == NR) {
                kernel(kc, a, b, c, ldc, alpha, beta);
            } else {
                // Edge tile: the same kernel on a full-size buffer, then copy the valid part back.
                alignas(64) float t[MR * NR] = {};
                if (beta != 0.0f)
                    for (int i = 0; i < mr; ++i) std::memcpy(t + i * NR, c + i * ldc, nr * sizeof(float));
                kernel(kc, a, b, t, NR, alpha, beta);
                for (int i = 0; i < mr; ++i) std::memcpy(c + i * ldc, t + i * NR, nr * sizeof(float));
            }
        }
    }
}

// The whole blocked algorithm on C[m0:m1, n0:n1], single-threaded. Returns false if a pack
// buffer could not be allocated (C is then left partly written).
bool gemm_block(bool trans_a, bool trans_b, int m0, int m1, int n0, int n1, int K, float alpha,
                const float* A, idx lda, const float* B, idx ldb, float beta, float* C, idx ldc) {
    const int M = m1 - m0, N = n1 - n0;
    if (M <= 0 || N <= 0) return true;
    const int mc_max = std::min(MC, (M + MR - 1) / MR * MR);
    const int nc_max = std::min(NC, (N + NR - 1) / NR * NR);
    const int kc_max = std::min(KC, K);
    float* Ap = tls_pack_a.get((size_t)mc_max * kc_max);
    float* Bp = tls_pack_b.get((size_t)nc_max * kc_max);
    if (!Ap || !Bp) return false;
    for (int jc = 0; jc < N; jc += NC) {
        const int nc = std::min(NC, N - jc);
        for (int pc = 0; pc < K; pc += KC) {
            const int kc = std::min(KC, K - pc);
            const float beta_p = pc == 0 ? beta : 1.0f;
            pack_b(trans_b, kc, nc, B, ldb, pc, n0 + jc, Bp);
            for (int ic = 0; ic < M; ic += MC) {
                const int mc = std::min(MC, M - ic);
                pack_a(trans_a, mc, kc, A, lda, m0 + ic, pc, Ap);
                macro_kernel(mc, nc, kc, alpha, Ap, Bp, beta_p, C + (m0 + ic) * ldc + n0 + jc, ldc);
            }
        }
    }
    return true;
}

// The AVX-512 path's gemm_block: its blocking, this thread's pack buffers (the same ones as
// this file's path: only one path runs at a time in a thread).
struct Avx512Blocking {
    int kc = 256, mc = 252, nc = 1024;
};

Avx512Blocking avx512_blocking_from_caches() {
    const CacheSizes& cs = cache_sizes();
    constexpr int mr = avx512::MR, nr = avx512::NR;
    Avx512Blocking b;
    b.kc = (int)std::clamp<long>(cs.l1d * 2 / 3 / (nr * (long)sizeof(float)) / 16 * 16, 128, 512);
    b.mc = (int)std::clamp<long>(cs.l2 / 4 / (b.kc * (long)sizeof(float)) / mr * mr, 4 * mr, 36 * mr);
    b.nc = (int)std::clamp<long>(cs.l2 / (b.kc * (long)sizeof(float)) / nr * nr, 512, 4096);
    return b;
}

const Avx512Blocking& avx512_blocking() {
    static const Avx512Blocking b = avx512_blocking_from_caches();
    return b;
}

bool gemm_block_avx512(bool trans_a, bool trans_b, int m0, int m1, int n0, int n1, int K, float alpha,
                       const float* A, idx lda, const float* B, idx ldb, float beta, float* C, idx ldc) {
    const int M = m1 - m0, N = n1 - n0;
    if (M <= 0 || N <= 0) return true;
    const Avx512Blocking& bl = avx512_blocking();
    constexpr int mr = avx512::MR, nr = avx512::NR;
    const int mc_max = (std::min(M, avx512::a_block_max_rows(bl.mc)) + mr - 1) / mr * mr;
    const int nc_max = std::min(bl.nc, (N + nr - 1) / nr * nr);
    const int kc_max = std::min(bl.kc, K);
    float* Ap = tls_pack_a.get((size_t)mc_max * kc_max);
    float* Bp = tls_pack_b.get((size_t)nc_max * kc_max);
    if (!Ap || !Bp) return false;
    avx512::gemm_block(trans_a, trans_b, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc, bl.kc, bl.mc,
                       bl.nc, Ap, Bp);
    return true;
}

// ---------------------------------------------------------------- dispatch

enum class Path { Base, Avx512 };  // Base: this file's kernel (AVX2+FMA or portable)

bool avx512_usable() { return avx512::compiled() && cpu_features().avx512f; }

Path path_from_env() {
    const char* env = std::getenv("PLW_CPU_KERNEL");
    const std::string v = env ? env : "";
    if (v == "avx2" || v == "generic") return Path::Base;
    // The Node layer refuses other values before loading (ts/native.ts); C++ callers get a note.
    if (!v.empty() && v != "auto" && v != "avx512")
        std::fprintf(stderr, "plwtune: PLW_CPU_KERNEL=%s is not auto, avx2 or avx512; using auto\n", v.c_str());
    return avx512_usable() ? Path::Avx512 : Path::Base;
}

std::atomic<int>& current_path() {
    static std::atomic<int> p{(int)path_from_env()};
    return p;
}

// Tile and cost-model figures of a path, for the thread grid.
struct PathShape {
    int mr, nr, nc;
    double fma_per_cycle;  // vector lanes x FMA pipes assumed (only weighs compute against packing)
};

PathShape path_shape(Path p) {
    if (p == Path::Avx512) return {avx512::MR, avx512::NR, avx512_blocking().nc, 32.0};
    return {MR, NR, NC, 16.0};
}

// ---------------------------------------------------------------- threading

struct Grid {
    int tm = 1, tn = 1;  // threads along M and along N
};

// The tm x tn grid (tm * tn <= threads) with the lowest estimated time, in cycles of one
// core: the largest block's FMAs at the path's FMAs per cycle (16 for AVX2, 32 for AVX-512),
// plus its packing at ~1 cycle per float (B once per KC x NC panel; A once per panel and per
// NC block of its columns), plus a fork/join cost for going parallel at all.
Grid choose_grid(int M, int N, int K, int threads, const PathShape& ps) {
    const double mtiles = (M + ps.mr - 1) / ps.mr, ntiles = (N + ps.nr - 1) / ps.nr;
    Grid best;
    double best_cost = -1.0;
    for (int tm = 1; tm <= threads; ++tm) {
        for (int tn = 1; tm * tn <= threads; ++tn) {
            if (tm > mtiles || tn > ntiles) continue;
            const double rows = std::ceil(mtiles / tm) * ps.mr;
            const double cols = std::ceil(ntiles / tn) * ps.nr;
            const double compute = rows * cols * K / ps.fma_per_cycle;
            const double pack = (double)K * cols + rows * K * std::ceil(cols / ps.nc);
            const double fork = tm * tn > 1 ? 20000.0 : 0.0;
            const double cost = compute + pack + fork;
            if (best_cost < 0.0 || cost < best_cost) {
                best_cost = cost;
                best = {tm, tn};
            }
        }
    }
    return best;
}

// Rows (or columns) of part p of `parts`, splitting `n` in whole tiles of `tile`.
inline void split(int n, int tile, int parts, int p, int* lo, int* hi) {
    const long tiles = (n + tile - 1) / tile;
    *lo = (int)std::min<long>(n, tiles * p / parts * tile);
    *hi = (int)std::min<long>(n, tiles * (p + 1) / parts * tile);
}

}  // namespace

// ---------------------------------------------------------------- entry points

const char* sgemm_kernel_name() {
    if ((Path)current_path().load() == Path::Avx512) return "avx512 14x32";
    return PLW_SGEMM_AVX2 ? "avx2 6x16" : "generic 6x16";
}

bool sgemm_set_kernel(const char* name) {
    const std::string v = name ? name : "";
    if (v == "avx2" || v == "generic") {
        current_path() = (int)Path::Base;
        return true;
    }
    if (v == "avx512") {
        if (!avx512_usable()) return false;
        current_path() = (int)Path::Avx512;
        return true;
    }
    if (v == "auto") {
        current_path() = (int)(avx512_usable() ? Path::Avx512 : Path::Base);
        return true;
    }
    return false;
}

bool sgemm_has_avx512() { return avx512_usable(); }

void sgemm_blocking(int* mr, int* nr, int* kc, int* mc, int* nc) {
    if ((Path)current_path().load() == Path::Avx512) {
        const Avx512Blocking& b = avx512_blocking();
        *mr = avx512::MR, *nr = avx512::NR, *kc = b.kc, *mc = b.mc, *nc = b.nc;
    } else {
        *mr = MR, *nr = NR, *kc = KC, *mc = MC, *nc = NC;
    }
}

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {  // C = beta * C, A and B not read
        for (int i = 0; i < M; ++i) {
            float* c = C + (idx)i * ldc;
            if (beta == 0.0f)
                std::fill(c, c + N, 0.0f);
            else if (beta != 1.0f)
                for (int j = 0; j < N; ++j) c[j] *= beta;
        }
        return;
    }

    const Path path = (Path)current_path().load();
    const PathShape ps = path_shape(path);
    auto block = path == Path::Avx512 ? gemm_block_avx512 : gemm_block;

    int threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel()) threads = omp_get_max_threads();
#endif
    Grid grid = choose_grid(M, N, K, threads, ps);
    if (grid.tm * grid.tn == 1) {
        if (!block(trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) throw std::bad_alloc();
        return;
    }
    std::atomic<bool> failed{false};
#pragma omp parallel num_threads(grid.tm * grid.tn)
    {
        Grid g = grid;
        int tid = 0;
#ifdef _OPENMP
        const int team = omp_get_num_threads();
        if (team != g.tm * g.tn) g = choose_grid(M, N, K, team, ps);  // got fewer threads than asked
        tid = omp_get_thread_num();
#endif
        if (tid < g.tm * g.tn) {
            int m0, m1, n0, n1;
            split(M, ps.mr, g.tm, tid / g.tn, &m0, &m1);
            split(N, ps.nr, g.tn, tid % g.tn, &n0, &n1);
            if (!block(trans_a, trans_b, m0, m1, n0, n1, K, alpha, A, lda, B, ldb, beta, C, ldc)) failed = true;
        }
    }
    if (failed) throw std::bad_alloc();
}

}  // namespace plw::cpu
