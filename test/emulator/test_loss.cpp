// The loss ops in the emulator against the CPU reference: weighted cross-entropy (f32 and
// bf16, every kernel path), the loss sum and target check, the fused LM head, and the decode
// ops of generation.
//
// Tolerances. f32: the same math in another order (exp2f with log2(e) instead of exp, other
// reduction trees): 1e-5 relative to the row's largest magnitude, a few f32 ulps of a
// well-conditioned sum. bf16 results are the f32 result rounded once to nearest even: half an
// ulp, 2^-8 relative, on top of that.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "native/cpu/cross_entropy.h"
#include "native/cpu/decode.h"
#include "native/cpu/fused_head.h"
#include "native/cuda/cross_entropy.h"
#include "native/cuda/decode.h"
#include "native/cuda/fused_head.h"
#include "support.h"

using plw::bf16;
using test::Buf;

namespace {

const double kHalfUlp = std::ldexp(1.0, -8);  // bf16 rounding to nearest, relative

// |got - ref| <= rtol |ref| + atol for every element.
void within(const char* what, const float* got, const float* ref, size_t n, double rtol, double atol) {
    size_t bad = 0, worst = 0;
    double worst_ratio = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = std::fabs(double(got[i]) - ref[i]), tol = rtol * std::fabs(ref[i]) + atol;
        const double ratio = std::isnan(d) ? INFINITY : d / tol;
        if (!(d <= tol)) bad++;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    EXPECT(bad == 0, "%s: %zu of %zu out of tolerance; worst at %zu got %.9g ref %.9g", what, bad, n, worst,
           got[worst], ref[worst]);
}

double max_abs(const std::vector<float>& v) {
    double m = 0;
    for (float x : v) m = std::max(m, double(std::fabs(x)));
    return m;
}

// Targets and weights with every kind of row: zero weight (with a junk target), small and
// large weights.
void make_rows(int N, int V, std::vector<int32_t>& targets, std::vector<float>& weights) {
    targets.resize(N);
    weights.resize(N);
    for (int n = 0; n < N; n++) {
        weights[n] = n % 4 == 1 ? 0.f : n % 4 == 2 ? 0.1f : 1.f;
        targets[n] = weights[n] == 0 ? -100 : int(test::rng() % V);
    }
}

// ---------------------------------------------------------------- cross-entropy
template <bool BF16>
void test_cross_entropy(int N, int V, int Vp, int off) {
    using T = std::conditional_t<BF16, bf16, float>;
    std::vector<float> logits(size_t(N) * Vp);
    Buf<T> lg(logits.size(), off), dl(logits.size(), off);
    test::fill(logits.data(), logits.size(), 3.f, 1.f);
    for (size_t i = 0; i < logits.size(); i++) {
        if constexpr (BF16) {
            lg[i] = plw::f32_to_bf16(logits[i]);
            logits[i] = plw::bf16_to_f32(lg[i]);
        } else {
            lg[i] = logits[i];
        }
    }
    std::vector<int32_t> targets;
    std::vector<float> weights;
    make_rows(N, V, targets, weights);
    const float gs = 0.25f;

    std::vector<float> lc(N), dc(logits.size()), lf(N, 7.f), lb(N, 7.f);
    plw::cpu::weighted_cross_entropy_backward(dc.data(), lc.data(), logits.data(), targets.data(), weights.data(), gs,
                                              N, V, Vp);
    plw::cuda::weighted_cross_entropy_forward(lf.data(), lg.p, targets.data(), weights.data(), N, V, Vp);
    plw::cuda::weighted_cross_entropy_backward(dl.p, lb.data(), lg.p, targets.data(), weights.data(), gs, N, V, Vp);
    within("ce forward losses", lf.data(), lc.data(), N, 1e-5, 1e-6);
    test::same_bits("ce backward losses == forward losses", lb.data(), lf.data(), N * 4);
    std::vector<float> dg(logits.size());
    for (size_t i = 0; i < dg.size(); i++) {
        if constexpr (BF16) dg[i] = plw::bf16_to_f32(dl[i]);
        else dg[i] = dl[i];
    }
    for (int n = 0; n < N; n++) {
        const std::vector<float> row(dc.begin() + size_t(n) * Vp, dc.begin() + size_t(n + 1) * Vp);
        within("ce dlogits", dg.data() + size_t(n) * Vp, row.data(), Vp, BF16 ? kHalfUlp + 1e-5 : 1e-5,
               1e-5 * max_abs(row) + 1e-30);
        for (int v = V; v < Vp; v++) EXPECT(dg[size_t(n) * Vp + v] == 0.f, "padding gradient at row %d col %d", n, v);
    }
    // in place: dlogits aliases logits
    std::vector<float> li(N);
    plw::cuda::weighted_cross_entropy_backward(lg.p, li.data(), lg.p, targets.data(), weights.data(), gs, N, V, Vp);
    test::same_bits("ce in place", lg.p, dl.p, logits.size() * sizeof(T));
    std::printf("cross-entropy %s N=%d V=%d Vp=%d off=%d done\n", BF16 ? "bf16" : "f32", N, V, Vp, off);
}

void test_loss_sum_and_targets() {
    for (int N : {1, 37, 3000}) {
        std::vector<float> losses(N), weights(N);
        test::fill(losses.data(), N, 2.f);
        for (int n = 0; n < N; n++) weights[n] = n % 3 == 0 ? 0.f : 0.5f * (n % 5);
        double ls_c, ws_c, ls_g, ws_g;
        plw::cpu::weighted_loss_sum(&ls_c, &ws_c, losses.data(), weights.data(), N);
        plw::cuda::weighted_loss_sum(&ls_g, &ws_g, losses.data(), weights.data(), N);
        EXPECT(std::fabs(ls_g - ls_c) <= 1e-12 * (std::fabs(ls_c) + N), "loss sum N=%d: %.17g vs %.17g", N, ls_g, ls_c);
        EXPECT(ws_g == ws_c, "weight sum N=%d: %.17g vs %.17g", N, ws_g, ws_c);
    }
    const int N = 2000, V = 50;
    std::vector<int32_t> targets(N);
    std::vector<float> weights(N, 1.f);
    for (int n = 0; n < N; n++) targets[n] = n % V;
    EXPECT(plw::cuda::find_invalid_target(targets.data(), weights.data(), N, V) == -1, "valid targets flagged");
    targets[1500] = V;
    targets[1700] = -1;
    weights[700] = 0.f;
    targets[700] = -100;  // ignored: zero weight
    EXPECT(plw::cuda::find_invalid_target(targets.data(), weights.data(), N, V) == 1500, "first invalid target");
    EXPECT(plw::cuda::find_invalid_target(targets.data(), weights.data(), N, V) ==
               plw::cpu::find_invalid_target(targets.data(), weights.data(), N, V),
           "find_invalid_target differs from the CPU");
    std::printf("loss sum and target check done\n");
}

// ---------------------------------------------------------------- fused head
// hidden and wte f32 (TF32 GEMMs on the GPU; the reference cuBLASLt computes them exactly) or
// bf16 (inputs on the bf16 grid, logits rounded to bf16 before the softmax: 2e-2 of the scale,
// as in test/cuda.test.ts). A zero-weight chunk and padding rows of wte (V <= rows) included.
template <bool BF16>
void test_fused_head(int N, int C, int V, int rows, int chunk) {
    std::vector<float> hidden(size_t(N) * C), wte(size_t(rows) * C);
    std::vector<bf16> hb(hidden.size()), wb(wte.size());
    test::fill_bf16(hidden.data(), hb.data(), hidden.size(), 1.f);
    test::fill_bf16(wte.data(), wb.data(), wte.size(), 0.3f);
    std::vector<int32_t> targets;
    std::vector<float> weights;
    make_rows(N, V, targets, weights);
    if (N > 2 * chunk)
        for (int n = 0; n < chunk; n++) weights[n] = 0, targets[n] = -1;
    const float gs = 0.25f;
    std::vector<float> dw0(wte.size());
    test::fill(dw0.data(), dw0.size(), 1.f);

    std::vector<float> lc(N), dhc(hidden.size()), dwc(dw0), sc(plw::cpu::fused_head_scratch_floats(chunk, V));
    plw::cpu::fused_head_cross_entropy_backward(lc.data(), dhc.data(), dwc.data(), sc.data(), hidden.data(), wte.data(),
                                                targets.data(), weights.data(), gs, N, C, V, chunk);
    void* scratch = std::aligned_alloc(256, (plw::cuda::fused_head_scratch_bytes(chunk, V, BF16 ? 2 : 4) + 255) / 256 * 256);
    std::vector<float> lg(N, 7.f), lf(N, 7.f), dhg(hidden.size(), 9.f), dwg(dw0);
    if constexpr (BF16) {
        plw::cuda::fused_head_cross_entropy_backward(lg.data(), dhg.data(), dwg.data(), scratch, hb.data(), wb.data(),
                                                     targets.data(), weights.data(), gs, N, C, V, chunk);
        plw::cuda::fused_head_cross_entropy_forward(lf.data(), scratch, hb.data(), wb.data(), targets.data(),
                                                    weights.data(), N, C, V, chunk);
        // the overload with a bf16 dhidden: the same losses and dwte, dhidden rounded once
        std::vector<float> l2(N), dw2(dw0);
        std::vector<bf16> dh2(hidden.size());
        plw::cuda::fused_head_cross_entropy_backward(l2.data(), dh2.data(), dw2.data(), scratch, hb.data(), wb.data(),
                                                     targets.data(), weights.data(), gs, N, C, V, chunk);
        test::same_bits("fused bf16-dhidden losses", l2.data(), lg.data(), N * 4);
        test::same_bits("fused bf16-dhidden dwte", dw2.data(), dwg.data(), dwg.size() * 4);
        int differ = 0;
        for (size_t i = 0; i < dh2.size(); i++) differ += dh2[i].bits != plw::f32_to_bf16(dhg[i]).bits;
        EXPECT(differ == 0, "fused bf16 dhidden: %d of %zu are not the f32 dhidden rounded", differ, dh2.size());
        std::vector<bf16> dh3(hidden.size());  // null losses
        plw::cuda::fused_head_cross_entropy_backward(nullptr, dh3.data(), dw2.data(), scratch, hb.data(), wb.data(),
                                                     targets.data(), weights.data(), gs, N, C, V, chunk);
        test::same_bits("fused bf16 dhidden (null losses)", dh3.data(), dh2.data(), dh2.size() * 2);
    } else {
        plw::cuda::fused_head_cross_entropy_backward(lg.data(), dhg.data(), dwg.data(), scratch, hidden.data(),
                                                     wte.data(), targets.data(), weights.data(), gs, N, C, V, chunk);
        plw::cuda::fused_head_cross_entropy_forward(lf.data(), scratch, hidden.data(), wte.data(), targets.data(),
                                                    weights.data(), N, C, V, chunk);
    }
    std::free(scratch);
    const double tol = BF16 ? 2e-2 : 1e-4;
    within("fused losses", lg.data(), lc.data(), N, 0, tol * max_abs(lc) + 1e-6);
    within("fused forward losses", lf.data(), lc.data(), N, 0, tol * max_abs(lc) + 1e-6);
    within("fused dhidden", dhg.data(), dhc.data(), dhc.size(), 0, tol * max_abs(dhc) + 1e-6);
    within("fused dwte", dwg.data(), dwc.data(), dwc.size(), 0, tol * max_abs(dwc) + 1e-6);
    for (size_t i = size_t(V) * C; i < dwg.size(); i++) EXPECT(dwg[i] == dw0[i], "padding row of dwte touched at %zu", i);
    std::printf("fused head %s N=%d C=%d V=%d rows=%d chunk=%d done\n", BF16 ? "bf16" : "f32", N, C, V, rows, chunk);
}

// ---------------------------------------------------------------- decode
// NH query heads over NKV KV heads of hs (C = NH * hs); the cache rows are NKV * hs wide.
void test_decode(int T, int S, int NH, int NKV, int hs, int V) {
    const int C = NH * hs, KV = NKV * hs;
    std::vector<float> q(C), kc(size_t(S) * KV), vc(size_t(S) * KV), wte(size_t(V) * C);
    test::fill(q.data(), C, 1.5f);
    test::fill(kc.data(), kc.size(), 1.f);
    test::fill(vc.data(), vc.size(), 1.f);
    test::fill(wte.data(), wte.size(), 0.3f);
    std::vector<float> oc(C), og(C, NAN);
    plw::cpu::attention_decode_forward(oc.data(), q.data(), kc.data(), vc.data(), T, NH, NKV, hs);
    plw::cuda::attention_decode_forward(og.data(), q.data(), kc.data(), vc.data(), T, NH, NKV, hs);
    within("decode attention", og.data(), oc.data(), C, 1e-5, 1e-5 * max_abs(oc) + 1e-7);
    std::vector<float> hc(V), hg(V, NAN);
    plw::cpu::head_logits_forward(hc.data(), q.data(), wte.data(), C, V);
    plw::cuda::head_logits_forward(hg.data(), q.data(), wte.data(), C, V);
    within("decode head logits", hg.data(), hc.data(), V, 1e-5, 1e-5 * max_abs(hc) + 1e-7);
    std::printf("decode T=%d NH=%d NKV=%d hs=%d V=%d done\n", T, NH, NKV, hs, V);
}

}  // namespace

int main(int argc, char** argv) {
    if (test::selected(argc, argv, "ce")) {
        test_cross_entropy<false>(7, 3, 3, 0);         // tiny V: one warp, scalar
        test_cross_entropy<false>(5, 50, 64, 0);       // registers, 1 pack per thread
        test_cross_entropy<false>(3, 5000, 5008, 0);   // registers, 2 packs
        test_cross_entropy<false>(2, 20000, 20000, 0); // registers, 8 packs
        test_cross_entropy<false>(2, 40000, 40064, 0); // streaming, vectorized
        test_cross_entropy<false>(3, 1001, 1003, 0);   // Vp % 4 != 0: streaming, scalar
        test_cross_entropy<false>(3, 500, 512, 1);     // misaligned: streaming, scalar
        test_cross_entropy<true>(5, 50, 64, 0);
        test_cross_entropy<true>(3, 9000, 9000, 0);    // registers, 2 packs
        test_cross_entropy<true>(2, 30000, 30016, 0);  // registers, 4 packs
        test_cross_entropy<true>(3, 1001, 1003, 0);    // streaming, scalar
        test_cross_entropy<true>(3, 500, 512, 3);      // misaligned
        test_loss_sum_and_targets();
    }
    if (test::selected(argc, argv, "fused")) {
        test_fused_head<false>(37, 24, 50, 64, 8);
        test_fused_head<false>(20, 16, 101, 101, 32);
        test_fused_head<true>(37, 24, 50, 64, 8);
        test_fused_head<true>(29, 32, 300, 304, 16);
    }
    if (test::selected(argc, argv, "decode")) {
        test_decode(1, 4, 2, 2, 8, 10);
        test_decode(37, 40, 3, 3, 16, 101);
        test_decode(300, 300, 4, 4, 16, 257);
        test_decode(37, 40, 4, 2, 16, 33);   // grouped-query: 2 query heads per KV head
        test_decode(50, 64, 6, 1, 8, 17);    // one KV head for all
        test_decode(9, 12, 3, 3, 300, 5);    // hs larger than the block
    }
    return test::finish("test_loss");
}
