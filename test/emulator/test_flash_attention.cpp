// Fused (flash) attention, the SIMT kernels of native/cuda/flash_attention.cu (bf16 forced onto
// them with PLW_CUDA_FLASH=simt; test_flash_attention_mma.cpp checks the tensor-core kernels
// that bf16 takes by default), in the emulator (f32 and bf16;
// head sizes 64, 80, 96, 128; causal with no segments, one explicit segment, packed segments,
// padding with its own id or sharing the last one; grouped-query heads with n_rep 1, 2, 7;
// q, k, v in GPT-2's fused rows or in separate buffers with padded rows; T = 1, 7, 37, 45, 70,
// 100, partial last tiles, and 64, whole tiles), against
//   - the unfused CPU reference, native/cpu/attention.h: out, and dq/dk/dv accumulated (+=)
//     into random gradients (row padding untouched);
//   - the CPU flash twin, native/cpu/flash_attention.h: lse, out, dq/dk/dv;
//   - lse from a float64 log-sum-exp of the scores.
// Also: one explicit segment gives the bits of segments == null; a second forward and
// backward give the same bits (determinism); += twice from zero is exactly twice once;
// scratch within flash_attention_scratch_bytes; unsupported head sizes throw.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <vector>

#include "flash_attention_reference.h"

using test::Buf;

namespace {

using namespace flash_test;

// ---------------------------------------------------------------- f32
// Tolerances: out as in flash_attention_reference.h's f32 notes; gradients: grad_noise.
void test_f32(const Shape& s, int seg_mode, int off) {
    std::vector<float> qkv(s.nqkv()), dout(s.nout()), dqkv0(s.nqkv());
    test::fill(qkv.data(), qkv.size(), 1.5f);
    test::fill(dout.data(), dout.size(), 1.f);
    test::fill(dqkv0.data(), dqkv0.size(), 1.f);
    const auto seg = make_segments(s.B, s.T, seg_mode);
    const int32_t* segp = seg_mode == 0 ? nullptr : seg.data();
    const std::vector<int> nacc = s.accumulations();
    const Reference R = reference(s, qkv, dout, dqkv0, segp);

    Buf<float> qkv_g(s.nqkv(), off), out_g(s.nout(), off), lse_g(s.nlse(), 0), dout_g(s.nout(), off),
        dqkv_g(s.nqkv(), off);
    std::copy(qkv.begin(), qkv.end(), qkv_g.p);
    std::copy(dout.begin(), dout.end(), dout_g.p);
    emu::scratch_peak = 0;
    gpu_forward(s, out_g.p, lse_g.p, qkv_g.p, segp);  // out_g, lse_g start as NaN: must be overwritten
    EXPECT(emu::scratch_peak == 0, "f32 forward took %zu bytes of scratch", emu::scratch_peak);
    check_lse("f32", s, R, lse_g.p);

    std::vector<double> g, r, f, tol;
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(out_g[i]); r.push_back(R.out[i]); f.push_back(R.fout[i]);
        tol.push_back(1e-7 + 1e-5 * std::fabs(R.out[i]) + 2e-6 * R.m_out[i]);
    }
    note(check("f32 out", g, r, tol));
    note(check("f32 out vs cpu flash", g, f, tol));

    // backward from the GPU's own out and lse into a random dqkv
    std::copy(dqkv0.begin(), dqkv0.end(), dqkv_g.p);
    emu::scratch_peak = 0;
    gpu_backward(s, dqkv_g.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak <= plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs),
           "f32 backward scratch %zu > flash_attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs));
    check_padding("f32 backward", s, nacc, dqkv_g.p, dqkv0.data());
    check_bounds("f32 out", out_g);
    check_bounds("f32 lse", lse_g);
    check_bounds("f32 dqkv", dqkv_g);
    g.clear(); r.clear(); f.clear(); tol.clear();
    std::vector<double> tol_f;
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {  // row padding (checked bit for bit above)
            g.push_back(0); r.push_back(0); f.push_back(0); tol.push_back(1); tol_f.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(double(dqkv_g[i]) - dqkv0[i]); r.push_back(inc_c); f.push_back(double(R.fdqkv[i]) - dqkv0[i]);
        tol.push_back(grad_noise(R, i, nacc[i], dqkv0[i], inc_c, 4));
        tol_f.push_back(grad_noise(R, i, nacc[i], dqkv0[i], inc_c, 8));
    }
    note(check("f32 dqkv increments", g, r, tol));
    note(check("f32 dqkv vs cpu flash", g, f, tol_f));
    // determinism and += : the forward again gives the same bits; from zero, twice, is
    // exactly twice once (every element is written once per call: x + x = 2x); a second run
    // from zero gives the same bits.
    Buf<float> out2(s.nout(), off), lse2(s.nlse(), 0);
    gpu_forward(s, out2.p, lse2.p, qkv_g.p, segp);
    test::same_bits("f32 forward rerun out", out2.p, out_g.p, s.nout() * 4);
    test::same_bits("f32 forward rerun lse", lse2.p, lse_g.p, s.nlse() * 4);
    Buf<float> d1(s.nqkv(), off), d2(s.nqkv(), off), d3(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = d3[i] = 0.f;
    gpu_backward(s, d1.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d3.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    size_t not_double = 0;
    for (size_t i = 0; i < s.nqkv(); i++) not_double += d2[i] != 2.f * d1[i];
    EXPECT(not_double == 0, "f32 backward twice: %zu elements not doubled", not_double);
    test::same_bits("f32 backward rerun", d3.p, d1.p, s.nqkv() * 4);
    // one explicit segment per row is the unsegmented op, bit for bit
    if (seg_mode == 1) {
        Buf<float> out0(s.nout(), off), lse0(s.nlse(), 0), d0(s.nqkv(), off);
        gpu_forward(s, out0.p, lse0.p, qkv_g.p, nullptr);
        test::same_bits("f32 one segment = none (out)", out0.p, out_g.p, s.nout() * 4);
        test::same_bits("f32 one segment = none (lse)", lse0.p, lse_g.p, s.nlse() * 4);
        for (size_t i = 0; i < s.nqkv(); i++) d0[i] = 0.f;
        gpu_backward(s, d0.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, nullptr);
        test::same_bits("f32 one segment = none (dqkv)", d0.p, d1.p, s.nqkv() * 4);
    }
    std::printf("f32  %s seg=%d off=%d done\n", desc(s), seg_mode, off);
}

// ---------------------------------------------------------------- bf16
// Tolerances. u = 2^-8, the relative error bound of one bf16 rounding to nearest. The CPU
// references run in f32 on the same bf16 inputs; the kernels keep everything f32 inside and
// round only what they store, so, to first order in u:
//   lse: f32 only (stored as f32): lse_bound, as for f32.
//   out: rounded once: |err| <= u |out| + f32 noise e_out = 1e-5 |out| + 2e-6 m_out
//   dqkv = round(dqkv0 + inc): the increment carries f32 noise (as for f32) and the error of
//     D = rowsum(dout * out) taken from the rounded out: u m_D (see magnitudes); then one
//     rounding, u |dqkv0 + inc|.
// Each u term gets a margin of 1.25.
void test_bf16(const Shape& s, int seg_mode, int off) {
    using plw::bf16;
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
    gpu_forward(s, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak == 0, "bf16 forward took %zu bytes of scratch", emu::scratch_peak);
    check_lse("bf16", s, R, lse_g.p);

    std::vector<double> g, r, f, tol;
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(b2f(out_g[i])); r.push_back(R.out[i]); f.push_back(R.fout[i]);
        const double e = 1e-5 * std::fabs(R.out[i]) + 2e-6 * R.m_out[i];
        tol.push_back(1.25 * kU * (std::fabs(R.out[i]) + e) + e + 1e-30);
    }
    note(check("bf16 out", g, r, tol));
    note(check("bf16 out vs cpu flash", g, f, tol));

    // |err| bound of dqkv0 + increment (dqkv0 = 0: the increment alone); c_F as grad_noise
    auto dq_tol = [&](size_t i, double d0, double ref_inc, double c_F = 4) {
        const double e = grad_noise(R, i, nacc[i], d0, ref_inc, c_F) + 1.25 * kU * R.m_D[i];
        return e + 1.25 * kU * (std::fabs(d0 + ref_inc) + e);
    };
    // backward from the GPU's own bf16 out and lse into a random bf16 dqkv
    std::copy(dqkv0_b.begin(), dqkv0_b.end(), dqkv_g.p);
    emu::scratch_peak = 0;
    gpu_backward(s, dqkv_g.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    EXPECT(emu::scratch_peak <= plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs),
           "bf16 backward scratch %zu > flash_attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::flash_attention_scratch_bytes(s.B, s.T, s.NH, s.hs));
    check_padding("bf16 backward", s, nacc, dqkv_g.p, dqkv0_b.data());
    check_bounds("bf16 out", out_g);
    check_bounds("bf16 lse", lse_g);
    check_bounds("bf16 dqkv", dqkv_g);
    g.clear(); r.clear(); f.clear(); tol.clear();
    std::vector<double> tol_f;
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {
            g.push_back(0); r.push_back(0); f.push_back(0); tol.push_back(1); tol_f.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(b2f(dqkv_g[i])); r.push_back(R.dqkv[i]); f.push_back(R.fdqkv[i]);
        tol.push_back(dq_tol(i, dqkv0[i], inc_c));
        tol_f.push_back(dq_tol(i, dqkv0[i], inc_c, 8));
    }
    note(check("bf16 dqkv", g, r, tol));
    note(check("bf16 dqkv vs cpu flash", g, f, tol_f));
    // the increments alone (dqkv0 = 0), where the bound is not hidden by dqkv0
    Buf<bf16> d1(s.nqkv(), off), d2(s.nqkv(), off), d3(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = d3[i] = bf16{0};
    gpu_backward(s, d1.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        if (nacc[i] == 0) {
            g.push_back(0); r.push_back(0); tol.push_back(1);
            continue;
        }
        const double inc_c = double(R.dqkv[i]) - dqkv0[i];
        g.push_back(b2f(d1[i])); r.push_back(inc_c);
        tol.push_back(dq_tol(i, 0.0, inc_c));
    }
    note(check("bf16 dqkv increments", g, r, tol));
    // determinism and += (as f32: round(round(x) + x) = 2 round(x) for the bf16 x)
    Buf<bf16> out2(s.nout(), off);
    Buf<float> lse2(s.nlse(), 0);
    gpu_forward(s, out2.p, lse2.p, qkv_g.p, segp);
    test::same_bits("bf16 forward rerun out", out2.p, out_g.p, s.nout() * 2);
    test::same_bits("bf16 forward rerun lse", lse2.p, lse_g.p, s.nlse() * 4);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    gpu_backward(s, d3.p, dout_g.p, out_g.p, lse_g.p, qkv_g.p, segp);
    size_t not_double = 0;
    for (size_t i = 0; i < s.nqkv(); i++) not_double += b2f(d2[i]) != 2.f * b2f(d1[i]);
    EXPECT(not_double == 0, "bf16 backward twice: %zu elements not doubled", not_double);
    test::same_bits("bf16 backward rerun", d3.p, d1.p, s.nqkv() * 2);
    std::printf("bf16 %s seg=%d off=%d done\n", desc(s), seg_mode, off);
}

void test_api() {
    using plw::cuda::flash_attention_scratch_bytes;
    using plw::cuda::flash_attention_supports;
    for (int hs = 1; hs <= 256; hs++) {
        EXPECT(flash_attention_supports(hs) == (hs == 64 || hs == 80 || hs == 96 || hs == 128), "supports(%d)", hs);
    }
    EXPECT(flash_attention_scratch_bytes(3, 5, 7, 64) == size_t(3) * 5 * 7 * 4, "scratch bytes");
    EXPECT(flash_attention_scratch_bytes(0, 5, 7, 64) == 0, "scratch bytes B = 0");
    // an unsupported head size, or a bad shape, throws instead of launching
    std::vector<float> buf(4096, 0.f);
    float* p = buf.data();
    auto throws = [](auto&& fn) {
        try { fn(); } catch (const std::exception&) { return true; }
        return false;
    };
    EXPECT(throws([&] { plw::cuda::flash_attention_forward(p, p, p, p, p, nullptr, 1, 4, 2, 2, 32, 64, 64); }),
           "hs = 32 forward accepted");
    EXPECT(throws([&] {
               plw::cuda::flash_attention_backward(p, p, p, p, p, p, p, p, p, nullptr, 1, 4, 2, 2, 48, 96, 96);
           }),
           "hs = 48 backward accepted");
    EXPECT(throws([&] { plw::cuda::flash_attention_forward(p, p, p, p, p, nullptr, 1, 4, 3, 2, 64, 192, 128); }),
           "NH %% NKV != 0 accepted");
    EXPECT(throws([&] { plw::cuda::flash_attention_forward(p, p, p, p, p, nullptr, 1, 4, 2, 2, 64, 100, 128); }),
           "short q_stride accepted");
    // B = 0: nothing to do, no launch
    plw::cuda::flash_attention_forward(p, p, p, p, p, nullptr, 0, 4, 2, 2, 64, 128, 128);
    plw::cuda::flash_attention_backward(p, p, p, p, p, p, p, p, p, nullptr, 0, 4, 2, 2, 64, 128, 128);
}

}  // namespace

int main(int argc, char** argv) {
    // The bf16 functions take the tensor-core kernels on sm_80+ (the emulator reports 9.0);
    // this program checks the SIMT ones, with bounds for their single rounding of the outputs.
    setenv("PLW_CUDA_FLASH", "simt", 1);
    EXPECT(!plw::cuda::flash_attention_uses_mma(), "PLW_CUDA_FLASH=simt: bf16 still on the mma kernels");
    test_api();
    // Every head size; n_rep 1 (fused GPT-2 rows and separate), 2 and 7; T = 1, 7, 37, 45, 64,
    // 70, 100 (tiles: forward 64 rows x 16/32 keys, dq 24/32 x 16/32, dk/dv 32 keys x 8..32 rows);
    // separate rows padded by odd amounts (bf16 rows only 2-byte aligned).
    struct Case {
        Shape s;
        int modes;  // bit m: run segment mode m
    };
    const int all = (1 << kSegModes) - 1;
    const Case cases[] = {
        {{1, 1, 2, 64, 1, true, 0}, 0b00011},     // T = 1, n_rep 2
        {{2, 7, 3, 64}, all},                     // GPT-2's fused qkv rows
        {{1, 37, 7, 80, 1, true, 3}, all},        // n_rep 7
        {{2, 37, 4, 96, 2, true, 1}, all},        // n_rep 2
        {{1, 37, 2, 128, 2, true, 0}, all},       // n_rep 1, separate
        {{1, 70, 2, 64, 1, true, 2}, 0b01101},    // two forward query tiles
        {{1, 100, 2, 128, 1, true, 1}, 0b10101},  // n_rep 2, many dk/dv query tiles
        {{1, 7, 14, 96, 2, true, 0}, 0b00101},    // n_rep 7 over two KV heads
        {{1, 45, 2, 80, 2}, 0b00100},             // fused rows, hs 80
        {{1, 64, 4, 128, 2, true, 2}, 0b00101},   // whole tiles only
    };
    int i = 0;
    for (const Case& c : cases) {
        for (int mode = 0; mode < kSegModes; mode++) {
            if (!(c.modes >> mode & 1)) continue;
            const int off = (i++ % 3 == 2) ? 1 : 0;  // every third case misaligned by one element
            if (test::selected(argc, argv, "f32")) test_f32(c.s, mode, off);
            if (test::selected(argc, argv, "bf16")) test_bf16(c.s, mode, off);
        }
    }
    std::printf("worst err / tol: %.3f\n", g_worst);
    return test::finish("test_flash_attention");
}
