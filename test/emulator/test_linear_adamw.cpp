// Linear (f32 and bf16, both weight layouts, bias epilogue and add-bias kernel, += backward,
// two-stage column sums) and AdamW (with the bf16 parameter copy, and the gradient norm) in the emulator against the
// CPU reference. The GEMMs run in the reference cuBLASLt (test/emulator/reference_cublaslt.cpp).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "native/cpu/adamw.h"
#include "native/cpu/linear.h"
#include "native/cuda/adamw.h"
#include "native/cuda/linear.h"
#include "support.h"

using plw::bf16;
using plw::WeightLayout;
using test::Buf;
using test::fill_bf16;

namespace {

void fill(float* p, size_t n, float scale) { test::fill(p, n, scale); }

// |got - ref| <= bound[i] for every i; prints the worst ratio.
void within(const char* what, const float* got, const float* ref,
                   const std::vector<double>& bound, double* worst_out = nullptr) {
    double worst = 0, worst_abs = 0;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < bound.size(); i++) {
        const double d = std::fabs(double(got[i]) - double(ref[i]));
        if (!(d <= bound[i])) bad++;
        const double r = std::isnan(got[i]) ? INFINITY : d / bound[i];
        if (r > worst) { worst = r; wi = i; }
        worst_abs = std::max(worst_abs, d);
    }
    EXPECT(bad == 0, "%s: %d of %zu out of bound; worst at %zu got %.9g ref %.9g bound %.3g", what,
           bad, bound.size(), wi, got[wi], ref[wi], bound[wi]);
    std::printf("    %-22s max |err| %.3g, worst err/bound %.3f\n", what, worst_abs, worst);
    if (worst_out) *worst_out = worst;
}


// ---------------------------------------------------------------- linear f32 vs CPU f32
// The reference cuBLASLt sums in double, the CPU in f32: 1e-5 relative to the element, and
// 1e-5 sqrt(N) absolute for the column sums over N rows.
void test_linear_f32(int N, int IC, int OC, bool with_bias, int bias_off,
                     WeightLayout layout = WeightLayout::InOut) {
    Buf<float> inp(size_t(N) * IC, 0), w(size_t(IC) * OC, 0), bias(OC, bias_off), dout(size_t(N) * OC, 0);
    fill(inp.p, inp.n, 1.f);
    fill(w.p, w.n, 0.3f);
    fill(bias.p, OC, 1.f);
    fill(dout.p, dout.n, 1.f);
    const float* b = with_bias ? bias.p : nullptr;
    Buf<float> og(size_t(N) * OC, 0);  // NaN: must be overwritten
    std::vector<float> oc(og.n);
    plw::cpu::linear_forward(oc.data(), inp.p, w.p, b, N, IC, OC, layout);
    plw::cuda::linear_forward(og.p, inp.p, w.p, b, N, IC, OC, layout);
    std::vector<double> bound(og.n);
    for (size_t i = 0; i < og.n; i++) bound[i] = 1e-5 + 1e-5 * std::fabs(oc[i]);
    within("f32 out", og.p, oc.data(), bound);

    std::vector<float> dic(size_t(N) * IC), dwc(size_t(IC) * OC), dbc(OC);
    fill(dic.data(), dic.size(), 1.f);
    fill(dwc.data(), dwc.size(), 1.f);
    fill(dbc.data(), dbc.size(), 1.f);
    std::vector<float> dig(dic), dwg(dwc);
    Buf<float> dbg(OC, bias_off);
    std::memcpy(dbg.p, dbc.data(), OC * 4);
    plw::cpu::linear_backward(dic.data(), dwc.data(), with_bias ? dbc.data() : nullptr, dout.p, inp.p, w.p, N, IC, OC, layout);
    plw::cuda::linear_backward(dig.data(), dwg.data(), with_bias ? dbg.p : nullptr, dout.p, inp.p, w.p, N, IC, OC, layout);
    std::vector<double> bi(dic.size()), bw(dwc.size()), bb(OC);
    for (size_t i = 0; i < bi.size(); i++) bi[i] = 1e-5 + 1e-5 * std::fabs(dic[i]);
    for (size_t i = 0; i < bw.size(); i++) bw[i] = 1e-5 * std::sqrt(double(N)) + 1e-5 * std::fabs(dwc[i]);
    for (int o = 0; o < OC; o++) bb[o] = 1e-5 * std::sqrt(double(N)) + 1e-5 * std::fabs(dbc[o]);
    within("f32 dinp (+=)", dig.data(), dic.data(), bi);
    within("f32 dweight (+=)", dwg.data(), dwc.data(), bw);
    within("f32 dbias (+=)", dbg.p, dbc.data(), bb);
    std::printf("  linear f32 N=%d IC=%d OC=%d bias=%d bias_off=%d %s\n", N, IC, OC, with_bias, bias_off,
                layout == WeightLayout::InOut ? "InOut" : "OutIn");
}

// ---------------------------------------------------------------- linear bf16 vs CPU f32
// Inputs are on the bf16 grid, so the CPU f32 reference sees exactly the bf16 values. The
// fake cuBLASLt accumulates in double and rounds D once (to bf16 for out/dinp), so:
//   out (epilogue):   one rounding of out            -> |err| <= 2^-8 |out| (+ f32 noise)
//   out (add kernel): rounding of x.W, then of out   -> |err| <= 2^-8 (|x.W| + |out|) (+ noise)
//   dinp (+=):        reads bf16 C, one rounding      -> |err| <= 2^-8 |dinp|  (+ noise)
//   dweight (f32 D), dbias (f32 column sums of exact bf16 values): f32 accumulation noise only.
// "f32 noise": the CPU sums k products in f32: a few 1e-7 * sqrt(k) * (row scale); 1e-5
// times the row's max magnitude covers it.
void test_linear_bf16(int N, int IC, int OC, bool with_bias, int bias_off, int act_off,
                      WeightLayout layout = WeightLayout::InOut) {
    const double u = std::ldexp(1.0, -8);  // half a bf16 ulp (8-bit significand), relative
    Buf<float> inp(size_t(N) * IC, 0), w(size_t(IC) * OC, 0), bias(OC, 0), dout(size_t(N) * OC, 0);
    Buf<bf16> inpb(inp.n, act_off), wb(w.n, act_off), biasb(OC, bias_off), doutb(dout.n, act_off);
    fill_bf16(inp.p, inpb.p, inp.n, 1.f);
    fill_bf16(w.p, wb.p, w.n, 0.3f);
    fill_bf16(bias.p, biasb.p, OC, 1.f);
    fill_bf16(dout.p, doutb.p, dout.n, 1.f);

    // forward
    std::vector<float> oc(size_t(N) * OC), xw(size_t(N) * OC);
    plw::cpu::linear_forward(oc.data(), inp.p, w.p, with_bias ? bias.p : nullptr, N, IC, OC, layout);
    plw::cpu::linear_forward(xw.data(), inp.p, w.p, nullptr, N, IC, OC, layout);
    Buf<bf16> og(oc.size(), act_off);
    for (size_t i = 0; i < oc.size(); i++) og[i] = plw::f32_to_bf16(NAN);  // must be overwritten
    plw::cuda::linear_forward(og.p, inpb.p, wb.p, with_bias ? biasb.p : nullptr, N, IC, OC, layout);
    const std::vector<float> ogf = test::widen(og.p, oc.size());
    const bool add_kernel = with_bias && bias_off % 8 != 0;
    std::vector<double> bound(oc.size());
    for (int n = 0; n < N; n++) {
        double rs = 0;
        for (int o = 0; o < OC; o++) rs = std::max(rs, double(std::fabs(oc[size_t(n) * OC + o])));
        for (int o = 0; o < OC; o++) {
            const size_t i = size_t(n) * OC + o;
            bound[i] = u * std::fabs(oc[i]) * 1.001 + (add_kernel ? u * std::fabs(xw[i]) : 0.0) +
                       1e-5 * rs + 1e-30;
        }
    }
    within("bf16 out vs cpu", ogf.data(), oc.data(), bound);
    if (!add_kernel) {  // also: out is the cpu result rounded once, up to f32 noise at ties
        int differ = 0;
        for (size_t i = 0; i < oc.size(); i++) differ += og[i].bits != plw::f32_to_bf16(oc[i]).bits;
        EXPECT(differ <= int(oc.size() / 50), "bf16 out: %d of %zu not f32_to_bf16(cpu)", differ,
               oc.size());
    }

    // backward: += into dinp (bf16), dweight and dbias (f32)
    Buf<float> di0(size_t(N) * IC, 0);
    Buf<bf16> dig(di0.n, act_off);
    fill_bf16(di0.p, dig.p, di0.n, 1.f);
    std::vector<float> dic(di0.p, di0.p + di0.n), dwc(size_t(IC) * OC), dbc(OC);
    fill(dwc.data(), dwc.size(), 1.f);
    fill(dbc.data(), dbc.size(), 1.f);
    std::vector<float> dwg(dwc);
    Buf<float> dbg(OC, bias_off);
    std::memcpy(dbg.p, dbc.data(), OC * 4);
    std::vector<float> dwg2(dwc);
    Buf<float> dbg2(OC, bias_off);
    std::memcpy(dbg2.p, dbc.data(), OC * 4);
    Buf<bf16> dig2(di0.n, act_off);
    std::memcpy(dig2.p, dig.p, di0.n * 2);
    plw::cpu::linear_backward(dic.data(), dwc.data(), with_bias ? dbc.data() : nullptr, dout.p,
                              inp.p, w.p, N, IC, OC, layout);
    plw::cuda::linear_backward(dig.p, dwg.data(), with_bias ? dbg.p : nullptr, doutb.p, inpb.p,
                               wb.p, N, IC, OC, layout);
    const std::vector<float> digf = test::widen(dig.p, di0.n);
    std::vector<double> bi(di0.n);
    for (int n = 0; n < N; n++) {
        double rs = 0;
        for (int i = 0; i < IC; i++) rs = std::max(rs, double(std::fabs(dic[size_t(n) * IC + i])));
        for (int i = 0; i < IC; i++)
            bi[size_t(n) * IC + i] = u * std::fabs(dic[size_t(n) * IC + i]) * 1.001 + 1e-5 * rs;
    }
    within("bf16 dinp (+=) vs cpu", digf.data(), dic.data(), bi);
    std::vector<double> bw(dwc.size());
    for (size_t i = 0; i < bw.size(); i++)
        bw[i] = 1e-5 * std::fabs(dwc[i]) + 1e-5 * std::sqrt(double(N));
    within("f32 dweight (+=) vs cpu", dwg.data(), dwc.data(), bw);
    if (with_bias) {
        std::vector<double> bb(OC);
        for (int o = 0; o < OC; o++) bb[o] = 1e-5 * std::fabs(dbc[o]) + 1e-5 * std::sqrt(double(N));
        within("f32 dbias (+=) vs cpu", dbg.p, dbc.data(), bb);
    } else {
        test::same_bits("dbias untouched", dbg.p, dbc.data(), OC * 4);
    }
    // deterministic: a second run gives the same bits
    plw::cuda::linear_backward(dig2.p, dwg2.data(), with_bias ? dbg2.p : nullptr, doutb.p, inpb.p,
                               wb.p, N, IC, OC, layout);
    test::same_bits("bf16 dinp rerun", dig2.p, dig.p, di0.n * 2);
    test::same_bits("bf16 dbias rerun", dbg2.p, dbg.p, OC * 4);
    std::printf("  linear bf16 N=%d IC=%d OC=%d bias=%d bias_off=%d act_off=%d %s%s\n", N, IC, OC,
                with_bias, bias_off, act_off, layout == WeightLayout::InOut ? "InOut" : "OutIn",
                add_kernel ? " (add kernel)" : "");
}

// Exact check of the bf16 dbias column sum: sums of small integers are exact in f32 in any
// order, so the result must equal the exact sum (also checks += and the two-stage path).
void test_dbias_exact(int N, int OC, int off) {
    Buf<bf16> dout(size_t(N) * OC, off), inp(size_t(N) * 4, 0), w(size_t(4) * OC, 0);
    std::vector<double> exact(OC, 0.5);
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            const float x = float(int(test::rng() % 17) - 8);
            dout[size_t(n) * OC + o] = plw::f32_to_bf16(x);
            exact[o] += x;
        }
    for (size_t i = 0; i < inp.n; i++) inp[i] = plw::f32_to_bf16(0.f);
    for (size_t i = 0; i < w.n; i++) w[i] = plw::f32_to_bf16(0.f);
    Buf<bf16> dinp(size_t(N) * 4, 0);
    for (size_t i = 0; i < dinp.n; i++) dinp[i] = plw::f32_to_bf16(0.f);
    std::vector<float> dw(size_t(4) * OC, 0.f), db(OC, 0.5f);
    plw::cuda::linear_backward(dinp.p, dw.data(), db.data(), dout.p, inp.p, w.p, N, 4, OC,
                               WeightLayout::InOut);
    int bad = 0;
    for (int o = 0; o < OC; o++) bad += db[o] != float(exact[o]);
    EXPECT(bad == 0, "dbias exact N=%d OC=%d: %d columns wrong", N, OC, bad);
    std::printf("  bf16 dbias exact N=%d OC=%d off=%d\n", N, OC, off);
}

// ---------------------------------------------------------------- adamw
// The overloads with and without the bf16 copy give the same bits; the bf16 copy is the new
// parameter rounded to nearest even; the CPU twin agrees to a few f32 ulps (FMA contraction
// on the GPU side may differ in the last bit).
void test_adamw(size_t n, int off, int boff) {
    Buf<float> p0(n, off), m0(n, off), v0(n, off), g(n, off);
    fill(p0.p, n, 1.f);
    fill(m0.p, n, 0.1f);
    fill(v0.p, n, 0.01f);
    for (size_t i = 0; i < n; i++) v0[i] = std::fabs(v0[i]);
    fill(g.p, n, 0.5f);
    if (n > 3) p0[1] = 1e30f, p0[2] = -0.f, g[3] = 0.f;  // big, signed zero, zero gradient
    plw::cpu::AdamWParams hp{3e-4, 0.9, 0.999, 1e-8, 0.1, 3, 0.7f};
    Buf<float> pb(n, off), mb(n, off), vb(n, off), pc(n, off), mc(n, off), vc(n, off), pd(n, off), md(n, off),
        vd(n, off), pe(n, off), me(n, off), ve(n, off);
    for (auto* b : {&pb, &pc, &pd, &pe}) std::memcpy(b->p, p0.p, n * 4);
    for (auto* b : {&mb, &mc, &md, &me}) std::memcpy(b->p, m0.p, n * 4);
    for (auto* b : {&vb, &vc, &vd, &ve}) std::memcpy(b->p, v0.p, n * 4);
    Buf<bf16> pbf(n, boff);  // NaN garbage
    for (int step = 3; step <= 4; step++) {  // two steps: the state carries over
        hp.step = step;
        plw::cuda::adamw_update(pb.p, mb.p, vb.p, g.p, n, hp);
        plw::cuda::adamw_update(pc.p, mc.p, vc.p, g.p, n, hp, nullptr);
        plw::cuda::adamw_update(pd.p, md.p, vd.p, g.p, n, hp, pbf.p);
        plw::cpu::adamw_update(pe.p, me.p, ve.p, g.p, n, hp);
    }
    test::same_bits("adamw(null) p", pc.p, pb.p, n * 4);
    test::same_bits("adamw(null) m", mc.p, mb.p, n * 4);
    test::same_bits("adamw(null) v", vc.p, vb.p, n * 4);
    test::same_bits("adamw(bf16) p", pd.p, pb.p, n * 4);
    test::same_bits("adamw(bf16) m", md.p, mb.p, n * 4);
    test::same_bits("adamw(bf16) v", vd.p, vb.p, n * 4);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad += pbf[i].bits != plw::f32_to_bf16(pd[i]).bits;
    EXPECT(bad == 0, "adamw params_bf16: %d of %zu != f32_to_bf16(params)", bad, n);
    std::vector<double> bp(n), bm(n), bv(n);
    for (size_t i = 0; i < n; i++) {
        bp[i] = 4e-7 * std::fabs(pe[i]) + 1e-12;
        bm[i] = 4e-7 * std::fabs(me[i]) + 1e-12;
        bv[i] = 4e-7 * std::fabs(ve[i]) + 1e-15;
    }
    within("adamw p vs cpu", pb.p, pe.p, bp);
    within("adamw m vs cpu", mb.p, me.p, bm);
    within("adamw v vs cpu", vb.p, ve.p, bv);
    std::printf("  adamw n=%zu off=%d boff=%d\n", n, off, boff);
}

void test_grad_sum_squares(size_t n, int off) {
    Buf<float> g(n, off);
    fill(g.p, n, 0.5f);
    double exact = 0;
    for (size_t i = 0; i < n; i++) exact += double(g[i]) * g[i];
    const double got = plw::cuda::grad_sum_squares(g.p, n);
    // f32 squares summed in double: a few f32 ulps of each term
    EXPECT(std::fabs(got - exact) <= 1e-6 * exact + 1e-30, "grad_sum_squares n=%zu: %.17g vs %.17g", n, got, exact);
    EXPECT(plw::cuda::grad_sum_squares(g.p, n) == got, "grad_sum_squares n=%zu not deterministic", n);
    std::printf("  grad_sum_squares n=%zu off=%d\n", n, off);
}

}  // namespace

int main(int argc, char** argv) {
    if (test::selected(argc, argv, "linear")) {
        test_linear_f32(5, 8, 12, true, 0);
        test_linear_f32(37, 24, 40, true, 0);
        test_linear_f32(37, 24, 40, false, 0);
        test_linear_f32(37, 24, 40, true, 1);   // unaligned bias: add kernel
        test_linear_f32(300, 16, 36, true, 0);  // dbias two-stage
        test_linear_f32(1, 32, 96, true, 0);
        test_linear_f32(0, 8, 12, true, 0);
        test_linear_bf16(5, 8, 12, true, 0, 0);
        test_linear_bf16(37, 24, 40, true, 0, 0);
        test_linear_bf16(37, 24, 40, false, 0, 0);
        test_linear_bf16(37, 24, 40, true, 1, 0);   // bias 2 bytes off: add kernel
        test_linear_bf16(37, 24, 40, true, 4, 0);   // bias 8 bytes off: add kernel
        test_linear_bf16(37, 24, 40, true, 8, 0);   // bias 16 bytes off: epilogue
        test_linear_bf16(33, 7, 13, true, 1, 1);    // odd sizes, misaligned activations
        test_linear_bf16(300, 16, 36, true, 0, 0);  // dbias two-stage
        test_linear_bf16(300, 16, 35, true, 3, 3);
        test_linear_bf16(1, 32, 96, true, 0, 0);
        // nn.Linear layout: weight (OC, IC)
        test_linear_f32(5, 8, 12, true, 0, WeightLayout::OutIn);
        test_linear_f32(37, 24, 40, false, 0, WeightLayout::OutIn);
        test_linear_f32(37, 24, 40, true, 1, WeightLayout::OutIn);   // add kernel
        test_linear_f32(300, 16, 36, true, 0, WeightLayout::OutIn);  // dbias two-stage
        test_linear_f32(0, 8, 12, true, 0, WeightLayout::OutIn);
        test_linear_bf16(37, 24, 40, true, 0, 0, WeightLayout::OutIn);
        test_linear_bf16(37, 24, 40, false, 0, 0, WeightLayout::OutIn);
        test_linear_bf16(37, 24, 40, true, 4, 0, WeightLayout::OutIn);  // add kernel
        test_linear_bf16(33, 7, 13, true, 1, 1, WeightLayout::OutIn);   // odd sizes, misaligned
        test_linear_bf16(300, 16, 35, true, 3, 3, WeightLayout::OutIn);
        test_linear_bf16(1, 32, 96, true, 0, 0, WeightLayout::OutIn);
        test_dbias_exact(5, 40, 0);
        test_dbias_exact(300, 70, 1);
        test_dbias_exact(129, 33, 0);
    }
    if (test::selected(argc, argv, "adamw")) {
        for (size_t n : {1, 3, 4, 17, 1000, 1027}) {
            test_adamw(n, 0, 0);  // vec4 where n % 4 == 0
            test_adamw(n, 1, 0);  // f32 misaligned: scalar
            test_adamw(n, 0, 1);  // bf16 copy 2 bytes off: scalar
            test_adamw(n, 0, 4);  // bf16 copy 8 bytes off: still vec4
        }
        for (size_t n : {1, 5, 1000, 40003}) test_grad_sum_squares(n, n == 5 ? 1 : 0);  // 40003: 40 partials
    }
    return test::finish("test_linear_adamw");
}
