// Fused (flash) causal attention for bf16 on tensor cores: the kernels flash_attention.h's
// bf16 functions run on sm_80 and newer (flash_attention.cu chooses; PLW_CUDA_FLASH=simt keeps
// the SIMT kernels). Same op, masks, GQA, strides, lse and += semantics as the SIMT kernels of
// flash_attention.cu and the CPU twin native/cpu/flash_attention.h; f32 activations stay on
// the SIMT path (TF32 m16n8k8 would be the f32 counterpart; not done).
//
// Shapes as flash_attention.cu: B, T, NH query heads, NKV key/value heads, HS head size (64,
// 80, 96, 128: multiples of 16, the mma's k), n_rep = NH / NKV, z = b * NH + h; query head h
// reads KV head j = h / n_rep; scale = 1 / sqrt(HS); allowed(t, t2) = t < T && t2 <= t &&
// same segment.
//   S = Q K^T (f32),  s = S * scale,  P = exp(s - m) / l (online),  lse = m + log(l)
//   O = P V;  D = rowsum(dO * O);  dP = dO V^T;  dS = P (dP - D)
//   dq += scale dS K;  dk += scale sum_{h of j} dS^T Q;  dv += sum_{h of j} P^T dO
//
// Every product is mma.sync.m16n8k16 (bf16 in, f32 accumulate; native/cuda/mma.cuh): a warp
// owns 16 rows of a product and computes 16 x 8N blocks, one k-step of 16 at a time. The
// operands:
//   - resident A operands (Q and dO rows in forward and dq) are loaded once into registers as
//     A fragments; K and V rows (dk/dv kernel) are read as A fragments from shared memory;
//   - the streamed B operands are bf16 tiles in shared memory (rows padded to HS + 8);
//   - S, dP (and S^T, dP^T) stay in their accumulator fragments: the mask, the online softmax
//     and dS are computed there, in registers; P and dS are then rounded to bf16 and reused in
//     place as the A operand of the next product (O += P V, dQ += dS K, dV += P^T dO,
//     dK += dS^T Q), never written to memory.
// Row statistics: a row of an accumulator lives in the 4 lanes of a quad (mma.cuh), so a row
// max or sum is the lane's own values combined, then two xor shuffles (both rows of the lane
// at once).
//
// Numerics: scores, softmax statistics, D and every accumulation are f32, as the SIMT kernels;
// the differences are (1) P is rounded to bf16 before P V, P^T dO, and dS before dS K, dS^T Q
// (as the cuBLASLt path rounds att and dS), so bf16 errors reach the bounds of the unfused
// path (test/emulator/test_attention.cpp) instead of the SIMT kernels' single rounding of the
// outputs; (2) the order and rounding of the sums inside one mma are the hardware's. The row
// sum l of the forward adds the f32 P (not the rounded one), so lse is the f32 statistic the
// backward expects. Outputs are rounded once: out; dq, dk, dv = round(old + increment) once per
// call.
//
// Kernels (128 threads = 4 warps each):
// - flash_mma_forward_kernel, grid (B*NH, query tiles of 64, heaviest first): warp w owns query
//   rows q0 + 16w .. +15. Q through shared memory into A fragments (HS/16 x 4 registers). For
//   each key tile of BC keys up to the diagonal: K and V tiles into shared memory, S = Q K^T
//   (HS/16 steps of BC/8 mma), mask and scale, row max (quad shuffles), online softmax on the
//   fragment (running max m, running sum l of this lane's columns, O rescaled), O += P V
//   (BC/16 steps of HS/8 mma). Two barriers per key tile. l summed over the quad at the end.
// - flash_mma_backward_dq_kernel, grid (B*NH, query tiles of 64), launched first: D of its 64
//   rows (two threads a row, from out and dO in global memory; to scratch for the next kernel),
//   Q and dO into A fragments; per key tile of BC up to the diagonal: K, V tiles, S and dP,
//   P = exp(s - lse), dS = P (dP - D), dQ += dS K. dq += scale dQ at the end.
// - flash_mma_backward_dkdv_kernel, grid (B*NKV, key tiles of 64): warp w owns keys k0 + 16w
//   .. +15; K, V tiles resident in shared memory; for each query head of the KV head in order
//   and each query tile of BR rows from the diagonal down: Q, dO, lse and D of the tile,
//   S^T = K Q^T and dP^T = V dO^T (keys as rows: the tile's P^T and dS^T come out directly in
//   the A layout that dV += P^T dO and dK += dS^T Q need), then those two products.
//   dk += scale dK, dv += dV at the end.
// Skipped work: key tiles above the diagonal are never visited (as SIMT), and inside a visited
// tile a warp whose 16 rows are all past T, or all before the tile's first key (causal), skips
// its products (its P would be 0). Rows that see no key of a tile (another segment) carry zeros.
//
// Tiles (Tiles below): 64 query rows a forward/dq block and 64 keys a dk/dv block (4 warps x
// 16, the mma's m); BC keys per step of forward and dq, BR query rows per step of dk/dv:
//   HS          64    80    96    128
//   forward BC  64    64    64    32
//   dq BC       32    32    32    32
//   dk/dv BR    32    32    32    16
// set by the registers a lane holds (forward: Q HS/4 + O HS/2 + S BC/2; dq: Q and dO HS/2 +
// dQ HS/2 + S and dP BC; dk/dv: dK and dV HS + S^T and dP^T BR) and by 48 KiB of shared
// memory without an opt-in (a bf16 tile of 64 rows x (HS + 8) is 9 KiB at HS = 64, 17 KiB at
// HS = 128). Shared memory per block, bytes: forward 4 BC (HS + 8) + 256 + 4 BC (Q is staged
// through the K and V buffers first, so 2 BC >= 64); dq 4 BC (HS + 8) + 512 + 4 BC (Q and dO
// staged alike); dk/dv 4 (64 + BR)(HS + 8) + 12 BR + 256: at HS = 128 forward 17.4 KiB, dq
// 17.6 KiB, dk/dv 42.9 KiB. Registers from ptxas (CUDA 13, sm_90 and sm_80 alike, no spills):
// forward and dk/dv are compiled for 3 blocks of 4 warps per SM (kMinBlocks: at most 168
// registers; 165-168 used); dq 162-167 at HS <= 96 and 234 at HS = 128 (2 blocks: capping it
// spills). Not timed on a GPU yet.
//
// Determinism: no atomics; each output element is owned by one lane and written once per
// call; every sum runs in a fixed order (mma k-steps in order, tiles in order, query heads in
// order, quad shuffles xor 1 then 2, D's two halves added once). Bitwise the same run to run on
// one GPU (the order and rounding inside an mma are the hardware's: fixed, but they may differ
// between GPU generations).
//
// Loads: global -> shared tiles with 16-byte vector loads where the pointer and the row stride
// allow, else element by element (bf16 rows may be only 2-byte aligned). No cp.async double
// buffering and no ldmatrix yet (mma.cuh says why): the next steps for speed, with the >48 KiB
// opt-in for larger tiles.
#include "flash_attention_mma.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "head_size.cuh"
#include "mma.cuh"

namespace plw::cuda::detail {

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 16 * kWarps;  // query rows of a forward/dq block, keys of a dk/dv block
constexpr size_t kSmemLimit = 48 * 1024;
// Blocks per SM the forward and dk/dv kernels are compiled for (at most 168 registers a thread;
// no spills at any head size with the tiles below). The dq kernel keeps ptxas's choice: at
// HS = 128 it needs 234 registers (2 blocks), and capping it at 168 spills.
constexpr int kMinBlocks = 3;

// ----------------------------------------------------------------------------
// tile sizes and shared memory

// kFwdBc: keys per step of the forward; kDqBc: keys per step of dq; kKvBr: query rows per step
// of dk/dv. Multiples of 16 (P's and dS's k-steps); kFwdBc, kDqBc >= 32 (Q and dO are staged
// through the K and V buffers); kKvBr divides 64 (query tiles start at the key tile). Larger
// steps fit in shared memory but cost registers: kDqBc = 64 at HS = 64 took 222
// registers, kKvBr = 64 234, kFwdBc = 64 at HS = 128 225 (2 blocks per SM instead of 3).
template <int HS>
struct Tiles;
template <>
struct Tiles<64> {
    static constexpr int kFwdBc = 64, kDqBc = 32, kKvBr = 32;
};
template <>
struct Tiles<80> {
    static constexpr int kFwdBc = 64, kDqBc = 32, kKvBr = 32;
};
template <>
struct Tiles<96> {
    static constexpr int kFwdBc = 64, kDqBc = 32, kKvBr = 32;
};
template <>
struct Tiles<128> {
    static constexpr int kFwdBc = 32, kDqBc = 32, kKvBr = 16;
};

// Byte offsets from the 16-byte aligned start of dynamic shared memory. bf16 tiles have rows
// of kLd = HS + 8 elements (16-byte aligned rows).
template <int HS, int BC>
struct FwdSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * 2;  // bytes of a tile row
    static constexpr size_t kK = 0;                     // (BC, kLd) bf16; Q staged over K and V
    static constexpr size_t kV = kK + BC * kTile;       // (BC, kLd) bf16
    static constexpr size_t kSegQ = kV + BC * kTile;    // (64) int32
    static constexpr size_t kSegK = kSegQ + kRows * 4;  // (BC) int32
    static constexpr size_t kBytes = kSegK + BC * 4;
    static_assert(2 * BC >= kRows && BC % 16 == 0, "forward: Q is staged through K and V");
    static_assert(kBytes <= kSmemLimit, "forward tiles exceed 48 KiB of shared memory");
};

template <int HS, int BC>
struct DqSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * 2;
    static constexpr size_t kK = 0;                     // (BC, kLd); Q, then dO, staged over K and V
    static constexpr size_t kV = kK + BC * kTile;       // (BC, kLd)
    static constexpr size_t kD = kV + BC * kTile;       // (64) f32
    static constexpr size_t kSegQ = kD + kRows * 4;     // (64) int32
    static constexpr size_t kSegK = kSegQ + kRows * 4;  // (BC) int32
    static constexpr size_t kBytes = kSegK + BC * 4;
    static_assert(2 * BC >= kRows && BC % 16 == 0, "dq: Q and dO are staged through K and V");
    static_assert(kBytes <= kSmemLimit, "dq tiles exceed 48 KiB of shared memory");
};

template <int HS, int BR>
struct KvSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * 2;
    static constexpr size_t kK = 0;                    // (64, kLd)
    static constexpr size_t kV = kK + kRows * kTile;   // (64, kLd)
    static constexpr size_t kQ = kV + kRows * kTile;   // (BR, kLd)
    static constexpr size_t kDO = kQ + BR * kTile;     // (BR, kLd)
    static constexpr size_t kLse = kDO + BR * kTile;   // (BR) f32
    static constexpr size_t kD = kLse + BR * 4;        // (BR) f32
    static constexpr size_t kSegK = kD + BR * 4;       // (64) int32
    static constexpr size_t kSegQ = kSegK + kRows * 4; // (BR) int32
    static constexpr size_t kBytes = kSegQ + BR * 4;
    static_assert(BR % 16 == 0 && kRows % BR == 0, "dkdv: query tiles of 16k rows dividing 64");
    static_assert(kBytes <= kSmemLimit, "dkdv tiles exceed 48 KiB of shared memory");
};

// ----------------------------------------------------------------------------
// device helpers

// ROWS rows of HS bf16 (row stride `stride` elements, src = row 0) into a shared tile with
// rows of HS + 8; rows at or past `valid` are zeros (so that masked products stay finite).
// src is only dereferenced for valid rows.
template <int ROWS, int HS>
__device__ __forceinline__ void load_tile(uint16_t* dst, const uint16_t* src, int64_t stride, int valid) {
    constexpr int kLd = HS + kMmaPad;
    if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && stride % 8 == 0) {
        constexpr int kChunks = HS / 8;  // 16-byte chunks of a row
        for (int e = threadIdx.x; e < ROWS * kChunks; e += kThreads) {
            const int r = e / kChunks;
            const int c = e - r * kChunks;
            uint4 x = make_uint4(0u, 0u, 0u, 0u);
            if (r < valid) {
                x = *reinterpret_cast<const uint4*>(src + r * stride + c * 8);
            }
            *reinterpret_cast<uint4*>(dst + r * kLd + c * 8) = x;
        }
    } else {
        for (int e = threadIdx.x; e < ROWS * HS; e += kThreads) {
            const int r = e / HS;
            const int d = e - r * HS;
            dst[r * kLd + d] = r < valid ? src[r * stride + d] : static_cast<uint16_t>(0);
        }
    }
}

// ROWS segment ids of batch row seg_b from t0 (0 past T or without segments: unused then).
template <int ROWS>
__device__ __forceinline__ void load_segments(int32_t* dst, const int32_t* seg_b, int t0, int T) {
    for (int r = threadIdx.x; r < ROWS; r += kThreads) {
        dst[r] = seg_b != nullptr && t0 + r < T ? seg_b[t0 + r] : 0;
    }
}

// The 16 x 8N product of this warp's A rows (kSteps A fragments in registers) with the B
// operand read from a tile that stores B's columns as rows (B[k][n] = tile[n][k]: K for S,
// V for dP, Q and dO for S^T and dP^T): acc[n] = sum_ks A_ks B_ks[n], k-steps in order.
template <int N, int kSteps>
__device__ __forceinline__ void product_ab_cols(float (&acc)[N][4], const uint32_t (&a)[kSteps][4],
                                                const uint16_t* tile, int ld, const MmaLane& ln) {
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
        uint32_t b[N][2];
#pragma unroll
        for (int n = 0; n < N; ++n) {
            load_b_cols(b[n], tile, ld, n * 8, ks * 16, ln);
        }
        mma_bf16_16816_row<N>(acc, a[ks], b);
    }
}

// acc += A B, A = the 16 x 16 kSteps block of this warp held in accumulators `c` (column tile
// 2 kk and 2 kk + 1 form k-step kk; rounded to bf16 here), B read from a tile that stores B's
// rows as rows (B[k][n] = tile[k][n]: V, K, dO, Q along their channels): O += P V, dQ += dS K,
// dV += P^T dO, dK += dS^T Q.
template <int N, int kSteps>
__device__ __forceinline__ void product_acc_rows(float (&acc)[N][4], const float (&c)[2 * kSteps][4],
                                                 const uint16_t* tile, int ld, const MmaLane& ln) {
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
        uint32_t a[4];
        acc_to_a(a, c[2 * kk], c[2 * kk + 1]);
        uint32_t b[N][2];
#pragma unroll
        for (int n = 0; n < N; ++n) {
            load_b_rows(b[n], tile, ld, kk * 16, n * 8, ln);
        }
        mma_bf16_16816_row<N>(acc, a, b);
    }
}

template <int N>
__device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; ++n) {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            acc[n][i] = 0.0f;
        }
    }
}

// ----------------------------------------------------------------------------
// CUDA kernels

template <int HS, int BC>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    flash_mma_forward_kernel(uint16_t* out,            // (B, T, NH*HS)
                             float* lse,               // (B, NH, T)
                             const uint16_t* q,        // rows of q_stride
                             const uint16_t* k,        // rows of kv_stride
                             const uint16_t* v,        // rows of kv_stride
                             const int32_t* segments,  // (B, T) or null
                             int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = FwdSmem<HS, BC>;
    constexpr int kLd = L::kLd, KS = HS / 16, NS = BC / 8, NO = HS / 8, KP = BC / 16;
    extern __shared__ __align__(16) uint8_t smem[];
    uint16_t* sK = reinterpret_cast<uint16_t*>(smem + L::kK);
    uint16_t* sV = reinterpret_cast<uint16_t*>(smem + L::kV);
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const MmaLane ln = mma_lane();
    const int warp = threadIdx.x / 32;
    const int z = blockIdx.x, b = z / NH, h = z % NH, j = h / n_rep;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kRows;  // heaviest tile first
    const int w0 = q0 + warp * 16;                          // this warp's first query row
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const uint16_t* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const uint16_t* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const uint16_t* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    // Q through shared memory (over the K and V buffers) into this warp's A fragments, once.
    load_tile<kRows, HS>(sK, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_segments<kRows>(sSegQ, seg_b, q0, T);
    __syncthreads();
    uint32_t qa[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        load_a(qa[ks], sK, kLd, warp * 16, ks * 16, ln);
    }
    // this lane's rows: g and g + 8 of the warp's 16 (accumulator registers 0, 1 and 2, 3)
    const int rows[2] = {w0 + ln.g, w0 + ln.g + 8};
    const int32_t seg_q[2] = {sSegQ[warp * 16 + ln.g], sSegQ[warp * 16 + ln.g + 8]};
    __syncthreads();  // Q read by all before K overwrites it

    // m: the row's running max (the same in the quad's 4 lanes); l: this lane's share of the
    // row's running sum (its columns), rescaled with O; the quad's shares added at the end.
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    float o[NO][4];
    zero(o);
    const int q_last = min(q0 + kRows, T) - 1;
    for (int k0 = 0; k0 <= q_last; k0 += BC) {  // key tiles up to the diagonal
        load_tile<BC, HS>(sK, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_tile<BC, HS>(sV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K, V loaded

        if (w0 < T && w0 + 15 >= k0) {  // else all of this warp's P is 0 in this tile
            float s[NS][4];
            zero(s);
            product_ab_cols<NS, KS>(s, qa, sK, kLd, ln);  // S = Q K^T
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int n = 0; n < NS; ++n) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int r = i >> 1, t = rows[r], t2 = k0 + n * 8 + acc_col(ln, i);
                    const bool allowed =
                        t < T && t2 <= t && (seg_b == nullptr || sSegK[t2 - k0] == seg_q[r]);
                    s[n][i] = allowed ? __fmul_rn(s[n][i], scale) : -INFINITY;
                    mx[r] = fmaxf(mx[r], s[n][i]);
                }
            }
            quad_max2(mx[0], mx[1]);
            float m_use[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const float m_new = fmaxf(m[r], mx[r]);
                // a row that has seen no allowed key yet keeps m = -inf; its P and alpha are 0
                m_use[r] = m_new == -INFINITY ? 0.0f : m_new;
                const float alpha = expf(m[r] - m_use[r]);
                m[r] = m_new;
                l[r] *= alpha;
#pragma unroll
                for (int n = 0; n < NO; ++n) {
                    o[n][2 * r] *= alpha;
                    o[n][2 * r + 1] *= alpha;
                }
            }
#pragma unroll
            for (int n = 0; n < NS; ++n) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    s[n][i] = expf(s[n][i] - m_use[i >> 1]);  // P (f32); exp(-inf) = 0 where masked
                    sum[i >> 1] += s[n][i];
                }
            }
            l[0] += sum[0];
            l[1] += sum[1];
            product_acc_rows<NO, KP>(o, s, sV, kLd, ln);  // O += P V, P rounded to bf16
        }
        __syncthreads();  // K and V read by all before the next tile overwrites them
    }
    quad_sum2(l[0], l[1]);  // the rows' sums, >= 1 for rows < T (row t sees itself)

    const int C = NH * HS;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = rows[r];
        if (t < T) {
            const float inv = 1.0f / l[r];
            uint16_t* o_t = out + (row0 + t) * C + static_cast<int64_t>(h) * HS;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
                o_t[n * 8 + acc_col(ln, 2 * r)] = from_float<uint16_t>(o[n][2 * r] * inv);
                o_t[n * 8 + acc_col(ln, 2 * r + 1)] = from_float<uint16_t>(o[n][2 * r + 1] * inv);
            }
            if (ln.t == 0) {
                lse[static_cast<int64_t>(z) * T + t] = m[r] + logf(l[r]);
            }
        }
    }
}

template <int HS, int BC>
__global__ void __launch_bounds__(kThreads)
    flash_mma_backward_dq_kernel(uint16_t* dq,              // rows of q_stride, accumulated
                                 float* dsum,               // (B, NH, T) D, written
                                 const uint16_t* dout,      // (B, T, NH*HS)
                                 const uint16_t* out,       // (B, T, NH*HS)
                                 const float* lse,          // (B, NH, T)
                                 const uint16_t* q,         // rows of q_stride
                                 const uint16_t* k,         // rows of kv_stride
                                 const uint16_t* v,         // rows of kv_stride
                                 const int32_t* segments,   // (B, T) or null
                                 int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = DqSmem<HS, BC>;
    constexpr int kLd = L::kLd, KS = HS / 16, NS = BC / 8, NO = HS / 8, KP = BC / 16;
    static_assert(kThreads == 2 * kRows, "D: two threads a row");
    extern __shared__ __align__(16) uint8_t smem[];
    uint16_t* sK = reinterpret_cast<uint16_t*>(smem + L::kK);
    uint16_t* sV = reinterpret_cast<uint16_t*>(smem + L::kV);
    float* sD = reinterpret_cast<float*>(smem + L::kD);
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const MmaLane ln = mma_lane();
    const int warp = threadIdx.x / 32;
    const int z = blockIdx.x, b = z / NH, h = z % NH, j = h / n_rep;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kRows;
    const int w0 = q0 + warp * 16;
    const int C = NH * HS;
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const uint16_t* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const uint16_t* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const uint16_t* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const uint16_t* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
    const uint16_t* out_h = out + row0 * C + static_cast<int64_t>(h) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    // D = rowsum(dO * out) of the block's rows: threads 2r and 2r + 1 sum the two halves of
    // row r's channels in order, then add them (one shuffle; a + b = b + a, same bits).
    {
        const int r = threadIdx.x >> 1, half = threadIdx.x & 1, t = q0 + r;
        float part = 0.0f;
        if (t < T) {
            const uint16_t* d_t = dout_h + static_cast<int64_t>(t) * C + half * (HS / 2);
            const uint16_t* o_t = out_h + static_cast<int64_t>(t) * C + half * (HS / 2);
            for (int d = 0; d < HS / 2; ++d) {
                part += to_float(d_t[d]) * to_float(o_t[d]);
            }
        }
        const float D = part + __shfl_xor_sync(0xffffffffu, part, 1);
        if (half == 0) {
            sD[r] = D;
            if (t < T) {
                dsum[static_cast<int64_t>(z) * T + t] = D;
            }
        }
    }
    // Q, then dO, through shared memory into A fragments.
    load_tile<kRows, HS>(sK, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_segments<kRows>(sSegQ, seg_b, q0, T);
    __syncthreads();
    uint32_t qa[KS][4], da[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        load_a(qa[ks], sK, kLd, warp * 16, ks * 16, ln);
    }
    __syncthreads();
    load_tile<kRows, HS>(sK, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
    __syncthreads();
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        load_a(da[ks], sK, kLd, warp * 16, ks * 16, ln);
    }
    const int rows[2] = {w0 + ln.g, w0 + ln.g + 8};
    const int32_t seg_q[2] = {sSegQ[warp * 16 + ln.g], sSegQ[warp * 16 + ln.g + 8]};
    const float D[2] = {sD[warp * 16 + ln.g], sD[warp * 16 + ln.g + 8]};
    float row_lse[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_lse[r] = rows[r] < T ? lse[static_cast<int64_t>(z) * T + rows[r]] : 0.0f;
    }
    __syncthreads();  // dO read by all before K overwrites it

    float acc[NO][4];
    zero(acc);
    const int q_last = min(q0 + kRows, T) - 1;
    for (int k0 = 0; k0 <= q_last; k0 += BC) {
        load_tile<BC, HS>(sK, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_tile<BC, HS>(sV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K, V loaded

        if (w0 < T && w0 + 15 >= k0) {
            float s[NS][4], dp[NS][4];
            zero(s);
            zero(dp);
            product_ab_cols<NS, KS>(s, qa, sK, kLd, ln);   // S = Q K^T
            product_ab_cols<NS, KS>(dp, da, sV, kLd, ln);  // dP = dO V^T
#pragma unroll
            for (int n = 0; n < NS; ++n) {
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int r = i >> 1, t = rows[r], t2 = k0 + n * 8 + acc_col(ln, i);
                    const bool allowed =
                        t < T && t2 <= t && (seg_b == nullptr || sSegK[t2 - k0] == seg_q[r]);
                    const float p = allowed ? expf(__fmul_rn(s[n][i], scale) - row_lse[r]) : 0.0f;
                    s[n][i] = p * (dp[n][i] - D[r]);  // dS
                }
            }
            product_acc_rows<NO, KP>(acc, s, sK, kLd, ln);  // dQ += dS K, dS rounded to bf16
        }
        __syncthreads();  // K and V read by all before the next tile overwrites them
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = rows[r];
        if (t < T) {
            uint16_t* dq_t = dq + (row0 + t) * q_stride + static_cast<int64_t>(h) * HS;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    uint16_t& x = dq_t[n * 8 + acc_col(ln, 2 * r + e)];
                    x = from_float<uint16_t>(to_float(x) + scale * acc[n][2 * r + e]);
                }
            }
        }
    }
}

template <int HS, int BR>
__global__ void __launch_bounds__(kThreads, kMinBlocks)
    flash_mma_backward_dkdv_kernel(uint16_t* dk,              // rows of kv_stride, accumulated
                                   uint16_t* dv,              // rows of kv_stride, accumulated
                                   const uint16_t* dout,      // (B, T, NH*HS)
                                   const float* lse,          // (B, NH, T)
                                   const float* dsum,         // (B, NH, T) D
                                   const uint16_t* q,         // rows of q_stride
                                   const uint16_t* k,         // rows of kv_stride
                                   const uint16_t* v,         // rows of kv_stride
                                   const int32_t* segments,   // (B, T) or null
                                   int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = KvSmem<HS, BR>;
    constexpr int kLd = L::kLd, KS = HS / 16, NQ = BR / 8, NO = HS / 8, KP = BR / 16;
    extern __shared__ __align__(16) uint8_t smem[];
    uint16_t* sK = reinterpret_cast<uint16_t*>(smem + L::kK);
    uint16_t* sV = reinterpret_cast<uint16_t*>(smem + L::kV);
    uint16_t* sQ = reinterpret_cast<uint16_t*>(smem + L::kQ);
    uint16_t* sDO = reinterpret_cast<uint16_t*>(smem + L::kDO);
    float* sLse = reinterpret_cast<float*>(smem + L::kLse);
    float* sD = reinterpret_cast<float*>(smem + L::kD);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);

    const MmaLane ln = mma_lane();
    const int warp = threadIdx.x / 32;
    const int NKV = NH / n_rep;
    const int b = blockIdx.x / NKV, j = blockIdx.x % NKV;
    const int k0 = blockIdx.y * kRows;  // tile 0, the heaviest, first
    const int w0 = k0 + warp * 16;      // this warp's first key
    const int C = NH * HS;
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;
    const int64_t kv_off = (row0 + k0) * kv_stride + static_cast<int64_t>(j) * HS;

    load_tile<kRows, HS>(sK, k + kv_off, kv_stride, T - k0);
    load_tile<kRows, HS>(sV, v + kv_off, kv_stride, T - k0);
    load_segments<kRows>(sSegK, seg_b, k0, T);

    // this lane's keys: rows g and g + 8 of the warp's 16 (S^T's accumulator rows)
    const int keys[2] = {w0 + ln.g, w0 + ln.g + 8};
    float acc_k[NO][4], acc_v[NO][4];
    zero(acc_k);
    zero(acc_v);
    for (int r = 0; r < n_rep; ++r) {  // the KV head's query heads, in order
        const int h = j * n_rep + r;
        const int64_t zt = (static_cast<int64_t>(b) * NH + h) * T;  // (b, h)'s lse and D
        const uint16_t* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
        const uint16_t* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
        for (int q0 = k0; q0 < T; q0 += BR) {  // query tiles from the diagonal down
            load_tile<BR, HS>(sQ, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
            load_tile<BR, HS>(sDO, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
            for (int e = threadIdx.x; e < BR; e += kThreads) {
                const bool valid = q0 + e < T;
                sLse[e] = valid ? lse[zt + q0 + e] : 0.0f;
                sD[e] = valid ? dsum[zt + q0 + e] : 0.0f;
            }
            load_segments<BR>(sSegQ, seg_b, q0, T);
            __syncthreads();  // Q, dO, lse, D loaded (and, the first time, K and V)

            if (w0 < T && q0 + BR - 1 >= w0) {  // else all of this warp's P^T is 0 in this tile
                float st[NQ][4], dpt[NQ][4];
                zero(st);
                zero(dpt);
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    uint32_t a[4], bq[NQ][2];
                    load_a(a, sK, kLd, warp * 16, ks * 16, ln);
#pragma unroll
                    for (int n = 0; n < NQ; ++n) {
                        load_b_cols(bq[n], sQ, kLd, n * 8, ks * 16, ln);
                    }
                    mma_bf16_16816_row<NQ>(st, a, bq);  // S^T = K Q^T
                    load_a(a, sV, kLd, warp * 16, ks * 16, ln);
#pragma unroll
                    for (int n = 0; n < NQ; ++n) {
                        load_b_cols(bq[n], sDO, kLd, n * 8, ks * 16, ln);
                    }
                    mma_bf16_16816_row<NQ>(dpt, a, bq);  // dP^T = V dO^T
                }
#pragma unroll
                for (int n = 0; n < NQ; ++n) {
#pragma unroll
                    for (int i = 0; i < 4; ++i) {
                        const int key = keys[i >> 1], c = n * 8 + acc_col(ln, i), t = q0 + c;
                        const bool allowed = t < T && key <= t &&
                                             (seg_b == nullptr || sSegQ[c] == sSegK[key - k0]);
                        const float p = allowed ? expf(__fmul_rn(st[n][i], scale) - sLse[c]) : 0.0f;
                        dpt[n][i] = p * (dpt[n][i] - sD[c]);  // dS^T
                        st[n][i] = p;                         // P^T
                    }
                }
                product_acc_rows<NO, KP>(acc_v, st, sDO, kLd, ln);  // dV += P^T dO
                product_acc_rows<NO, KP>(acc_k, dpt, sQ, kLd, ln);  // dK += dS^T Q
            }
            __syncthreads();  // Q, dO, lse, D read by all before the next tile overwrites them
        }
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t2 = keys[r];
        if (t2 < T) {
            const int64_t off = (row0 + t2) * kv_stride + static_cast<int64_t>(j) * HS;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int64_t i = off + n * 8 + acc_col(ln, 2 * r + e);
                    dk[i] = from_float<uint16_t>(to_float(dk[i]) + scale * acc_k[n][2 * r + e]);
                    dv[i] = from_float<uint16_t>(to_float(dv[i]) + acc_v[n][2 * r + e]);
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <int HS>
void forward_launch(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                    const int32_t* segments, int B, int T, int NH, int NKV, int q_stride, int kv_stride,
                    float scale) {
    constexpr int BC = Tiles<HS>::kFwdBc;
    const dim3 grid(B * NH, ceil_div(T, kRows));
    flash_mma_forward_kernel<HS, BC><<<grid, kThreads, FwdSmem<HS, BC>::kBytes>>>(
        out, lse, q, k, v, segments, T, NH, NH / NKV, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_forward_kernel");
}

template <int HS>
void backward_launch(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout, const uint16_t* out,
                     const float* lse, float* dsum, const uint16_t* q, const uint16_t* k, const uint16_t* v,
                     const int32_t* segments, int B, int T, int NH, int NKV, int q_stride, int kv_stride,
                     float scale) {
    constexpr int QC = Tiles<HS>::kDqBc, KR = Tiles<HS>::kKvBr;
    const int n_rep = NH / NKV;
    // dq first: it also writes D, which the dk/dv kernel reads.
    const dim3 grid_q(B * NH, ceil_div(T, kRows));
    flash_mma_backward_dq_kernel<HS, QC><<<grid_q, kThreads, DqSmem<HS, QC>::kBytes>>>(
        dq, dsum, dout, out, lse, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_backward_dq_kernel");
    const dim3 grid_kv(B * NKV, ceil_div(T, kRows));
    flash_mma_backward_dkdv_kernel<HS, KR><<<grid_kv, kThreads, KvSmem<HS, KR>::kBytes>>>(
        dk, dv, dout, lse, dsum, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_backward_dkdv_kernel");
}

}  // namespace

void flash_attention_mma_forward(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                                 const uint16_t* v, const int32_t* segments, int B, int T, int NH,
                                 int NKV, int hs, int q_stride, int kv_stride, float scale) {
    detail::with_head_size(hs, "flash_attention_mma_forward", [&](auto HS) {
        forward_launch<decltype(HS)::value>(out, lse, q, k, v, segments, B, T, NH, NKV, q_stride, kv_stride,
                                            scale);
    });
}

void flash_attention_mma_backward(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout,
                                  const uint16_t* out, const float* lse, float* dsum,
                                  const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                  const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                                  int q_stride, int kv_stride, float scale) {
    detail::with_head_size(hs, "flash_attention_mma_backward", [&](auto HS) {
        backward_launch<decltype(HS)::value>(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH,
                                             NKV, q_stride, kv_stride, scale);
    });
}

}  // namespace plw::cuda::detail
