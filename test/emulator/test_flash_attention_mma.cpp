// The tensor-core (mma.sync) fused attention, native/cuda/flash_attention_mma.cu, which
// flash_attention.h's bf16 functions run by default (the emulator reports compute capability
// 9.0), in the emulator:
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
    auto product = [&](auto&& lhs, int r, int col, float init) {
        float acc = init;
        for (int k = 0; k < 16; k++) acc = std::fma(lhs(r, k), bm[k * W + col], acc);
        return acc;
    };
    size_t bad1 = 0, bad2 = 0, bad3 = 0, bad4 = 0;
    for (int r = 0; r < 16; r++)
        for (int col = 0; col < W; col++) {
            const float ref = product([&](int i, int k) { return a[i * 16 + k]; }, r, col, c[r * W + col]);
            bad1 += std::memcmp(&ref, &d1[r * W + col], 4) != 0;
            bad2 += std::memcmp(&ref, &d2[r * W + col], 4) != 0;
            if (col < 8) {
                bad4 += std::memcmp(&ref, &d4[r * W + col], 4) != 0;
                const float ref3 =
                    product([&](int i, int k) { return test::round_bf16(d1[i * W + k]); }, r, col, 0.f);
                bad3 += std::memcmp(&ref3, &d3[r * W + col], 4) != 0;
            }
        }
    EXPECT(bad1 == 0, "layout: A row-major x B from column rows: %zu of %d elements differ", bad1, 16 * W);
    EXPECT(bad2 == 0, "layout: A x B from rows (16-bit loads): %zu of %d elements differ", bad2, 16 * W);
    EXPECT(bad3 == 0, "layout: accumulators reused as A: %zu of 128 elements differ", bad3);
    EXPECT(bad4 == 0, "layout: single mma: %zu of 128 elements differ", bad4);
    std::printf("layout done\n");
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

}  // namespace

int main(int argc, char** argv) {
    setenv("PLW_CUDA_FLASH", "mma", 1);  // the default; set in case the environment says simt
    EXPECT(plw::cuda::flash_attention_uses_mma(), "bf16 fused attention not on the mma kernels");
    if (test::selected(argc, argv, "layout")) test_layout();
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
    std::printf("worst err / tol: %.3f\n", g_worst);
    return test::finish("test_flash_attention_mma");
}
