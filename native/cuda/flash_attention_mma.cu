// Fused (flash) causal attention on tensor cores: the kernels flash_attention.h's functions
// run on sm_80 and newer (flash_attention.cu chooses; PLW_CUDA_FLASH=simt keeps the SIMT
// kernels), bf16 on mma.sync.m16n8k16 and f32 as TF32 on mma.sync.m16n8k8. Same op, masks,
// GQA, strides, lse and += semantics as the SIMT kernels of flash_attention.cu and the CPU
// twin native/cpu/flash_attention.h.
//
// One implementation for both types: the kernels are templated on an operand-type struct
// (Bf16Ops, Tf32Ops: the tile element, the mma's k, the fragment loaders, how an accumulator
// becomes an A operand and is rounded, how a tile element is rounded when loaded, blocks per
// SM). The algorithm, masks, skips and barriers are written once; what differs is in those
// ~30 lines each and in the tile sizes (Tiles). Chosen over f32 copies beside the bf16
// kernels because the two would be the same 400 lines with different loaders, and a fix in
// one would have to be made twice; the bf16 kernels compile to the same registers as before.
//
// Shapes as flash_attention.cu: B, T, NH query heads, NKV key/value heads, HS head size (64,
// 80, 96, 128: multiples of 16, the mma's k), n_rep = NH / NKV, z = b * NH + h; query head h
// reads KV head j = h / n_rep; scale = 1 / sqrt(HS); allowed(t, t2) = t < T && t2 <= t &&
// same segment.
//   S = Q K^T (f32),  s = S * scale,  P = exp(s - m) / l (online),  lse = m + log(l)
//   O = P V;  D = rowsum(dO * O);  dP = dO V^T;  dS = P (dP - D)
//   dq += scale dS K;  dk += scale sum_{h of j} dS^T Q;  dv += sum_{h of j} P^T dO
//
// Every product is mma.sync.m16n8k16 (bf16 in) or m16n8k8 (tf32 in), f32 accumulate
// (native/cuda/mma.cuh): a warp owns 16 rows of a product and computes 16 x 8N blocks, one
// k-step of 16 (bf16) or 8 (tf32) at a time. The operands:
//   - resident A operands (Q and dO rows in forward and dq) are loaded once into registers as
//     A fragments; K and V rows (dk/dv kernel) are read as A fragments from shared memory;
//   - the streamed B operands are tiles in shared memory (rows padded to HS + 8 elements; f32
//     tiles hold the tf32-rounded values: cvt.rna once per element, when the tile is loaded);
//   - S, dP (and S^T, dP^T) stay in their accumulator fragments: the mask, the online softmax
//     and dS are computed there, in registers; P and dS are then rounded to bf16 / tf32 and reused in
//     place as the A operand of the next product (O += P V, dQ += dS K, dV += P^T dO,
//     dK += dS^T Q), never written to memory.
// Row statistics: a row of an accumulator lives in the 4 lanes of a quad (mma.cuh), so a row
// max or sum is the lane's own values combined, then two xor shuffles (both rows of the lane
// at once).
//
// Numerics (bf16; f32 below): scores, softmax statistics, D and every accumulation are f32, as the SIMT kernels;
// the differences are (1) P is rounded to bf16 before P V, P^T dO, and dS before dS K, dS^T Q
// (as the cuBLASLt path rounds att and dS), so bf16 errors reach the bounds of the unfused
// path (test/emulator/test_attention.cpp) instead of the SIMT kernels' single rounding of the
// outputs; (2) the order and rounding of the sums inside one mma are the hardware's. The row
// sum l of the forward adds the f32 P (not the rounded one), so lse is the f32 statistic the
// backward expects. Outputs are rounded once: out; dq, dk, dv = round(old + increment) once per
// call. f32: the same with tf32 (10-bit mantissa) operands: Q, K, V, dO rounded once when their
// tiles are loaded, P and dS before their products; D from the f32 out and dO, outputs f32.
// That is the precision of the engine's f32 CUDA path, whose cuBLASLt GEMMs run in TF32.
//
// Kernels (128 threads = 4 warps each; f32 dk/dv at HS >= 80: 64 threads, 32 keys):
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
// f32 (tiles of 4-byte elements; 48 KiB):
//   forward BC  64    64    32    32
//   dq BC       32    32    32     8   (HS = 128: dO stays in shared memory, its A fragments
//                                        read each key step: Q and dO in registers spill)
//   dk/dv BR    16    16    16     8
//   dk/dv keys  64    32    32    32   (K and V of 64 keys pass 48 KiB at HS >= 80)
// f32 shared memory (tiles of (HS + 8) x 4 bytes a row): forward HS = 80 44.5 KiB, HS = 128
// 34.4 KiB; dq HS = 96 26.6 KiB, HS = 128 (dO 64 rows + K, V 8 each) 43.0 KiB; dk/dv HS = 64
// 45.4 KiB, HS = 128 (32 keys, BR 8) 42.7 KiB. f32 registers (ptxas, CUDA 13,
// sm_90, no spills; 2 blocks of 4 warps per SM for forward, 4 of 2 warps for dk/dv at 32 keys):
// forward 178 / 190 / 190 / 227, dq 168 / 228 / 246 / 214, dk/dv 154 / 176 / 192 / 220 at HS =
// 64 / 80 / 96 / 128.
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

constexpr int kThreads = 128;  // 4 warps (forward, dq; dk/dv: 2 threads a key of its block)
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 16 * kWarps;  // query rows of a forward/dq block
constexpr size_t kSmemLimit = 48 * 1024;

// ----------------------------------------------------------------------------
// element types: what differs between the bf16 and the f32 (tf32) kernels

// bf16 activations: tiles of bf16 bits, mma.sync.m16n8k16 (k-steps of 16: an A operand is the
// two 16x8 accumulators side by side). The forward and dk/dv kernels are compiled for 3
// blocks of 4 warps per SM (at most 168 registers a thread; no spills at any head size with
// the tiles below); the dq kernel keeps ptxas's choice (234 registers at HS = 128; capping it
// spills).
struct Bf16Ops {
    using T = uint16_t;
    static constexpr int kK = 16;
    static constexpr int kMinBlocks = 3;
    __device__ static T round(T x) { return x; }  // a tile element from the input: as is
    __device__ static uint4 round(uint4 x) { return x; }
    __device__ static void load_a(uint32_t (&a)[4], const T* tile, int ld, int row0, int k0, const MmaLane& L) {
        ::plw::cuda::detail::load_a(a, tile, ld, row0, k0, L);
    }
    __device__ static void load_b_cols(uint32_t (&b)[2], const T* tile, int ld, int n0, int k0, const MmaLane& L) {
        ::plw::cuda::detail::load_b_cols(b, tile, ld, n0, k0, L);
    }
    __device__ static void load_b_rows(uint32_t (&b)[2], const T* tile, int ld, int k0, int n0, const MmaLane& L) {
        ::plw::cuda::detail::load_b_rows(b, tile, ld, k0, n0, L);
    }
    // k-step kk's A operand from accumulators: column tiles 2 kk, 2 kk + 1, rounded to bf16
    template <int NC>
    __device__ static void acc_to_a(uint32_t (&a)[4], const float (&c)[NC][4], int kk) {
        ::plw::cuda::detail::acc_to_a(a, c[2 * kk], c[2 * kk + 1]);
    }
    template <int N>
    __device__ static void mma(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
        mma_bf16_16816_row<N>(d, a, b);
    }
};

// f32 activations: tiles of f32 values rounded to tf32 when loaded (round: cvt.rna.tf32.f32),
// mma.sync.m16n8k8 tf32 (k-steps of 8: an A operand is one 16x8 accumulator, rounded to
// tf32). Fragments take twice the registers of bf16's (one element a register), so every
// kernel is compiled for 2 blocks per SM (at most 255 registers; none spills, see the header).
struct Tf32Ops {
    using T = float;
    static constexpr int kK = 8;
    static constexpr int kMinBlocks = 2;
    __device__ static float round(float x) { return __uint_as_float(to_tf32(x)); }
    __device__ static uint4 round(uint4 x) {
        return make_uint4(to_tf32(__uint_as_float(x.x)), to_tf32(__uint_as_float(x.y)),
                          to_tf32(__uint_as_float(x.z)), to_tf32(__uint_as_float(x.w)));
    }
    __device__ static void load_a(uint32_t (&a)[4], const T* tile, int ld, int row0, int k0, const MmaLane& L) {
        load_a_tf32(a, tile, ld, row0, k0, L);
    }
    __device__ static void load_b_cols(uint32_t (&b)[2], const T* tile, int ld, int n0, int k0, const MmaLane& L) {
        load_b_cols_tf32(b, tile, ld, n0, k0, L);
    }
    __device__ static void load_b_rows(uint32_t (&b)[2], const T* tile, int ld, int k0, int n0, const MmaLane& L) {
        load_b_rows_tf32(b, tile, ld, k0, n0, L);
    }
    template <int NC>
    __device__ static void acc_to_a(uint32_t (&a)[4], const float (&c)[NC][4], int kk) {
        acc_to_a_tf32(a, c[kk]);
    }
    template <int N>
    __device__ static void mma(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
        mma_tf32_1688_row<N>(d, a, b);
    }
};

// ----------------------------------------------------------------------------
// tile sizes and shared memory

// kFwdBc: keys per step of the forward; kDqBc: keys per step of dq; kKvBr: query rows per step
// of dk/dv. Multiples of 16 (P's and dS's k-steps); kFwdBc, kDqBc >= 32 (Q and dO are staged
// through the K and V buffers); kKvBr divides 64 (query tiles start at the key tile). Larger
// steps fit in shared memory but cost registers: kDqBc = 64 at HS = 64 took 222
// registers, kKvBr = 64 234, kFwdBc = 64 at HS = 128 225 (2 blocks per SM instead of 3).
// kKvKeys: keys of a dk/dv block (16 a warp, 2 warps at least). f32 tiles take twice the
// bytes: its K and V tiles of 64 keys alone pass 48 KiB at HS >= 80, so its dk/dv blocks hold
// 32 keys there (2 warps), and its steps are shorter.
template <int FwdBc, int DqBc, int KvBr, int KvKeys, bool DqDoInSmem = false>
struct TileSet {
    static constexpr int kFwdBc = FwdBc, kDqBc = DqBc, kKvBr = KvBr, kKvKeys = KvKeys;
    static constexpr bool kDqDoInSmem = DqDoInSmem;  // dq keeps dO in shared memory, not registers
};
template <typename Ops, int HS>
struct Tiles;
// TileSet<kFwdBc, kDqBc, kKvBr, kKvKeys[, kDqDoInSmem]> per operand type and head size:
template <> struct Tiles<Bf16Ops, 64> : TileSet<64, 32, 32, 64> {};
template <> struct Tiles<Bf16Ops, 80> : TileSet<64, 32, 32, 64> {};
template <> struct Tiles<Bf16Ops, 96> : TileSet<64, 32, 32, 64> {};
template <> struct Tiles<Bf16Ops, 128> : TileSet<32, 32, 16, 64> {};
template <> struct Tiles<Tf32Ops, 64> : TileSet<64, 32, 16, 64> {};
template <> struct Tiles<Tf32Ops, 80> : TileSet<64, 32, 16, 32> {};
template <> struct Tiles<Tf32Ops, 96> : TileSet<32, 32, 16, 32> {};
template <> struct Tiles<Tf32Ops, 128> : TileSet<32, 8, 8, 32, true> {};

// Byte offsets from the 16-byte aligned start of dynamic shared memory. bf16 tiles have rows
// of kLd = HS + 8 elements (16-byte aligned rows).
template <typename Ops, int HS, int BC>
struct FwdSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * sizeof(typename Ops::T);  // bytes of a tile row
    static constexpr size_t kK = 0;                     // (BC, kLd); Q staged over K and V
    static constexpr size_t kV = kK + BC * kTile;       // (BC, kLd)
    static constexpr size_t kSegQ = kV + BC * kTile;    // (64) int32
    static constexpr size_t kSegK = kSegQ + kRows * 4;  // (BC) int32
    static constexpr size_t kBytes = kSegK + BC * 4;
    static_assert(2 * BC >= kRows && BC % 16 == 0, "forward: Q is staged through K and V");
    static_assert(kBytes <= kSmemLimit, "forward tiles exceed 48 KiB of shared memory");
};

// DO: dO stays in shared memory (its A fragments read at every key step) instead of registers.
template <typename Ops, int HS, int BC, bool DO>
struct DqSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * sizeof(typename Ops::T);
    static constexpr size_t kDO = 0;                    // (64, kLd) if DO; Q (and dO) staged here
    static constexpr size_t kK = DO ? kRows * kTile : 0;  // (BC, kLd)
    static constexpr size_t kV = kK + BC * kTile;       // (BC, kLd)
    static constexpr size_t kD = kK + (DO || 2 * BC >= kRows ? 2 * BC : kRows) * kTile;  // (64) f32
    static constexpr size_t kSegQ = kD + kRows * 4;     // (64) int32
    static constexpr size_t kSegK = kSegQ + kRows * 4;  // (BC) int32
    static constexpr size_t kBytes = kSegK + BC * 4;
    static_assert(BC % Ops::kK == 0 && BC % 8 == 0, "dq: key steps of whole k-steps");
    static_assert(kBytes <= kSmemLimit, "dq tiles exceed 48 KiB of shared memory");
};

template <typename Ops, int HS, int BR, int KB>
struct KvSmem {
    static constexpr int kLd = HS + kMmaPad;
    static constexpr size_t kTile = static_cast<size_t>(kLd) * sizeof(typename Ops::T);
    static constexpr size_t kK = 0;                    // (KB, kLd)
    static constexpr size_t kV = kK + KB * kTile;      // (KB, kLd)
    static constexpr size_t kQ = kV + KB * kTile;      // (BR, kLd)
    static constexpr size_t kDO = kQ + BR * kTile;     // (BR, kLd)
    static constexpr size_t kLse = kDO + BR * kTile;   // (BR) f32
    static constexpr size_t kD = kLse + BR * 4;        // (BR) f32
    static constexpr size_t kSegK = kD + BR * 4;       // (KB) int32
    static constexpr size_t kSegQ = kSegK + KB * 4;    // (BR) int32
    static constexpr size_t kBytes = kSegQ + BR * 4;
    static_assert(BR % Ops::kK == 0 && KB % BR == 0 && KB % 32 == 0, "dkdv: query tiles of k-steps dividing KB");
    static_assert(kBytes <= kSmemLimit, "dkdv tiles exceed 48 KiB of shared memory");
};

// ----------------------------------------------------------------------------
// device helpers

// ROWS rows of HS elements (row stride `stride` elements, src = row 0) into a shared tile with
// rows of HS + 8, each element through Ops::round (tf32: cvt.rna once here, not at every
// fragment load); rows at or past `valid` are zeros (so that masked products stay finite).
// src is only dereferenced for valid rows. NT threads share the work.
template <typename Ops, int ROWS, int HS, int NT = kThreads>
__device__ __forceinline__ void load_tile(typename Ops::T* dst, const typename Ops::T* src, int64_t stride,
                                          int valid) {
    using T = typename Ops::T;
    constexpr int kLd = HS + kMmaPad;
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements of a 16-byte chunk
    if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && stride % kVec == 0) {
        constexpr int kChunks = HS / kVec;  // 16-byte chunks of a row
        for (int e = threadIdx.x; e < ROWS * kChunks; e += NT) {
            const int r = e / kChunks;
            const int c = e - r * kChunks;
            uint4 x = make_uint4(0u, 0u, 0u, 0u);
            if (r < valid) {
                x = Ops::round(*reinterpret_cast<const uint4*>(src + r * stride + c * kVec));
            }
            *reinterpret_cast<uint4*>(dst + r * kLd + c * kVec) = x;
        }
    } else {
        for (int e = threadIdx.x; e < ROWS * HS; e += NT) {
            const int r = e / HS;
            const int d = e - r * HS;
            dst[r * kLd + d] = r < valid ? Ops::round(src[r * stride + d]) : static_cast<T>(0);
        }
    }
}

// ROWS segment ids of batch row seg_b from t0 (0 past T or without segments: unused then).
template <int ROWS, int NT = kThreads>
__device__ __forceinline__ void load_segments(int32_t* dst, const int32_t* seg_b, int t0, int T) {
    for (int r = threadIdx.x; r < ROWS; r += NT) {
        dst[r] = seg_b != nullptr && t0 + r < T ? seg_b[t0 + r] : 0;
    }
}

// The 16 x 8N product of this warp's A rows (kSteps A fragments in registers) with the B
// operand read from a tile that stores B's columns as rows (B[k][n] = tile[n][k]: K for S,
// V for dP, Q and dO for S^T and dP^T): acc[n] = sum_ks A_ks B_ks[n], k-steps of Ops::kK in
// order.
template <typename Ops, int N, int kSteps>
__device__ __forceinline__ void product_ab_cols(float (&acc)[N][4], const uint32_t (&a)[kSteps][4],
                                                const typename Ops::T* tile, int ld, const MmaLane& ln) {
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
        uint32_t b[N][2];
#pragma unroll
        for (int n = 0; n < N; ++n) {
            Ops::load_b_cols(b[n], tile, ld, n * 8, ks * Ops::kK, ln);
        }
        Ops::template mma<N>(acc, a[ks], b);
    }
}

// acc += A B, A = this warp's 16 rows x 8 NC columns held in the accumulators `c` (k-step kk
// of Ops::kK columns is Ops::acc_to_a of them, rounded to bf16 or tf32 there), B read from a
// tile that stores B's rows as rows (B[k][n] = tile[k][n]: V, K, dO, Q along their channels):
// O += P V, dQ += dS K, dV += P^T dO, dK += dS^T Q.
template <typename Ops, int N, int NC>
__device__ __forceinline__ void product_acc_rows(float (&acc)[N][4], const float (&c)[NC][4],
                                                 const typename Ops::T* tile, int ld, const MmaLane& ln) {
    constexpr int kSteps = NC * 8 / Ops::kK;
#pragma unroll
    for (int kk = 0; kk < kSteps; ++kk) {
        uint32_t a[4];
        Ops::acc_to_a(a, c, kk);
        uint32_t b[N][2];
#pragma unroll
        for (int n = 0; n < N; ++n) {
            Ops::load_b_rows(b[n], tile, ld, kk * Ops::kK, n * 8, ln);
        }
        Ops::template mma<N>(acc, a, b);
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

template <typename Ops, int HS, int BC>
__global__ void __launch_bounds__(kThreads, Ops::kMinBlocks)
    flash_mma_forward_kernel(typename Ops::T* out,          // (B, T, NH*HS)
                             float* lse,                    // (B, NH, T)
                             const typename Ops::T* q,      // rows of q_stride
                             const typename Ops::T* k,      // rows of kv_stride
                             const typename Ops::T* v,      // rows of kv_stride
                             const int32_t* segments,       // (B, T) or null
                             int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = FwdSmem<Ops, HS, BC>;
    using Act = typename Ops::T;
    constexpr int kLd = L::kLd, KS = HS / Ops::kK, NS = BC / 8, NO = HS / 8;
    extern __shared__ __align__(16) uint8_t smem[];
    Act* sK = reinterpret_cast<Act*>(smem + L::kK);
    Act* sV = reinterpret_cast<Act*>(smem + L::kV);
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);

    const MmaLane ln = mma_lane();
    const int warp = threadIdx.x / 32;
    const int z = blockIdx.x, b = z / NH, h = z % NH, j = h / n_rep;
    const int q0 = (gridDim.y - 1 - blockIdx.y) * kRows;  // heaviest tile first
    const int w0 = q0 + warp * 16;                          // this warp's first query row
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const Act* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    // Q through shared memory (over the K and V buffers) into this warp's A fragments, once.
    load_tile<Ops, kRows, HS>(sK, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_segments<kRows>(sSegQ, seg_b, q0, T);
    __syncthreads();
    uint32_t qa[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        Ops::load_a(qa[ks], sK, kLd, warp * 16, ks * Ops::kK, ln);
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
        load_tile<Ops, BC, HS>(sK, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_tile<Ops, BC, HS>(sV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K, V loaded

        if (w0 < T && w0 + 15 >= k0) {  // else all of this warp's P is 0 in this tile
            float s[NS][4];
            zero(s);
            product_ab_cols<Ops, NS, KS>(s, qa, sK, kLd, ln);  // S = Q K^T
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
            product_acc_rows<Ops, NO, NS>(o, s, sV, kLd, ln);  // O += P V, P rounded to bf16/tf32
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
            Act* o_t = out + (row0 + t) * C + static_cast<int64_t>(h) * HS;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
                o_t[n * 8 + acc_col(ln, 2 * r)] = from_float<Act>(o[n][2 * r] * inv);
                o_t[n * 8 + acc_col(ln, 2 * r + 1)] = from_float<Act>(o[n][2 * r + 1] * inv);
            }
            if (ln.t == 0) {
                lse[static_cast<int64_t>(z) * T + t] = m[r] + logf(l[r]);
            }
        }
    }
}

template <typename Ops, int HS, int BC, bool DO>
__global__ void __launch_bounds__(kThreads)
    flash_mma_backward_dq_kernel(typename Ops::T* dq,          // rows of q_stride, accumulated
                                 float* dsum,                  // (B, NH, T) D, written
                                 const typename Ops::T* dout,  // (B, T, NH*HS)
                                 const typename Ops::T* out,   // (B, T, NH*HS)
                                 const float* lse,             // (B, NH, T)
                                 const typename Ops::T* q,     // rows of q_stride
                                 const typename Ops::T* k,     // rows of kv_stride
                                 const typename Ops::T* v,     // rows of kv_stride
                                 const int32_t* segments,      // (B, T) or null
                                 int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = DqSmem<Ops, HS, BC, DO>;
    using Act = typename Ops::T;
    constexpr int kLd = L::kLd, KS = HS / Ops::kK, NS = BC / 8, NO = HS / 8;
    static_assert(kThreads == 2 * kRows, "D: two threads a row");
    extern __shared__ __align__(16) uint8_t smem[];
    Act* sDO = reinterpret_cast<Act*>(smem + L::kDO);  // the staging area (= sK unless DO)
    Act* sK = reinterpret_cast<Act*>(smem + L::kK);
    Act* sV = reinterpret_cast<Act*>(smem + L::kV);
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
    const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
    const Act* k_j = k + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* v_j = v + row0 * kv_stride + static_cast<int64_t>(j) * HS;
    const Act* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
    const Act* out_h = out + row0 * C + static_cast<int64_t>(h) * HS;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;

    // D = rowsum(dO * out) of the block's rows: threads 2r and 2r + 1 sum the two halves of
    // row r's channels in order, then add them (one shuffle; a + b = b + a, same bits).
    {
        const int r = threadIdx.x >> 1, half = threadIdx.x & 1, t = q0 + r;
        float part = 0.0f;
        if (t < T) {
            const Act* d_t = dout_h + static_cast<int64_t>(t) * C + half * (HS / 2);
            const Act* o_t = out_h + static_cast<int64_t>(t) * C + half * (HS / 2);
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
    // Q, then dO, through shared memory into A fragments (dO stays there if DO).
    load_tile<Ops, kRows, HS>(sDO, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
    load_segments<kRows>(sSegQ, seg_b, q0, T);
    __syncthreads();
    uint32_t qa[KS][4], da[DO ? 1 : KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        Ops::load_a(qa[ks], sDO, kLd, warp * 16, ks * Ops::kK, ln);
    }
    __syncthreads();
    load_tile<Ops, kRows, HS>(sDO, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
    __syncthreads();
    if constexpr (!DO) {
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) {
            Ops::load_a(da[ks], sDO, kLd, warp * 16, ks * Ops::kK, ln);
        }
    }
    const int rows[2] = {w0 + ln.g, w0 + ln.g + 8};
    const int32_t seg_q[2] = {sSegQ[warp * 16 + ln.g], sSegQ[warp * 16 + ln.g + 8]};
    const float D[2] = {sD[warp * 16 + ln.g], sD[warp * 16 + ln.g + 8]};
    float row_lse[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_lse[r] = rows[r] < T ? lse[static_cast<int64_t>(z) * T + rows[r]] : 0.0f;
    }
    if constexpr (!DO) {
        __syncthreads();  // dO read by all before K overwrites it
    }

    float acc[NO][4];
    zero(acc);
    const int q_last = min(q0 + kRows, T) - 1;
    for (int k0 = 0; k0 <= q_last; k0 += BC) {
        load_tile<Ops, BC, HS>(sK, k_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_tile<Ops, BC, HS>(sV, v_j + static_cast<int64_t>(k0) * kv_stride, kv_stride, T - k0);
        load_segments<BC>(sSegK, seg_b, k0, T);
        __syncthreads();  // K, V loaded

        if (w0 < T && w0 + 15 >= k0) {
            float s[NS][4], dp[NS][4];
            zero(s);
            zero(dp);
            product_ab_cols<Ops, NS, KS>(s, qa, sK, kLd, ln);   // S = Q K^T
            if constexpr (DO) {  // dP = dO V^T, dO's A fragments from shared memory
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    uint32_t a[1][4];
                    Ops::load_a(a[0], sDO, kLd, warp * 16, ks * Ops::kK, ln);
                    uint32_t b[NS][2];
#pragma unroll
                    for (int n = 0; n < NS; ++n) {
                        Ops::load_b_cols(b[n], sV, kLd, n * 8, ks * Ops::kK, ln);
                    }
                    Ops::template mma<NS>(dp, a[0], b);
                }
            } else {
                product_ab_cols<Ops, NS, KS>(dp, da, sV, kLd, ln);  // dP = dO V^T
            }
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
            product_acc_rows<Ops, NO, NS>(acc, s, sK, kLd, ln);  // dQ += dS K, dS rounded to bf16/tf32
        }
        __syncthreads();  // K and V read by all before the next tile overwrites them
    }

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int t = rows[r];
        if (t < T) {
            Act* dq_t = dq + (row0 + t) * q_stride + static_cast<int64_t>(h) * HS;
#pragma unroll
            for (int n = 0; n < NO; ++n) {
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    Act& x = dq_t[n * 8 + acc_col(ln, 2 * r + e)];
                    x = from_float<Act>(to_float(x) + scale * acc[n][2 * r + e]);
                }
            }
        }
    }
}

// KB keys a block, KB / 16 warps (2 KB threads).
template <typename Ops, int HS, int BR, int KB>
__global__ void __launch_bounds__(2 * KB, Ops::kMinBlocks * kRows / KB)
    flash_mma_backward_dkdv_kernel(typename Ops::T* dk,          // rows of kv_stride, accumulated
                                   typename Ops::T* dv,          // rows of kv_stride, accumulated
                                   const typename Ops::T* dout,  // (B, T, NH*HS)
                                   const float* lse,             // (B, NH, T)
                                   const float* dsum,            // (B, NH, T) D
                                   const typename Ops::T* q,     // rows of q_stride
                                   const typename Ops::T* k,     // rows of kv_stride
                                   const typename Ops::T* v,     // rows of kv_stride
                                   const int32_t* segments,      // (B, T) or null
                                   int T, int NH, int n_rep, int q_stride, int kv_stride, float scale) {
    using L = KvSmem<Ops, HS, BR, KB>;
    using Act = typename Ops::T;
    constexpr int NT = 2 * KB;
    constexpr int kLd = L::kLd, KS = HS / Ops::kK, NQ = BR / 8, NO = HS / 8;
    extern __shared__ __align__(16) uint8_t smem[];
    Act* sK = reinterpret_cast<Act*>(smem + L::kK);
    Act* sV = reinterpret_cast<Act*>(smem + L::kV);
    Act* sQ = reinterpret_cast<Act*>(smem + L::kQ);
    Act* sDO = reinterpret_cast<Act*>(smem + L::kDO);
    float* sLse = reinterpret_cast<float*>(smem + L::kLse);
    float* sD = reinterpret_cast<float*>(smem + L::kD);
    int32_t* sSegK = reinterpret_cast<int32_t*>(smem + L::kSegK);
    int32_t* sSegQ = reinterpret_cast<int32_t*>(smem + L::kSegQ);

    const MmaLane ln = mma_lane();
    const int warp = threadIdx.x / 32;
    const int NKV = NH / n_rep;
    const int b = blockIdx.x / NKV, j = blockIdx.x % NKV;
    const int k0 = blockIdx.y * KB;     // tile 0, the heaviest, first
    const int w0 = k0 + warp * 16;      // this warp's first key
    const int C = NH * HS;
    const int64_t row0 = static_cast<int64_t>(b) * T;
    const int32_t* seg_b = segments != nullptr ? segments + row0 : nullptr;
    const int64_t kv_off = (row0 + k0) * kv_stride + static_cast<int64_t>(j) * HS;

    load_tile<Ops, KB, HS, NT>(sK, k + kv_off, kv_stride, T - k0);
    load_tile<Ops, KB, HS, NT>(sV, v + kv_off, kv_stride, T - k0);
    load_segments<KB, NT>(sSegK, seg_b, k0, T);

    // this lane's keys: rows g and g + 8 of the warp's 16 (S^T's accumulator rows)
    const int keys[2] = {w0 + ln.g, w0 + ln.g + 8};
    float acc_k[NO][4], acc_v[NO][4];
    zero(acc_k);
    zero(acc_v);
    for (int r = 0; r < n_rep; ++r) {  // the KV head's query heads, in order
        const int h = j * n_rep + r;
        const int64_t zt = (static_cast<int64_t>(b) * NH + h) * T;  // (b, h)'s lse and D
        const Act* q_h = q + row0 * q_stride + static_cast<int64_t>(h) * HS;
        const Act* dout_h = dout + row0 * C + static_cast<int64_t>(h) * HS;
        for (int q0 = k0; q0 < T; q0 += BR) {  // query tiles from the diagonal down
            load_tile<Ops, BR, HS, NT>(sQ, q_h + static_cast<int64_t>(q0) * q_stride, q_stride, T - q0);
            load_tile<Ops, BR, HS, NT>(sDO, dout_h + static_cast<int64_t>(q0) * C, C, T - q0);
            for (int e = threadIdx.x; e < BR; e += NT) {
                const bool valid = q0 + e < T;
                sLse[e] = valid ? lse[zt + q0 + e] : 0.0f;
                sD[e] = valid ? dsum[zt + q0 + e] : 0.0f;
            }
            load_segments<BR, NT>(sSegQ, seg_b, q0, T);
            __syncthreads();  // Q, dO, lse, D loaded (and, the first time, K and V)

            if (w0 < T && q0 + BR - 1 >= w0) {  // else all of this warp's P^T is 0 in this tile
                float st[NQ][4], dpt[NQ][4];
                zero(st);
                zero(dpt);
#pragma unroll
                for (int ks = 0; ks < KS; ++ks) {
                    uint32_t a[4], bq[NQ][2];
                    Ops::load_a(a, sK, kLd, warp * 16, ks * Ops::kK, ln);
#pragma unroll
                    for (int n = 0; n < NQ; ++n) {
                        Ops::load_b_cols(bq[n], sQ, kLd, n * 8, ks * Ops::kK, ln);
                    }
                    Ops::template mma<NQ>(st, a, bq);  // S^T = K Q^T
                    Ops::load_a(a, sV, kLd, warp * 16, ks * Ops::kK, ln);
#pragma unroll
                    for (int n = 0; n < NQ; ++n) {
                        Ops::load_b_cols(bq[n], sDO, kLd, n * 8, ks * Ops::kK, ln);
                    }
                    Ops::template mma<NQ>(dpt, a, bq);  // dP^T = V dO^T
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
                product_acc_rows<Ops, NO, NQ>(acc_v, st, sDO, kLd, ln);  // dV += P^T dO
                product_acc_rows<Ops, NO, NQ>(acc_k, dpt, sQ, kLd, ln);  // dK += dS^T Q
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
                    dk[i] = from_float<Act>(to_float(dk[i]) + scale * acc_k[n][2 * r + e]);
                    dv[i] = from_float<Act>(to_float(dv[i]) + acc_v[n][2 * r + e]);
                }
            }
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename Ops, int HS>
void forward_launch(typename Ops::T* out, float* lse, const typename Ops::T* q, const typename Ops::T* k,
                    const typename Ops::T* v, const int32_t* segments, int B, int T, int NH, int NKV, int q_stride,
                    int kv_stride, float scale) {
    constexpr int BC = Tiles<Ops, HS>::kFwdBc;
    const dim3 grid(B * NH, ceil_div(T, kRows));
    flash_mma_forward_kernel<Ops, HS, BC><<<grid, kThreads, FwdSmem<Ops, HS, BC>::kBytes>>>(
        out, lse, q, k, v, segments, T, NH, NH / NKV, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_forward_kernel");
}

template <typename Ops, int HS>
void backward_launch(typename Ops::T* dq, typename Ops::T* dk, typename Ops::T* dv, const typename Ops::T* dout,
                     const typename Ops::T* out, const float* lse, float* dsum, const typename Ops::T* q,
                     const typename Ops::T* k, const typename Ops::T* v, const int32_t* segments, int B, int T,
                     int NH, int NKV, int q_stride, int kv_stride, float scale) {
    constexpr int QC = Tiles<Ops, HS>::kDqBc, KR = Tiles<Ops, HS>::kKvBr, KB = Tiles<Ops, HS>::kKvKeys;
    constexpr bool DO = Tiles<Ops, HS>::kDqDoInSmem;
    const int n_rep = NH / NKV;
    // dq first: it also writes D, which the dk/dv kernel reads.
    const dim3 grid_q(B * NH, ceil_div(T, kRows));
    flash_mma_backward_dq_kernel<Ops, HS, QC, DO><<<grid_q, kThreads, DqSmem<Ops, HS, QC, DO>::kBytes>>>(
        dq, dsum, dout, out, lse, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_backward_dq_kernel");
    const dim3 grid_kv(B * NKV, ceil_div(T, KB));
    flash_mma_backward_dkdv_kernel<Ops, HS, KR, KB><<<grid_kv, 2 * KB, KvSmem<Ops, HS, KR, KB>::kBytes>>>(
        dk, dv, dout, lse, dsum, q, k, v, segments, T, NH, n_rep, q_stride, kv_stride, scale);
    PLW_CUDA_CHECK_LAUNCH("flash_mma_backward_dkdv_kernel");
}

template <typename Ops>
void forward_any(typename Ops::T* out, float* lse, const typename Ops::T* q, const typename Ops::T* k,
                 const typename Ops::T* v, const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                 int q_stride, int kv_stride, float scale) {
    detail::with_head_size(hs, "flash_attention_mma_forward", [&](auto HS) {
        forward_launch<Ops, decltype(HS)::value>(out, lse, q, k, v, segments, B, T, NH, NKV, q_stride, kv_stride,
                                                 scale);
    });
}

template <typename Ops>
void backward_any(typename Ops::T* dq, typename Ops::T* dk, typename Ops::T* dv, const typename Ops::T* dout,
                  const typename Ops::T* out, const float* lse, float* dsum, const typename Ops::T* q,
                  const typename Ops::T* k, const typename Ops::T* v, const int32_t* segments, int B, int T,
                  int NH, int NKV, int hs, int q_stride, int kv_stride, float scale) {
    detail::with_head_size(hs, "flash_attention_mma_backward", [&](auto HS) {
        backward_launch<Ops, decltype(HS)::value>(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH,
                                                  NKV, q_stride, kv_stride, scale);
    });
}

}  // namespace

void flash_attention_mma_forward(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                                 const uint16_t* v, const int32_t* segments, int B, int T, int NH,
                                 int NKV, int hs, int q_stride, int kv_stride, float scale) {
    forward_any<Bf16Ops>(out, lse, q, k, v, segments, B, T, NH, NKV, hs, q_stride, kv_stride, scale);
}

void flash_attention_mma_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                 const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                                 int kv_stride, float scale) {
    forward_any<Tf32Ops>(out, lse, q, k, v, segments, B, T, NH, NKV, hs, q_stride, kv_stride, scale);
}

void flash_attention_mma_backward(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout,
                                  const uint16_t* out, const float* lse, float* dsum,
                                  const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                  const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                                  int q_stride, int kv_stride, float scale) {
    backward_any<Bf16Ops>(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH, NKV, hs, q_stride,
                          kv_stride, scale);
}

void flash_attention_mma_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                  const float* lse, float* dsum, const float* q, const float* k, const float* v,
                                  const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                                  int kv_stride, float scale) {
    backward_any<Tf32Ops>(dq, dk, dv, dout, out, lse, dsum, q, k, v, segments, B, T, NH, NKV, hs, q_stride,
                          kv_stride, scale);
}

}  // namespace plw::cuda::detail
