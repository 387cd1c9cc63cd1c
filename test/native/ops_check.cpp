// Checks of the CPU ops of the GPT-2 block (native/cpu: layernorm, linear, gelu, residual,
// attention), run by test/native-ops.test.ts; `plw_native_tests --bench` times them instead.
//
// For each op, on shapes that include the odd ones (C = 1, C = 37, T = 1, NH = 1, packed
// segments, segments == nullptr):
//   forward       vs a float64 reference written here from the math (no kernel code shared)
//   backward      vs a float64 analytic backward, and vs central finite differences of
//                 L = sum(g * out) (g random, fixed), L computed in double from the float
//                 forward of the kernel itself
//   accumulate    gradients pre-filled with G0 come out as G0 + the gradient
//   threads       forward and backward bitwise equal with 1, 2 and 3 OpenMP threads
//   attention     a packed row of two segments gives what the two run as separate rows give
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
#include "../../native/cpu/gelu.h"
#include "../../native/cpu/layernorm.h"
#include "../../native/cpu/linear.h"
#include "../../native/cpu/residual.h"

namespace {

using Vec = std::vector<float>;
using DVec = std::vector<double>;
using IVec = std::vector<int32_t>;

// ---------------------------------------------------------------- tolerances
// Forward and analytic backward vs float64: the kernels round each value a few times in
// f32 and sum at most a few thousand terms in f32 (blocked/vectorized), ~1e-6 at worst.
constexpr double kTolRef = 2e-5;
// Accumulate: G0 + g in f32 vs the same in double, g from a run onto zeros: one extra
// rounding of the sum plus the kernel's reordering of it (sgemm adds C first).
constexpr double kTolAccum = 2e-6;
// Finite differences, step h = 1e-2 on inputs of scale ~1 (the step actually taken is the
// float difference (x+h) - (x-h), not 2h). Error sources, relative to the gradient's scale:
// truncation h^2 f'''/6 ~ 1e-5..1e-4, and the f32 rounding of the forward outputs that the
// perturbation touches, ~sqrt(count) * 6e-8 * |out| / 2h ~ 1e-4 for a row of 768. Measured
// at most 2.3e-4; a wrong formula (a missing term, a wrong mask) is off by O(1).
constexpr float kFdStep = 1e-2f;
constexpr double kTolFd = 3e-3;
constexpr int kFdSamples = 48;  // coordinates per tensor (all of them when fewer)

// ---------------------------------------------------------------- reporting
int g_passed = 0, g_failed = 0;
int g_default_threads = 1;

std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

void report(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    std::fflush(stdout);
    (ok ? g_passed : g_failed)++;
}

void check_err(const std::string& what, double err, double tol) {
    report(err <= tol, fmt("%s  max_rel_err=%.2e (tol %.0e)", what.c_str(), err, tol));
}

// ---------------------------------------------------------------- data
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed) {}
    uint64_t next() {  // splitmix64
        uint64_t z = (s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
    float normal() {
        const double u = std::max(uniform(), 1e-300), v = uniform();
        return static_cast<float>(std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * v));
    }
};

Vec randn(size_t n, Rng& r, float scale = 1.0f, float offset = 0.0f) {
    Vec v(n);
    for (auto& x : v) x = offset + scale * r.normal();
    return v;
}

DVec to_d(const Vec& v) { return DVec(v.begin(), v.end()); }

// max |got - ref| / max(max |ref|, scale); scale: a floor for tensors that may be all 0.
template <typename A, typename B>
double rel_err(const A& got, const B& ref, double scale = 0.0) {
    if (got.size() != ref.size()) return INFINITY;
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < got.size(); i++) {
        const double d = std::fabs(static_cast<double>(got[i]) - static_cast<double>(ref[i]));
        if (!(d == d)) return INFINITY;  // NaN anywhere fails
        num = std::max(num, d);
        den = std::max(den, std::fabs(static_cast<double>(ref[i])));
    }
    return num == 0.0 ? 0.0 : num / std::max({den, scale, 1e-30});
}

DVec add(const Vec& a, const Vec& b) {
    DVec r(a.size());
    for (size_t i = 0; i < a.size(); i++) r[i] = static_cast<double>(a[i]) + b[i];
    return r;
}

double dot_d(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// ---------------------------------------------------------------- generic checks
// Central difference of loss() in x[i]: (L(x+h) - L(x-h)) / ((x+h) - (x-h)) with the
// perturbed values as they are in float.
double central_diff(const std::function<double()>& loss, float* x, size_t i, float h) {
    const float x0 = x[i];
    x[i] = x0 + h;
    const double xp = x[i], lp = loss();
    x[i] = x0 - h;
    const double xm = x[i], lm = loss();
    x[i] = x0;
    return (lp - lm) / (xp - xm);
}

// The kernel's gradient `grad` of loss() with respect to `x` vs central differences, at up to
// kFdSamples coordinates (seeded choice). Returns max |g - fd| / max(max |fd|, scale) over them.
double fd_err(const std::function<double()>& loss, Vec& x, const Vec& grad, Rng& r, double scale = 0.0) {
    std::vector<size_t> idx;
    if (x.size() <= static_cast<size_t>(kFdSamples)) {
        for (size_t i = 0; i < x.size(); i++) idx.push_back(i);
    } else {
        for (int k = 0; k < kFdSamples; k++) idx.push_back(r.next() % x.size());
    }
    DVec got, fd;
    for (size_t i : idx) {
        got.push_back(grad[i]);
        fd.push_back(central_diff(loss, x.data(), i, kFdStep));
    }
    return rel_err(got, fd, scale);
}

// Runs `run` with 1, 2 and 3 threads; every buffer it returns must be bitwise the same.
void check_threads(const std::string& what, const std::function<std::vector<Vec>()>& run) {
    omp_set_num_threads(1);
    const std::vector<Vec> one = run();
    bool same = true;
    for (int nt : {2, 3}) {
        omp_set_num_threads(nt);
        const std::vector<Vec> other = run();
        for (size_t k = 0; k < one.size(); k++) {
            same = same && one[k].size() == other[k].size() &&
                   std::memcmp(one[k].data(), other[k].data(), one[k].size() * sizeof(float)) == 0;
        }
    }
    omp_set_num_threads(g_default_threads);
    report(same, fmt("%s  threads 1/2/3 bitwise equal", what.c_str()));
}

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
void test_linear(int N, int IC, int OC, bool with_bias, Rng& r) {
    const std::string tag = fmt("N=%d IC=%d OC=%d%s", N, IC, OC, with_bias ? "" : " (no bias)");
    const size_t NI = static_cast<size_t>(N) * IC, NO = static_cast<size_t>(N) * OC;
    const size_t IO = static_cast<size_t>(IC) * OC;
    Vec x = randn(NI, r), w = randn(IO, r, 1.0f / std::sqrt(static_cast<float>(IC))), b = randn(OC, r);
    const Vec g = randn(NO, r);
    const float* bias = with_bias ? b.data() : nullptr;
    Vec out(NO, NAN);  // without bias, out is written without being read
    plw::cpu::linear_forward(out.data(), x.data(), w.data(), bias, N, IC, OC);
    DVec rout(NO), rdx(NI, 0.0), rdw(IO, 0.0), rdb(OC, 0.0);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < OC; j++) {
            double s = with_bias ? b[j] : 0.0;
            for (int i = 0; i < IC; i++) s += static_cast<double>(x[static_cast<size_t>(n) * IC + i]) * w[static_cast<size_t>(i) * OC + j];
            rout[static_cast<size_t>(n) * OC + j] = s;
            const double gj = g[static_cast<size_t>(n) * OC + j];
            rdb[j] += gj;
            for (int i = 0; i < IC; i++) {
                rdx[static_cast<size_t>(n) * IC + i] += gj * w[static_cast<size_t>(i) * OC + j];
                rdw[static_cast<size_t>(i) * OC + j] += gj * x[static_cast<size_t>(n) * IC + i];
            }
        }
    }
    check_err("linear forward " + tag, rel_err(out, rout), kTolRef);

    Vec dx(NI, 0.0f), dw(IO, 0.0f), db(OC, 0.0f);
    float* dbias = with_bias ? db.data() : nullptr;
    plw::cpu::linear_backward(dx.data(), dw.data(), dbias, g.data(), x.data(), w.data(), N, IC, OC);
    double err = std::max(rel_err(dx, rdx), rel_err(dw, rdw));
    if (with_bias) err = std::max(err, rel_err(db, rdb));
    check_err("linear backward vs float64 " + tag, err, kTolRef);

    auto loss = [&] {
        Vec o(NO);
        plw::cpu::linear_forward(o.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, IC, OC);
        return dot_d(g, o);
    };
    err = std::max(fd_err(loss, x, dx, r), fd_err(loss, w, dw, r));
    if (with_bias) err = std::max(err, fd_err(loss, b, db, r));
    check_err("linear backward vs finite differences " + tag, err, kTolFd);

    const Vec gx0 = randn(NI, r), gw0 = randn(IO, r), gb0 = randn(OC, r);
    Vec ax = gx0, aw = gw0, ab = gb0;
    plw::cpu::linear_backward(ax.data(), aw.data(), with_bias ? ab.data() : nullptr, g.data(), x.data(), w.data(),
                              N, IC, OC);
    err = std::max(rel_err(ax, add(gx0, dx)), rel_err(aw, add(gw0, dw)));
    err = std::max(err, rel_err(ab, with_bias ? add(gb0, db) : to_d(gb0)));  // no dbias: untouched
    check_err("linear backward accumulates (+=) " + tag, err, kTolAccum);

    check_threads("linear " + tag, [&] {
        Vec o(NO), ddx = gx0, ddw = gw0, ddb = gb0;
        plw::cpu::linear_forward(o.data(), x.data(), w.data(), bias, N, IC, OC);
        plw::cpu::linear_backward(ddx.data(), ddw.data(), with_bias ? ddb.data() : nullptr, g.data(), x.data(),
                                  w.data(), N, IC, OC);
        return std::vector<Vec>{o, ddx, ddw, ddb};
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
// Reference in double, straight from the definition: P = softmax over allowed keys of
// q.k / sqrt(hs), allowed = (t2 <= t and same segment); out = P v. att is (B,NH,T,T).
void attention_ref(DVec& out, DVec& att, const Vec& qkv, const int32_t* seg, int B, int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    out.assign(static_cast<size_t>(B) * T * C, 0.0);
    att.assign(static_cast<size_t>(B) * NH * T * T, 0.0);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                auto allowed = [&](int t2) { return t2 <= t && (!seg || seg[b * T + t2] == seg[b * T + t]); };
                const float* q = &qkv[(static_cast<size_t>(b) * T + t) * C3 + h * hs];
                double* a = &att[((static_cast<size_t>(b) * NH + h) * T + t) * T];
                double m = -INFINITY, sum = 0.0;
                DVec s(T, 0.0);
                for (int t2 = 0; t2 < T; t2++) {
                    if (!allowed(t2)) continue;
                    const float* k = &qkv[(static_cast<size_t>(b) * T + t2) * C3 + C + h * hs];
                    for (int i = 0; i < hs; i++) s[t2] += static_cast<double>(q[i]) * k[i];
                    s[t2] /= std::sqrt(static_cast<double>(hs));
                    m = std::max(m, s[t2]);
                }
                for (int t2 = 0; t2 < T; t2++) {
                    if (allowed(t2)) sum += a[t2] = std::exp(s[t2] - m);
                }
                for (int t2 = 0; t2 < T; t2++) a[t2] /= sum;
                double* o = &out[(static_cast<size_t>(b) * T + t) * C + h * hs];
                for (int t2 = 0; t2 < T; t2++) {
                    const float* v = &qkv[(static_cast<size_t>(b) * T + t2) * C3 + 2 * C + h * hs];
                    for (int i = 0; i < hs; i++) o[i] += a[t2] * v[i];
                }
            }
        }
    }
}

void attention_backward_ref(DVec& dqkv, const Vec& g, const Vec& qkv, const DVec& att, int B, int T, int C,
                            int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
    dqkv.assign(static_cast<size_t>(B) * T * C3, 0.0);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            for (int t = 0; t < T; t++) {
                const double* a = &att[((static_cast<size_t>(b) * NH + h) * T + t) * T];
                const float* gt = &g[(static_cast<size_t>(b) * T + t) * C + h * hs];
                const size_t qo = (static_cast<size_t>(b) * T + t) * C3 + h * hs;
                DVec dp(T, 0.0);
                double pd = 0.0;
                for (int t2 = 0; t2 < T; t2++) {
                    const size_t vo = (static_cast<size_t>(b) * T + t2) * C3 + 2 * C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dp[t2] += static_cast<double>(gt[i]) * qkv[vo + i];
                        dqkv[vo + i] += a[t2] * gt[i];
                    }
                    pd += a[t2] * dp[t2];
                }
                for (int t2 = 0; t2 < T; t2++) {
                    const double ds = a[t2] * (dp[t2] - pd) * scale;  // 0 where masked (a = 0)
                    const size_t ko = (static_cast<size_t>(b) * T + t2) * C3 + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dqkv[qo + i] += ds * qkv[ko + i];
                        dqkv[ko + i] += ds * qkv[qo + i];
                    }
                }
            }
        }
    }
}

void test_attention(int B, int T, int C, int NH, const IVec& segments, const char* seg_desc, Rng& r) {
    const std::string tag = fmt("B=%d T=%d C=%d NH=%d %s", B, T, C, NH, seg_desc);
    const int32_t* seg = segments.empty() ? nullptr : segments.data();
    const size_t n_qkv = static_cast<size_t>(B) * T * 3 * C, n_out = static_cast<size_t>(B) * T * C;
    const size_t n_att = static_cast<size_t>(B) * NH * T * T;
    Vec qkv = randn(n_qkv, r);
    const Vec g = randn(n_out, r);
    Vec out(n_out), att(n_att, NAN);  // att is written whole, masked entries included
    plw::cpu::attention_forward(out.data(), att.data(), qkv.data(), seg, B, T, C, NH);
    DVec rout, ratt;
    attention_ref(rout, ratt, qkv, seg, B, T, C, NH);
    check_err("attention forward " + tag, std::max(rel_err(out, rout), rel_err(att, ratt)), kTolRef);
    bool masked_zero = true;  // exactly 0, not merely small, wherever the reference is 0
    for (size_t i = 0; i < n_att; i++) masked_zero = masked_zero && (ratt[i] != 0.0 || att[i] == 0.0f);
    report(masked_zero, "attention masked att entries are exactly 0 " + tag);

    Vec dqkv(n_qkv, 0.0f);
    plw::cpu::attention_backward(dqkv.data(), g.data(), qkv.data(), att.data(), seg, B, T, C, NH);
    DVec rdqkv;
    attention_backward_ref(rdqkv, g, qkv, ratt, B, T, C, NH);
    check_err("attention backward vs float64 " + tag, rel_err(dqkv, rdqkv), kTolRef);

    auto loss = [&] {
        Vec o(n_out), a(n_att);
        plw::cpu::attention_forward(o.data(), a.data(), qkv.data(), seg, B, T, C, NH);
        return dot_d(g, o);
    };
    check_err("attention backward vs finite differences " + tag, fd_err(loss, qkv, dqkv, r), kTolFd);

    const Vec g0 = randn(n_qkv, r);
    Vec acc = g0;
    plw::cpu::attention_backward(acc.data(), g.data(), qkv.data(), att.data(), seg, B, T, C, NH);
    check_err("attention backward accumulates (+=) " + tag, rel_err(acc, add(g0, dqkv)), kTolAccum);

    check_threads("attention " + tag, [&] {
        Vec o(n_out), a(n_att), d = g0;
        plw::cpu::attention_forward(o.data(), a.data(), qkv.data(), seg, B, T, C, NH);
        plw::cpu::attention_backward(d.data(), g.data(), qkv.data(), a.data(), seg, B, T, C, NH);
        return std::vector<Vec>{o, a, d};
    });
}

// A packed row [example A (len TA) | example B (len T - TA)] vs A and B each alone in a row:
// outputs, attention blocks and gradients must agree (to f32 rounding: the vectorized sums
// see the keys at other offsets), and att across the two is exactly 0.
void test_attention_isolation(int T, int TA, int C, int NH, Rng& r) {
    const std::string tag = fmt("T=%d = %d + %d C=%d NH=%d", T, TA, T - TA, C, NH);
    const size_t C3 = 3 * static_cast<size_t>(C);
    const int TB = T - TA;
    const Vec qkv = randn(T * C3, r), g = randn(static_cast<size_t>(T) * C, r);
    IVec seg(T);
    for (int t = 0; t < T; t++) seg[t] = t < TA ? 7 : 3;  // ids need not be ordered
    Vec out(static_cast<size_t>(T) * C), att(static_cast<size_t>(NH) * T * T), d(qkv.size(), 0.0f);
    plw::cpu::attention_forward(out.data(), att.data(), qkv.data(), seg.data(), 1, T, C, NH);
    plw::cpu::attention_backward(d.data(), g.data(), qkv.data(), att.data(), seg.data(), 1, T, C, NH);

    double err = 0.0;
    bool cross_zero = true;
    for (int part = 0; part < 2; part++) {
        const int t0 = part == 0 ? 0 : TA, len = part == 0 ? TA : TB;
        const Vec q1(qkv.begin() + t0 * C3, qkv.begin() + (t0 + len) * C3);
        const Vec g1(g.begin() + static_cast<size_t>(t0) * C, g.begin() + static_cast<size_t>(t0 + len) * C);
        Vec o1(static_cast<size_t>(len) * C), a1(static_cast<size_t>(NH) * len * len), d1(q1.size(), 0.0f);
        plw::cpu::attention_forward(o1.data(), a1.data(), q1.data(), nullptr, 1, len, C, NH);
        plw::cpu::attention_backward(d1.data(), g1.data(), q1.data(), a1.data(), nullptr, 1, len, C, NH);
        err = std::max(err, rel_err(Vec(out.begin() + static_cast<size_t>(t0) * C,
                                        out.begin() + static_cast<size_t>(t0 + len) * C), o1));
        err = std::max(err, rel_err(Vec(d.begin() + t0 * C3, d.begin() + (t0 + len) * C3), d1));
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
    check_err("attention packed row == segments alone (out, att, dqkv) " + tag, err, kTolAccum);
    report(cross_zero, "attention packed row: att across segments exactly 0 " + tag);
}

// segments == nullptr is one segment per row: bitwise what all-equal ids give.
void test_attention_null_segments(Rng& r) {
    const int B = 2, T = 19, C = 24, NH = 3;
    const Vec qkv = randn(static_cast<size_t>(B) * T * 3 * C, r), g = randn(static_cast<size_t>(B) * T * C, r);
    const IVec seg(static_cast<size_t>(B) * T, 5);
    std::vector<Vec> res;
    for (const int32_t* s : {static_cast<const int32_t*>(nullptr), seg.data()}) {
        Vec o(static_cast<size_t>(B) * T * C), a(static_cast<size_t>(B) * NH * T * T), d(qkv.size(), 0.0f);
        plw::cpu::attention_forward(o.data(), a.data(), qkv.data(), s, B, T, C, NH);
        plw::cpu::attention_backward(d.data(), g.data(), qkv.data(), a.data(), s, B, T, C, NH);
        res.insert(res.end(), {o, a, d});
    }
    bool same = true;
    for (int k = 0; k < 3; k++) same = same && res[k] == res[k + 3];
    report(same, fmt("attention segments=nullptr == all-equal segment ids, bitwise  B=%d T=%d C=%d NH=%d", B, T, C, NH));
}

// ================================================================ bench
double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best time of fn() in ms, after a warm-up, over up to 50 runs or ~0.5 s: the minimum, as
// the machine may be shared and other processes only ever add time.
double time_ms(const std::function<void()>& fn) {
    fn();
    std::vector<double> t;
    const double start = now_ms();
    while (t.size() < 50 && (t.size() < 5 || now_ms() - start < 500.0)) {
        const double t0 = now_ms();
        fn();
        t.push_back(now_ms() - t0);
    }
    return *std::min_element(t.begin(), t.end());
}

void bench_line(const std::string& what, double fwd, double bwd, double fwd_units, double bwd_units,
                const char* unit) {
    std::printf("bench %-46s fwd %8.3f ms %7.1f %s   bwd %8.3f ms %7.1f %s\n", what.c_str(), fwd,
                fwd_units / fwd / 1e9, unit, bwd, bwd_units / bwd / 1e9, unit);
    std::fflush(stdout);
}

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
    for (auto [IC, OC] : std::initializer_list<std::pair<int, int>>{{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}}) {
        Vec x = randn(static_cast<size_t>(N) * IC, r), w = randn(static_cast<size_t>(IC) * OC, r),
            b = randn(OC, r), g = randn(static_cast<size_t>(N) * OC, r);
        Vec out(static_cast<size_t>(N) * OC), dx(x.size()), dw(w.size()), db(OC);
        const double f = time_ms([&] { plw::cpu::linear_forward(out.data(), x.data(), w.data(), b.data(), N, IC, OC); });
        const double bw = time_ms([&] {
            plw::cpu::linear_backward(dx.data(), dw.data(), db.data(), g.data(), x.data(), w.data(), N, IC, OC);
        });
        const double flop = 2.0 * N * IC * OC * 1e3;  // per ms -> per s
        bench_line(fmt("linear N=%d IC=%d OC=%d", N, IC, OC), f, bw, flop, 2.0 * flop, "GFLOP/s");
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
    struct AttShape { int B, T, C, NH; };
    for (const AttShape s : {AttShape{4, 64, 768, 12}, AttShape{8, 256, 128, 4}, AttShape{1, 1024, 768, 12}}) {
        const size_t n_qkv = static_cast<size_t>(s.B) * s.T * 3 * s.C;
        Vec qkv = randn(n_qkv, r), g = randn(static_cast<size_t>(s.B) * s.T * s.C, r);
        Vec out(g.size()), att(static_cast<size_t>(s.B) * s.NH * s.T * s.T), d(n_qkv);
        const double f = time_ms([&] {
            plw::cpu::attention_forward(out.data(), att.data(), qkv.data(), nullptr, s.B, s.T, s.C, s.NH);
        });
        const double bw = time_ms([&] {
            plw::cpu::attention_backward(d.data(), g.data(), qkv.data(), att.data(), nullptr, s.B, s.T, s.C, s.NH);
        });
        // causal: ~T^2/2 (query, key) pairs per head, 2 FLOP per channel per product;
        // forward 2 products (q.k, P.v), backward 4 (dP, dv, dq, dk)
        const double pairs = static_cast<double>(s.B) * s.NH * s.T * (s.T + 1) / 2.0;
        const double flop = 2.0 * pairs * (s.C / s.NH) * 1e3;
        bench_line(fmt("attention B=%d T=%d C=%d NH=%d", s.B, s.T, s.C, s.NH), f, bw, 2.0 * flop, 4.0 * flop,
                   "GFLOP/s");
    }
}

}  // namespace

int main(int argc, char** argv) {
    g_default_threads = omp_get_max_threads();
    if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) {
        bench();
        return 0;
    }
    Rng r(20261121);

    for (auto [N, C] : std::initializer_list<std::pair<int, int>>{{1, 1}, {3, 1}, {4, 37}, {5, 768}, {33, 100}}) test_layernorm(N, C, r);

    test_linear(1, 1, 1, true, r);
    test_linear(7, 37, 5, true, r);
    test_linear(5, 9, 13, false, r);
    test_linear(33, 64, 96, true, r);
    test_linear(64, 768, 37, true, r);
    test_linear(128, 200, 300, true, r);  // big enough for sgemm to use both threads

    for (size_t n : {size_t{1}, size_t{37}, size_t{1000}, size_t{100003}}) test_gelu(n, r);
    test_gelu_tails();

    for (size_t n : {size_t{1}, size_t{37}, size_t{100003}}) test_residual(n, r);

    test_attention(1, 1, 4, 1, {}, "segments=null", r);
    test_attention(2, 7, 12, 3, {}, "segments=null", r);
    test_attention(1, 9, 37, 1, {}, "segments=null", r);
    test_attention(2, 16, 32, 2,
                   {0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2,  // three examples packed
                    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6},  // two, the last one with padding
                   "packed", r);
    test_attention(1, 12, 24, 3, {0, 1, 0, 2, 1, 1, 0, 2, 2, 0, 1, 0}, "interleaved ids", r);
    {
        const int B = 2, T = 64;
        IVec seg(B * T);
        for (int t = 0; t < B * T; t++) seg[t] = (t % T) < 23 ? 0 : (t % T) < 50 ? 1 : 2;
        test_attention(B, T, 128, 2, seg, "packed hs=64", r);
    }
    test_attention_isolation(8, 3, 12, 2, r);
    test_attention_isolation(40, 17, 64, 1, r);
    test_attention_null_segments(r);

    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed ? 1 : 0;
}
