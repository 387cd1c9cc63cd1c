// The Llama ops in the emulator against the CPU reference: rmsnorm, rope and swiglu, f32 and
// bf16, on the same seeded inputs, on aligned and misaligned buffers (vector and scalar paths)
// and odd sizes: rmsnorm's group mode (rows of at most 32 packs: LANES 4/8/16/32, rows past N
// masked) and block mode (ITEMS 1..8), chunked dweight with one- and two-stage column sums;
// rope with hs = 2, odd pair counts, H not a multiple of the 4 heads a thread takes, packed and
// large positions; swiglu with tails (+-100, +-inf, NaN) and n % 8 tails.
//
// Tolerances. f32: 1e-5 relative + a small absolute term (1e-5 for values of scale 1; dweight,
// a sum over N rows in another order, 1e-5 sqrt(N)), the same math in another order (rmsnorm's
// sums) or with another libm (rope's cosf/sinf and swiglu's expf are within 2 ulp of the
// reference's). bf16 results vs the CPU's f32 result on the same (bf16-rounded) inputs:
// 2^-8 |ref| (round to nearest even is half an ulp, an ulp at most 2^-7 |x|) on top of the
// f32 tolerance. rstd and dweight stay f32 in the bf16 paths: f32 tolerances. Reruns are
// bitwise equal (no atomics).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "native/cpu/rmsnorm.h"
#include "native/cpu/rope.h"
#include "native/cpu/swiglu.h"
#include "native/cuda/rmsnorm.h"
#include "native/cuda/rope.h"
#include "native/cuda/swiglu.h"
#include "support.h"

using plw::bf16;
using plw::bf16_to_f32;
using plw::f32_to_bf16;

namespace {

using test::alloc;
using test::compare;
using test::compare_bf16;
using test::fill;
using test::rne_fraction;
using test::to_bf16;

double worst_f32 = 0;   // worst error / tolerance over the f32 comparisons
double worst_bf16 = 0;  // worst error / tolerance over the bf16 comparisons
double min_rne = 1.0;   // smallest fraction of bf16 results equal to f32_to_bf16(ref)
void note_f32(double w) { worst_f32 = std::max(worst_f32, w); }
void note(double w, double rne) {
    worst_bf16 = std::max(worst_bf16, w);
    min_rne = std::min(min_rne, rne);
}
// One line per op group, then the worst values start over.
void summary(const char* group) {
    std::printf("%s vs reference: f32 worst error / tolerance %.3f; bf16 worst error / tolerance %.3f, "
                "smallest fraction equal to f32_to_bf16(ref) %.6f\n",
                group, worst_f32, worst_bf16, min_rne);
    worst_f32 = worst_bf16 = 0;
    min_rne = 1.0;
}

// ---------------------------------------------------------------- rmsnorm
void test_rmsnorm(int N, int C, int off, float eps = 1e-5f) {
    const size_t NC = size_t(N) * C;
    float* inp = alloc<float>(NC, off);
    float* w = alloc<float>(C, off);
    float* dout = alloc<float>(NC, off);
    fill(inp, NC, 2.0f, 0.5f);
    fill(w, C, 0.5f, 1.0f);
    fill(dout, NC, 1.0f);
    std::vector<float> dinp0(NC), dw0(C);
    fill(dinp0.data(), NC, 1.0f);
    fill(dw0.data(), C, 1.0f);
    const double dw_atol = 1e-5 * std::sqrt(double(N));

    // f32 vs the CPU
    {
        std::vector<float> oc(NC), rc(N), r(N);
        plw::cpu::rmsnorm_forward(oc.data(), rc.data(), inp, w, N, C, eps);
        float* o = alloc<float>(NC, off);
        plw::cuda::rmsnorm_forward(o, r.data(), inp, w, N, C, eps);
        note_f32(compare("rms f32 out", o, oc.data(), NC, 1e-5, 1e-5));
        note_f32(compare("rms f32 rstd", r.data(), rc.data(), N, 1e-5, 0));
        float* o_nul = alloc<float>(NC, off);  // null rstd (inference)
        plw::cuda::rmsnorm_forward(o_nul, nullptr, inp, w, N, C, eps);
        test::same_bits("rms f32 out (null rstd)", o_nul, o, NC * 4);

        float* di = alloc<float>(NC, off);
        float* dw = alloc<float>(C, off);
        std::memcpy(di, dinp0.data(), NC * 4);
        std::memcpy(dw, dw0.data(), C * 4);
        plw::cuda::rmsnorm_backward(di, dw, dout, inp, w, rc.data(), N, C);
        std::vector<float> dic(dinp0), dwc(dw0);
        plw::cpu::rmsnorm_backward(dic.data(), dwc.data(), dout, inp, w, rc.data(), N, C);
        note_f32(compare("rms f32 dinp", di, dic.data(), NC, 1e-5, 1e-5));
        note_f32(compare("rms f32 dweight", dw, dwc.data(), C, 1e-5, dw_atol));
        float* di2 = alloc<float>(NC, off);  // deterministic
        float* dw2 = alloc<float>(C, off);
        std::memcpy(di2, dinp0.data(), NC * 4);
        std::memcpy(dw2, dw0.data(), C * 4);
        plw::cuda::rmsnorm_backward(di2, dw2, dout, inp, w, rc.data(), N, C);
        test::same_bits("rms f32 dinp rerun", di2, di, NC * 4);
        test::same_bits("rms f32 dweight rerun", dw2, dw, C * 4);
    }

    // bf16 activations (inputs rounded in place: the reference sees the same values)
    {
        bf16* inp_b = to_bf16(inp, NC, off);
        bf16* dout_b = to_bf16(dout, NC, off);
        bf16* dinp0_b = to_bf16(dinp0.data(), NC, off);
        std::vector<float> oc(NC), rc(N), r(N);
        plw::cpu::rmsnorm_forward(oc.data(), rc.data(), inp, w, N, C, eps);
        bf16* o = alloc<bf16>(NC, off);
        plw::cuda::rmsnorm_forward(o, r.data(), inp_b, w, N, C, eps);
        note(compare_bf16("rms bf16 out", o, oc.data(), NC, 1e-5, 1e-5), rne_fraction(o, oc.data(), NC));
        note_f32(compare("rms bf16 rstd", r.data(), rc.data(), N, 1e-5, 0));

        bf16* di = alloc<bf16>(NC, off);
        float* dw = alloc<float>(C, off);
        std::memcpy(di, dinp0_b, NC * 2);
        std::memcpy(dw, dw0.data(), C * 4);
        plw::cuda::rmsnorm_backward(di, dw, dout_b, inp_b, w, rc.data(), N, C);
        std::vector<float> dic(dinp0), dwc(dw0);  // dinp0 holds the rounded values
        plw::cpu::rmsnorm_backward(dic.data(), dwc.data(), dout, inp, w, rc.data(), N, C);
        note(compare_bf16("rms bf16 dinp", di, dic.data(), NC, 1e-5, 1e-5), rne_fraction(di, dic.data(), NC));
        note_f32(compare("rms bf16 dweight", dw, dwc.data(), C, 1e-5, dw_atol));
        bf16* di2 = alloc<bf16>(NC, off);  // deterministic
        float* dw2 = alloc<float>(C, off);
        std::memcpy(di2, dinp0_b, NC * 2);
        std::memcpy(dw2, dw0.data(), C * 4);
        plw::cuda::rmsnorm_backward(di2, dw2, dout_b, inp_b, w, rc.data(), N, C);
        test::same_bits("rms bf16 dinp rerun", di2, di, NC * 2);
        test::same_bits("rms bf16 dweight rerun", dw2, dw, C * 4);
    }
    std::printf("rmsnorm N=%d C=%d off=%d done\n", N, C, off);
}

// ---------------------------------------------------------------- rope
std::vector<float> inv_freq_for(int hs, float theta) {
    std::vector<float> f(hs / 2);
    for (int i = 0; i < hs / 2; i++) f[i] = 1.0f / std::pow(theta, float(2 * i) / float(hs));
    return f;
}

void test_rope(int N, int H, int hs, const std::vector<int32_t>& pos, float theta, int off) {
    const size_t n = size_t(N) * H * hs;
    const std::vector<float> inv_freq = inv_freq_for(hs, theta);
    float* x = alloc<float>(n, off);
    float* g = alloc<float>(n, off);
    fill(x, n, 1.0f);
    fill(g, n, 1.0f);

    // f32 vs the CPU
    {
        std::vector<float> ref(x, x + n);
        plw::cpu::rope_forward(ref.data(), pos.data(), inv_freq.data(), N, H, hs);
        float* y = alloc<float>(n, off);
        std::memcpy(y, x, n * 4);
        plw::cuda::rope_forward(y, pos.data(), inv_freq.data(), N, H, hs);
        note_f32(compare("rope f32 fwd", y, ref.data(), n, 1e-5, 1e-6));
        std::vector<float> dref(g, g + n);
        plw::cpu::rope_backward(dref.data(), pos.data(), inv_freq.data(), N, H, hs);
        float* d = alloc<float>(n, off);
        std::memcpy(d, g, n * 4);
        plw::cuda::rope_backward(d, pos.data(), inv_freq.data(), N, H, hs);
        note_f32(compare("rope f32 bwd", d, dref.data(), n, 1e-5, 1e-6));
        plw::cuda::rope_backward(y, pos.data(), inv_freq.data(), N, H, hs);  // the inverse
        note_f32(compare("rope f32 bwd(fwd(x)) == x", y, x, n, 1e-5, 1e-6));
    }
    // bf16
    {
        bf16* xb = to_bf16(x, n, off);
        bf16* gb = to_bf16(g, n, off);
        std::vector<float> ref(x, x + n);
        plw::cpu::rope_forward(ref.data(), pos.data(), inv_freq.data(), N, H, hs);
        bf16* y = alloc<bf16>(n, off);
        std::memcpy(y, xb, n * 2);
        plw::cuda::rope_forward(y, pos.data(), inv_freq.data(), N, H, hs);
        note(compare_bf16("rope bf16 fwd", y, ref.data(), n, 1e-5, 1e-6), rne_fraction(y, ref.data(), n));
        std::vector<float> dref(g, g + n);
        plw::cpu::rope_backward(dref.data(), pos.data(), inv_freq.data(), N, H, hs);
        bf16* d = alloc<bf16>(n, off);
        std::memcpy(d, gb, n * 2);
        plw::cuda::rope_backward(d, pos.data(), inv_freq.data(), N, H, hs);
        note(compare_bf16("rope bf16 bwd", d, dref.data(), n, 1e-5, 1e-6), rne_fraction(d, dref.data(), n));
    }
    std::printf("rope N=%d H=%d hs=%d theta=%g off=%d done\n", N, H, hs, theta, off);
}

// ---------------------------------------------------------------- swiglu
void test_swiglu(size_t n, int off) {
    float* gate = alloc<float>(n, off);
    float* up = alloc<float>(n, off);
    fill(gate, n, 3.0f);
    fill(up, n, 1.0f);
    const float special[] = {0.f,   -0.f,  1e-20f, -1e-20f, -1.278f,  -3.f,     -8.f,
                             -20.f, 20.f,  -88.f,  -89.f,   100.f,    -100.f,   1e4f,
                             -1e4f, 3e38f, -3e38f, INFINITY, -INFINITY, NAN,    1e-40f};
    for (size_t i = 0; i < n && i < sizeof special / 4; i++) gate[i] = special[i];
    float* g = alloc<float>(n, off);
    fill(g, n, 1.0f);
    std::vector<float> dg0(n), du0(n);
    fill(dg0.data(), n, 1.0f);
    fill(du0.data(), n, 1.0f);

    // f32 vs the CPU
    {
        std::vector<float> oc(n);
        plw::cpu::swiglu_forward(oc.data(), gate, up, n);
        float* o = alloc<float>(n, off);
        plw::cuda::swiglu_forward(o, gate, up, n);
        note_f32(compare("swiglu f32 fwd", o, oc.data(), n, 1e-5, 1e-30));
        float* ip = alloc<float>(n, off);  // out == gate
        std::memcpy(ip, gate, n * 4);
        plw::cuda::swiglu_forward(ip, ip, up, n);
        test::same_bits("swiglu f32 in place", ip, o, n * 4);

        float* dg = alloc<float>(n, off);
        float* du = alloc<float>(n, off);
        std::memcpy(dg, dg0.data(), n * 4);
        std::memcpy(du, du0.data(), n * 4);
        plw::cuda::swiglu_backward(dg, du, g, gate, up, n);
        std::vector<float> dgc(dg0), duc(du0);
        plw::cpu::swiglu_backward(dgc.data(), duc.data(), g, gate, up, n);
        note_f32(compare("swiglu f32 dgate", dg, dgc.data(), n, 1e-5, 1e-6));
        note_f32(compare("swiglu f32 dup", du, duc.data(), n, 1e-5, 1e-6));
    }
    // bf16
    {
        bf16* gateb = to_bf16(gate, n, off);
        bf16* upb = to_bf16(up, n, off);
        bf16* gb = to_bf16(g, n, off);
        bf16* dg0b = to_bf16(dg0.data(), n, off);
        bf16* du0b = to_bf16(du0.data(), n, off);
        std::vector<float> oc(n);
        plw::cpu::swiglu_forward(oc.data(), gate, up, n);
        bf16* o = alloc<bf16>(n, off);
        plw::cuda::swiglu_forward(o, gateb, upb, n);
        note(compare_bf16("swiglu bf16 fwd", o, oc.data(), n, 1e-5, 1e-30), rne_fraction(o, oc.data(), n));
        bf16* ip = alloc<bf16>(n, off);  // out == up
        std::memcpy(ip, upb, n * 2);
        plw::cuda::swiglu_forward(ip, gateb, ip, n);
        test::same_bits("swiglu bf16 in place", ip, o, n * 2);

        bf16* dg = alloc<bf16>(n, off);
        bf16* du = alloc<bf16>(n, off);
        std::memcpy(dg, dg0b, n * 2);
        std::memcpy(du, du0b, n * 2);
        plw::cuda::swiglu_backward(dg, du, gb, gateb, upb, n);
        std::vector<float> dgc(dg0), duc(du0);  // dg0/du0 hold the rounded values
        plw::cpu::swiglu_backward(dgc.data(), duc.data(), g, gate, up, n);
        note(compare_bf16("swiglu bf16 dgate", dg, dgc.data(), n, 1e-5, 1e-6), rne_fraction(dg, dgc.data(), n));
        note(compare_bf16("swiglu bf16 dup", du, duc.data(), n, 1e-5, 1e-6), rne_fraction(du, duc.data(), n));
    }
    std::printf("swiglu n=%zu off=%d done\n", n, off);
}

}  // namespace

int main(int argc, char** argv) {
    if (test::selected(argc, argv, "rmsnorm")) {
        test_rmsnorm(1, 1, 0);        // scalar (C % 4 != 0), group mode LANES 4
        test_rmsnorm(5, 8, 0);        // f32 packs 2, bf16 packs 1: LANES 4
        test_rmsnorm(17, 64, 0);      // f32 LANES 16, bf16 LANES 8
        test_rmsnorm(130, 128, 0);    // f32 LANES 32, bf16 LANES 16 (Qwen3 q/k norm); 3 chunks, masked rows
        test_rmsnorm(70, 256, 0, 1e-6f);  // f32 block mode (64 packs), bf16 group LANES 32
        test_rmsnorm(20, 100, 0);     // f32 packs 25 (LANES 32), bf16 scalar block mode
        test_rmsnorm(13, 37, 0);      // scalar for both: block mode, 64 threads
        test_rmsnorm(20, 64, 1);      // misaligned: scalar, block mode
        test_rmsnorm(20, 64, 4);      // f32 aligned, bf16 8 bytes off: scalar
        test_rmsnorm(2, 4096, 0);     // f32 ITEMS 2, bf16 ITEMS 1
        test_rmsnorm(1, 8192, 0);     // f32 ITEMS 4, bf16 ITEMS 2
        test_rmsnorm(1, 16384, 0);    // f32 ITEMS 8, bf16 ITEMS 4
        test_rmsnorm(3, 1027, 0);     // scalar, ITEMS 4 (1027 packs over 512 threads -> 3)
        test_rmsnorm(2, 4001, 0);     // scalar, ITEMS 8
        test_rmsnorm(8256, 8, 0);     // group mode, 129 chunks: two-stage column sums
        test_rmsnorm(2100, 37, 0);    // block mode, 132 chunks: two-stage column sums
        summary("rmsnorm");
    }
    if (test::selected(argc, argv, "rope")) {
        test_rope(5, 1, 2, {0, 1, 2, 3, 4}, 10000.f, 0);  // hs = 2: one pair, scalar
        std::vector<int32_t> packed(24);
        for (int n = 0; n < 24; n++) packed[n] = n < 10 ? n : n < 17 ? n - 10 : n - 17;
        test_rope(24, 3, 64, packed, 10000.f, 0);  // packed positions restart at 0; wide
        const std::vector<int32_t> large = {8000, 8191, 0, 131071, 4095, 1, 77};
        test_rope(7, 4, 128, large, 500000.f, 0);  // large positions, Llama 3 theta
        test_rope(7, 5, 64, large, 10000.f, 0);    // H = 5: a run of 4 heads and one of 1
        test_rope(7, 5, 64, large, 10000.f, 1);    // misaligned: scalar
        test_rope(9, 3, 8, packed, 10000.f, 0);    // h = 4: f32 wide, bf16 scalar
        std::vector<int32_t> scrambled(40);
        for (int n = 0; n < 40; n++) scrambled[n] = (n * 37) % 50;
        test_rope(40, 3, 6, scrambled, 10000.f, 0);  // h = 3: scalar
        test_rope(0, 3, 6, scrambled, 10000.f, 0);   // N = 0: nothing
        summary("rope");
    }
    if (test::selected(argc, argv, "swiglu")) {
        test_swiglu(1, 0);
        test_swiglu(21, 0);    // the specials, tails 1 (f32) and 5 (bf16)
        test_swiglu(1024, 0);
        test_swiglu(1001, 1);  // misaligned: scalar
        test_swiglu(1001, 4);  // f32 aligned; bf16 8 bytes off: scalar
        test_swiglu(4099, 0);
        summary("swiglu");
    }
    return test::finish("test_llama_ops");
}
