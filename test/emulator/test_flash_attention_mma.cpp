// The tensor-core (mma.sync) fused attention, native/cuda/flash_attention_mma.cu, which
// flash_attention.h's functions run by default (the emulator reports compute capability 9.0),
// in the emulator; bf16 below, and f32 on the TF32 kernels (groups tf32_layout, tf32: see
// test_tf32_convert, test_layout_tf32 and test_mma_f32 for their checks and tolerances):
//   - layout: mma.cuh's fragment loaders (A row-major; B from column rows and from rows), the
//     accumulator-to-A reuse, and the emulated instruction (mma_emu.h: the PTX fragment table
//     written out on its own) on one warp, against the same products summed on the CPU in the
//     emulator's order: bit for bit;
//   - attention: bf16 forward (out, lse) and backward (dq, dk, dv accumulated into random
//     values, and from zero) against the unfused CPU op (native/cpu/attention.h), the CPU
//     flash twin (native/cpu/flash_attention.h) and a float64 lse; head sizes 64, 80, 96, 128;
//     T = 1, 17, 23, 33, 37, 45, 50, 64, 70, 80, 100 (odd, a partial last tile of 64 rows,
//     whole tiles, two query tiles); B = 1, 2; no segments, one explicit segment (its bits
//     must equal none), packed segments, padding with its own id and with the last one;
//     n_rep 1, 2, 7; GPT-2's fused rows and separate buffers with odd row padding (bf16 rows
//     only 2-byte aligned: the element-wise tile loads) and without (the 16-byte loads); row
//     padding and the bytes around every output untouched; scratch within
//     flash_attention_scratch_bytes; a second forward and backward give the same bits.
// Planted bugs that fail it (each tried once, then removed): registers 1 and 2 swapped in
// load_a, and in acc_to_a; B's rows 8 and 9 swapped in load_b_rows (the three also fail the
// attention checks alone); the forward mask t2 <= t + 1; the dk/dv mask off by one at one row;
// dk/dv summing only the first query head of a KV head (GQA); dk/dv starting one query tile
// below the diagonal; half of O not rescaled; the warp skip dropping a warp whose last row is
// past T; the barrier after the forward's K/V load; the barrier at the end of a dk/dv query
// tile.
// Planted tf32 bugs that fail it (each tried once, then removed): A registers 1 and 2 swapped in
// load_a_tf32 (layout and attention); B's two rows swapped in load_b_rows_tf32 (both); the
// tile conversion left out (Tf32Ops::round: the emulator refuses the unconverted operand);
// P's conversion left out in acc_to_a_tf32 (refused likewise); the f32 forward's mask
// t2 <= t + 1 (attention).
// Tolerances, derived (u = 2^-8, one bf16 rounding to nearest; to first order in u; the CPU
// references are f32 on the same bf16 inputs). The kernels keep scores, softmax statistics,
// D and every sum in f32 and round to bf16 (1) P before O = P V and dV = P^T dO, (2) dS before
// dQ = dS K and dK = dS^T Q, (3) the outputs:
//   lse: f32 only: lse_bound (flash_attention_reference.h), as the SIMT kernels.
//   out = sum_t2 round(P) v / l with l the f32 sum: |err| <= u sum att |v| = u m_out, then the
//     rounding of out, u |out|; f32 noise e_out = 1e-5 |out| + 2e-6 m_out.
//   dv = sum_t round(P) dout: u sum att |dout| (= m_dq of dv, summed over the query heads);
//   dq = scale sum_t2 round(dS) k: u scale sum |dS| |k| <= u m_dq (m_dq bounds |dS| by
//     M_dS = att (2 |dP - D| + sum att |dP|), as test_attention.cpp); dk alike with q;
//   D from the stored bf16 out: u m_D (as the SIMT bf16 bound); f32 noise: grad_noise;
//   then one rounding of dqkv0 + increment: u |dqkv0 + inc|.
// These are the unfused path's bounds (test_attention.cpp), which rounds att and dS alike.
// Each u term has a margin of 1.25. The worst err / bound is printed at the end.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "emu.h"
#include "flash_attention_reference.h"
// the emulator's copy of mma.cuh (build/emulator/src: its PTX section replaced by mma_emu.h),
// whose #pragma unroll g++ does not know
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunknown-pragmas"
#include "native/cuda/mma.cuh"
#pragma GCC diagnostic pop

namespace {

using namespace flash_test;
using plw::bf16;

// ---------------------------------------------------------------- layout
// One warp computes, with mma.cuh's loaders and the (emulated) instruction:
//   D1 = C + A B (B read from Bc, a tile holding B's columns as rows), N = 3 column tiles;
//   D2 = C + A B (the same B read from Br, a tile holding B's rows), 16-bit loads;
//   D3 = round(D1[:, 0:16]) B[0:16 rows, 0:8] (accumulators 0 and 1 reused as an A operand);
//   D4 = C[:, 0:8] + A B[:, 0:8] by the single-instruction wrapper.
// The reference sums k = 0..15 in order with fma in f32, as the emulator does: equal bits.
constexpr int kN = 3, kLdA = 16 + 8, kLdBr = 8 * kN + 8;

void layout_kernel(float* d1, float* d2, float* d3, float* d4, const uint16_t* A, const uint16_t* Bc,
                   const uint16_t* Br, const float* C) {
    using namespace plw::cuda::detail;
    const MmaLane ln = mma_lane();
    uint32_t a[4], bc[kN][2], br[kN][2];
    load_a(a, A, kLdA, 0, 0, ln);
    float acc1[kN][4], acc2[kN][4], acc3[1][4] = {{0, 0, 0, 0}}, acc4[4];
    for (int n = 0; n < kN; n++) {
        load_b_cols(bc[n], Bc, kLdA, n * 8, 0, ln);
        load_b_rows(br[n], Br, kLdBr, 0, n * 8, ln);
        for (int i = 0; i < 4; i++) acc1[n][i] = acc2[n][i] = C[acc_row(ln, i) * 8 * kN + n * 8 + acc_col(ln, i)];
    }
    for (int i = 0; i < 4; i++) acc4[i] = acc1[0][i];
    mma_bf16_16816_row<kN>(acc1, a, bc);
    mma_bf16_16816_row<kN>(acc2, a, br);
    uint32_t e[4];
    acc_to_a(e, acc1[0], acc1[1]);
    const uint32_t b0[1][2] = {{bc[0][0], bc[0][1]}};
    mma_bf16_16816_row<1>(acc3, e, b0);
    mma_bf16_16816(acc4, a, bc[0]);
    for (int n = 0; n < kN; n++)
        for (int i = 0; i < 4; i++) {
            const int idx = acc_row(ln, i) * 8 * kN + n * 8 + acc_col(ln, i);
            d1[idx] = acc1[n][i];
            d2[idx] = acc2[n][i];
            if (n == 0) {
                d3[idx] = acc3[0][i];
                d4[idx] = acc4[i];
            }
        }
}

// The four results of a layout kernel against the f32 fma chain over k in `order` (the order the
// emulator visits the physical k): a (16, K) and b (K, W) row-major, c (16, W); D3 is checked
// against round(D1[:, 0:K]) b[:, 0:8], the accumulators reused as an A operand.
template <typename Round>
void check_layout(const char* what, int K, const int* order, const std::vector<float>& a, const std::vector<float>& b,
                  const std::vector<float>& c, const std::vector<float>& d1, const std::vector<float>& d2,
                  const std::vector<float>& d3, const std::vector<float>& d4, Round round) {
    const int W = 8 * kN;
    auto product = [&](auto&& lhs, int r, int col, float init) {
        float acc = init;
        for (int j = 0; j < K; j++) acc = std::fma(lhs(r, order[j]), b[order[j] * W + col], acc);
        return acc;
    };
    size_t bad1 = 0, bad2 = 0, bad3 = 0, bad4 = 0;
    for (int r = 0; r < 16; r++)
        for (int col = 0; col < W; col++) {
            const float ref = product([&](int i, int k) { return a[i * K + k]; }, r, col, c[r * W + col]);
            bad1 += std::memcmp(&ref, &d1[r * W + col], 4) != 0;
            bad2 += std::memcmp(&ref, &d2[r * W + col], 4) != 0;
            if (col < 8) {
                bad4 += std::memcmp(&ref, &d4[r * W + col], 4) != 0;
                const float ref3 = product([&](int i, int k) { return round(d1[i * W + k]); }, r, col, 0.f);
                bad3 += std::memcmp(&ref3, &d3[r * W + col], 4) != 0;
            }
        }
    EXPECT(bad1 == 0, "%s layout: A x B from column rows: %zu of %d elements differ", what, bad1, 16 * W);
    EXPECT(bad2 == 0, "%s layout: A x B from rows: %zu of %d elements differ", what, bad2, 16 * W);
    EXPECT(bad3 == 0, "%s layout: accumulators reused as A: %zu of 128 elements differ", what, bad3);
    EXPECT(bad4 == 0, "%s layout: single mma: %zu of 128 elements differ", what, bad4);
    std::printf("%s layout done\n", what);
}

void test_layout() {
    const int W = 8 * kN;
    std::vector<float> a(16 * 16), bm(16 * W), c(16 * W);
    std::vector<uint16_t> A(16 * kLdA, 0xffff), Bc(W * kLdA, 0xffff), Br(16 * kLdBr, 0xffff);
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 16; k++) {
            a[r * 16 + k] = test::round_bf16(std::normal_distribution<float>(0.f, 1.f)(test::rng));
            A[r * kLdA + k] = plw::f32_to_bf16(a[r * 16 + k]).bits;
        }
    for (int k = 0; k < 16; k++)
        for (int n = 0; n < W; n++) {
            bm[k * W + n] = test::round_bf16(std::normal_distribution<float>(0.f, 1.f)(test::rng));
            Bc[n * kLdA + k] = Br[k * kLdBr + n] = plw::f32_to_bf16(bm[k * W + n]).bits;
        }
    test::fill(c.data(), c.size(), 1.f);
    std::vector<float> d1(16 * W, NAN), d2(16 * W, NAN), d3(16 * W, NAN), d4(16 * W, NAN);
    emu::launch(layout_kernel, dim3(1), dim3(32), 0, d1.data(), d2.data(), d3.data(), d4.data(), A.data(),
                Bc.data(), Br.data(), c.data());
    const int order[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    check_layout("bf16", 16, order, a, bm, c, d1, d2, d3, d4, test::round_bf16);
}

// ---------------------------------------------------------------- tf32
// cvt.rna.tf32.f32 as the emulator computes it (mma_emu.h: integer ops on the bits) against an
// independent reading of its definition in double: round to the nearest multiple of the tf32
// quantum (11 significant bits at x's binade, 2^-136 in the subnormals), ties away from zero;
// past the largest finite tf32, infinity. Edge cases (ties both signs, carries into the
// exponent, the largest values, subnormals, zeros, infinities) and random values, every bit.
float tf32_reference(float x) {
    if (!std::isfinite(x) || x == 0) return x;
    int e;
    std::frexp(double(x), &e);                                   // |x| in [2^(e-1), 2^e)
    const double q = std::ldexp(1.0, std::max(e - 11, -136));    // the quantum at x
    const double r = std::round(double(x) / q) * q;              // std::round: ties away from zero
    if (std::fabs(r) >= std::ldexp(1.0, 128)) return std::copysign(INFINITY, x);
    return float(r);
}

void test_tf32_convert() {
    std::vector<uint32_t> bits = {0x3f800000u, 0x3f801000u, 0xbf801000u, 0x3f803000u, 0x3f800fffu, 0x3f7ff000u,
                                  0xbf7ff000u, 0x3f7fefffu, 0x7f7fffffu, 0x7f7ff000u, 0x7f7fefffu, 0xff7ff000u,
                                  0x00000001u, 0x00001000u, 0x00001001u, 0x80001000u, 0x007ff000u, 0x007fffffu,
                                  0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x00800000u, 0x34001000u};
    for (int i = 0; i < 200000; i++) bits.push_back(uint32_t(test::rng()));
    size_t bad = 0, nan_bad = 0;
    for (uint32_t w : bits) {
        const float x = __uint_as_float(w);
        const uint32_t got = plw::cuda::detail::to_tf32(x);
        if (std::isnan(x)) {  // a NaN stays a NaN (the low bits cleared)
            nan_bad += !std::isnan(__uint_as_float(got)) || (got & 0x1fffu) != 0;
            continue;
        }
        const float ref = tf32_reference(x);
        if (got != __float_as_uint(ref)) {
            if (bad++ < 5) std::printf("  to_tf32(%08x) = %08x, expected %08x\n", w, got, __float_as_uint(ref));
        }
    }
    EXPECT(bad == 0 && nan_bad == 0, "tf32: %zu of %zu conversions differ from round-to-nearest-away (%zu NaN)", bad,
           bits.size(), nan_bad);
    std::printf("tf32 conversion done\n");
}

// The layout of mma.cuh's tf32 loaders on one warp, as test_layout for bf16:
//   D1 = C + A B (B from Bc, a tile holding B's columns as rows), N = 3 column tiles;
//   D2 = C + A B (the same B from Br, a tile holding B's rows);
//   D3 = tf32(D1[:, 0:8]) B[0:8, 0:8] (accumulator tile 0 reused as an A operand);
//   D4 = C[:, 0:8] + A B[:, 0:8] by the single-instruction wrapper.
// The loaders give a lane the physical k pair (2t, 2t + 1) as the PTX table's k-slots t and
// t + 4, so the emulator's fma chain over k-slots 0..7 visits the physical k in the order
// 0, 2, 4, 6, 1, 3, 5, 7; the reference sums in that order: equal bits.
constexpr int kLdT = 8 + 8, kLdTr = 8 * kN + 8;
const int kTf32Order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

void layout_tf32_kernel(float* d1, float* d2, float* d3, float* d4, const float* A, const float* Bc,
                        const float* Br, const float* C) {
    using namespace plw::cuda::detail;
    const MmaLane ln = mma_lane();
    uint32_t a[4], bc[kN][2], br[kN][2];
    load_a_tf32(a, A, kLdT, 0, 0, ln);
    float acc1[kN][4], acc2[kN][4], acc3[1][4] = {{0, 0, 0, 0}}, acc4[4];
    for (int n = 0; n < kN; n++) {
        load_b_cols_tf32(bc[n], Bc, kLdT, n * 8, 0, ln);
        load_b_rows_tf32(br[n], Br, kLdTr, 0, n * 8, ln);
        for (int i = 0; i < 4; i++) acc1[n][i] = acc2[n][i] = C[acc_row(ln, i) * 8 * kN + n * 8 + acc_col(ln, i)];
    }
    for (int i = 0; i < 4; i++) acc4[i] = acc1[0][i];
    mma_tf32_1688_row<kN>(acc1, a, bc);
    mma_tf32_1688_row<kN>(acc2, a, br);
    uint32_t e[4];
    acc_to_a_tf32(e, acc1[0]);
    const uint32_t b0[1][2] = {{bc[0][0], bc[0][1]}};
    mma_tf32_1688_row<1>(acc3, e, b0);
    mma_tf32_1688(acc4, a, bc[0]);
    for (int n = 0; n < kN; n++)
        for (int i = 0; i < 4; i++) {
            const int idx = acc_row(ln, i) * 8 * kN + n * 8 + acc_col(ln, i);
            d1[idx] = acc1[n][i];
            d2[idx] = acc2[n][i];
            if (n == 0) {
                d3[idx] = acc3[0][i];
                d4[idx] = acc4[i];
            }
        }
}

void test_layout_tf32() {
    const int W = 8 * kN;
    std::vector<float> a(16 * 8), bm(8 * W), c(16 * W);
    std::vector<float> A(16 * kLdT, NAN), Bc(W * kLdT, NAN), Br(8 * kLdTr, NAN);
    auto tf32 = [](float x) { return tf32_reference(x); };
    for (int r = 0; r < 16; r++)
        for (int k = 0; k < 8; k++) A[r * kLdT + k] = a[r * 8 + k] = tf32(std::normal_distribution<float>(0.f, 1.f)(test::rng));
    for (int k = 0; k < 8; k++)
        for (int n = 0; n < W; n++)
            Bc[n * kLdT + k] = Br[k * kLdTr + n] = bm[k * W + n] =
                tf32(std::normal_distribution<float>(0.f, 1.f)(test::rng));
    test::fill(c.data(), c.size(), 1.f);
    std::vector<float> d1(16 * W, NAN), d2(16 * W, NAN), d3(16 * W, NAN), d4(16 * W, NAN);
    emu::launch(layout_tf32_kernel, dim3(1), dim3(32), 0, d1.data(), d2.data(), d3.data(), d4.data(), A.data(),
                Bc.data(), Br.data(), c.data());
    check_layout("tf32", 8, kTf32Order, a, bm, c, d1, d2, d3, d4, tf32);
}

// ---------------------------------------------------------------- attention

void test_mma(const Shape& s, int seg_mode, int off) {
    std::vector<float> qkv(s.nqkv()), dout(s.nout()), dqkv0(s.nqkv());
    std::vector<bf16> qkv_b(s.nqkv()), dout_b(s.nout()), dqkv0_b(s.nqkv());
    test::fill_bf16(qkv.data(), qkv_b.data(), qkv.size(), 1.5f);
    test::fill_bf16(dout.data(), dout_b.data(), dout.size(), 1.f);
    test::fill_bf16(dqkv0.data(), dqkv0_b.data(), dqkv0.size(), 1.f);
    const auto seg = make_segments(s.B, s.T, seg_mode);
    const int32_t* segp = seg_mode == 0 ? nullptr : seg.data();
    const std::vector<int> nacc = s.accumulations();
    const Reference R = reference(s, qkv, dout, dqkv0, segp);

    Buf<bf16> qkv_g(s.nqkv(), off), out_g(s.nout(), off), dout_g(s.nout(), off), dqkv_g(s.nqkv(), off);
    Buf<float> lse_g(s.nlse(), 0);
    std::copy(qkv_b.begin(), qkv_b.end(), qkv_g.p);
    std::copy(dout_b.begin(), dout_b.end(), dout_g.p);
    emu::scratch_peak = 0;
    gpu_forward(s, out_g.p, lse_g.p, qkv_g.p, segp);  // out_g, lse_g start as NaN: must be overwritten
    EXPECT(emu::scratch_peak == 0, "forward took %zu bytes of scratch", emu::scratch_peak);
    check_lse("mma", s, R, lse_g.p);

    std::vector<double> g, r, f, tol;
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(b2f(out_g[i])); r.push_back(R.out[i]); f.push_back(R.fout[i]);
        const double e = 1e-5 * std::fabs(R.out[i]) + 2e-6 * R.m_out[i];
        tol.push_back(1.25 * kU * (R.m_out[i] + std::fabs(R.out[i]) + e) + e + 1e-30);
    }
    note(check("mma out", g, r, tol));
    note(check("mma out vs cpu flash", g, f, tol));

    // |err| bound of dqkv0 + increment (dqkv0 = 0: the increment alone); c_F as grad_noise
    auto dq_tol = [&](size_t i, double d0, double ref_inc, double c_F) {
        const double e = grad_noise(R, i, nacc[i], d0, ref_inc, c_F) + 1.25 * kU * (R.m_D[i] + R.m_dq[i]);
        return e + 1.25 * kU * (std::fabs(d0 + ref_inc) + e);
    };
    // backward from the kernels' own out and lse, into random dqkv0
    std::copy(dqkv0_b.begin(), dqkv0_b.end(), dqkv_g.p);
    emu::scratch_peak = 0;
    gpu_backward(s, dqkv_g.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak <= plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs),
           "backward scratch %zu > flash_attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs));
    check_padding("mma backward", s, nacc, dqkv_g.p, dqkv0_b.data());
    check_bounds("mma out", out_g);
    check_bounds("mma lse", lse_g);
    check_bounds("mma dqkv", dqkv_g);
    g.clear(); r.clear(); f.clear(); tol.clear();
    std::vector<double> tol_f;
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {  // row padding (checked bit for bit above)
            g.push_back(0); r.push_back(0); f.push_back(0); tol.push_back(1); tol_f.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(b2f(dqkv_g[i])); r.push_back(R.dqkv[i]); f.push_back(R.fdqkv[i]);
        tol.push_back(dq_tol(i, dqkv0[i], inc_c, 4));
        tol_f.push_back(dq_tol(i, dqkv0[i], inc_c, 8));
    }
    note(check("mma dqkv", g, r, tol));
    note(check("mma dqkv vs cpu flash", g, f, tol_f));
    // the increments alone (from zero), where the bound is not hidden by dqkv0, twice: the
    // same bits (determinism)
    Buf<bf16> d1(s.nqkv(), off), d2(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = bf16{0};
    gpu_backward(s, d1.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    test::same_bits("mma backward rerun", d2.p, d1.p, s.nqkv() * 2);
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {
            g.push_back(0); r.push_back(0); tol.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(b2f(d1[i])); r.push_back(inc_c);
        tol.push_back(dq_tol(i, 0.0, inc_c, 4));
    }
    note(check("mma dqkv increments", g, r, tol));
    Buf<bf16> out2(s.nout(), off);
    Buf<float> lse2(s.nlse(), 0);
    gpu_forward(s, out2.p, lse2.p, qkv_g.p, segp);
    test::same_bits("mma forward rerun out", out2.p, out_g.p, s.nout() * 2);
    test::same_bits("mma forward rerun lse", lse2.p, lse_g.p, s.nlse() * 4);
    // one explicit segment per row is the unsegmented op, bit for bit
    if (seg_mode == 1) {
        Buf<bf16> out0(s.nout(), off), d0(s.nqkv(), off);
        Buf<float> lse0(s.nlse(), 0);
        gpu_forward(s, out0.p, lse0.p, qkv_g.p, nullptr);
        test::same_bits("mma one segment = none (out)", out0.p, out_g.p, s.nout() * 2);
        test::same_bits("mma one segment = none (lse)", lse0.p, lse_g.p, s.nlse() * 4);
        for (size_t i = 0; i < s.nqkv(); i++) d0[i] = bf16{0};
        gpu_backward(s, d0.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, nullptr);
        test::same_bits("mma one segment = none (dqkv)", d0.p, d1.p, s.nqkv() * 2);
    }
    std::printf("mma %s seg=%d off=%d done\n", desc(s), seg_mode, off);
}

// f32 activations on the tf32 kernels: the operands of every product are rounded to tf32
// (Q, K, V, dO when their tiles are loaded; P and dS before their products), everything else
// is f32. Tolerances, derived (u = 2^-11, the tf32 unit roundoff; to first order in u; the CPU
// references are f32 on the unrounded inputs; m_s = the largest scale sum_d |q k| of the test,
// R.m_abs_s):
//   scores: each of q, k rounded: |ds| <= 2 u scale sum_d |q k| <= 2 u m_s; lse moves by at
//     most that: lse_bound + 2 u m_abs_s (with the margin 1.25: 2.5 u).
//   out = sum softmax(s + ds) round(P) round(v): the softmax of perturbed scores moves each
//     att by att (|ds_j| + sum att |ds|) <= 4 u m_s att, then round(P) and round(v) u each:
//     (2 + 4 m_s) u m_out; f32 noise e_out as bf16's (out is f32: no output rounding).
//   dv = sum round(P) round(dout): (2 + 4 m_s) u m_dq (P perturbed as above);
//   dq = scale sum round(dS) round(k), dS = P (dP - D): round(dS) and round(k) u m_dq each; P's
//     perturbation 4 u m_s P |dP - D| <= 2 u m_s M_dS (<= (2 + 4 m_s) u m_dq with the above);
//     dP from round(dout) . round(v): 2 u P mdP <= 2 u m_F; D from the kernels' out, whose
//     error is the out bound: D moves by (2 + 4 m_s) u sum_d |dout| m_out = ... W, so
//     (2 + 4 m_s) u m_W (flash_attention_reference.h); dk alike with q; f32 noise: grad_noise.
// Each u term has the margin 1.25 (the m_W term 1.25^2: it carries out's bound). The worst
// err / bound is printed (worst_tf32) at the end.
double g_worst_tf32 = 0;

void test_mma_f32(const Shape& s, int seg_mode, int off) {
    const double u = kUtf32;
    std::vector<float> qkv(s.nqkv()), dout(s.nout()), dqkv0(s.nqkv());
    test::fill(qkv.data(), qkv.size(), 1.5f);
    test::fill(dout.data(), dout.size(), 1.f);
    test::fill(dqkv0.data(), dqkv0.size(), 1.f);
    const auto seg = make_segments(s.B, s.T, seg_mode);
    const int32_t* segp = seg_mode == 0 ? nullptr : seg.data();
    const std::vector<int> nacc = s.accumulations();
    const Reference R = reference(s, qkv, dout, dqkv0, segp);
    const double m_s = *std::max_element(R.m_abs_s.begin(), R.m_abs_s.end());
    const double kappa = 2 + 4 * m_s;
    auto worst = [](double w) {
        note(w);
        g_worst_tf32 = std::max(g_worst_tf32, w);
    };

    Buf<float> qkv_g(s.nqkv(), off), out_g(s.nout(), off), dout_g(s.nout(), off), dqkv_g(s.nqkv(), off);
    Buf<float> lse_g(s.nlse(), 0);
    std::copy(qkv.begin(), qkv.end(), qkv_g.p);
    std::copy(dout.begin(), dout.end(), dout_g.p);
    emu::scratch_peak = 0;
    gpu_forward(s, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak == 0, "tf32 forward took %zu bytes of scratch", emu::scratch_peak);
    const double before = g_worst;
    check_lse("tf32", s, R, lse_g.p, 1.25 * 2 * u);
    g_worst_tf32 = std::max(g_worst_tf32, g_worst > before ? g_worst : 0.0);

    std::vector<double> g, r, f, tol;
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(out_g[i]); r.push_back(R.out[i]); f.push_back(R.fout[i]);
        const double e = 1e-5 * std::fabs(R.out[i]) + 2e-6 * R.m_out[i];
        tol.push_back(1.25 * u * kappa * R.m_out[i] + e + 1e-30);
    }
    worst(check("tf32 out", g, r, tol));
    worst(check("tf32 out vs cpu flash", g, f, tol));

    auto dq_tol = [&](size_t i, double d0, double ref_inc, double c_F) {
        return grad_noise(R, i, nacc[i], d0, ref_inc, c_F) +
               1.25 * u * (kappa * R.m_dq[i] + 2 * R.m_F[i] + 1.25 * kappa * R.m_W[i]);
    };
    std::copy(dqkv0.begin(), dqkv0.end(), dqkv_g.p);
    emu::scratch_peak = 0;
    gpu_backward(s, dqkv_g.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak <= plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs),
           "tf32 backward scratch %zu > flash_attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs));
    check_padding("tf32 backward", s, nacc, dqkv_g.p, dqkv0.data());
    check_bounds("tf32 out", out_g);
    check_bounds("tf32 lse", lse_g);
    check_bounds("tf32 dqkv", dqkv_g);
    g.clear(); r.clear(); f.clear(); tol.clear();
    std::vector<double> tol_f;
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {
            g.push_back(0); r.push_back(0); f.push_back(0); tol.push_back(1); tol_f.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(dqkv_g[i]); r.push_back(R.dqkv[i]); f.push_back(R.fdqkv[i]);
        tol.push_back(dq_tol(i, dqkv0[i], inc_c, 4));
        tol_f.push_back(dq_tol(i, dqkv0[i], inc_c, 8));
    }
    worst(check("tf32 dqkv", g, r, tol));
    worst(check("tf32 dqkv vs cpu flash", g, f, tol_f));
    Buf<float> d1(s.nqkv(), off), d2(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = 0.f;
    gpu_backward(s, d1.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    test::same_bits("tf32 backward rerun", d2.p, d1.p, s.nqkv() * 4);
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {
            g.push_back(0); r.push_back(0); tol.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(d1[i]); r.push_back(inc_c);
        tol.push_back(dq_tol(i, 0.0, inc_c, 4));
    }
    worst(check("tf32 dqkv increments", g, r, tol));
    if (getenv("VERBOSE")) {  // whole-tensor relative errors, the measure of test/cuda.test.ts
        auto whole = [](const std::vector<double>& x, const std::vector<double>& y) {
            double num = 0, den = 0;
            for (size_t i = 0; i < x.size(); i++) num += (x[i] - y[i]) * (x[i] - y[i]), den += y[i] * y[i];
            return std::sqrt(num / den);
        };
        std::vector<double> og(out_g.p, out_g.p + s.nout()), orf(R.out.begin(), R.out.end());
        std::vector<double> lg(lse_g.p, lse_g.p + s.nlse());
        std::printf("  whole-tensor relative error: out %.2e lse %.2e dqkv increments %.2e\n", whole(og, orf),
                    whole(lg, R.lse), whole(g, r));
    }
    Buf<float> out2(s.nout(), off);
    Buf<float> lse2(s.nlse(), 0);
    gpu_forward(s, out2.p, lse2.p, qkv_g.p, segp);
    test::same_bits("tf32 forward rerun out", out2.p, out_g.p, s.nout() * 4);
    test::same_bits("tf32 forward rerun lse", lse2.p, lse_g.p, s.nlse() * 4);
    if (seg_mode == 1) {
        Buf<float> out0(s.nout(), off), d0(s.nqkv(), off);
        Buf<float> lse0(s.nlse(), 0);
        gpu_forward(s, out0.p, lse0.p, qkv_g.p, nullptr);
        test::same_bits("tf32 one segment = none (out)", out0.p, out_g.p, s.nout() * 4);
        test::same_bits("tf32 one segment = none (lse)", lse0.p, lse_g.p, s.nlse() * 4);
        for (size_t i = 0; i < s.nqkv(); i++) d0[i] = 0.f;
        gpu_backward(s, d0.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, nullptr);
        test::same_bits("tf32 one segment = none (dqkv)", d0.p, d1.p, s.nqkv() * 4);
    }
    std::printf("tf32 %s seg=%d off=%d m_s=%.2f done\n", desc(s), seg_mode, off, m_s);
}

}  // namespace

int main(int argc, char** argv) {
    setenv("PLW_CUDA_FLASH", "mma", 1);  // the default; set in case the environment says simt
    EXPECT(plw::cuda::flash_attention_uses_mma(), "fused attention not on the mma kernels");
    if (test::selected(argc, argv, "layout")) test_layout();
    if (test::selected(argc, argv, "tf32_layout")) {
        test_tf32_convert();
        test_layout_tf32();
    }
    // Shapes {B, T, NH, hs, NKV, separate, pad}: tiles are 64 query rows (forward, dq) and 64
    // keys (dk/dv); key steps of 32/64 (forward, dq) and query steps of 16..64 (dk/dv).
    struct Case {
        Shape s;
        int modes;  // bit m: run segment mode m (flash_attention_reference.h)
    };
    const Case cases[] = {
        {{1, 1, 2, 64, 1, true, 0}, 0b00001},     // T = 1, n_rep 2
        {{1, 17, 2, 64, 1, true, 3}, 0b00101},    // n_rep 2, odd padding (2-byte aligned rows)
        {{2, 37, 7, 80, 1, true, 0}, 0b01000},    // n_rep 7, padding with its own id
        {{1, 45, 2, 96}, 0b00100},                // GPT-2's fused rows, packed segments
        {{1, 80, 2, 128, 2, true, 1}, 0b10001},   // two query tiles, n_rep 1, padding = last id
        {{1, 70, 4, 64, 2, true, 0}, 0b00010},    // one explicit segment, n_rep 2
        {{1, 23, 7, 128, 1, true, 0}, 0b00100},   // n_rep 7 at 128
        {{1, 64, 2, 80, 2, true, 0}, 0b00001},    // whole tiles only
        {{2, 50, 4, 96, 2, true, 1}, 0b01100},    // B = 2, n_rep 2, packed and padded
        {{1, 100, 2, 128, 1, true, 0}, 0b01000},  // n_rep 2 at 128, many dk/dv query steps
        {{1, 33, 4, 64, 4, true, 0}, 0b10000},    // n_rep 1 at 64, padding = last id
    };
    int i = 0;
    if (test::selected(argc, argv, "attention")) {
        for (const Case& c : cases) {
            for (int mode = 0; mode < kSegModes; mode++) {
                if (!(c.modes >> mode & 1)) continue;
                const int off = (i++ % 3 == 2) ? 1 : 0;  // every third case misaligned by one element
                test_mma(c.s, mode, off);
            }
        }
    }
    // f32 on the tf32 kernels: tiles of 64 query rows, dk/dv blocks of 64 keys (HS = 64) or 32
    // (80..128), dk/dv query steps of 16 or 8, dq key steps of 32 or 8 (HS = 128: dO read from
    // shared memory), forward key steps of 64 or 32.
    const Case cases_f32[] = {
        {{1, 1, 2, 64, 1, true, 0}, 0b00001},     // T = 1, n_rep 2
        {{1, 23, 2, 64, 1, true, 3}, 0b00101},    // n_rep 2, odd padding (4-byte aligned rows)
        {{1, 45, 7, 80, 1, true, 0}, 0b01000},    // n_rep 7, padding with its own id
        {{1, 70, 2, 96, 2, true, 1}, 0b10010},    // two query tiles, n_rep 1, one segment, pad = last id
        {{1, 37, 4, 128, 2, true, 0}, 0b00101},   // n_rep 2 at 128 (dq's dO in shared memory)
        {{1, 80, 2, 128}, 0b01000},               // GPT-2's fused rows, three dk/dv key blocks of 32
    };
    if (test::selected(argc, argv, "tf32")) {
        for (const Case& c : cases_f32) {
            for (int mode = 0; mode < kSegModes; mode++) {
                if (!(c.modes >> mode & 1)) continue;
                const int off = (i++ % 3 == 2) ? 1 : 0;
                test_mma_f32(c.s, mode, off);
            }
        }
        std::printf("worst err / tol (tf32): %.3f\n", g_worst_tf32);
    }
    std::printf("worst err / tol: %.3f\n", g_worst);
    return test::finish("test_flash_attention_mma");
}
