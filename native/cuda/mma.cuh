// Warp-level tensor-core products for bf16: the instruction
//   mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32   D (16x8, f32) = A (16x16) B (16x8) + C
// (sm_80 and newer), and the fragment layouts around it: which lane and register of a warp
// holds which element of A, B and C/D, and the loaders that fill fragments from bf16 tiles in
// shared memory.
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
// that the 8 rows x 4 words a fragment load touches fall into 32 different banks.
//
// The mma.sync instruction needs sm_80; CMakeLists.txt builds 80-real and newer only, and the
// runtime refuses older devices (runtime.cu), so an older target is a compile-time error here.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "native/cuda/mma.cuh: mma.sync.m16n8k16 with bf16 operands needs sm_80 or newer"
#endif

// emulator-replace-begin: mma_emu.h
// (test/emulator/build.js replaces this section, the inline PTX, by test/emulator/include/mma_emu.h:
// the same two functions computed by the emulated warp.)
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
