// The AVX-512 path of the CPU SGEMM: packing, a 14 x 32 micro-kernel on zmm registers, and the
// single-thread blocked loops, called by matmul.cpp (dispatch, blocking from the cache sizes,
// threading) only where cpu_features().avx512f says the CPU and the OS support AVX-512F.
// Same algorithm as matmul.cpp's AVX2 path (read its header comment first); what differs:
//
//   MR x NR = 14 x 32  28 zmm accumulators + 2 for the B row + 1 broadcast of A = 31 of the 32
//                      zmm registers. 28 independent FMA chains cover the FMA latency (4 cycles
//                      x 2 pipes = 8 needed); per k step 28 FMAs against 2 loads + 14
//                      broadcasts (1.1 loads per cycle at 2 FMAs per cycle). The other tile that
//                      fits the registers, 6 x 64 (24 accumulators), issues fewer loads but needs
//                      a B strip twice as wide (KC x 64 floats: 64 KiB at KC = 256, more than a
//                      48 KiB L1d); not measured.
//   packing            as the AVX2 path; A's 14-row strips are transposed 8 k at a time (two
//                      8 x 8 AVX transposes, the second masked to 6 rows).
//   blocking           KC, MC, NC from the cache sizes read at run time (matmul.cpp); the last
//                      A block takes the rows left when they exceed MC by at most a quarter
//                      (a_block_rows), so M = 256 is one block, not 252 rows and 4.
//   edge tiles         the kernel computes the tile from zero-padded packs and stores only the
//                      valid part with masked loads/stores (no buffer). An edge strip of mr < 14
//                      rows runs a kernel instantiated for the next even height (kernel<ROWS>),
//                      which skips the padded rows' FMAs: 10% of the LM head's time at 64 rows
//                      (4 strips and 8 rows), where the full tile computed 70. Each row's FMA
//                      chain is the same in every instantiation, so every C element is computed
//                      by the same instructions wherever it lies.
//
// Per C element, the arithmetic is the AVX2 path's: one FMA chain over k within a KC block,
// in k order, then C = alpha * acc + beta * C (beta == 1 after the first KC block). So with
// the same KC the two paths give bitwise equal results; they differ only where matmul.cpp
// picks a different KC for this path (from the L1d size), by the rounding of the partial sums.
//
// This file is compiled with -mavx512f (CMakeLists.txt, this file only) and must not define
// anything another file could link to instead of its own copy: no C++ library templates or
// inline functions (an inline function instantiated here would be AVX-512 code that the linker
// may pick for every caller), everything in an unnamed namespace but the three functions of
// matmul_avx512.h, which matmul.cpp calls only after the runtime CPUID check.
#include "matmul_avx512.h"

#if defined(__AVX512F__) && defined(__FMA__)
#include <immintrin.h>

namespace plw::cpu::avx512 {

namespace {

using idx = std::ptrdiff_t;

inline int imin(int a, int b) { return a < b ? a : b; }
inline int imax(int a, int b) { return a > b ? a : b; }

// Rows of the source taken together when walking a strided dimension (as matmul.cpp).
constexpr int PACK_ROWS = 8;

// ---------------------------------------------------------------- packing

// Transposes the 8x8 block at src (row stride lds): out[j] = column j of the block.
inline void transpose_8x8(const float* src, idx lds, __m256 out[8]) {
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
    out[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    out[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    out[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    out[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    out[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    out[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    out[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    out[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

// The same, stored: column j of the block to dst + j * ldd (32-byte aligned).
inline void transpose_8x8(const float* src, idx lds, float* dst, idx ldd) {
    __m256 out[8];
    transpose_8x8(src, lds, out);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) _mm256_store_ps(dst + j * ldd, out[j]);
}

// op(A)[i0:i0+mc, p0:p0+kc] -> Ap as ceil(mc/MR) strips, each (kc, MR), rows past mc zero.
void pack_a(bool trans, int mc, int kc, const float* A, idx lda, idx i0, idx p0, float* Ap) {
    if (trans) {
        // op(A)(i,k) = A[k*lda + i]: row k of A holds op(A)[i0:i0+mc, k] contiguously.
        for (int k0 = 0; k0 < kc; k0 += PACK_ROWS) {
            const int k1 = imin(kc, k0 + PACK_ROWS);
            for (int is = 0; is < mc; is += MR) {
                const int mr = imin(MR, mc - is);
                const __mmask16 m = (__mmask16)((1u << mr) - 1);
                float* dst = Ap + (idx)is * kc;
                for (int k = k0; k < k1; ++k) {
                    const float* src = A + (p0 + k) * lda + i0 + is;
                    // 14 floats: a masked 16-wide load/store (the mask also zero-pads rows >= mr,
                    // and the two lanes past MR are left alone: they belong to the next k).
                    _mm512_mask_storeu_ps(dst + k * MR, (__mmask16)((1u << MR) - 1),
                                          _mm512_maskz_loadu_ps(m, src));
                }
            }
        }
        return;
    }
    // op(A)(i,k) = A[i*lda + k]: MR rows read side by side, written with stride MR.
    for (int is = 0; is < mc; is += MR) {
        const int mr = imin(MR, mc - is);
        float* dst = Ap + (idx)is * kc;
        const float* src = A + (i0 + is) * lda + p0;
        if (mr == MR) {
            // 8 k at a time: rows 0..7 and rows 8..13 (plus row 13 twice more, not stored)
            // transposed as two 8x8 blocks; the second's 6 valid floats by a masked store.
            int k = 0;
            for (; k + 8 <= kc; k += 8) {
                __m256 lo[8], hi[8];
                transpose_8x8(src + k, lda, lo);
                const float* r8 = src + 8 * lda + k;
                const idx l = lda;
                __m256 r[8] = {_mm256_loadu_ps(r8), _mm256_loadu_ps(r8 + l), _mm256_loadu_ps(r8 + 2 * l),
                               _mm256_loadu_ps(r8 + 3 * l), _mm256_loadu_ps(r8 + 4 * l), _mm256_loadu_ps(r8 + 5 * l),
                               _mm256_loadu_ps(r8 + 5 * l), _mm256_loadu_ps(r8 + 5 * l)};
                // transpose of r[] (as transpose_8x8 does from memory)
                __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
                __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
                __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
                __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                hi[0] = _mm256_permute2f128_ps(u0, u4, 0x20), hi[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
                hi[2] = _mm256_permute2f128_ps(u2, u6, 0x20), hi[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
                hi[4] = _mm256_permute2f128_ps(u0, u4, 0x31), hi[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
                hi[6] = _mm256_permute2f128_ps(u2, u6, 0x31), hi[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
#pragma GCC unroll 8
                for (int j = 0; j < 8; ++j) {
                    float* d = dst + (k + j) * MR;
                    _mm256_storeu_ps(d, lo[j]);
                    _mm512_mask_storeu_ps(d + 8, (__mmask16)0x3F, _mm512_castps256_ps512(hi[j]));
                }
            }
            for (; k < kc; ++k) {
                float* d = dst + k * MR;
#pragma GCC unroll 14
                for (int i = 0; i < MR; ++i) d[i] = src[i * lda + k];
            }
        } else {
            for (int k = 0; k < kc; ++k)
                for (int i = 0; i < MR; ++i) dst[k * MR + i] = i < mr ? src[i * lda + k] : 0.0f;
        }
    }
}

// op(B)[p0:p0+kc, j0:j0+nc] -> Bp as ceil(nc/NR) strips, each (kc, NR), columns past nc zero.
void pack_b(bool trans, int kc, int nc, const float* B, idx ldb, idx p0, idx j0, float* Bp) {
    if (!trans) {
        // op(B)(k,j) = B[k*ldb + j]: row k of B holds op(B)[k, j0:j0+nc] contiguously.
        for (int k0 = 0; k0 < kc; k0 += PACK_ROWS) {
            const int k1 = imin(kc, k0 + PACK_ROWS);
            for (int js = 0; js < nc; js += NR) {
                const int nr = imin(NR, nc - js);
                const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
                const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
                float* dst = Bp + (idx)js * kc;
                for (int k = k0; k < k1; ++k) {
                    const float* src = B + (p0 + k) * ldb + j0 + js;
                    if (nr == NR && k + PACK_ROWS < kc) _mm_prefetch((const char*)(src + PACK_ROWS * ldb), _MM_HINT_T1);
                    _mm512_store_ps(dst + k * NR, _mm512_maskz_loadu_ps(m0, src));
                    _mm512_store_ps(dst + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
                }
            }
        }
        return;
    }
    // op(B)(k,j) = B[j*ldb + k]: a transpose, NR rows of B (contiguous in k) per strip.
    for (int js = 0; js < nc; js += NR) {
        const int nr = imin(NR, nc - js);
        float* dst = Bp + (idx)js * kc;
        const float* src = B + (j0 + js) * ldb + p0;
        int k = 0;
        if (nr == NR) {
            // The next strip's rows are fetched one strip ahead (each row segment is only kc
            // floats, too short for the hardware prefetcher).
            const float* next = src + NR * ldb;
            const int next_rows = imax(0, imin(NR, nc - js - NR));
            for (; k + 8 <= kc; k += 8) {
                if (k % 16 == 0)
                    for (int j = 0; j < next_rows; ++j) _mm_prefetch((const char*)(next + j * ldb + k), _MM_HINT_T1);
                transpose_8x8(src + k, ldb, dst + k * NR, NR);
                transpose_8x8(src + 8 * ldb + k, ldb, dst + k * NR + 8, NR);
                transpose_8x8(src + 16 * ldb + k, ldb, dst + k * NR + 16, NR);
                transpose_8x8(src + 24 * ldb + k, ldb, dst + k * NR + 24, NR);
            }
        }
        for (; k < kc; ++k)
            for (int j = 0; j < NR; ++j) dst[k * NR + j] = j < nr ? src[j * ldb + k] : 0.0f;
    }
}

// ---------------------------------------------------------------- micro-kernel

// C[mr x nr] = alpha * (a . b)[mr x nr] + beta * C, a: (kc, MR) packed, b: (kc, NR) packed,
// 64-byte aligned; the first ROWS (>= mr) rows of the product are computed, only the valid part
// is read/written. beta == 0: C is not read. ROWS < MR serves the last strip of a block whose
// height is not a multiple of MR (M = 256 is 18 strips and 4 rows): it skips the FMAs of the
// zero-padded rows, and each computed row runs the same FMA chain as in a full tile, so the
// result is bitwise the same as the full-height kernel's.
template <int ROWS>
void kernel(int kc, const float* a, const float* b, float* c, idx ldc, float alpha, float beta, int mr, int nr) {
    static_assert(ROWS >= 1 && ROWS <= MR, "ROWS is a tile height");
    __m512 acc0[ROWS], acc1[ROWS];
#pragma GCC unroll 14
    for (int i = 0; i < ROWS; ++i) acc0[i] = acc1[i] = _mm512_setzero_ps();
#pragma GCC unroll 14
    for (int i = 0; i < ROWS; ++i) {  // the C tile is needed at the end: fetch it now
        if (i >= mr) break;
        _mm_prefetch((const char*)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char*)(c + i * ldc + NR - 1), _MM_HINT_T0);
    }
#pragma GCC unroll 2
    for (int k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(b);
        const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < ROWS; ++i) {
            const __m512 av = _mm512_set1_ps(a[i]);
            acc0[i] = _mm512_fmadd_ps(av, b0, acc0[i]);
            acc1[i] = _mm512_fmadd_ps(av, b1, acc1[i]);
        }
        a += MR;
        b += NR;
    }
    const __mmask16 m0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? (__mmask16)0xFFFF : nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1) : 0;
    const __m512 va = _mm512_set1_ps(alpha);
    if (beta == 0.0f) {
#pragma GCC unroll 14
        for (int i = 0; i < ROWS; ++i) {
            if (i >= mr) break;
            _mm512_mask_storeu_ps(c + i * ldc, m0, _mm512_mul_ps(va, acc0[i]));
            _mm512_mask_storeu_ps(c + i * ldc + 16, m1, _mm512_mul_ps(va, acc1[i]));
        }
    } else {
        const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
        for (int i = 0; i < ROWS; ++i) {
            if (i >= mr) break;
            float* ci = c + i * ldc;
            const __m512 o0 = _mm512_fmadd_ps(va, acc0[i], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, ci)));
            const __m512 o1 = _mm512_fmadd_ps(va, acc1[i], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, ci + 16)));
            _mm512_mask_storeu_ps(ci, m0, o0);
            _mm512_mask_storeu_ps(ci + 16, m1, o1);
        }
    }
}

// The kernel for an edge strip of mr < MR rows: the shortest even height >= mr (even heights keep
// the instantiations to six).
using Kernel = void (*)(int, const float*, const float*, float*, idx, float, float, int, int);
constexpr Kernel edge_kernels[] = {kernel<2>, kernel<4>, kernel<6>, kernel<8>, kernel<10>, kernel<12>};
static_assert(sizeof(edge_kernels) / sizeof(edge_kernels[0]) == MR / 2 - 1, "one per even height below MR");

// C[mc x nc] (+)= packed A block . packed B panel, tile by tile.
void macro_kernel(int mc, int nc, int kc, float alpha, const float* Ap, const float* Bp, float beta, float* C,
                  idx ldc) {
    for (int jr = 0; jr < nc; jr += NR) {
        const int nr = imin(NR, nc - jr);
        const float* b = Bp + (idx)jr * kc;
        for (int ir = 0; ir < mc; ir += MR) {
            const int mr = imin(MR, mc - ir);
            float* c = C + ir * ldc + jr;
            if (mr > MR - 2)  // 13 or 14 rows: the full tile
                kernel<MR>(kc, Ap + (idx)ir * kc, b, c, ldc, alpha, beta, mr, nr);
            else
                edge_kernels[(mr + 1) / 2 - 1](kc, Ap + (idx)ir * kc, b, c, ldc, alpha, beta, mr, nr);
        }
    }
}

}  // namespace

bool compiled() { return true; }

void gemm_block(bool trans_a, bool trans_b, int m0, int m1, int n0, int n1, int K, float alpha, const float* A,
                idx lda, const float* B, idx ldb, float beta, float* C, idx ldc, int kc_block, int mc_block,
                int nc_block, float* Ap, float* Bp) {
    const int M = m1 - m0, N = n1 - n0;
    if (M <= 0 || N <= 0) return;
    for (int jc = 0; jc < N; jc += nc_block) {
        const int nc = imin(nc_block, N - jc);
        for (int pc = 0; pc < K; pc += kc_block) {
            const int kc = imin(kc_block, K - pc);
            const float beta_p = pc == 0 ? beta : 1.0f;
            pack_b(trans_b, kc, nc, B, ldb, pc, n0 + jc, Bp);
            for (int ic = 0, mc = 0; ic < M; ic += mc) {
                mc = a_block_rows(M - ic, mc_block);
                pack_a(trans_a, mc, kc, A, lda, m0 + ic, pc, Ap);
                macro_kernel(mc, nc, kc, alpha, Ap, Bp, beta_p, C + (m0 + ic) * ldc + n0 + jc, ldc);
            }
        }
    }
}

}  // namespace plw::cpu::avx512

#else  // not compiled for AVX-512 (not x86-64, or the per-file flags are missing)

namespace plw::cpu::avx512 {

bool compiled() { return false; }

void gemm_block(bool, bool, int, int, int, int, int, float, const float*, std::ptrdiff_t, const float*,
                std::ptrdiff_t, float, float*, std::ptrdiff_t, int, int, int, float*, float*) {}

}  // namespace plw::cpu::avx512

#endif

// The A-block rule, in every build (the stub above too: matmul.cpp sizes its buffers with it,
// and runs the path only where the CPU has AVX-512). Integer code, no vector instructions.
namespace plw::cpu::avx512 {

int a_block_max_rows(int mc_block) { return mc_block + mc_block / 4; }

int a_block_rows(int rows_left, int mc_block) {
    return rows_left <= a_block_max_rows(mc_block) ? rows_left : mc_block;
}

}  // namespace plw::cpu::avx512
