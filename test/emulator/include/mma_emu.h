// The emulator's mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 and
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, and cvt.rna.tf32.f32: test/emulator/build.js
// puts this file in place of the inline-PTX section of native/cuda/mma.cuh, so the kernels
// (and mma.cuh's fragment loaders) run unchanged and only the instruction is emulated.
//
// Every lane of the warp publishes its A and B registers (emu::warp_exchange: two warp
// barriers); each lane then rebuilds the whole 16x16 A and 16x8N B tiles from the 32 lanes'
// registers by the PTX ISA's fragment table ("Matrix Fragments for mma.m16n8k16 with floating
// point type", written out below on its own, not shared with mma.cuh, so that a wrong loader
// in mma.cuh shows as wrong results) and computes its own four accumulators per 8-column tile:
//   d = c; for k = 0 .. 15: d = fma(A[row][k], B[k][col], d)        (f32, in this order)
// (bf16 x bf16 products are exact in f32, so each step rounds once, on the add).
//
// What that proves: fragment layouts, indexing, masks and the algorithm around the
// instruction. What it does not: the GPU's result bits. The PTX ISA does not specify the order
// or the intermediate rounding of the sums inside an MMA (the hardware need not add the 16
// products one IEEE step at a time, as here), so the emulator's results are not expected to
// match a GPU's bit for bit; tests compare against references with a tolerance. Only the full-warp, all-lanes form the kernels use is emulated; a warp whose lanes
// reach different collectives fails (emu.h), and mismatched tile counts fail here.
#pragma once
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "emu.h"

namespace emu {

// The PTX table, per lane l (groupID = l >> 2, threadID_in_group = l % 4) and element i of the
// fragment; element i of a bf16 fragment sits in register i / 2, low half for even i.
inline int mma_a_row(int l, int i) { return (i < 2 || (i >= 4 && i < 6)) ? (l >> 2) : (l >> 2) + 8; }
inline int mma_a_col(int l, int i) { return (l % 4) * 2 + (i & 1) + (i >= 4 ? 8 : 0); }
inline int mma_b_row(int l, int i) { return (l % 4) * 2 + (i & 1) + (i >= 2 ? 8 : 0); }
inline int mma_b_col(int l, int) { return l >> 2; }
inline int mma_c_row(int l, int i) { return (l >> 2) + (i >= 2 ? 8 : 0); }
inline int mma_c_col(int l, int i) { return (l % 4) * 2 + (i & 1); }

inline float mma_bf16_element(const uint32_t* regs, int i) {
    const uint32_t w = regs[i / 2];
    return __uint_as_float(((i & 1) ? w >> 16 : w & 0xffffu) << 16);
}

// The table above places every element of A (16x16), B (16x8) and C (16x8) exactly once.
inline bool mma_table_is_a_bijection() {
    int a[16][16] = {}, b[16][8] = {}, c[16][8] = {};
    for (int l = 0; l < 32; l++) {
        for (int i = 0; i < 8; i++) a[mma_a_row(l, i)][mma_a_col(l, i)]++;
        for (int i = 0; i < 4; i++) b[mma_b_row(l, i)][mma_b_col(l, i)]++;
        for (int i = 0; i < 4; i++) c[mma_c_row(l, i)][mma_c_col(l, i)]++;
    }
    for (int r = 0; r < 16; r++) {
        for (int k = 0; k < 16; k++)
            if (a[r][k] != 1) return false;
        for (int n = 0; n < 8; n++)
            if (b[r][n] != 1 || c[r][n] != 1) return false;
    }
    return true;
}

// What every emulated mma.sync shares: each lane publishes its 4 A registers and N x 2 B
// registers in one warp exchange; place(l, a, b, A, B) puts lane l's elements into the 16 x K A
// tile and the K x 8N B tile by the instruction's fragment table; then each lane sums its C/D
// elements (mma_c_row, mma_c_col) in f32: d = fma(A[row][k], B[k][col], d) for k = 0 .. K-1.
template <int K, int N, typename Place>
void emulate_mma(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2], Place place) {
    struct Frags {
        uint32_t n;
        uint32_t a[4];
        uint32_t b[N][2];
    };
    Frags mine;
    mine.n = N;
    std::memcpy(mine.a, a, sizeof mine.a);
    std::memcpy(mine.b, b, sizeof mine.b);
    warp_exchange(mine, [&](const std::array<Frags, 32>& all) {
        float A[16][K], B[K][8 * N];
        for (int l = 0; l < 32; l++) {
            if (all[l].n != N) fail("mma.sync: lanes of a warp with different tile counts");
            place(l, all[l].a, all[l].b, A, B);
        }
        const int lane = static_cast<int>(threadIdx.x & 31);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < 4; i++) {
                const int row = mma_c_row(lane, i), col = 8 * n + mma_c_col(lane, i);
                float acc = d[n][i];
                for (int k = 0; k < K; k++) acc = std::fma(A[row][k], B[k][col], acc);
                d[n][i] = acc;
            }
    });
}

// N mma.sync with the same A: d[n] += A B[n], as one warp exchange.
template <int N>
void mma_m16n8k16_bf16(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
    static const bool table_ok = mma_table_is_a_bijection();
    if (!table_ok) fail("mma_emu.h: the fragment table does not cover the tiles once");
    emulate_mma<16, N>(d, a, b, [](int l, const auto& ra, const auto& rb, auto& A, auto& B) {
        for (int i = 0; i < 8; i++) A[mma_a_row(l, i)][mma_a_col(l, i)] = mma_bf16_element(ra, i);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < 4; i++) B[mma_b_row(l, i)][8 * n + mma_b_col(l, i)] = mma_bf16_element(rb[n], i);
    });
}

// ---- mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 ----
// The PTX table ("Matrix Fragments for mma.m16n8k8", .tf32), one element per .b32 register:
//   A (16x8): row g for a0, a2, g + 8 for a1, a3; col t for a0, a1, t + 4 for a2, a3;
//   B (8x8): row t for b0, t + 4 for b1; col g;   C/D: as m16n8k16 (mma_c_row, mma_c_col).
inline int tf32_a_row(int l, int i) { return (l >> 2) + ((i & 1) ? 8 : 0); }
inline int tf32_a_col(int l, int i) { return (l % 4) + (i >= 2 ? 4 : 0); }
inline int tf32_b_row(int l, int i) { return (l % 4) + (i ? 4 : 0); }
inline int tf32_b_col(int l, int) { return l >> 2; }

inline bool tf32_table_is_a_bijection() {
    int a[16][8] = {}, b[8][8] = {};
    for (int l = 0; l < 32; l++) {
        for (int i = 0; i < 4; i++) a[tf32_a_row(l, i)][tf32_a_col(l, i)]++;
        for (int i = 0; i < 2; i++) b[tf32_b_row(l, i)][tf32_b_col(l, i)]++;
    }
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 8; k++)
            if (a[r][k] != 1 || (r < 8 && b[r][k] != 1)) return false;
    return true;
}

// A tf32 operand register: the f32 pattern, which must have its low 13 bits zero (a value
// cvt.rna.tf32.f32 produced). PTX leaves other bit patterns' values to the hardware, so the
// emulator refuses them: an operand that skipped the conversion fails here.
inline float tf32_element(uint32_t w) {
    if ((w & 0x1fffu) != 0) {  // (fail throws inside a lane thread, where the message may be lost: say it first)
        std::fprintf(stderr, "mma.sync tf32: operand register %08x is not tf32 (low 13 bits set): not converted\n", w);
        fail("mma.sync tf32: an operand register is not tf32 (low 13 bits set): not converted");
    }
    return __uint_as_float(w);
}

// N mma.sync m16n8k8 tf32 with the same A: d[n] += A B[n], as one warp exchange; each lane
// sums d = c; for k = 0 .. 7: d = fma(A[row][k], B[k][col], d) (f32; the tf32 x tf32 products
// are exact in f32).
template <int N>
void mma_m16n8k8_tf32(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
    static const bool table_ok = tf32_table_is_a_bijection() && mma_table_is_a_bijection();
    if (!table_ok) fail("mma_emu.h: the tf32 fragment table does not cover the tiles once");
    emulate_mma<8, N>(d, a, b, [](int l, const auto& ra, const auto& rb, auto& A, auto& B) {
        for (int i = 0; i < 4; i++) A[tf32_a_row(l, i)][tf32_a_col(l, i)] = tf32_element(ra[i]);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < 2; i++) B[tf32_b_row(l, i)][8 * n + tf32_b_col(l, i)] = tf32_element(rb[n][i]);
    });
}

// cvt.rna.tf32.f32: round to nearest, ties away from zero, to 10 fraction bits; the result is
// the f32 pattern with its low 13 bits zero. On the bits of a finite x that is adding half a
// tf32 ulp (0x1000) to the magnitude bits and clearing the low 13 (a carry out of the fraction
// raises the exponent, and past the largest tf32 it gives infinity, as rounding to nearest
// without .satfinite does); infinities and NaN are kept (the low bits of a NaN cleared, the
// quiet bit keeps it a NaN).
inline uint32_t tf32_rna_bits(float x) {
    const uint32_t w = __float_as_uint(x);
    if ((w & 0x7f800000u) == 0x7f800000u) return (w & 0x7fffffffu) > 0x7f800000u ? (w | 0x00400000u) & ~0x1fffu : w;
    return (w + 0x1000u) & ~0x1fffu;
}

}  // namespace emu

// The functions of mma.cuh's instruction section.
namespace plw::cuda::detail {

inline void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    float dd[1][4] = {{d[0], d[1], d[2], d[3]}};
    const uint32_t bb[1][2] = {{b[0], b[1]}};
    emu::mma_m16n8k16_bf16<1>(dd, a, bb);
    for (int i = 0; i < 4; i++) d[i] = dd[0][i];
}

template <int N>
void mma_bf16_16816_row(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
    emu::mma_m16n8k16_bf16<N>(d, a, b);
}

inline void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    float dd[1][4] = {{d[0], d[1], d[2], d[3]}};
    const uint32_t bb[1][2] = {{b[0], b[1]}};
    emu::mma_m16n8k8_tf32<1>(dd, a, bb);
    for (int i = 0; i < 4; i++) d[i] = dd[0][i];
}

template <int N>
void mma_tf32_1688_row(float (&d)[N][4], const uint32_t (&a)[4], const uint32_t (&b)[N][2]) {
    emu::mma_m16n8k8_tf32<N>(d, a, b);
}

inline uint32_t to_tf32(float x) { return emu::tf32_rna_bits(x); }

}  // namespace plw::cuda::detail
