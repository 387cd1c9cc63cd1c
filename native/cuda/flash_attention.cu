// Fused (flash) causal attention with packed-segment masks and grouped-query attention, the
// CUDA twin of native/cpu/flash_attention.h (the reference: same names, arguments and math),
// for f32 and bf16 activations (Act = float or uint16_t, raw bf16; one templated
// implementation, also templated on the head size HS = 64, 80, 96, 128): the SIMT kernels.
// The public functions at the end check shapes and pointers, then send f32 and bf16 to the
// tensor-core kernels of flash_attention_mma.cu on sm_80+ (f32 as tf32 operands) unless
// PLW_CUDA_FLASH=simt (decide_mma, once per process); with simt both run the kernels below.
//
// Shapes: B = batch, T = time, NH = query heads, NKV = key/value heads, HS = head size,
// n_rep = NH / NKV; query head h = j * n_rep + r reads KV head j; z = b * NH + h.
//   q (rows of q_stride): row (b, t), head h at channels h*HS .. h*HS+HS
//   k, v (rows of kv_stride): row (b, t), KV head j at channels j*HS .. j*HS+HS
//   allowed(t, t2) = t2 <= t && (segments == null || segments[b, t2] == segments[b, t])
//   s[t, t2]  = q[b, t, h] . k[b, t2, j] * scale                   scale = 1 / sqrt(HS)
//   lse[z, t] = log sum_{allowed t2} exp(s[t, t2])                  (natural log, f32)
//   P[t, t2]  = exp(s[t, t2] - lse[z, t]) where allowed, exactly 0 elsewhere
//   out[b, t, h*HS + d] = sum_t2 P[t, t2] v[b, t2, j*HS + d]       (out rows: NH*HS)
// Backward (recomputing P tile by tile from q, k and lse; everything accumulates):
//   D[z, t]    = sum_d dout[b, t, h*HS + d] out[b, t, h*HS + d]    (= sum_t2 P dP)
//   dP[t, t2]  = dout[b, t, h] . v[b, t2, j];   dS = P * (dP - D[t])
//   dq[t, h]  += scale * sum_t2 dS[t, t2] k[t2, j]
//   dk[t2, j] += scale * sum_{h of j} sum_t dS[t, t2] q[t, h]
//   dv[t2, j] += sum_{h of j} sum_t P[t, t2] dout[t, h]
//
// Kernels (128 threads each, seen as an 8 x 16 grid: ty = tid / 16 owns RM consecutive rows
// of a tile, tx = tid % 16 owns its columns tx, tx + 16, ... and channels tx, tx + 16, ...).
// Tiles live in shared memory as f32 (bf16 is widened once, when loaded), rows padded by 4
// floats (HS + 4: 16-byte aligned for float4 reads, consecutive rows 4 banks apart so that
// the column threads' float4 reads of K rows are conflict-free). All of a block's shared
// memory is dynamic and at most 48 KiB (no opt-in), which sets the tile sizes per HS (Tiles
// below). A row's max or sum over its 16 threads goes through shared memory (partials, a
// barrier, then a fixed pairwise tree that all 16 threads run alike), not warp shuffles: one
// barrier instead of 4 * RM shuffles, and the host emulator (one OS thread per CUDA thread,
// a shuffle = two warp barriers) stays fast enough to test.
// - flash_forward_kernel, grid (B*NH, query tiles): a block owns BR query rows of one head:
//   Q tile resident; for each key tile up to the diagonal (tiles above it are skipped): K
//   into shared memory, S = Q K^T in registers (RM x CN per thread), the tile's row max,
//   online softmax (running row max m; each thread keeps its share of the row sum l, rescaled
//   by the row's exp(m_old - m_new) like the accumulator, the 16 shares added once at the
//   end), P into shared memory, V over K's buffer, O += P V (RM x HS/16 per thread). Then
//   out = O / l and lse = m + log(l). Five barriers per key tile.
// - flash_backward_dq_kernel, grid (B*NH, query tiles), launched first: a block owns BR query
//   rows of one head: Q and dO tiles resident; D of its rows from out and dO, written to
//   scratch for the next kernel; for each key tile up to the diagonal: K and V tiles, S and
//   dP in registers, P = exp(S - lse), dS = P (dP - D) into shared memory, dQ += dS K.
//   dq += scale * dQ once at the end. Three barriers per key tile.
// - flash_backward_dkdv_kernel, grid (B*NKV, key tiles): a block owns BC keys of one KV
//   head: K and V tiles resident; for each of its n_rep query heads in increasing order and
//   each query tile from the diagonal down: Q, dO, lse and D of the tile, S and dP in
//   registers, P and dS into shared memory, dV += P^T dO and dK += dS^T Q (accumulators in
//   registers: both are BC x HS per block, RK x HS/16 each per thread). dk += scale * dK and
//   dv += dV once at the end. Three barriers per query tile.
// Determinism: no atomics; each output element is owned by one thread and written once per
// call; every sum runs in a fixed order (dot products over d in order, row reductions by a
// fixed tree, accumulations over tiles in order, query heads in order): bitwise the same run
// to run. A tile above the diagonal is never visited; inside a visited tile the mask is
// applied element by element (P = 0 exactly), so rows that see no key of a tile (an earlier
// segment, or rows past T) only carry zeros through it. Tiles wholly in another segment are
// visited all the same (skipping them would need per-tile segment bounds).
// Query tiles are launched heaviest first (blockIdx.y reversed; for keys, tile 0 is the
// heaviest already).
//
// Occupancy on H100/H200 (sm_90: 64K registers, 228 KiB shared memory per SM), from ptxas
// (CUDA 13) and the Smem structs: forward 128 registers at HS = 64 (4 blocks of 4 warps per
// SM), 167-168 at HS = 80..128 (3 blocks: registers); dq 96 registers, 39-47 KiB (4-5
// blocks); dk/dv 96-128 registers, 42-44 KiB (4-5 blocks). Not measured on a GPU.
#include "flash_attention.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "check.cuh"
#include "common.cuh"
#include "flash_attention_mma.h"
#include "head_size.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::from_float;
using detail::raw;
using detail::to_float;

constexpr int kThreads = 128;  // 4 warps
constexpr int kTX = 16;        // column threads: a half-warp per row
constexpr int kTY = kThreads / kTX;
constexpr size_t kSmemLimit = 48 * 1024;  // dynamic shared memory without an opt-in

// ----------------------------------------------------------------------------
// Tile sizes per head size (each kernel's shared memory at most 48 KiB, see the Smem structs):
//   forward: BR query rows resident, BC keys streamed;
//   dq:      BR query rows resident, BC keys streamed;
//   dkdv:    BC keys resident, BR query rows streamed.
// BR is a multiple of kTY (RM = BR / 8 rows per thread), BC a multiple of kTX (CN = BC / 16
// columns per thread), HS a multiple of 16 (HS / 16 channels per thread).

template <int HS>
struct Tiles;
template <>
struct Tiles<64> {
    static constexpr int kFwdBr = 64, kFwdBc = 32, kDqBr = 32, kDqBc = 32, kKvBr = 32, kKvBc = 32;
};
template <>
struct Tiles<80> {
    static constexpr int kFwdBr = 64, kFwdBc = 32, kDqBr = 32, kDqBc = 32, kKvBr = 24, kKvBc = 32;
};
template <>
struct Tiles<96> {
    static constexpr int kFwdBr = 64, kFwdBc = 32, kDqBr = 32, kDqBc = 16, kKvBr = 16, kKvBc = 32;
};
template <>
struct Tiles<128> {
    static constexpr int kFwdBr = 64, kFwdBc = 16, kDqBr = 24, kDqBc = 16, kKvBr = 8, kKvBc = 32;
};

// Shared memory layouts, in floats from the 16-byte aligned start (every array starts at a
// multiple of 4 floats). Q, K, V, dO tiles: rows of kLd = HS + 4; P, dS: rows of kLdP = BC + 4;
// segment ids as int32 in float slots.
template <int HS, int BR, int BC>
struct FwdSmem {
    static constexpr int kLd = HS + 4, kLdP = BC + 4;
    static constexpr int kQ = 0;                    // (BR, kLd)
    static constexpr int kKV = kQ + BR * kLd;       // (BC, kLd): K, then V
    static constexpr int kP = kKV + BC * kLd;       // (BR, kLdP)
    static constexpr int kSegQ = kP + BR * kLdP;    // (BR) int32
    static constexpr int kSegK = kSegQ + BR;        // (BC) int32
    static constexpr size_t kBytes = static_cast<size_t>(kSegK + BC) * sizeof(float);
    static_assert(kBytes <= kSmemLimit, "forward tiles exceed 48 KiB of shared memory");
};

template <int HS, int BR, int BC>
struct DqSmem {
    static constexpr int kLd = HS + 4, kLdP = BC + 4;
    static constexpr int kQ = 0;                    // (BR, kLd)
    static constexpr int kDO = kQ + BR * kLd;       // (BR, kLd)
    static constexpr int kK = kDO + BR * kLd;       // (BC, kLd)
    static constexpr int kV = kK + BC * kLd;        // (BC, kLd)
    static constexpr int kDS = kV + BC * kLd;       // (BR, kLdP)
    static constexpr int kSegQ = kDS + BR * kLdP;   // (BR) int32
    static constexpr int kSegK = kSegQ + BR;        // (BC) int32
    static constexpr size_t kBytes = static_cast<size_t>(kSegK + BC) * sizeof(float);
    static_assert(kBytes <= kSmemLimit, "dq tiles exceed 48 KiB of shared memory");
};

template <int HS, int BR, int BC>
struct KvSmem {
    static constexpr int kLd = HS + 4, kLdP = BC + 4;
    static constexpr int kK = 0;                    // (BC, kLd)
    static constexpr int kV = kK + BC * kLd;        // (BC, kLd)
    static constexpr int kQ = kV + BC * kLd;        // (BR, kLd)
    static constexpr int kDO = kQ + BR * kLd;       // (BR, kLd)
    static constexpr int kP = kDO + BR * kLd;       // (BR, kLdP)
    static constexpr int kDS = kP + BR * kLdP;      // (BR, kLdP)
    static constexpr int kLse = kDS + BR * kLdP;    // (BR)
    static constexpr int kD = kLse + BR;            // (BR)
    static constexpr int kSegQ = kD + BR;           // (BR) int32
    static constexpr int kSegK = kSegQ + BR;        // (BC) int32
    static constexpr size_t kBytes = static_cast<size_t>(kSegK + BC) * sizeof(float);
    static_assert(kBytes <= kSmemLimit, "dkdv tiles exceed 48 KiB of shared memory");
};

// ----------------------------------------------------------------------------
// device helpers

// Row reductions across the 16 threads of a row go through shared memory (no shuffles): each
// thread stores its partial at red[row * ld + tx], and after a barrier every thread of the
// row combines the 16 partials in the same fixed order (so all 16 get the same bits).
template <int RM>
__device__ __forceinline__ void store_partials(float* red, int ld, int tx, const float (&x)[RM]) {
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        red[i * ld + tx] = x[i];
    }
}
template <bool kMax>
__device__ __forceinline__ float combine(float a, float b) {
    return kMax ? fmaxf(a, b) : a + b;
}
template <bool kMax>
__device__ __forceinline__ float4 combine(const float4& a, const float4& b) {
    return make_float4(combine<kMax>(a.x, b.x), combine<kMax>(a.y, b.y), combine<kMax>(a.z, b.z),
                       combine<kMax>(a.w, b.w));
}
// red: this thread's first row; rows of ld floats, 16-byte aligned. A pairwise tree:
// partial c with c + 8, then + 4, + 2, + 1.
template <bool kMax, int RM>
__device__ __forceinline__ void combine_partials(float (&x)[RM], const float* red, int ld) {
    static_assert(kTX == 16, "the tree below combines 16 partials");
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const float4* row = reinterpret_cast<const float4*>(red + i * ld);
        const float4 v = combine<kMax>(combine<kMax>(row[0], row[2]), combine<kMax>(row[1], row[3]));
        x[i] = combine<kMax>(combine<kMax>(v.x, v.z), combine<kMax>(v.y, v.w));
    }
}

// ROWS rows of HS elements (row stride `stride`) into a shared tile with rows of HS + 4,
// widened to f32; rows at or past `valid` are zeros. src points at the tile's row 0 (only
// dereferenced for valid rows).
template <int ROWS, int HS, typename Act>
__device__ __forceinline__ void load_tile(float* dst, const Act* src, int64_t stride, int valid) {
    constexpr int kLd = HS + 4;
    for (int e = threadIdx.x; e < ROWS * HS; e += kThreads) {
        const int r = e / HS;
        const int d = e - r * HS;
        dst[r * kLd + d] = r < valid ? to_float(src[r * stride + d]) : 0.0f;
    }
}

// ROWS segment ids of batch row seg_b starting at t0 into shared memory (0 past T or
// without segments: unused then).
template <int ROWS>
__device__ __forceinline__ void load_segments(int32_t* dst, const int32_t* seg_b, int t0, int T) {
    for (int r = threadIdx.x; r < ROWS; r += kThreads) {
        dst[r] = seg_b != nullptr && t0 + r < T ? seg_b[t0 + r] : 0;
    }
}

// acc[i][c] = sum_d a[i][d] * b[c][d] (d = 0 .. HS-1 in order), for this thread's RM rows
// a = sA + i * ld (i < RM) and CN columns b = sB + c * 16 * ld: the rows of a product A B^T
// whose operands both run along d. float4 reads along d.
template <int RM, int CN, int HS>
__device__ __forceinline__ void dot_rows(float (&acc)[RM][CN], const float* sA, const float* sB,
                                         int ld) {
#pragma unroll
    for (int i = 0; i < RM; ++i) {
#pragma unroll
        for (int c = 0; c < CN; ++c) {
            acc[i][c] = 0.0f;
        }
    }
#pragma unroll 2
    for (int d = 0; d < HS; d += 4) {
        float4 b[CN];
#pragma unroll
        for (int c = 0; c < CN; ++c) {
            b[c] = *reinterpret_cast<const float4*>(sB + c * kTX * ld + d);
        }
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const float4 a = *reinterpret_cast<const float4*>(sA + i * ld + d);
#pragma unroll
            for (int c = 0; c < CN; ++c) {
                float x = acc[i][c];
                x += a.x * b[c].x;
                x += a.y * b[c].y;
                x += a.z * b[c].z;
                x += a.w * b[c].w;
                acc[i][c] = x;
            }
        }
    }
}

// acc[i][n] += sum_k a[i][k] * b[k][n] (k = 0 .. K-1 in order) for RA rows a = sA + i * lda
// (the reduction runs along a's rows) and DN channels b = sB + k * ldb + n * 16: O += P V,
// dQ += dS K.
template <int RA, int DN, int K>
__device__ __forceinline__ void accumulate_rows(float (&acc)[RA][DN], const float* sA, int lda,
                                                const float* sB, int ldb) {
#pragma unroll 4
    for (int k = 0; k < K; ++k) {
        float b[DN];
#pragma unroll
        for (int n = 0; n < DN; ++n) {
            b[n] = sB[k * ldb + n * kTX];
        }
#pragma unroll
        for (int i = 0; i < RA; ++i) {
            const float a = sA[i * lda + k];
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                acc[i][n] += a * b[n];
            }
        }
    }
}

// acc[i][n] += sum_k a[k][i] * b[k][n] (k = 0 .. K-1 in order) for RA consecutive columns
// a = sA + k * lda + i (the reduction runs down a's columns: a transposed operand) and DN
// channels b = sB + k * ldb + n * 16: dV += P^T dO, dK += dS^T Q.
template <int RA, int DN, int K>
__device__ __forceinline__ void accumulate_cols(float (&acc)[RA][DN], const float* sA, int lda,
                                                const float* sB, int ldb) {
#pragma unroll 4
    for (int k = 0; k < K; ++k) {
        float a[RA];
        if constexpr (RA % 4 == 0) {
#pragma unroll
            for (int i = 0; i < RA; i += 4) {
                const float4 x = *reinterpret_cast<const float4*>(sA + k * lda + i);
                a[i] = x.x;
                a[i + 1] = x.y;
                a[i + 2] = x.z;
                a[i + 3] = x.w;
            }
        } else {
#pragma unroll
            for (int i = 0; i < RA; ++i) {
                a[i] = sA[k * lda + i];
            }
        }
#pragma unroll
        for (int n = 0; n < DN; ++n) {
            const float b = sB[k * ldb + n * kTX];
#pragma unroll
            for (int i = 0; i < RA; ++i) {
                acc[i][n] += a[i] * b;
            }
        }
    }
}

// The backward's view of a (query tile, key tile) pair, this thread's part of it (rows
// t0 .. t0+RM-1 of the tile's queries, keys t2 = k0 + tx + 16c): S = Q K^T and dP = dO V^T
// (dot_rows), P = exp(S * scale - lse) where allowed (exactly 0 elsewhere), dS = P (dP - D);
// dS into sDS and, with kStoreP, P into sP (both this thread's first row, rows of ldp,
// column tx). sQ, sDO: this thread's first row; sK, sV: key tx; rows of ld. row_lse, D:
// indexed by the row i < RM (registers or shared memory); seg_q, seg_k: the ids of row t0
// and of key tx (read only with segments, seg_b != null). Shared by the dq and the dk/dv
// kernels: the same operations in the same order, so P and dS are bitwise the same in both.
// (The forward's S and mask stay written out in its kernel: routing them through helpers
// changed ptxas's register allocation there, e.g. HS = 64 bf16 from 128 to 159 registers.)
template <int RM, int CN, int HS, bool kStoreP, typename Rows>
__device__ __forceinline__ void backward_p_ds(float* sP, float* sDS, int ldp, const float* sQ, const float* sDO,
                                              const float* sK, const float* sV, int ld, const Rows& row_lse,
                                              const Rows& D, const int32_t* seg_b, const int32_t* seg_q,
                                              const int32_t* seg_k, int t0, int k0, int tx, int T, float scale) {
    float s[RM][CN], dp[RM][CN];
    dot_rows<RM, CN, HS>(s, sQ, sK, ld);
    dot_rows<RM, CN, HS>(dp, sDO, sV, ld);
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int t = t0 + i;
#pragma unroll
        for (int c = 0; c < CN; ++c) {
            const int t2 = k0 + tx + c * kTX;
            const bool allowed = t < T && t2 <= t && (seg_b == nullptr || seg_k[c * kTX] == seg_q[i]);
            const float p = allowed ? expf(__fmul_rn(s[i][c], scale) - row_lse[i]) : 0.0f;
            if constexpr (kStoreP) {
                sP[i * ldp + c * kTX] = p;
            }
            sDS[i * ldp + c * kTX] = p * (dp[i][c] - D[i]);
        }
    }
}

// ----------------------------------------------------------------------------
// CUDA kernels

template <int HS, int BR, int BC, typename Act>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(Act* out,                 // (B, T, NH*HS)
                         float* lse,               // (B, NH, T)
                         const Act* q,             // rows of q_stride
                         const Act* k,             // rows of kv_stride
                         const Act* v,             // rows of kv_stride
                         const int32_t* segments,  // (B, T) or null
                         int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = FwdSmem<HS, BR, BC>;
    constexpr int RM = BR / kTY, CN = BC / kTX, DN = HS / kTX, kLd = L::kLd, kLdP = L::kLdP;
    static_assert(BR % kTY == 0 && BC % kTX == 0 && HS % kTX == 0 && HS % 4 == 0, "tile shape");
    extern __shared__ __align__(16) float smem[];
    float* sQ = smem + L::kQ;
    float* sKV = smem + L::kKV;
    float* sP = smem + L::kP;
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const int tx = threadIdx.x % kTX, ty = threadIdx.x / kTX;
    const int z = blockIdx.x, b = z / NH, h = z % NH, j = h / n_rep;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BR;  // heaviest tile first
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const Act* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    load_tile<BR, HS>(sQ, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_segments<BR>(sSegQ, seg_b, q0, T);

    // m: the row's running max (the same in its 16 threads); l: this thread's share of the
    // row's running sum (its own columns, rescaled by the row's alpha like the row's sum), the
    // 16 shares added once at the end.
    float m[RM], l[RM], o[RM][DN];
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int n = 0; n < DN; ++n) {
            o[i][n] = 0.0f;
        }
    }
    const int r0 = ty * RM;  // this thread's first row of the tile
    float* sRed = sP + r0 * kLdP;  // this thread's rows of P, also the rows' partials
    const int q_last = min(q0 + BR, T) - 1;
    for (int k0 = 0; k0 <= q_last; k0 += BC) {  // key tiles up to the diagonal
        load_tile<BC, HS>(sKV, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K (and, the first time, Q) loaded

        float s[RM][CN], mx[RM];
        dot_rows<RM, CN, HS>(s, sQ + r0 * kLd, sKV + tx * kLd, kLd);
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const int t = q0 + r0 + i;
            mx[i] = -INFINITY;
#pragma unroll
            for (int c = 0; c < CN; ++c) {
                const int t2 = k0 + tx + c * kTX;
                const bool allowed = t < T && t2 <= t &&
                                     (seg_b == nullptr || sSegK[tx + c * kTX] == sSegQ[r0 + i]);
                s[i][c] = allowed ? __fmul_rn(s[i][c], scale) : -INFINITY;
                mx[i] = fmaxf(mx[i], s[i][c]);
            }
        }
        store_partials<RM>(sRed, kLdP, tx, mx);
        __syncthreads();  // the rows' partial maxima stored
        combine_partials<true, RM>(mx, sRed, kLdP);
#pragma unroll
        for (int i = 0; i < RM; ++i) {
            const float m_new = fmaxf(m[i], mx[i]);
            // A row that has seen no allowed key yet keeps m = -inf; its p and alpha are 0.
            const float m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = expf(m[i] - m_use);
            float sum = 0.0f;
#pragma unroll
            for (int c = 0; c < CN; ++c) {
                s[i][c] = expf(s[i][c] - m_use);  // P; exp(-inf) = 0 where masked
                sum += s[i][c];
            }
            l[i] = l[i] * alpha + sum;
            m[i] = m_new;
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                o[i][n] *= alpha;
            }
        }
        __syncthreads();  // K and the partials read by all
#pragma unroll
        for (int i = 0; i < RM; ++i) {
#pragma unroll
            for (int c = 0; c < CN; ++c) {
                sRed[i * kLdP + tx + c * kTX] = s[i][c];
            }
        }
        load_tile<BC, HS>(sKV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        __syncthreads();  // P written, V loaded
        accumulate_rows<RM, DN, BC>(o, sRed, kLdP, sKV + tx, kLd);
        __syncthreads();  // V and P read by all before the next tile (or the sums) overwrite them
    }
    store_partials<RM>(sRed, kLdP, tx, l);
    __syncthreads();
    combine_partials<false, RM>(l, sRed, kLdP);  // the rows' sums, >= 1: row t sees itself

    const int C = NH * HS;
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int t = q0 + r0 + i;
        if (t < T) {
            const float inv = 1.0f / l[i];
            Act* o_t = out + (row0 + t) * C + static_cast<int64_t>(h) * HS + tx;
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                o_t[n * kTX] = from_float<Act>(o[i][n] * inv);
            }
            if (tx == 0) {
                lse[static_cast<int64_t>(z) * T + t] = m[i] + logf(l[i]);
            }
        }
    }
}

template <int HS, int BR, int BC, typename Act>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dq_kernel(Act* dq,                  // rows of q_stride, accumulated
                             float* dsum,              // (B, NH, T) D, written
                             const Act* dout,          // (B, T, NH*HS)
                             const Act* out,           // (B, T, NH*HS)
                             const float* lse,         // (B, NH, T)
                             const Act* q,             // rows of q_stride
                             const Act* k,             // rows of kv_stride
                             const Act* v,             // rows of kv_stride
                             const int32_t* segments,  // (B, T) or null
                             int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = DqSmem<HS, BR, BC>;
    constexpr int RM = BR / kTY, CN = BC / kTX, DN = HS / kTX, kLd = L::kLd, kLdP = L::kLdP;
    static_assert(BR % kTY == 0 && BC % kTX == 0 && HS % kTX == 0 && HS % 4 == 0, "tile shape");
    extern __shared__ __align__(16) float smem[];
    float* sQ = smem + L::kQ;
    float* sDO = smem + L::kDO;
    float* sK = smem + L::kK;
    float* sV = smem + L::kV;
    float* sDS = smem + L::kDS;
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const int tx = threadIdx.x % kTX, ty = threadIdx.x / kTX;
    const int z = blockIdx.x, b = z / NH, h = z % NH, j = h / n_rep;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * BR;
    const int C = NH * HS;
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const Act* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
    const Act* out_h = out + row0 * C + static_cast<int64_t>(h) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    load_tile<BR, HS>(sQ, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_tile<BR, HS>(sDO, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
    load_segments<BR>(sSegQ, seg_b, q0, T);
    __syncthreads();

    // D and lse of this thread's rows (D: the 16 threads of the row sum their channels).
    const int r0 = ty * RM;
    float D[RM], row_lse[RM];
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int t = q0 + r0 + i;
        D[i] = 0.0f;
        if (t < T) {
            const Act* o_t = out_h + static_cast<int64_t>(t) * C + tx;
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                D[i] += sDO[(r0 + i) * kLd + tx + n * kTX] * to_float(o_t[n * kTX]);
            }
        }
        row_lse[i] = t < T ? lse[static_cast<int64_t>(z) * T + t] : 0.0f;
    }
    // the 16 partials of each row through dS's buffer (free until the first key tile)
    store_partials<RM>(sDS + r0 * kLdP, kLdP, tx, D);
    __syncthreads();
    combine_partials<false, RM>(D, sDS + r0 * kLdP, kLdP);
#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int t = q0 + r0 + i;
        if (t < T && tx == 0) {
            dsum[static_cast<int64_t>(z) * T + t] = D[i];
        }
    }

    float acc[RM][DN];
#pragma unroll
    for (int i = 0; i < RM; ++i) {
#pragma unroll
        for (int n = 0; n < DN; ++n) {
            acc[i][n] = 0.0f;
        }
    }
    const int q_last = min(q0 + BR, T) - 1;
    for (int k0 = 0; k0 <= q_last; k0 += BC) {
        load_tile<BC, HS>(sK, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_tile<BC, HS>(sV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K, V loaded

        backward_p_ds<RM, CN, HS, false>(nullptr, sDS + r0 * kLdP + tx, kLdP, sQ + r0 * kLd, sDO + r0 * kLd,
                                         sK + tx * kLd, sV + tx * kLd, kLd, row_lse, D, seg_b, sSegQ + r0,
                                         sSegK + tx, q0 + r0, k0, tx, T, scale);
        __syncthreads();  // dS written
        accumulate_rows<RM, DN, BC>(acc, sDS + r0 * kLdP, kLdP, sK + tx, kLd);
        __syncthreads();  // K and dS read by all before the next tile overwrites them
    }

#pragma unroll
    for (int i = 0; i < RM; ++i) {
        const int t = q0 + r0 + i;
        if (t < T) {
            Act* dq_t = dq + (row0 + t) * q_stride + static_cast<int64_t>(h) * HS + tx;
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                dq_t[n * kTX] = from_float<Act>(to_float(dq_t[n * kTX]) + scale * acc[i][n]);
            }
        }
    }
}

template <int HS, int BR, int BC, typename Act>
__global__ void __launch_bounds__(kThreads)
    flash_backward_dkdv_kernel(Act* dk,                  // rows of kv_stride, accumulated
                               Act* dv,                  // rows of kv_stride, accumulated
                               const Act* dout,          // (B, T, NH*HS)
                               const float* lse,         // (B, NH, T)
                               const float* dsum,        // (B, NH, T) D
                               const Act* q,             // rows of q_stride
                               const Act* k,             // rows of kv_stride
                               const Act* v,             // rows of kv_stride
                               const int32_t* segments,  // (B, T) or null
                               int T, int NH, int n_rep, int q_stride, int kv_stride,
                               float scale) {
    using L = KvSmem<HS, BR, BC>;
    constexpr int RM = BR / kTY, CN = BC / kTX, DN = HS / kTX, RK = BC / kTY, kLd = L::kLd,
                  kLdP = L::kLdP;
    static_assert(BR % kTY == 0 && BC % kTX == 0 && HS % kTX == 0 && HS % 4 == 0, "tile shape");
    extern __shared__ __align__(16) float smem[];
    float* sK = smem + L::kK;
    float* sV = smem + L::kV;
    float* sQ = smem + L::kQ;
    float* sDO = smem + L::kDO;
    float* sP = smem + L::kP;
    float* sDS = smem + L::kDS;
    float* sLse = smem + L::kLse;
    float* sD = smem + L::kD;
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const int tx = threadIdx.x % kTX, ty = threadIdx.x / kTX;
    const int NKV = NH / n_rep;
    const int b = blockIdx.x / NKV, j = blockIdx.x % NKV;
    const int k0 = blockIdx.y * BC;  // tile 0, the heaviest, first
    const int C = NH * HS;
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;
    const int64_t kv_off = (row0 + k0) * kv_stride + static_cast<int64_t>(j) * HS;

    load_tile<BC, HS>(sK, k + kv_off, kv_stride, T - k0);
    load_tile<BC, HS>(sV, v + kv_off, kv_stride, T - k0);
    load_segments<BC>(sSegK, seg_b, k0, T);

    // This thread: S/dP rows r0 .. r0+RM-1 and columns tx + 16c of each query tile; dK/dV
    // keys kr0 .. kr0+RK-1 and channels tx + 16n.
    const int r0 = ty * RM, kr0 = ty * RK;
    float acc_k[RK][DN], acc_v[RK][DN];
#pragma unroll
    for (int i = 0; i < RK; ++i) {
#pragma unroll
        for (int n = 0; n < DN; ++n) {
            acc_k[i][n] = 0.0f;
            acc_v[i][n] = 0.0f;
        }
    }
    for (int r = 0; r < n_rep; ++r) {  // the KV head's query heads, in order
        const int h = j * n_rep + r;
        const int64_t zt = (static_cast<int64_t>(b) * NH + h) * T;  // (b, h)'s lse and D
        const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
        const Act* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
        for (int q0 = k0 / BR * BR; q0 < T; q0 += BR) {  // query tiles from the diagonal down
            load_tile<BR, HS>(sQ, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
            load_tile<BR, HS>(sDO, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
            for (int e = threadIdx.x; e < BR; e += kThreads) {
                const bool valid = q0 + e < T;
                sLse[e] = valid ? lse[zt + q0 + e] : 0.0f;
                sD[e] = valid ? dsum[zt + q0 + e] : 0.0f;
            }
            load_segments<BR>(sSegQ, seg_b, q0, T);
            __syncthreads();  // Q, dO, lse, D loaded (and, the first time, K and V)

            const float* row_lse = sLse + r0;
            const float* row_D = sD + r0;
            backward_p_ds<RM, CN, HS, true>(sP + r0 * kLdP + tx, sDS + r0 * kLdP + tx, kLdP, sQ + r0 * kLd,
                                            sDO + r0 * kLd, sK + tx * kLd, sV + tx * kLd, kLd, row_lse, row_D,
                                            seg_b, sSegQ + r0, sSegK + tx, q0 + r0, k0, tx, T, scale);
            __syncthreads();  // P, dS written
            accumulate_cols<RK, DN, BR>(acc_v, sP + kr0, kLdP, sDO + tx, kLd);
            accumulate_cols<RK, DN, BR>(acc_k, sDS + kr0, kLdP, sQ + tx, kLd);
            __syncthreads();  // Q, dO, P, dS read by all before the next tile overwrites them
        }
    }

#pragma unroll
    for (int i = 0; i < RK; ++i) {
        const int t2 = k0 + kr0 + i;
        if (t2 < T) {
            const int64_t off = (row0 + t2) * kv_stride + static_cast<int64_t>(j) * HS + tx;
#pragma unroll
            for (int n = 0; n < DN; ++n) {
                dk[off + n * kTX] = from_float<Act>(to_float(dk[off + n * kTX]) + scale * acc_k[i][n]);
                dv[off + n * kTX] = from_float<Act>(to_float(dv[off + n * kTX]) + acc_v[i][n]);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void check_shape(const char* what, int B, int T, int NH, int NKV, int hs, int q_stride,
                 int kv_stride) {
    PLW_CHECK(B >= 0 && T > 0 && NH > 0 && NKV > 0 && NH % NKV == 0,
              what << ": bad shape B=" << B << " T=" << T << " NH=" << NH << " NKV=" << NKV
                   << " (NH must be a multiple of NKV)");
    PLW_CHECK(flash_attention_supports(hs),
              what << ": head size " << hs << " not supported by the fused kernels (64, 80, 96, "
                   << "128; check flash_attention_supports and use attention.h)");
    PLW_CHECK(static_cast<int64_t>(q_stride) >= static_cast<int64_t>(NH) * hs &&
                  static_cast<int64_t>(kv_stride) >= static_cast<int64_t>(NKV) * hs,
              what << ": row strides q_stride=" << q_stride << " kv_stride=" << kv_stride
                   << " shorter than the heads (NH*hs=" << static_cast<int64_t>(NH) * hs
                   << ", NKV*hs=" << static_cast<int64_t>(NKV) * hs << ")");
    // grid.x = B*NH (at most 2^31 - 1), grid.y = tiles of at least 8 rows (at most 65535)
    PLW_CHECK(static_cast<int64_t>(B) * NH <= INT32_MAX && T <= 65535 * 8 &&
                  static_cast<int64_t>(NH) * hs <= INT32_MAX,
              what << ": shape too large B=" << B << " T=" << T << " NH=" << NH);
}

template <int HS, typename Act>
void forward_launch(Act* out, float* lse, const Act* q, const Act* k, const Act* v,
                    const int32_t* segments, int B, int T, int NH, int NKV, int q_stride,
                    int kv_stride, float scale) {
    constexpr int BR = Tiles<HS>::kFwdBr, BC = Tiles<HS>::kFwdBc;
    const dim3 grid(B * NH, ceil_div(T, BR));
    flash_forward_kernel<HS, BR, BC, Act><<<grid, kThreads, FwdSmem<HS, BR, BC>::kBytes>>>(
        out, lse, q, k, v, segments, T, NH, NH / NKV, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_forward_kernel");
}

template <int HS, typename Act>
void backward_launch(Act* dq, Act* dk, Act* dv, const Act* dout, const Act* out,
                     const float* lse, float* dsum, const Act* q, const Act* k, const Act* v,
                     const int32_t* segments, int B, int T, int NH, int NKV, int q_stride,
                     int kv_stride, float scale) {
    constexpr int QR = Tiles<HS>::kDqBr, QC = Tiles<HS>::kDqBc;
    constexpr int KR = Tiles<HS>::kKvBr, KC = Tiles<HS>::kKvBc;
    const int n_rep = NH / NKV;
    // dq first: it also writes D, which the dk/dv kernel reads.
    const dim3 grid_q(B * NH, ceil_div(T, QR));
    flash_backward_dq_kernel<HS, QR, QC, Act><<<grid_q, kThreads, DqSmem<HS, QR, QC>::kBytes>>>(
        dq, dsum, dout, out, lse, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_backward_dq_kernel");
    const dim3 grid_kv(B * NKV, ceil_div(T, KC));
    flash_backward_dkdv_kernel<HS, KR, KC, Act><<<grid_kv, kThreads, KvSmem<HS, KR, KC>::kBytes>>>(
        dk, dv, dout, lse, dsum, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_backward_dkdv_kernel");
}

// The path of the fused kernels (f32 and bf16 alike), decided once per process: the tensor-core
// kernels (flash_attention_mma.cu: bf16 on m16n8k16, f32 as tf32 on m16n8k8) on sm_80 and
// newer, unless PLW_CUDA_FLASH=simt; PLW_CUDA_FLASH=mma
// (or unset) takes them wherever the device allows. Any other value is an error.
bool decide_mma() {
    const char* env = std::getenv("PLW_CUDA_FLASH");
    const bool want_simt = env != nullptr && std::strcmp(env, "simt") == 0;
    PLW_CHECK(env == nullptr || *env == 0 || want_simt || std::strcmp(env, "mma") == 0,
              "PLW_CUDA_FLASH=" << env << ": expected simt or mma");
    if (want_simt) {
        return false;
    }
    int device = 0;
    int major = 0;
    PLW_CUDA_CHECK(cudaGetDevice(&device));
    PLW_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major >= 8;
}

template <typename Act>
void forward_impl(Act* out, float* lse, const Act* q, const Act* k, const Act* v,
                  const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                  int kv_stride) {
    check_shape("flash_attention_forward", B, T, NH, NKV, hs, q_stride, kv_stride);
    if (B == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && lse != nullptr && q != nullptr && k != nullptr && v != nullptr,
              "flash_attention_forward: null device pointer");
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    if (flash_attention_uses_mma()) {
        detail::flash_attention_mma_forward(out, lse, q, k, v, segments, B, T, NH, NKV, hs, q_stride, kv_stride,
                                            scale);
        return;
    }
    detail::with_head_size(hs, "flash_attention_forward", [&](auto HS) {
        forward_launch<decltype(HS)::value>(out, lse, q, k, v, segments, B, T, NH, NKV, q_stride, kv_stride,
                                            scale);
    });
}

template <typename Act>
void backward_impl(Act* dq, Act* dk, Act* dv, const Act* dout, const Act* out, const float* lse,
                   const Act* q, const Act* k, const Act* v, const int32_t* segments, int B, int T,
                   int NH, int NKV, int hs, int q_stride, int kv_stride) {
    check_shape("flash_attention_backward", B, T, NH, NKV, hs, q_stride, kv_stride);
    if (B == 0) {
        return;
    }
    PLW_CHECK(dq != nullptr && dk != nullptr && dv != nullptr && dout != nullptr &&
                  out != nullptr && lse != nullptr && q != nullptr && k != nullptr && v != nullptr,
              "flash_attention_backward: null device pointer");
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    ScratchBuffer scratch(flash_attention_scratch_bytes(B, T, NH, hs));
    float* dsum = static_cast<float*>(scratch.data());
    if (flash_attention_uses_mma()) {
        detail::flash_attention_mma_backward(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH, NKV,
                                             hs, q_stride, kv_stride, scale);
        return;
    }
    detail::with_head_size(hs, "flash_attention_backward", [&](auto HS) {
        backward_launch<decltype(HS)::value>(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH,
                                             NKV, q_stride, kv_stride, scale);
    });
}

}  // namespace

// ----------------------------------------------------------------------------
// flash_attention.h

bool flash_attention_supports(int hs) { return hs == 64 || hs == 80 || hs == 96 || hs == 128; }

bool flash_attention_uses_mma() {
    static const bool use = decide_mma();  // a throw leaves it undecided: the next call retries
    return use;
}

size_t flash_attention_scratch_bytes(int B, int T, int NH, int hs) {
    (void)hs;
    PLW_CHECK(B >= 0 && T >= 0 && NH >= 0,
              "flash_attention_scratch_bytes: bad shape B=" << B << " T=" << T << " NH=" << NH);
    return static_cast<size_t>(B) * static_cast<size_t>(NH) * static_cast<size_t>(T) *
           sizeof(float);
}

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                             int q_stride, int kv_stride) {
    forward_impl(out, lse, q, k, v, segments, B, T, NH, NKV, hs, q_stride, kv_stride);
}

void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                             int q_stride, int kv_stride) {
    forward_impl(raw(out), lse, raw(q), raw(k), raw(v), segments, B, T, NH, NKV, hs, q_stride,
                 kv_stride);
}

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                              int q_stride, int kv_stride) {
    backward_impl(dq, dk, dv, dout, out, lse, q, k, v, segments, B, T, NH, NKV, hs, q_stride,
                  kv_stride);
}

void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                              int q_stride, int kv_stride) {
    backward_impl(raw(dq), raw(dk), raw(dv), raw(dout), raw(out), lse, raw(q), raw(k), raw(v),
                  segments, B, T, NH, NKV, hs, q_stride, kv_stride);
}

}  // namespace plw::cuda
