// Shared helpers of the native op checks (test/native/*.cpp, one executable): seeded random
// data, the float64 error metric, finite differences, the bitwise thread-count check,
// pass/fail reporting and the bench timer. ops_check.cpp has main() and the checks of the
// GPT-2 block's ops; llama_ops_check.cpp those of the Llama ops (rmsnorm, rope, swiglu).
//
// Error metric, everywhere unless said otherwise:
//   max_rel_err = max_i |got_i - ref_i| / max_i |ref_i|
// the largest error relative to the tensor's scale (elementwise relative errors blow up
// where ref_i ~ 0 and say nothing there).
//
// Everything is inline (functions and variables): one g_passed/g_failed for the whole
// executable, whichever file reports.
#pragma once
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

namespace plw_check {

using Vec = std::vector<float>;
using DVec = std::vector<double>;
using IVec = std::vector<int32_t>;

// ---------------------------------------------------------------- tolerances
// Forward and analytic backward vs float64: the kernels round each value a few times in
// f32 and sum at most a few thousand terms in f32 (blocked/vectorized), ~1e-6 at worst.
inline constexpr double kTolRef = 2e-5;
// Accumulate: G0 + g in f32 vs the same in double, g from a run onto zeros: one extra
// rounding of the sum plus the kernel's reordering of it (sgemm adds C first).
inline constexpr double kTolAccum = 2e-6;
// Finite differences, step h = 1e-2 on inputs of scale ~1 (the step actually taken is the
// float difference (x+h) - (x-h), not 2h). Error sources, relative to the gradient's scale:
// truncation h^2 f'''/6 ~ 1e-5..1e-4, and the f32 rounding of the forward outputs that the
// perturbation touches, ~sqrt(count) * 6e-8 * |out| / 2h ~ 1e-4 for a row of 768. Measured
// at most 2.3e-4; a wrong formula (a missing term, a wrong mask) is off by O(1).
inline constexpr float kFdStep = 1e-2f;
inline constexpr double kTolFd = 3e-3;
inline constexpr int kFdSamples = 48;  // coordinates per tensor (all of them when fewer)

// ---------------------------------------------------------------- reporting
inline int g_passed = 0, g_failed = 0;
inline int g_default_threads = 1;

inline std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    std::vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

inline void report(bool ok, const std::string& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    std::fflush(stdout);
    (ok ? g_passed : g_failed)++;
}

inline void check_err(const std::string& what, double err, double tol) {
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

inline Vec randn(size_t n, Rng& r, float scale = 1.0f, float offset = 0.0f) {
    Vec v(n);
    for (auto& x : v) x = offset + scale * r.normal();
    return v;
}

inline DVec to_d(const Vec& v) { return DVec(v.begin(), v.end()); }

// max |got - ref| / max(max |ref|, scale); scale: a floor for tensors that may be all 0.
template <typename A, typename B>
inline double rel_err(const A& got, const B& ref, double scale = 0.0) {
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

inline DVec add(const Vec& a, const Vec& b) {
    DVec r(a.size());
    for (size_t i = 0; i < a.size(); i++) r[i] = static_cast<double>(a[i]) + b[i];
    return r;
}

inline double dot_d(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++) s += static_cast<double>(a[i]) * b[i];
    return s;
}

// ---------------------------------------------------------------- generic checks
// Central difference of loss() in x[i]: (L(x+h) - L(x-h)) / ((x+h) - (x-h)) with the
// perturbed values as they are in float.
inline double central_diff(const std::function<double()>& loss, float* x, size_t i, float h) {
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
inline double fd_err(const std::function<double()>& loss, Vec& x, const Vec& grad, Rng& r, double scale = 0.0) {
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
inline void check_threads(const std::string& what, const std::function<std::vector<Vec>()>& run) {
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

// ---------------------------------------------------------------- bench
inline double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best time of fn() in ms, after a warm-up, over up to 50 runs or ~0.5 s: the minimum, as
// the machine may be shared and other processes only ever add time.
inline double time_ms(const std::function<void()>& fn) {
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

inline void bench_line(const std::string& what, double fwd, double bwd, double fwd_units, double bwd_units,
                const char* unit) {
    std::printf("bench %-46s fwd %8.3f ms %7.1f %s   bwd %8.3f ms %7.1f %s\n", what.c_str(), fwd,
                fwd_units / fwd / 1e9, unit, bwd, bwd_units / bwd / 1e9, unit);
    std::fflush(stdout);
}

}  // namespace plw_check

// llama_ops_check.cpp: rmsnorm, rope and swiglu checks, and their bench lines.
void run_llama_op_checks();
void bench_llama_ops();
