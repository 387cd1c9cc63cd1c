// Checks of the CPU ops of the Llama block (native/cpu: rmsnorm, rope, swiglu), run from
// ops_check.cpp's main (run_llama_op_checks) and timed by `plw_native_tests --bench`
// (bench_llama_ops). The same kinds of checks as ops_check.cpp's, with its helpers (check.h):
//   forward       vs a float64 reference written here from the math (no kernel code shared)
//   backward      vs a float64 analytic backward, and vs central finite differences of
//                 L = sum(g * out) (g random, fixed), L computed in double from the float
//                 forward of the kernel itself
//   accumulate    gradients pre-filled with G0 come out as G0 + the gradient (rmsnorm, swiglu;
//                 rope's backward rotates dx in place instead, checked as the inverse rotation)
//   threads       forward and backward bitwise equal with 1, 2 and 3 OpenMP threads
// on the odd shapes: rmsnorm C = 1 and 37, many rows of C = 64 / 128 (Qwen3's per-head q/k
// norm) and C up to 4096; rope hs = 2, H = 3, packed (restarting) and large positions (8000,
// 131071); swiglu n = 1 and 100003, tails up to |g| = 100 and beyond.
// The error metric and the generic tolerances (kTolRef, kTolAccum, kTolFd) are check.h's.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "../../native/cpu/rmsnorm.h"
#include "../../native/cpu/rope.h"
#include "../../native/cpu/swiglu.h"
#include "check.h"

using namespace plw_check;

namespace {

// ================================================================ rmsnorm
void rmsnorm_ref(DVec& out, DVec& rstd, const Vec& x, const Vec& w, int N, int C, double eps) {
    out.assign(static_cast<size_t>(N) * C, 0.0);
    rstd.assign(N, 0.0);
    for (int n = 0; n < N; n++) {
        const float* xr = &x[static_cast<size_t>(n) * C];
        double ss = 0.0;
        for (int c = 0; c < C; c++) ss += static_cast<double>(xr[c]) * xr[c];
        const double rs = 1.0 / std::sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) out[static_cast<size_t>(n) * C + c] = xr[c] * rs * w[c];
        rstd[n] = rs;
    }
}

// d/dx and d/dw of sum(g * x * rstd(x) * w) in double, rstd(x) = (mean(x^2) + eps)^-1/2:
//   d rstd / d x_j = -rstd^3 x_j / C, so
//   dx_j = g_j w_j rstd - x_j rstd^3 / C * sum_c g_c w_c x_c,   dw_c = sum_n g x rstd
void rmsnorm_backward_ref(DVec& dx, DVec& dw, const Vec& g, const Vec& x, const Vec& w, int N,
                          int C, double eps) {
    dx.assign(static_cast<size_t>(N) * C, 0.0);
    dw.assign(C, 0.0);
    for (int n = 0; n < N; n++) {
        const size_t row = static_cast<size_t>(n) * C;
        double ss = 0.0, gwx = 0.0;
        for (int c = 0; c < C; c++) {
            ss += static_cast<double>(x[row + c]) * x[row + c];
            gwx += static_cast<double>(g[row + c]) * w[c] * x[row + c];
        }
        const double rs = 1.0 / std::sqrt(ss / C + eps);
        for (int c = 0; c < C; c++) {
            dx[row + c] = static_cast<double>(g[row + c]) * w[c] * rs - x[row + c] * rs * rs * rs / C * gwx;
            dw[c] += static_cast<double>(g[row + c]) * x[row + c] * rs;
        }
    }
}

// x_scale: the std of the inputs (1e-3 puts mean(x^2) ~ eps: eps must be inside the sqrt,
// added to the mean, to pass). At C = 1 the inputs are kept away from 0 (|x| >= 0.5): there
// out = x / sqrt(x^2 + eps) * w is a smoothed step of width ~sqrt(eps) at 0, which a finite
// difference of step 1e-2 cannot resolve.
void test_rmsnorm(int N, int C, float eps, float x_scale, Rng& r) {
    const std::string tag = fmt("N=%d C=%d eps=%.0e x_scale=%g", N, C, eps, x_scale);
    const size_t NC = static_cast<size_t>(N) * C;
    Vec x = randn(NC, r, x_scale, 0.25f * x_scale), w = randn(C, r, 0.5f, 1.0f);
    if (C == 1) {
        for (auto& v : x) v = std::copysign(0.5f + std::fabs(v), v);
    }
    const Vec g = randn(NC, r);
    Vec out(NC), rstd(N);
    plw::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
    DVec rout, rrstd;
    rmsnorm_ref(rout, rrstd, x, w, N, C, eps);
    check_err("rmsnorm forward " + tag, std::max(rel_err(out, rout), rel_err(rstd, rrstd)), kTolRef);

    Vec out_nul(NC);  // rstd == nullptr (inference): the same out, bitwise
    plw::cpu::rmsnorm_forward(out_nul.data(), nullptr, x.data(), w.data(), N, C, eps);
    report(out_nul == out, "rmsnorm forward with rstd=nullptr bitwise equal " + tag);

    Vec dx(NC, 0.0f), dw(C, 0.0f);
    plw::cpu::rmsnorm_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
    DVec rdx, rdw;
    rmsnorm_backward_ref(rdx, rdw, g, x, w, N, C, eps);
    // dinp's terms are of scale |dout * w * rstd|; at C = 1 they nearly cancel (dinp =
    // g w rstd eps / (x^2 + eps)), so dinp is measured against the scale of its terms.
    double dx_scale = 0.0;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < C; c++) {
            dx_scale = std::max(dx_scale, std::fabs(g[static_cast<size_t>(n) * C + c] * w[c] * rrstd[n]));
        }
    }
    check_err("rmsnorm backward vs float64 " + tag, std::max(rel_err(dx, rdx, dx_scale), rel_err(dw, rdw)),
              kTolRef);

    // Finite differences in w always; in x only at x_scale 1 (a step of 1e-2 on inputs of 1e-3
    // would not be a small step; dinp there is checked against float64 above).
    auto loss = [&] {
        Vec o(NC), s(N);
        plw::cpu::rmsnorm_forward(o.data(), s.data(), x.data(), w.data(), N, C, eps);
        return dot_d(g, o);
    };
    double fd = fd_err(loss, w, dw, r);
    if (x_scale == 1.0f) fd = std::max(fd, fd_err(loss, x, dx, r, dx_scale));
    check_err("rmsnorm backward vs finite differences " + tag, fd, kTolFd);

    const Vec gx0 = randn(NC, r), gw0 = randn(C, r);
    Vec ax = gx0, aw = gw0;
    plw::cpu::rmsnorm_backward(ax.data(), aw.data(), g.data(), x.data(), w.data(), rstd.data(), N, C);
    check_err("rmsnorm backward accumulates (+=) " + tag,
              std::max(rel_err(ax, add(gx0, dx)), rel_err(aw, add(gw0, dw))), kTolAccum);

    check_threads("rmsnorm " + tag, [&] {
        Vec o(NC), s(N), ddx = gx0, ddw = gw0;
        plw::cpu::rmsnorm_forward(o.data(), s.data(), x.data(), w.data(), N, C, eps);
        plw::cpu::rmsnorm_backward(ddx.data(), ddw.data(), g.data(), x.data(), w.data(), s.data(), N, C);
        return std::vector<Vec>{o, s, ddx, ddw};
    });
}

// ================================================================ rope
// HF's default inv_freq, in f32 as HF computes it: 1 / theta^(arange(0, hs, 2) / hs).
Vec rope_inv_freq(int hs, float theta) {
    Vec f(hs / 2);
    for (int i = 0; i < hs / 2; i++) {
        f[i] = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(hs));
    }
    return f;
}

// The rotation in double, sign +1 (forward) or -1 (backward: the transpose). The angle is the
// f32 product float(p) * inv_freq[i], as the contract (and HF) defines it; cos, sin and the
// rotation are in double.
DVec rope_ref(const Vec& x, const IVec& pos, const Vec& inv_freq, int N, int H, int hs, double sign) {
    const int h = hs / 2;
    DVec out(x.size());
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < h; i++) {
            const float a = static_cast<float>(pos[n]) * inv_freq[i];
            const double c = std::cos(static_cast<double>(a)), s = sign * std::sin(static_cast<double>(a));
            for (int head = 0; head < H; head++) {
                const size_t base = (static_cast<size_t>(n) * H + head) * hs;
                const double x0 = x[base + i], x1 = x[base + i + h];
                out[base + i] = x0 * c - x1 * s;
                out[base + i + h] = x1 * c + x0 * s;
            }
        }
    }
    return out;
}

void test_rope(int N, int H, int hs, const IVec& pos, const char* pos_desc, float theta, Rng& r) {
    const std::string tag = fmt("N=%d H=%d hs=%d %s theta=%g", N, H, hs, pos_desc, theta);
    const size_t n = static_cast<size_t>(N) * H * hs;
    Vec x = randn(n, r);
    const Vec g = randn(n, r), inv_freq = rope_inv_freq(hs, theta);

    Vec y = x;
    plw::cpu::rope_forward(y.data(), pos.data(), inv_freq.data(), N, H, hs);
    check_err("rope forward " + tag, rel_err(y, rope_ref(x, pos, inv_freq, N, H, hs, 1.0)), kTolRef);

    Vec dx = g;
    plw::cpu::rope_backward(dx.data(), pos.data(), inv_freq.data(), N, H, hs);
    check_err("rope backward vs float64 " + tag, rel_err(dx, rope_ref(g, pos, inv_freq, N, H, hs, -1.0)),
              kTolRef);

    auto loss = [&] {
        Vec o = x;
        plw::cpu::rope_forward(o.data(), pos.data(), inv_freq.data(), N, H, hs);
        return dot_d(g, o);
    };
    check_err("rope backward vs finite differences " + tag, fd_err(loss, x, dx, r), kTolFd);

    // The backward is the inverse rotation: backward(forward(x)) = x up to f32 rounding
    // (a few ulp of the cos/sin and of the two rotations).
    Vec back = y;
    plw::cpu::rope_backward(back.data(), pos.data(), inv_freq.data(), N, H, hs);
    check_err("rope backward(forward(x)) == x " + tag, rel_err(back, x), kTolRef);

    check_threads("rope " + tag, [&] {
        Vec o = x, d = g;
        plw::cpu::rope_forward(o.data(), pos.data(), inv_freq.data(), N, H, hs);
        plw::cpu::rope_backward(d.data(), pos.data(), inv_freq.data(), N, H, hs);
        return std::vector<Vec>{o, d};
    });
}

// Position 0 is the identity, bitwise (cos 0 = 1, sin 0 = 0 exactly).
void test_rope_position_zero(Rng& r) {
    const int N = 3, H = 2, hs = 16;
    const Vec x = randn(static_cast<size_t>(N) * H * hs, r), inv_freq = rope_inv_freq(hs, 10000.0f);
    const IVec pos(N, 0);
    Vec y = x, d = x;
    plw::cpu::rope_forward(y.data(), pos.data(), inv_freq.data(), N, H, hs);
    plw::cpu::rope_backward(d.data(), pos.data(), inv_freq.data(), N, H, hs);
    report(y == x && d == x, "rope at position 0 is the identity, bitwise (forward and backward)");
}

// ================================================================ swiglu
// silu(g) = g / (1 + exp(-g)) in double (exp(100) is finite in double).
double silu_ref(double g) { return g / (1.0 + std::exp(-g)); }
double silu_grad_ref(double g) {
    const double s = 1.0 / (1.0 + std::exp(-g));
    return s + g * s * (1.0 - s);
}

const float kSwigluSpecials[] = {0.0f,   -0.0f,  1e-30f, -1e-30f, 1e-4f,  -1e-4f, 0.5f,  -0.75f,
                                 3.0f,   -3.0f,  8.0f,   -8.0f,   20.0f,  -20.0f, 50.0f, -50.0f,
                                 88.0f,  -88.0f, 89.0f,  -89.0f,  100.0f, -100.0f};

bool all_finite(const Vec& v) {
    return std::all_of(v.begin(), v.end(), [](float f) { return std::isfinite(f); });
}

void test_swiglu(size_t n, Rng& r) {
    const std::string tag = fmt("n=%zu", n);
    Vec gate = randn(n, r, 2.5f), up = randn(n, r);
    for (size_t i = 0; i < n && i < sizeof kSwigluSpecials / sizeof kSwigluSpecials[0]; i++) {
        gate[i] = kSwigluSpecials[i];
    }
    const Vec g = randn(n, r);
    Vec out(n);
    plw::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
    DVec rout(n), rdg(n), rdu(n);
    for (size_t i = 0; i < n; i++) {
        rout[i] = silu_ref(gate[i]) * up[i];
        rdg[i] = static_cast<double>(g[i]) * up[i] * silu_grad_ref(gate[i]);
        rdu[i] = static_cast<double>(g[i]) * silu_ref(gate[i]);
    }
    check_err("swiglu forward " + tag, rel_err(out, rout), kTolRef);

    Vec dg(n, 0.0f), du(n, 0.0f);
    plw::cpu::swiglu_backward(dg.data(), du.data(), g.data(), gate.data(), up.data(), n);
    check_err("swiglu backward vs float64 " + tag, std::max(rel_err(dg, rdg), rel_err(du, rdu)), kTolRef);
    report(all_finite(out) && all_finite(dg) && all_finite(du), "swiglu finite everywhere (|gate| <= 100) " + tag);

    auto loss = [&] {
        Vec o(n);
        plw::cpu::swiglu_forward(o.data(), gate.data(), up.data(), n);
        return dot_d(g, o);
    };
    check_err("swiglu backward vs finite differences " + tag,
              std::max(fd_err(loss, gate, dg, r), fd_err(loss, up, du, r)), kTolFd);

    const Vec dg0 = randn(n, r), du0 = randn(n, r);
    Vec ag = dg0, au = du0;
    plw::cpu::swiglu_backward(ag.data(), au.data(), g.data(), gate.data(), up.data(), n);
    check_err("swiglu backward accumulates (+=) " + tag,
              std::max(rel_err(ag, add(dg0, dg)), rel_err(au, add(du0, du))), kTolAccum);

    Vec in_place = gate;  // out == gate
    plw::cpu::swiglu_forward(in_place.data(), in_place.data(), up.data(), n);
    report(in_place == out, "swiglu forward in place (out == gate) bitwise equal " + tag);

    check_threads("swiglu " + tag, [&] {
        Vec o(n), d1 = dg0, d2 = du0;
        plw::cpu::swiglu_forward(o.data(), gate.data(), up.data(), n);
        plw::cpu::swiglu_backward(d1.data(), d2.data(), g.data(), gate.data(), up.data(), n);
        return std::vector<Vec>{o, d1, d2};
    });
}

// Elementwise relative error of silu and silu' on [-30, 30] (silu(-30) = -2.8e-12): the
// sigmoid from exp(-|g|) keeps its relative accuracy on the negative tail; the argument -|g|
// is exact, so what remains is exp_nonpositive's 2 ulp and a few roundings: measured 2.2e-7
// for silu (up = 1, tolerance 2e-6). silu' (dout = up = 1) cancels next to its zero at
// g = -1.278 (1 + g (1 - s) -> 0), which is left out (|silu'| < 1e-3); elsewhere measured
// 6.7e-6, the worst near that zero (tolerance 2e-5).
// Then g = +-100, +-1e4, +-1e30 and the largest floats: every result finite.
void test_swiglu_tails() {
    const size_t n = 60001;
    Vec gate(n), up(n, 1.0f), one(n, 1.0f), out(n), dg(n, 0.0f), du(n, 0.0f);
    for (size_t i = 0; i < n; i++) gate[i] = -30.0f + 60.0f * static_cast<float>(i) / (n - 1);
    plw::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n);
    plw::cpu::swiglu_backward(dg.data(), du.data(), one.data(), gate.data(), up.data(), n);
    double err = 0.0, err_grad = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double ref = silu_ref(gate[i]), ref_grad = silu_grad_ref(gate[i]);
        if (ref != 0.0) {
            err = std::max({err, std::fabs(out[i] - ref) / std::fabs(ref), std::fabs(du[i] - ref) / std::fabs(ref)});
        }
        if (std::fabs(ref_grad) > 1e-3) {
            err_grad = std::max(err_grad, std::fabs(dg[i] - ref_grad) / std::fabs(ref_grad));
        }
    }
    report(err <= 2e-6, fmt("swiglu silu elementwise on [-30, 30]  max_elem_rel_err=%.2e (tol 2e-06)", err));
    report(err_grad <= 2e-5, fmt("swiglu silu' elementwise on [-30, 30]  max_elem_rel_err=%.2e (tol 2e-05)", err_grad));

    const Vec big = {100.0f, -100.0f, 1e4f, -1e4f, 1e30f, -1e30f, FLT_MAX, -FLT_MAX};
    const size_t m = big.size();
    Vec o(m), a(m, 0.0f), b(m, 0.0f), ones(m, 1.0f);
    plw::cpu::swiglu_forward(o.data(), big.data(), ones.data(), m);
    plw::cpu::swiglu_backward(a.data(), b.data(), ones.data(), big.data(), ones.data(), m);
    report(all_finite(o) && all_finite(a) && all_finite(b) && o[0] == 100.0f && a[0] == 1.0f &&
               std::fabs(o[1]) < 1e-30f && std::fabs(a[1]) < 1e-30f,
           fmt("swiglu at gate = +-100, +-1e4, +-1e30, +-FLT_MAX finite; silu(100) = %g, silu'(100) = %g, "
               "silu(-100) = %g, silu'(-100) = %g", o[0], a[0], o[1], a[1]));
}

}  // namespace

void run_llama_op_checks() {
    Rng r(20260517);

    for (auto [N, C] : std::initializer_list<std::pair<int, int>>{{1, 1}, {3, 1}, {4, 37}, {5, 768}, {33, 100}}) {
        test_rmsnorm(N, C, 1e-5f, 1.0f, r);
    }
    test_rmsnorm(2000, 64, 1e-6f, 1.0f, r);  // Qwen3 q/k norm shape: many rows, several chunks
    test_rmsnorm(700, 128, 1e-6f, 1.0f, r);
    test_rmsnorm(3, 4096, 1e-5f, 1.0f, r);   // wide rows
    test_rmsnorm(9, 64, 1e-5f, 1e-3f, r);    // mean(x^2) ~ eps

    {
        IVec pos(5);
        for (int n = 0; n < 5; n++) pos[n] = n;
        test_rope(5, 1, 2, pos, "positions 0..4", 10000.0f, r);  // hs = 2: one pair
    }
    {
        IVec pos(24);  // three examples packed into one row: positions restart at 0
        for (int n = 0; n < 24; n++) pos[n] = n < 10 ? n : n < 17 ? n - 10 : n - 17;
        test_rope(24, 3, 64, pos, "packed 0..9,0..6,0..6", 10000.0f, r);
    }
    {
        const IVec pos = {8000, 8191, 0, 131071, 4095, 1, 77};  // large positions (long contexts)
        test_rope(7, 4, 128, pos, "large positions", 500000.0f, r);
        test_rope(7, 2, 64, pos, "large positions", 10000.0f, r);
    }
    {
        IVec pos(40);
        for (int n = 0; n < 40; n++) pos[n] = (n * 37) % 50;
        test_rope(40, 3, 6, pos, "scrambled positions", 10000.0f, r);  // h = 3: odd pair count
    }
    test_rope_position_zero(r);

    for (size_t n : {size_t{1}, size_t{37}, size_t{1000}, size_t{100003}}) test_swiglu(n, r);
    test_swiglu_tails();
}

void bench_llama_ops() {
    Rng r(98);
    const int N = 1024;  // tokens
    for (const int C : {2048, 128}) {
        const int rows = C == 128 ? N * 16 : N;  // C = 128: Qwen3's q norm, 16 heads
        const size_t NC = static_cast<size_t>(rows) * C;
        Vec x = randn(NC, r), w = randn(C, r), g = randn(NC, r), out(NC), rstd(rows), dx(NC), dw(C);
        const double f = time_ms([&] {
            plw::cpu::rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), rows, C, 1e-5f);
        });
        const double bw = time_ms([&] {
            plw::cpu::rmsnorm_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), rows, C);
        });
        bench_line(fmt("rmsnorm N=%d C=%d", rows, C), f, bw, 8.0 * NC * 1e3, 16.0 * NC * 1e3, "GB/s");
    }
    {
        const int H = 16, hs = 128;
        const size_t n = static_cast<size_t>(N) * H * hs;
        Vec x = randn(n, r), inv_freq = rope_inv_freq(hs, 500000.0f);
        IVec pos(N);
        for (int i = 0; i < N; i++) pos[i] = i;
        const double f = time_ms([&] { plw::cpu::rope_forward(x.data(), pos.data(), inv_freq.data(), N, H, hs); });
        const double bw = time_ms([&] { plw::cpu::rope_backward(x.data(), pos.data(), inv_freq.data(), N, H, hs); });
        bench_line(fmt("rope N=%d H=%d hs=%d", N, H, hs), f, bw, 8.0 * n * 1e3, 8.0 * n * 1e3, "GB/s");
    }
    {
        const size_t n = static_cast<size_t>(N) * 5632;
        Vec gate = randn(n, r), up = randn(n, r), g = randn(n, r), out(n), dg(n), du(n);
        const double f = time_ms([&] { plw::cpu::swiglu_forward(out.data(), gate.data(), up.data(), n); });
        const double bw = time_ms([&] {
            plw::cpu::swiglu_backward(dg.data(), du.data(), g.data(), gate.data(), up.data(), n);
        });
        bench_line(fmt("swiglu n=%zu", n), f, bw, 12.0 * n * 1e3, 28.0 * n * 1e3, "GB/s");
    }
}
