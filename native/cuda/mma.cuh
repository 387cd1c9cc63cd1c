// Warp-level tensor-core products for bf16 and for f32 as tf32: the instructions
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32   D (16x8, f32) = A (16x16) B (16x8) + C
//   mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32    D (16x8, f32) = A (16x8) B (8x8) + C
//   cvt.rna.tf32.f32                                      f32 -> tf32 (nearest, ties away)
// (sm_80 and newer), and the fragment layouts around them: which lane and register of a warp
// holds which element of A, B and C/D, and the loaders that fill fragments from bf16 and f32
// tiles in shared memory.
//
// Fragment layouts, from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point
// type"). A lane l of the warp has groupID g = l >> 2 (0..7) and threadID_in_group t = l % 4
// (0..3). Registers are .b32; a bf16 pair holds its lower-numbered element in the low 16 bits
// ("elements low to high").
//   A (16x16, row-major, "row"): 4 registers, elements a0..a7 (register r holds a(2r), a(2r+1)):
//     row: g for a0, a1, a4, a5; g + 8 for a2, a3, a6, a7
//     col: 2t + (i & 1) for a0..a3; 2t + (i & 1) + 8 for a4..a7
//     so register 0 = A[g][2t..2t+1], 1 = A[g+8][2t..], 2 = A[g][2t+8..], 3 = A[g+8][2t+8..].
//   B (16x8, "col": K x N read down its columns): 2 registers, b0..b3:
//     row (k): 2t + (i & 1) for b0, b1; 2t + (i & 1) + 8 for b2, b3;  col (n): g
//     so register 0 = B[2t..2t+1][g], 1 = B[2t+8..2t+9][g].
//   C, D (16x8 f32): 4 registers c0..c3: row g for c0, c1, g + 8 for c2, c3; col 2t + (i & 1).
// tf32, from the PTX ISA ("Matrix Fragments for mma.m16n8k8", .tf32): one element a .b32
// register (the f32 bit pattern of a tf32 value, low 13 bits zero):
//   A (16x8): a0 = A[g][t], a1 = A[g+8][t], a2 = A[g][t+4], a3 = A[g+8][t+4];
//   B (8x8): b0 = B[t][g], b1 = B[t+4][g];  C, D: as above.
// An accumulator holds columns 2t, 2t + 1 of rows g, g + 8, not A's t, t + 4, so it is not an
// A fragment as it stands. The products only need A's column k and B's row k to meet in the
// same k-slot, and the sum over k does not care about the order, so the tf32 loaders place
// the physical k pair (2t, 2t + 1) in the k-slots (t, t + 4) of both operands: A registers
// A[g][2t], A[g+8][2t], A[g][2t+1], A[g+8][2t+1], B registers B[2t][g], B[2t+1][g]. Then an
// accumulator is an A fragment after a register swap (acc_to_a_tf32), a pair is one 64-bit
// load, and the instruction sums k in the order 0, 2, 4, 6, 1, 3, 5, 7 (to the extent its
// order is defined at all). Every tf32 operand goes through to_tf32 (cvt.rna.tf32.f32) first,
// so that its value is the rounded one, not whatever the hardware makes of low mantissa bits.
// Two accumulators side by side (columns 0..7 and 8..15 of a 16x16 block) hold, element for
// element, the A fragment of that block: C's registers (c0, c1) of the left tile are A's
// register 0, (c2, c3) register 1, the right tile's registers 2 and 3. So a product S = Q K^T
// becomes the A operand of the next product (P V) without going through memory.
//
// Loading fragments: plain 32-bit (or 2 x 16-bit) shared-memory loads by the layout above, no
// ldmatrix. A pair of consecutive k (A's registers, and B's when the tile stores B's columns
// contiguously: B[k][n] = tile[n][k]) is one aligned 32-bit load; where the tile stores B's
// rows contiguously (B[k][n] = tile[k][n], e.g. V in P V) a register takes two 16-bit loads.
// Chosen for a first version because it is what the host emulator (test/emulator) runs as is:
// the loaders are ordinary C++ there, and only the mma instruction itself is emulated, so the
// emulator checks these loaders against its own, independently written reading of the layout
// table. ldmatrix (.x4 for A, .x2/.trans for B) would save instructions and bank traffic and
// is the next step; it would need its own emulation (a warp-wide exchange per load).
//
// Tiles in shared memory are bf16 (uint16_t bits) with a row stride of (cols + 8) elements: 16
// bytes of padding put consecutive rows 4 banks apart (or 12, 20 for 80 and 96 columns), so
// that the 8 rows x 4 words a fragment load touches fall into 32 different banks. f32 tiles
// have rows of (cols + 8) floats too: the 64-bit pair loads (A, B from column rows) are
// conflict-free (each half-warp's 4 rows 8 banks apart), the 32-bit loads of B from rows
// (rows 2t, 2t + 1) are 2-way conflicted (a pad of 4 would fix those and conflict the pairs).
//
// The mma.sync instruction needs sm_80; CMakeLists.txt builds 80-real and newer only, and the
// runtime refuses older devices (runtime.cu), so an older target is a compile-time error here.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "native/cuda/mma.cuh: mma.sync.m16n8k16 (bf16) and m16n8k8 (tf32) need sm_80 or newer"
#endif

// emulator-replace-begin: mma_emu.h
// (test/emulator/build.js replaces this section, the inline PTX, by test/emulator/include/mma_emu.h:
// the same functions computed by the emulated warp, and the conversion on the bits.)
namespace plw::cuda::detail {

// d += a b for one 16x8x16 tile: a = this lane's 4 A registers, b its 2 B registers, d its 4
// accumulators (f32). Every lane of the warp must call it together (mma.sync.aligned).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    static_assert(sizeof(float) == 4 && sizeof(uint32_t) == 4, "32-bit registers");
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// d[n] += a b[n] for n < N: one 16-row A block against N 8-column B tiles (a 16 x 8N product
// over one k-step of 16), N instructions. The unit the kernels work in; the emulator runs it
// as one warp exchange instead of N.
template <int N>
__device__ __forceinline__ void mma_bf16_16816_row(float (&d)[N][4], const uint32_t (&a)[4],
                                                    const uint32_t (&b)[N][2]) {
#pragma unroll
    for (int n = 0; n < N; ++n) {
        mma_bf16_16816(d[n], a, b[n]);
    }
}

// d += a b for one 16x8x8 tile with tf32 operands: a = this lane's 4 A registers, b its 2 B
// registers (tf32 bits, as to_tf32 gives them), d its 4 accumulators (f32).
__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// d[n] += a b[n] for n < N: the tf32 row form (one k-step of 8), as mma_bf16_16816_row.
template <int N>
__device__ __forceinline__ void mma_tf32_1688_row(float (&d)[N][4], const uint32_t (&a)[4],
                                                   const uint32_t (&b)[N][2]) {
#pragma unroll
    for (int n = 0; n < N; ++n) {
        mma_tf32_1688(d[n], a, b[n]);
    }
}

// x rounded to tf32 (cvt.rna.tf32.f32: to nearest, ties away from zero), as .b32 bits: the f32
// pattern with its low 13 bits zero. What every tf32 operand goes through.
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

}  // namespace plw::cuda::detail
// emulator-replace-end

namespace plw::cuda::detail {

constexpr int kMmaPad = 8;  // bf16 elements of padding after each row of a shared tile

// This lane's place in the fragments: g = groupID (rows g and g + 8 of A, C, D; column g of
// B), t = threadID_in_group (columns 2t, 2t + 1 and 2t + 8, 2t + 9 of A; rows of B alike).
struct MmaLane {
    int g, t;
};
__device__ __forceinline__ MmaLane mma_lane() {
    const int lane = static_cast<int>(threadIdx.x) & 31;
    return {lane >> 2, lane & 3};
}
// Row (0..15) and column (0..7) of accumulator register i (0..3) of this lane.
__device__ __forceinline__ int acc_row(const MmaLane& L, int i) { return L.g + ((i >> 1) << 3); }
__device__ __forceinline__ int acc_col(const MmaLane& L, int i) { return 2 * L.t + (i & 1); }

// Two bf16 bits into one register, lo in the low half.
__device__ __forceinline__ uint32_t bf16_pair(uint16_t lo, uint16_t hi) {
    return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}
// Two floats rounded to bf16 (nearest even, as f32_to_bf16) into one register.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    return bf16_pair(__bfloat16_as_ushort(__float2bfloat16_rn(lo)), __bfloat16_as_ushort(__float2bfloat16_rn(hi)));
}
__device__ __forceinline__ uint32_t load_pair(const uint16_t* p) {  // p 4-byte aligned
    return *reinterpret_cast<const uint32_t*>(p);
}

// A fragment of the 16x16 block at (row0, k0) of a row-major tile (rows of ld elements):
// A[r][c] = tile[(row0 + r) * ld + k0 + c]. ld and k0 even, tile 4-byte aligned.
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const uint16_t* tile, int ld, int row0, int k0,
                                       const MmaLane& L) {
    const uint16_t* p = tile + (row0 + L.g) * ld + k0 + 2 * L.t;
    a[0] = load_pair(p);
    a[1] = load_pair(p + 8 * ld);
    a[2] = load_pair(p + 8);
    a[3] = load_pair(p + 8 * ld + 8);
}

// B fragment (16 x 8) from a tile that holds B's columns as its rows: B[k][n] =
// tile[(n0 + n) * ld + k0 + k] (the K tile in S = Q K^T: B = K^T). 32-bit loads.
__device__ __forceinline__ void load_b_cols(uint32_t (&b)[2], const uint16_t* tile, int ld, int n0, int k0,
                                            const MmaLane& L) {
    const uint16_t* p = tile + (n0 + L.g) * ld + k0 + 2 * L.t;
    b[0] = load_pair(p);
    b[1] = load_pair(p + 8);
}

// B fragment (16 x 8) from a tile that holds B's rows as its rows: B[k][n] =
// tile[(k0 + k) * ld + n0 + n] (V in O = P V). Two 16-bit loads per register.
__device__ __forceinline__ void load_b_rows(uint32_t (&b)[2], const uint16_t* tile, int ld, int k0, int n0,
                                            const MmaLane& L) {
    const uint16_t* p = tile + (k0 + 2 * L.t) * ld + n0 + L.g;
    b[0] = bf16_pair(p[0], p[ld]);
    b[1] = bf16_pair(p[8 * ld], p[9 * ld]);
}

// The A fragment of a 16x16 block from the two accumulators that hold its left (columns 0..7)
// and right (8..15) halves, rounded to bf16: P = exp(S - m) feeding O += P V.
__device__ __forceinline__ void acc_to_a(uint32_t (&a)[4], const float (&left)[4], const float (&right)[4]) {
    a[0] = pack_bf16x2(left[0], left[1]);
    a[1] = pack_bf16x2(left[2], left[3]);
    a[2] = pack_bf16x2(right[0], right[1]);
    a[3] = pack_bf16x2(right[2], right[3]);
}

// ---- tf32 (f32 tiles, mma_tf32_1688) ----
// Tiles are float with rows of (cols + 8) floats, holding values already rounded to tf32
// (to_tf32 when the tile was filled), so a fragment register is the float's bits. Each lane's
// two k of a register pair are the consecutive columns 2t, 2t + 1, not the PTX table's t and
// t + 4 (see the header): one 64-bit load for A and for B from column rows.

// A fragment of the 16x8 block at (row0, k0): register 0 = A[g][2t], 1 = A[g+8][2t],
// 2 = A[g][2t+1], 3 = A[g+8][2t+1] (physical columns; k-slots t and t + 4 of the PTX table).
// ld and k0 even, tile 8-byte aligned.
__device__ __forceinline__ void load_a_tf32(uint32_t (&a)[4], const float* tile, int ld, int row0, int k0,
                                            const MmaLane& L) {
    const float* p = tile + (row0 + L.g) * ld + k0 + 2 * L.t;
    const float2 x = *reinterpret_cast<const float2*>(p);
    const float2 y = *reinterpret_cast<const float2*>(p + 8 * ld);
    a[0] = __float_as_uint(x.x);
    a[1] = __float_as_uint(y.x);
    a[2] = __float_as_uint(x.y);
    a[3] = __float_as_uint(y.y);
}

// B fragment (8 x 8) from a tile that holds B's columns as its rows: B[k][n] =
// tile[(n0 + n) * ld + k0 + k]; register 0 = B[2t][g], 1 = B[2t+1][g]. One 64-bit load.
__device__ __forceinline__ void load_b_cols_tf32(uint32_t (&b)[2], const float* tile, int ld, int n0, int k0,
                                                 const MmaLane& L) {
    const float2 x = *reinterpret_cast<const float2*>(tile + (n0 + L.g) * ld + k0 + 2 * L.t);
    b[0] = __float_as_uint(x.x);
    b[1] = __float_as_uint(x.y);
}

// B fragment (8 x 8) from a tile that holds B's rows as its rows: B[k][n] =
// tile[(k0 + k) * ld + n0 + n]; register 0 = B[2t][g], 1 = B[2t+1][g]. Two 32-bit loads.
__device__ __forceinline__ void load_b_rows_tf32(uint32_t (&b)[2], const float* tile, int ld, int k0, int n0,
                                                 const MmaLane& L) {
    const float* p = tile + (k0 + 2 * L.t) * ld + n0 + L.g;
    b[0] = __float_as_uint(p[0]);
    b[1] = __float_as_uint(p[ld]);
}

// The A fragment of a 16x8 block from the accumulator that holds it, rounded to tf32: the
// accumulator's registers are A[g][2t], A[g][2t+1], A[g+8][2t], A[g+8][2t+1], i.e. the A
// registers 0, 2, 1, 3 of the layout above.
__device__ __forceinline__ void acc_to_a_tf32(uint32_t (&a)[4], const float (&c)[4]) {
    a[0] = to_tf32(c[0]);
    a[1] = to_tf32(c[2]);
    a[2] = to_tf32(c[1]);
    a[3] = to_tf32(c[3]);
}

// Reductions over the 4 lanes of a quad (the lanes that share a row of C: same g): every lane
// gets the result, combined in the same order (xor 1, then xor 2). x and y are two rows (g and
// g + 8), shuffled as one 64-bit value.
__device__ __forceinline__ unsigned long long pack_floats(float x, float y) {
    return static_cast<unsigned long long>(__float_as_uint(x)) |
           (static_cast<unsigned long long>(__float_as_uint(y)) << 32);
}
__device__ __forceinline__ void quad_max2(float& x, float& y) {
#pragma unroll
    for (int mask = 1; mask <= 2; mask <<= 1) {
        const unsigned long long o = __shfl_xor_sync(0xffffffffu, pack_floats(x, y), mask);
        x = fmaxf(x, __uint_as_float(static_cast<uint32_t>(o)));
        y = fmaxf(y, __uint_as_float(static_cast<uint32_t>(o >> 32)));
    }
}
__device__ __forceinline__ void quad_sum2(float& x, float& y) {
#pragma unroll
    for (int mask = 1; mask <= 2; mask <<= 1) {
        const unsigned long long o = __shfl_xor_sync(0xffffffffu, pack_floats(x, y), mask);
        x += __uint_as_float(static_cast<uint32_t>(o));  // a + b = b + a: the same bits in both lanes
        y += __uint_as_float(static_cast<uint32_t>(o >> 32));
    }
}

}  // namespace plw::cuda::detail
