// Checks of the CPU ops of the GPT-2 block and those the Llama block shares with it
// (native/cpu: layernorm, linear in both weight layouts, embedding with and without a position
// table, gelu, residual, attention with grouped-query heads and q/k/v strides, decode
// attention), run by test/native-ops.test.ts; `plw_native_tests --bench` times them instead.
//
// For each op, on shapes that include the odd ones (C = 1, C = 37, T = 1, NH = 1, NKV = 1,
// packed segments, segments == nullptr, padded row strides):
//   forward       vs a float64 reference written here from the math (no kernel code shared;
//                 attention's in attention_reference.h, shared with flash_attention_check.cpp)
//   backward      vs a float64 analytic backward, and vs central finite differences of
//                 L = sum(g * out) (g random, fixed), L computed in double from the float
//                 forward of the kernel itself
//   accumulate    gradients pre-filled with G0 come out as G0 + the gradient
//   threads       forward and backward bitwise equal with 1, 2 and 3 OpenMP threads
//   attention     a packed row of two segments gives what the two run as separate rows give;
//                 GPT-2's fused qkv layout gives bitwise what separate q/k/v buffers give, and
//                 GQA bitwise what multi-head attention on repeated KV heads gives (dk/dv: the
//                 sums over the repeated heads); decode == the full attention's last row
//
// Error metric, everywhere unless said otherwise:
//   max_rel_err = max_i |got_i - ref_i| / max_i |ref_i|
// the largest error relative to the tensor's scale (elementwise relative errors blow up
// where ref_i ~ 0 and say nothing there). f32 kernels land at 1e-7..1e-6 on it. Where a
// tensor is 0 by the math (layernorm's dinp at C = 1), the scale is that of its terms.
//
// Output: one line per check ("ok   ..." or "FAIL ..."), then "N passed, M failed" alone
// on the last line; the exit code is 1 if any check failed.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "../../native/cpu/attention.h"
#include "../../native/cpu/decode.h"
#include "../../native/cpu/embedding.h"
#include "../../native/cpu/gelu.h"
#include "../../native/cpu/layernorm.h"
#include "../../native/cpu/linear.h"
#include "../../native/cpu/residual.h"
#include "attention_reference.h"
#include "check.h"

using namespace plw_check;
using plw::WeightLayout;

namespace {

// ================================================================ layernorm
void layernorm_ref(DVec& out, DVec& mean, DVec& rstd, const Vec& x, const Vec& w, const Vec& b,
                   int N, int C) {
    out.assign(static_cast<size_t>(N) * C, 0.0);
    mean.assign(N, 0.0);
    rstd.assign(N, 0.0);
    for (int n = 0; n < N; n++) {
        const float* xr = &x[static_cast<size_t>(n) * C];
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        const double rs = 1.0 / std::sqrt(v + 1e-5);
        for (int c = 0; c < C; c++) out[static_cast<size_t>(n) * C + c] = (xr[c] - m) * rs * w[c] + b[c];
        mean[n] = m;
        rstd[n] = rs;
    }
}

// d/dx of sum(g * ((x - mean) * rstd * w + b)) through mean and rstd, in double.
void layernorm_backward_ref(DVec& dx, DVec& dw, DVec& db, const Vec& g, const Vec& x, const Vec& w,
                            int N, int C) {
    dx.assign(static_cast<size_t>(N) * C, 0.0);
    dw.assign(C, 0.0);
    db.assign(C, 0.0);
    for (int n = 0; n < N; n++) {
        const size_t row = static_cast<size_t>(n) * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += x[row + c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[row + c] - m) * (x[row + c] - m);
        v /= C;
        const double rs = 1.0 / std::sqrt(v + 1e-5);
        double a = 0.0, bb = 0.0;
        for (int c = 0; c < C; c++) {
            const double norm = (x[row + c] - m) * rs;
            a += g[row + c] * static_cast<double>(w[c]);
            bb += g[row + c] * static_cast<double>(w[c]) * norm;
            dw[c] += g[row + c] * norm;
            db[c] += g[row + c];
        }
        a /= C;
        bb /= C;
        for (int c = 0; c < C; c++) {
            const double norm = (x[row + c] - m) * rs;
            dx[row + c] = (g[row + c] * static_cast<double>(w[c]) - a - norm * bb) * rs;
        }
    }
}

void test_layernorm(int N, int C, Rng& r) {
    const std::string tag = fmt("N=%d C=%d", N, C);
    const size_t NC = static_cast<size_t>(N) * C;
    // A mean offset of 1.5 against a std of 2: the variance must not come from E[x^2] - m^2.
    Vec x = randn(NC, r, 2.0f, 1.5f), w = randn(C, r, 0.5f, 1.0f), b = randn(C, r, 0.5f);
    const Vec g = randn(NC, r);
    Vec out(NC), mean(N), rstd(N);
    plw::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
    DVec rout, rmean, rrstd;
    layernorm_ref(rout, rmean, rrstd, x, w, b, N, C);
    check_err("layernorm forward " + tag, std::max({rel_err(out, rout), rel_err(mean, rmean), rel_err(rstd, rrstd)}),
              kTolRef);

    Vec dx(NC, 0.0f), dw(C, 0.0f), db(C, 0.0f);
    plw::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), mean.data(),
                                 rstd.data(), N, C);
    DVec rdx, rdw, rdb;
    layernorm_backward_ref(rdx, rdw, rdb, g, x, w, N, C);
    // At C = 1, dinp is 0 by the math (x - mean(x) = 0) and the kernel's is rounding noise
    // of its terms, ~rstd * |dout * w| * 6e-8: it is measured against that scale.
    double dx_scale = 0.0;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            dx_scale = std::max(dx_scale, std::fabs(g[static_cast<size_t>(n) * C + c] * w[c] * rrstd[n]));
        }
    }
    check_err("layernorm backward vs float64 " + tag,
              std::max({rel_err(dx, rdx, dx_scale), rel_err(dw, rdw), rel_err(db, rdb)}), kTolRef);

    auto loss = [&] {
        Vec o(NC), m(N), s(N);
        plw::cpu::layernorm_forward(o.data(), m.data(), s.data(), x.data(), w.data(), b.data(), N, C);
        return dot_d(g, o);
    };
    check_err("layernorm backward vs finite differences " + tag,
              std::max({fd_err(loss, x, dx, r, dx_scale), fd_err(loss, w, dw, r), fd_err(loss, b, db, r)}),
              kTolFd);

    const Vec gx0 = randn(NC, r), gw0 = randn(C, r), gb0 = randn(C, r);
    Vec ax = gx0, aw = gw0, ab = gb0;
    plw::cpu::layernorm_backward(ax.data(), aw.data(), ab.data(), g.data(), x.data(), w.data(), mean.data(),
                                 rstd.data(), N, C);
    check_err("layernorm backward accumulates (+=) " + tag,
              std::max({rel_err(ax, add(gx0, dx)), rel_err(aw, add(gw0, dw)), rel_err(ab, add(gb0, db))}),
              kTolAccum);

    check_threads("layernorm " + tag, [&] {
        Vec o(NC), m(N), s(N), ddx = gx0, ddw = gw0, ddb = gb0;
        plw::cpu::layernorm_forward(o.data(), m.data(), s.data(), x.data(), w.data(), b.data(), N, C);
        plw::cpu::layernorm_backward(ddx.data(), ddw.data(), ddb.data(), g.data(), x.data(), w.data(), m.data(),
                                     s.data(), N, C);
        return std::vector<Vec>{o, m, s, ddx, ddw, ddb};
    });
}

// ================================================================ linear
// Both weight layouts: InOut stores W (IC,OC) (Conv1D), OutIn stores W^T, i.e. (OC,IC)
// (nn.Linear); the reference reads W[i][j] through widx and dweight is compared in the
// weight's own layout.
void test_linear(int N, int IC, int OC, bool with_bias, WeightLayout layout, Rng& r) {
    const bool in_out = layout == WeightLayout::InOut;
    const std::string tag = fmt("N=%d IC=%d OC=%d %s%s", N, IC, OC, in_out ? "InOut" : "OutIn",
                                with_bias ? "" : " (no bias)");
    const size_t NI = static_cast<size_t>(N) * IC, NO = static_cast<size_t>(N) * OC;
    const size_t IO = static_cast<size_t>(IC) * OC;
    auto widx = [&](int i, int j) {  // W[i][j] (in channel i, out channel j) in the weight's storage
        return in_out ? static_cast<size_t>(i) * OC + j : static_cast<size_t>(j) * IC + i;
    };
    Vec x = randn(NI, r), w = randn(IO, r, 1.0f / std::sqrt(static_cast<float>(IC))), b = randn(OC, r);
    const Vec g = randn(NO, r);
    const float* bias = with_bias ? b.data() : nullptr;
    Vec out(NO, NAN);  // without bias, out is written without being read
    plw::cpu::linear_forward(out.data(), x.data(), w.data(), bias, N, IC, OC, layout);
    DVec rout(NO), rdx(NI, 0.0), rdw(IO, 0.0), rdb(OC, 0.0);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < OC; j++) {
            double s = with_bias ? b[j] : 0.0;
            for (int i = 0; i < IC; i++) s += static_cast<double>(x[static_cast<size_t>(n) * IC + i]) * w[widx(i, j)];
            rout[static_cast<size_t>(n) * OC + j] = s;
            const double gj = g[static_cast<size_t>(n) * OC + j];
            rdb[j] += gj;
            for (int i = 0; i < IC; i++) {
                rdx[static_cast<size_t>(n) * IC + i] += gj * w[widx(i, j)];
                rdw[widx(i, j)] += gj * x[static_cast<size_t>(n) * IC + i];
            }
        }
    }
    check_err("linear forward " + tag, rel_err(out, rout), kTolRef);

    Vec dx(NI, 0.0f), dw(IO, 0.0f), db(OC, 0.0f);
    float* dbias = with_bias ? db.data() : nullptr;
    plw::cpu::linear_backward(dx.data(), dw.data(), dbias, g.data(), x.data(), w.data(), N, IC, OC, layout);
    double err = std::max(rel_err(dx, rdx), rel_err(dw, rdw));
    if (with_bias) err = std::max(err, rel_err(db, rdb));
    check_err("linear backward vs float64 " + tag, err, kTolRef);

    auto loss = [&] {
        Vec o(NO);
        plw::cpu::linear_forward(o.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC, layout);
        return dot_d(g, o);
    };
    err = std::max(fd_err(loss, x, dx, r), fd_err(loss, w, dw, r));
    if (with_bias) err = std::max(err, fd_err(loss, b, db, r));
    check_err("linear backward vs finite differences " + tag, err, kTolFd);

    const Vec gx0 = randn(NI, r), gw0 = randn(IO, r), gb0 = randn(OC, r);
    Vec ax = gx0, aw = gw0, ab = gb0;
    plw::cpu::linear_backward(ax.data(), aw.data(), with_bias ? ab.data() : nullptr, g.data(), x.data(), w.data(),
                              N, IC, OC, layout);
    err = std::max(rel_err(ax, add(gx0, dx)), rel_err(aw, add(gw0, dw)));
    err = std::max(err, rel_err(ab, with_bias ? add(gb0, db) : to_d(gb0)));  // no dbias: untouched
    check_err("linear backward accumulates (+=) " + tag, err, kTolAccum);

    check_threads("linear " + tag, [&] {
        Vec o(NO), ddx = gx0, ddw = gw0, ddb = gb0;
        plw::cpu::linear_forward(o.data(), x.data(), w.data(), bias, N, IC, OC, layout);
        plw::cpu::linear_backward(ddx.data(), ddw.data(), with_bias ? ddb.data() : nullptr, g.data(), x.data(),
                                  w.data(), N, IC, OC, layout);
        return std::vector<Vec>{o, ddx, ddw, ddb};
    });
}

// OutIn with the transposed weight is the same linear map as InOut: equal to f32 rounding
// (the SGEMM reads the weight with another stride, and so may sum in another order).
void test_linear_layouts_agree(int N, int IC, int OC, Rng& r) {
    const Vec x = randn(static_cast<size_t>(N) * IC, r), w = randn(static_cast<size_t>(IC) * OC, r), b = randn(OC, r);
    const Vec g = randn(static_cast<size_t>(N) * OC, r);
    Vec wt(w.size());  // (OC, IC)
    for (int i = 0; i < IC; i++)
        for (int j = 0; j < OC; j++) wt[static_cast<size_t>(j) * IC + i] = w[static_cast<size_t>(i) * OC + j];
    Vec o1(g.size()), o2(g.size()), dx1(x.size(), 0.0f), dx2(x.size(), 0.0f), dw1(w.size(), 0.0f),
        dw2(w.size(), 0.0f), db1(OC, 0.0f), db2(OC, 0.0f);
    plw::cpu::linear_forward(o1.data(), x.data(), w.data(), b.data(), N, IC, OC, WeightLayout::InOut);
    plw::cpu::linear_forward(o2.data(), x.data(), wt.data(), b.data(), N, IC, OC, WeightLayout::OutIn);
    plw::cpu::linear_backward(dx1.data(), dw1.data(), db1.data(), g.data(), x.data(), w.data(), N, IC, OC,
                              WeightLayout::InOut);
    plw::cpu::linear_backward(dx2.data(), dw2.data(), db2.data(), g.data(), x.data(), wt.data(), N, IC, OC,
                              WeightLayout::OutIn);
    Vec dw2t(w.size());  // back to (IC, OC)
    for (int i = 0; i < IC; i++)
        for (int j = 0; j < OC; j++) dw2t[static_cast<size_t>(i) * OC + j] = dw2[static_cast<size_t>(j) * IC + i];
    check_err(fmt("linear OutIn(W^T) == InOut(W) (out, dinp, dweight^T, dbias)  N=%d IC=%d OC=%d", N, IC, OC),
              std::max({rel_err(o2, o1), rel_err(dx2, dx1), rel_err(dw2t, dw1), rel_err(db2, db1)}), kTolRef);
}

// ================================================================ embedding
// Token (+ position) embedding; wpe == nullptr is the Llama case (no position table, positions
// not read: passed as nullptr). Sums of one or two floats per element: the forward is exact,
// the backward sums in f32 in row order, as the double reference does up to rounding.
void test_embedding(int N, int C, int V, int maxT, bool with_pos, Rng& r) {
    const std::string tag = fmt("N=%d C=%d V=%d%s", N, C, V, with_pos ? fmt(" maxT=%d", maxT).c_str() : " (no wpe)");
    const Vec wte = randn(static_cast<size_t>(V) * C, r), wpe = randn(static_cast<size_t>(maxT) * C, r);
    const Vec g = randn(static_cast<size_t>(N) * C, r);
    IVec tok(N), pos(N);
    for (int n = 0; n < N; n++) {
        tok[n] = static_cast<int32_t>(r.next() % (n % 3 == 0 ? 2 : V));  // repeats: rows sum into one
        pos[n] = n % maxT;
    }
    const float* wpe_p = with_pos ? wpe.data() : nullptr;
    const int32_t* pos_p = with_pos ? pos.data() : nullptr;
    Vec out(g.size(), NAN);
    plw::cpu::embedding_forward(out.data(), tok.data(), pos_p, wte.data(), wpe_p, N, C);
    DVec rout(g.size()), rdte(wte.size(), 0.0), rdpe(wpe.size(), 0.0);
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            const size_t i = static_cast<size_t>(n) * C + c;
            rout[i] = static_cast<double>(wte[static_cast<size_t>(tok[n]) * C + c]) +
                      (with_pos ? wpe[static_cast<size_t>(pos[n]) * C + c] : 0.0);
            rdte[static_cast<size_t>(tok[n]) * C + c] += g[i];
            rdpe[static_cast<size_t>(pos[n]) * C + c] += g[i];
        }
    }
    check_err("embedding forward " + tag, rel_err(out, rout), kTolRef);

    // += onto G0; without positions, dwpe (not passed) must stay G0 exactly
    const Vec gte0 = randn(wte.size(), r), gpe0 = randn(wpe.size(), r);
    Vec dte = gte0, dpe = gpe0;
    plw::cpu::embedding_backward(dte.data(), with_pos ? dpe.data() : nullptr, g.data(), tok.data(), pos_p, N, C);
    DVec rte(wte.size()), rpe(wpe.size());
    for (size_t i = 0; i < rte.size(); i++) rte[i] = gte0[i] + rdte[i];
    for (size_t i = 0; i < rpe.size(); i++) rpe[i] = gpe0[i] + (with_pos ? rdpe[i] : 0.0);
    check_err("embedding backward (+=) vs float64 " + tag, std::max(rel_err(dte, rte), rel_err(dpe, rpe)), kTolRef);
    if (!with_pos) report(dpe == gpe0, "embedding backward without dwpe leaves it untouched " + tag);

    check_threads("embedding " + tag, [&] {
        Vec o(g.size()), t = gte0, p = gpe0;
        plw::cpu::embedding_forward(o.data(), tok.data(), pos_p, wte.data(), wpe_p, N, C);
        plw::cpu::embedding_backward(t.data(), with_pos ? p.data() : nullptr, g.data(), tok.data(), pos_p, N, C);
        return std::vector<Vec>{o, t, p};
    });
}

// ================================================================ gelu
// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): the same function, but the second form keeps
// its relative accuracy in double on the negative tail, where 1 + tanh(u) cancels (at
// x = -7.2, gelu = -4e-16 and 1 + tanh is below double's ulp of 1).
double gelu_ref(double x) {
    const double u = std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
    return x / (1.0 + std::exp(-2.0 * u));
}
// d/dx of 0.5 x (1 + tanh(u)), in the tanh form (not the kernel's); its cancellation on the
// tail is ~1e-16 absolute, invisible to the normalized metric.
double gelu_grad_ref(double x) {
    const double s = std::sqrt(2.0 / M_PI);
    const double th = std::tanh(s * (x + 0.044715 * x * x * x));
    return 0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * s * (1.0 + 3.0 * 0.044715 * x * x);
}

void test_gelu(size_t n, Rng& r) {
    const std::string tag = fmt("n=%zu", n);
    Vec x = randn(n, r, 2.5f);
    const float specials[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 1e-4f, -1e-4f, 0.5f, -0.75f, 3.0f, -3.0f, 8.0f, -8.0f};
    for (size_t i = 0; i < n && i < sizeof specials / sizeof specials[0]; i++) x[i] = specials[i];
    const Vec g = randn(n, r);
    Vec out(n);
    plw::cpu::gelu_forward(out.data(), x.data(), n);
    DVec rout(n), rdx(n);
    for (size_t i = 0; i < n; i++) {
        rout[i] = gelu_ref(x[i]);
        rdx[i] = gelu_grad_ref(x[i]) * g[i];
    }
    check_err("gelu forward " + tag, rel_err(out, rout), kTolRef);

    Vec dx(n, 0.0f);
    plw::cpu::gelu_backward(dx.data(), x.data(), g.data(), n);
    check_err("gelu backward vs float64 " + tag, rel_err(dx, rdx), kTolRef);

    auto loss = [&] {
        Vec o(n);
        plw::cpu::gelu_forward(o.data(), x.data(), n);
        return dot_d(g, o);
    };
    check_err("gelu backward vs finite differences " + tag, fd_err(loss, x, dx, r), kTolFd);

    const Vec gx0 = randn(n, r);
    Vec ax = gx0;
    plw::cpu::gelu_backward(ax.data(), x.data(), g.data(), n);
    check_err("gelu backward accumulates (+=) " + tag, rel_err(ax, add(gx0, dx)), kTolAccum);

    check_threads("gelu " + tag, [&] {
        Vec o(n), d = gx0;
        plw::cpu::gelu_forward(o.data(), x.data(), n);
        plw::cpu::gelu_backward(d.data(), x.data(), g.data(), n);
        return std::vector<Vec>{o, d};
    });
}

// Elementwise relative error of gelu on [-8, 8], where gelu(x) is as small as -3e-21: the
// sigmoid form keeps its relative accuracy on the negative tail, where 0.5 x (1 + tanh) in
// f32 would lose every digit. What remains there is the f32 rounding of the argument
// 2u = 2 sqrt(2/pi) (x + 0.044715 x^3), ~1e-7 relative, which exp multiplies by |2u| (49 at
// x = -8): measured 2e-7 for |x| < 1, 1.2e-6 at x = -4, 5.6e-6 at x = -8. Tolerance 2e-5.
void test_gelu_tails() {
    const size_t n = 16001;
    Vec x(n), out(n);
    for (size_t i = 0; i < n; i++) x[i] = -8.0f + 16.0f * static_cast<float>(i) / (n - 1);
    plw::cpu::gelu_forward(out.data(), x.data(), n);
    double err = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double ref = gelu_ref(x[i]);
        if (ref != 0.0) err = std::max(err, std::fabs(out[i] - ref) / std::fabs(ref));
    }
    report(err <= 2e-5, fmt("gelu forward elementwise on [-8, 8]  max_elem_rel_err=%.2e (tol 2e-05)", err));
}

// ================================================================ residual
void test_residual(size_t n, Rng& r) {
    const std::string tag = fmt("n=%zu", n);
    Vec a = randn(n, r), b = randn(n, r);
    const Vec g = randn(n, r);
    Vec out(n);
    plw::cpu::residual_forward(out.data(), a.data(), b.data(), n);
    DVec rout(n);
    for (size_t i = 0; i < n; i++) rout[i] = static_cast<double>(a[i]) + b[i];
    check_err("residual forward " + tag, rel_err(out, rout), kTolRef);

    Vec da(n, 0.0f), db(n, 0.0f);
    plw::cpu::residual_backward(da.data(), db.data(), g.data(), n);
    check_err("residual backward vs float64 " + tag, std::max(rel_err(da, g), rel_err(db, g)), kTolRef);

    auto loss = [&] {
        Vec o(n);
        plw::cpu::residual_forward(o.data(), a.data(), b.data(), n);
        return dot_d(g, o);
    };
    check_err("residual backward vs finite differences " + tag,
              std::max(fd_err(loss, a, da, r), fd_err(loss, b, db, r)), kTolFd);

    const Vec ga0 = randn(n, r), gb0 = randn(n, r);
    Vec aa = ga0, ab = gb0;
    plw::cpu::residual_backward(aa.data(), ab.data(), g.data(), n);
    Vec same = ga0;  // one tensor as both inputs (x + x): its gradient gets dout twice
    plw::cpu::residual_backward(same.data(), same.data(), g.data(), n);
    DVec twice(n);
    for (size_t i = 0; i < n; i++) twice[i] = static_cast<double>(ga0[i]) + 2.0 * g[i];
    check_err("residual backward accumulates (+=), also with da == db " + tag,
              std::max({rel_err(aa, add(ga0, g)), rel_err(ab, add(gb0, g)), rel_err(same, twice)}), kTolAccum);

    check_threads("residual " + tag, [&] {
        Vec o(n), d1 = ga0, d2 = gb0;
        plw::cpu::residual_forward(o.data(), a.data(), b.data(), n);
        plw::cpu::residual_backward(d1.data(), d2.data(), g.data(), n);
        return std::vector<Vec>{o, d1, d2};
    });
}

// ================================================================ attention
// AttLayout, the float64 reference (attention_ref, attention_backward_ref), padding_of, rows_of
// and the repeat_kv helpers: attention_reference.h.

// GPT-2's call: qkv (B,T,3C), q = qkv, k = qkv + C, v = qkv + 2C, strides 3C, NKV = NH.
AttLayout gpt2_layout(int B, int T, int C, int NH) { return AttLayout{B, T, NH, NH, C / NH, true}; }

void att_forward(const AttLayout& L, Vec& out, Vec& att, const Vec& X, const int32_t* seg) {
    plw::cpu::attention_forward(out.data(), att.data(), X.data(), X.data() + L.k_off(), X.data() + L.v_off(), seg,
                                L.B, L.T, L.NH, L.NKV, L.hs, L.q_stride(), L.kv_stride());
}

void att_backward(const AttLayout& L, Vec& dX, const Vec& g, const Vec& X, const Vec& att, const int32_t* seg) {
    plw::cpu::attention_backward(dX.data(), dX.data() + L.k_off(), dX.data() + L.v_off(), g.data(), X.data(),
                                 X.data() + L.k_off(), X.data() + L.v_off(), att.data(), seg, L.B, L.T, L.NH,
                                 L.NKV, L.hs, L.q_stride(), L.kv_stride());
}

void test_attention(const AttLayout& L, const IVec& segments, const char* seg_desc, Rng& r) {
    const std::string tag = L.tag() + " " + seg_desc;
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    Vec X = randn(L.size(), r);
    const Vec g = randn(L.n_out(), r);
    Vec out(L.n_out()), att(L.n_att(), NAN);  // att is written whole, masked entries included
    att_forward(L, out, att, X, seg);
    DVec rout, ratt;
    attention_ref(rout, ratt, X, L, seg);
    check_err("attention forward " + tag, std::max(rel_err(out, rout), rel_err(att, ratt)), kTolRef);
    bool masked_zero = true;  // exactly 0, not merely small, wherever the reference is 0
    for (size_t i = 0; i < L.n_att(); i++) masked_zero = masked_zero && (ratt[i] != 0.0 || att[i] == 0.0f);
    report(masked_zero, "attention masked att entries are exactly 0 " + tag);

    Vec dX(L.size(), 0.0f);
    att_backward(L, dX, g, X, att, seg);
    DVec rdX;
    attention_backward_ref(rdX, g, X, ratt, L);
    check_err("attention backward vs float64 " + tag, rel_err(dX, rdX), kTolRef);

    auto loss = [&] {
        Vec o(L.n_out()), a(L.n_att());
        att_forward(L, o, a, X, seg);
        return dot_d(g, o);
    };
    check_err("attention backward vs finite differences " + tag, fd_err(loss, X, dX, r), kTolFd);

    const Vec g0 = randn(L.size(), r);
    Vec acc = g0;
    att_backward(L, acc, g, X, att, seg);
    check_err("attention backward accumulates (+=) " + tag, rel_err(acc, add(g0, dX)), kTolAccum);
    if (!L.fused) {
        report(padding_untouched(acc, g0, L),
               "attention backward leaves the row padding of dq, dk, dv untouched " + tag);
    }

    check_threads("attention " + tag, [&] {
        Vec o(L.n_out()), a(L.n_att()), d = g0;
        att_forward(L, o, a, X, seg);
        att_backward(L, d, g, X, a, seg);
        return std::vector<Vec>{o, a, d};
    });
}

// A packed row [example A (len TA) | example B (len T - TA)] vs A and B each alone in a row:
// outputs, attention blocks and gradients must agree (to f32 rounding: the vectorized sums
// see the keys at other offsets), and att across the two is exactly 0. L has B = 1.
void test_attention_isolation(const AttLayout& L, int TA, Rng& r) {
    const int T = L.T, NH = L.NH, C = L.NH * L.hs;
    const std::string tag = L.tag() + fmt(" = %d + %d", TA, T - TA);
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    IVec seg(T);
    for (int t = 0; t < T; t++) seg[t] = t < TA ? 7 : 3;  // ids need not be ordered
    Vec out(L.n_out()), att(L.n_att()), d(L.size(), 0.0f);
    att_forward(L, out, att, X, seg.data());
    att_backward(L, d, g, X, att, seg.data());

    double err = 0.0;
    bool cross_zero = true;
    for (int part = 0; part < 2; part++) {
        const int t0 = part == 0 ? 0 : TA, len = part == 0 ? TA : T - TA;
        const AttLayout L1 = L.with_rows(1, len);
        const Vec X1 = rows_of(X, L, t0, len);
        const Vec g1(g.begin() + static_cast<size_t>(t0) * C, g.begin() + static_cast<size_t>(t0 + len) * C);
        Vec o1(L1.n_out()), a1(L1.n_att()), d1(L1.size(), 0.0f);
        att_forward(L1, o1, a1, X1, nullptr);
        att_backward(L1, d1, g1, X1, a1, nullptr);
        err = std::max(err, rel_err(Vec(out.begin() + static_cast<size_t>(t0) * C,
                                        out.begin() + static_cast<size_t>(t0 + len) * C), o1));
        err = std::max(err, rel_err(rows_of(d, L, t0, len), d1));
        Vec block;
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < len; t++) {
                const float* row = &att[(static_cast<size_t>(h) * T + t0 + t) * T];
                block.insert(block.end(), row + t0, row + t0 + len);
                for (int t2 = 0; t2 < T; t2++) {
                    if (t2 < t0 || t2 >= t0 + len) cross_zero = cross_zero && row[t2] == 0.0f;
                }
            }
        }
        err = std::max(err, rel_err(block, a1));
    }
    check_err("attention packed row == segments alone (out, att, dq/dk/dv) " + tag, err, kTolAccum);
    report(cross_zero, "attention packed row: att across segments exactly 0 " + tag);
}

// segments == nullptr is one segment per row: bitwise what all-equal ids give.
void test_attention_null_segments(const AttLayout& L, Rng& r) {
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    const IVec seg(L.rows(), 5);
    std::vector<Vec> res;
    for (const int32_t* s : {static_cast<const int32_t*>(nullptr), seg.data()}) {
        Vec o(L.n_out()), a(L.n_att()), d(L.size(), 0.0f);
        att_forward(L, o, a, X, s);
        att_backward(L, d, g, X, a, s);
        res.insert(res.end(), {o, a, d});
    }
    bool same = true;
    for (int k = 0; k < 3; k++) same = same && res[k] == res[k + 3];
    report(same, "attention segments=nullptr == all-equal segment ids, bitwise  " + L.tag());
}

// The same q, k, v in the fused layout (GPT-2's qkv with strides 3C, when NKV = NH) and in
// separate buffers: out, att and the gradients bitwise equal. The SGEMM computes each element
// by the same instructions whatever the operands' strides, so where the data sits must not
// change a bit (this is how GPT-2's results stay those of the pre-GQA kernel: the same
// products in the same order, now reached through q/k/v pointers and strides).
void test_attention_layouts_bitwise(const AttLayout& F, const IVec& segments, Rng& r) {
    const AttLayout S{F.B, F.T, F.NH, F.NKV, F.hs, false, 3, 1};
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    const Vec XF = randn(F.size(), r), g = randn(F.n_out(), r), gF0 = randn(F.size(), r);
    Vec XS(S.size(), 0.0f), gS0(S.size(), 0.0f);
    auto to_separate = [&](const Vec& src, Vec& dst) {
        for (int b = 0; b < F.B; b++)
            for (int t = 0; t < F.T; t++) {
                std::copy_n(&src[F.qi(b, t, 0)], F.NH * F.hs, &dst[S.qi(b, t, 0)]);
                std::copy_n(&src[F.ki(b, t, 0)], F.NKV * F.hs, &dst[S.ki(b, t, 0)]);
                std::copy_n(&src[F.vi(b, t, 0)], F.NKV * F.hs, &dst[S.vi(b, t, 0)]);
            }
    };
    to_separate(XF, XS);
    to_separate(gF0, gS0);
    Vec oF(F.n_out()), aF(F.n_att()), oS(F.n_out()), aS(F.n_att()), dF = gF0, dS = gS0;
    att_forward(F, oF, aF, XF, seg);
    att_forward(S, oS, aS, XS, seg);
    att_backward(F, dF, g, XF, aF, seg);
    att_backward(S, dS, g, XS, aS, seg);
    Vec dFS(S.size(), 0.0f);  // the padding: 0 in both (gS0 has 0 there, and no kernel writes it)
    to_separate(dF, dFS);
    const bool same = oF == oS && aF == aS && dFS == dS;
    report(same, "attention fused [q|k|v] rows == separate q, k, v buffers (out, att, dq, dk, dv), bitwise  " +
                     F.tag());
}

// GQA == multi-head attention on K and V with each KV head repeated NH/NKV times (what
// transformers' repeat_kv does): out, att and dq bitwise (each query head runs the same
// products on the same values), and dk, dv the sums of the repeated heads' gradients
// (accumulated in f32 in head order: kTolAccum).
void test_attention_gqa_vs_repeat(const AttLayout& L, const IVec& segments, Rng& r) {
    const AttLayout M = repeat_kv_layout(L);
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    const Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
    const Vec XM = repeat_kv(X, L);
    Vec o(L.n_out()), a(L.n_att()), oM(M.n_out()), aM(M.n_att()), d(L.size(), 0.0f), dM(M.size(), 0.0f);
    att_forward(L, o, a, X, seg);
    att_forward(M, oM, aM, XM, seg);
    att_backward(L, d, g, X, a, seg);
    att_backward(M, dM, g, XM, aM, seg);
    DVec dkv, dkvM;  // dk, dv of L and the sums over the repeated heads of M
    const bool same_dq = compare_repeat_kv_grads(dkv, dkvM, d, dM, L);
    const bool same = o == oM && a == aM && same_dq;
    report(same, "attention GQA == MHA on repeated KV heads: out, att, dq bitwise  " + L.tag());
    check_err("attention GQA dk, dv == sums over the repeated heads " + L.tag(), rel_err(dkv, dkvM), kTolAccum);
}

// Decode (one new token against the KV cache) == the last row of the full causal attention
// (segments = nullptr), GQA included. The cache has S > T rows; the rows past T are NaN and
// must not be read. The two sum in different orders (dot products vs SGEMM tiles): kTolRef.
void test_decode(int T, int NH, int NKV, int hs, Rng& r) {
    const AttLayout L{1, T, NH, NKV, hs, false};
    const std::string tag = fmt("T=%d NH=%d NKV=%d hs=%d", T, NH, NKV, hs);
    const Vec X = randn(L.size(), r);
    Vec out(L.n_out()), att(L.n_att());
    att_forward(L, out, att, X, nullptr);
    DVec rout, ratt;
    attention_ref(rout, ratt, X, L, nullptr);
    const int S = T + 3, KV = NKV * hs, Q = NH * hs;
    Vec kc(static_cast<size_t>(S) * KV, NAN), vc(static_cast<size_t>(S) * KV, NAN);
    for (int t = 0; t < T; t++) {
        std::copy_n(&X[L.ki(0, t, 0)], KV, &kc[static_cast<size_t>(t) * KV]);
        std::copy_n(&X[L.vi(0, t, 0)], KV, &vc[static_cast<size_t>(t) * KV]);
    }
    const Vec q(&X[L.qi(0, T - 1, 0)], &X[L.qi(0, T - 1, 0)] + Q);
    Vec o(Q, NAN);
    plw::cpu::attention_decode_forward(o.data(), q.data(), kc.data(), vc.data(), T, NH, NKV, hs);
    const Vec last(out.end() - Q, out.end());
    const DVec rlast(rout.end() - Q, rout.end());
    check_err("decode attention == last row of attention_forward " + tag, std::max(rel_err(o, last), rel_err(o, rlast)),
              kTolRef);
}

// ================================================================ bench
void bench() {
    Rng r(99);
    std::printf("bench: %d OpenMP threads; best of runs; GFLOP/s for linear/attention, GB/s of "
                "compulsory traffic for the others\n", omp_get_max_threads());
    const int B = 4, T = 64, C = 768, N = B * T;
    {
        const size_t NC = static_cast<size_t>(N) * C;
        Vec x = randn(NC, r), w = randn(C, r), b = randn(C, r), g = randn(NC, r);
        Vec out(NC), mean(N), rstd(N), dx(NC), dw(C), db(C);
        const double f = time_ms([&] {
            plw::cpu::layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
        });
        const double bw = time_ms([&] {
            plw::cpu::layernorm_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), mean.data(),
                                         rstd.data(), N, C);
        });
        bench_line(fmt("layernorm N=%d C=%d", N, C), f, bw, 8.0 * NC * 1e3, 16.0 * NC * 1e3, "GB/s");
    }
    struct LinShape { int IC, OC; WeightLayout layout; };
    for (const LinShape s : {LinShape{768, 2304, WeightLayout::InOut}, LinShape{768, 768, WeightLayout::InOut},
                             LinShape{768, 3072, WeightLayout::InOut}, LinShape{3072, 768, WeightLayout::InOut},
                             LinShape{768, 3072, WeightLayout::OutIn}, LinShape{3072, 768, WeightLayout::OutIn}}) {
        const int IC = s.IC, OC = s.OC;
        Vec x = randn(static_cast<size_t>(N) * IC, r), w = randn(static_cast<size_t>(IC) * OC, r),
            b = randn(OC, r), g = randn(static_cast<size_t>(N) * OC, r);
        Vec out(static_cast<size_t>(N) * OC), dx(x.size()), dw(w.size()), db(OC);
        const double f = time_ms([&] {
            plw::cpu::linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC, s.layout);
        });
        const double bw = time_ms([&] {
            plw::cpu::linear_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), N, IC, OC,
                                      s.layout);
        });
        const double flop = 2.0 * N * IC * OC * 1e3;  // per ms -> per s
        bench_line(fmt("linear N=%d IC=%d OC=%d %s", N, IC, OC, s.layout == WeightLayout::InOut ? "InOut" : "OutIn"),
                   f, bw, flop, 2.0 * flop, "GFLOP/s");
    }
    {
        const size_t n = static_cast<size_t>(N) * 4 * C;
        Vec x = randn(n, r), g = randn(n, r), out(n), dx(n);
        const double f = time_ms([&] { plw::cpu::gelu_forward(out.data(), x.data(), n); });
        const double bw = time_ms([&] { plw::cpu::gelu_backward(dx.data(), x.data(), g.data(), n); });
        bench_line(fmt("gelu n=%zu", n), f, bw, 8.0 * n * 1e3, 16.0 * n * 1e3, "GB/s");
    }
    {
        const size_t n = static_cast<size_t>(N) * C;
        Vec a = randn(n, r), b = randn(n, r), g = randn(n, r), out(n), da(n), db(n);
        const double f = time_ms([&] { plw::cpu::residual_forward(out.data(), a.data(), b.data(), n); });
        const double bw = time_ms([&] { plw::cpu::residual_backward(da.data(), db.data(), g.data(), n); });
        bench_line(fmt("residual n=%zu", n), f, bw, 12.0 * n * 1e3, 20.0 * n * 1e3, "GB/s");
    }
    struct AttShape { int B, T, NH, NKV, hs; };
    for (const AttShape s : {AttShape{4, 64, 12, 12, 64}, AttShape{8, 256, 4, 4, 32}, AttShape{1, 1024, 12, 12, 64},
                             AttShape{4, 256, 8, 2, 64}}) {
        const AttLayout L = s.NKV == s.NH ? gpt2_layout(s.B, s.T, s.NH * s.hs, s.NH)
                                          : AttLayout{s.B, s.T, s.NH, s.NKV, s.hs, false};
        Vec X = randn(L.size(), r), g = randn(L.n_out(), r);
        Vec out(g.size()), att(L.n_att()), d(L.size());
        const double f = time_ms([&] { att_forward(L, out, att, X, nullptr); });
        const double bw = time_ms([&] { att_backward(L, d, g, X, att, nullptr); });
        // causal: ~T^2/2 (query, key) pairs per head, 2 FLOP per channel per product;
        // forward 2 products (q.k, P.v), backward 4 (dP, dv, dq, dk)
        const double pairs = static_cast<double>(s.B) * s.NH * s.T * (s.T + 1) / 2.0;
        const double flop = 2.0 * pairs * s.hs * 1e3;
        bench_line(fmt("attention B=%d T=%d NH=%d NKV=%d hs=%d", s.B, s.T, s.NH, s.NKV, s.hs), f, bw, 2.0 * flop,
                   4.0 * flop, "GFLOP/s");
    }
}

}  // namespace

// flash_attention_check.cpp: the tiled attention's checks and bench lines.
void run_flash_attention_checks();
void bench_flash_attention();
// sgemm_check.cpp: the SGEMM's checks, every kernel this machine has.
void run_sgemm_checks();

int main(int argc, char** argv) {
    g_default_threads = omp_get_max_threads();
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        bench();
        bench_llama_ops();
        bench_flash_attention();
        return 0;
    }
    if (argc > 1 && std::strcmp(argv[1], "--sgemm") == 0) {  // only the SGEMM's checks
        run_sgemm_checks();
        std::printf("%d passed, %d failed\n", g_passed, g_failed);
        return g_failed == 0 ? 0 : 1;
    }
    Rng r(20261121);

    for (auto [N, C] : std::initializer_list<std::pair<int, int>>{{1, 1}, {3, 1}, {4, 37}, {5, 768}, {33, 100}}) test_layernorm(N, C, r);

    for (const WeightLayout layout : {WeightLayout::InOut, WeightLayout::OutIn}) {
        test_linear(1, 1, 1, true, layout, r);
        test_linear(7, 37, 5, true, layout, r);
        test_linear(5, 9, 13, false, layout, r);
        test_linear(33, 64, 96, true, layout, r);
        test_linear(64, 768, 37, true, layout, r);
        test_linear(128, 200, 300, true, layout, r);  // big enough for sgemm to use both threads
    }
    test_linear(9, 40, 24, false, WeightLayout::OutIn, r);
    test_linear_layouts_agree(37, 48, 20, r);
    test_linear_layouts_agree(130, 200, 300, r);

    test_embedding(1, 1, 1, 1, true, r);
    test_embedding(40, 37, 11, 7, true, r);
    test_embedding(40, 37, 11, 7, false, r);
    test_embedding(300, 64, 50, 40, false, r);

    for (size_t n : {size_t{1}, size_t{37}, size_t{1000}, size_t{100003}}) test_gelu(n, r);
    test_gelu_tails();

    for (size_t n : {size_t{1}, size_t{37}, size_t{100003}}) test_residual(n, r);

    // GPT-2's layout (fused qkv, NKV = NH, hs = C / NH)
    const IVec packed32 = {0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,  // three examples packed
                           5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6};  // two, the last one with padding
    const IVec interleaved12 = {0, 1, 0, 2, 1, 1, 0, 2, 2, 0, 1, 0};
    IVec packed128(2 * 64);
    for (int t = 0; t < 2 * 64; t++) packed128[t] = (t % 64) < 23 ? 0 : (t % 64) < 50 ? 1 : 2;
    test_attention(gpt2_layout(1, 1, 4, 1), {}, "segments=null", r);
    test_attention(gpt2_layout(2, 7, 12, 3), {}, "segments=null", r);
    test_attention(gpt2_layout(1, 9, 37, 1), {}, "segments=null", r);
    test_attention(gpt2_layout(2, 16, 32, 2), packed32, "packed", r);
    test_attention(gpt2_layout(1, 12, 24, 3), interleaved12, "interleaved ids", r);
    test_attention(gpt2_layout(2, 64, 128, 2), packed128, "packed hs=64", r);
    test_attention_isolation(gpt2_layout(1, 8, 12, 2), 3, r);
    test_attention_isolation(gpt2_layout(1, 40, 64, 1), 17, r);
    test_attention_null_segments(gpt2_layout(2, 19, 24, 3), r);
    // grouped-query attention (NKV < NH), separate q/k/v buffers with padded rows, head sizes
    // unrelated to any model width, and NKV = NH in separate buffers
    test_attention(AttLayout{2, 7, 4, 2, 16, false, 3, 5}, {}, "segments=null", r);
    test_attention(AttLayout{1, 9, 6, 1, 8, true}, {}, "segments=null", r);
    test_attention(AttLayout{2, 5, 3, 3, 5, false, 1, 2}, {}, "segments=null", r);
    test_attention(AttLayout{2, 16, 4, 2, 16, false, 0, 0}, packed32, "packed", r);
    test_attention(AttLayout{2, 16, 6, 3, 4, true}, packed32, "packed", r);
    test_attention(AttLayout{1, 12, 6, 2, 4, false, 2, 1}, interleaved12, "interleaved ids", r);
    test_attention(AttLayout{2, 64, 4, 1, 32, false, 0, 4}, packed128, "packed", r);
    test_attention_isolation(AttLayout{1, 10, 4, 2, 8, false, 1, 3}, 4, r);
    test_attention_isolation(AttLayout{1, 33, 6, 1, 16, true}, 20, r);
    test_attention_null_segments(AttLayout{2, 19, 6, 2, 4, true}, r);
    // equivalences, bitwise: the fused layout (GPT-2's call) == separate buffers; GQA == MHA
    // on repeated KV heads
    test_attention_layouts_bitwise(gpt2_layout(2, 16, 32, 2), packed32, r);
    test_attention_layouts_bitwise(gpt2_layout(4, 64, 768, 12), {}, r);
    test_attention_layouts_bitwise(AttLayout{2, 11, 6, 2, 8, true}, {}, r);
    test_attention_gqa_vs_repeat(AttLayout{2, 16, 4, 2, 16, false, 0, 0}, packed32, r);
    test_attention_gqa_vs_repeat(AttLayout{1, 13, 6, 1, 8, true}, {}, r);
    test_attention_gqa_vs_repeat(AttLayout{2, 40, 8, 2, 8, false, 2, 2}, {}, r);
    // decode against the KV cache == the last row of the full attention
    test_decode(1, 1, 1, 4, r);
    test_decode(17, 4, 2, 16, r);
    test_decode(33, 6, 1, 8, r);
    test_decode(20, 3, 3, 12, r);
    test_decode(70, 12, 12, 64, r);

    run_llama_op_checks();
    run_sgemm_checks();
    run_flash_attention_checks();

    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
