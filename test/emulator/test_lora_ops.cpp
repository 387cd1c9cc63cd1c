// The LoRA ops in the emulator against the CPU reference (native/cpu/lora.h): lora_forward and
// lora_backward in f32 and bf16 on the same seeded inputs (bf16 inputs rounded in place, so the
// reference sees the bf16 values), ranks 1, 4, 8, 16, IC/OC not multiples of 8, N = 1 (the f32
// decode path), aligned and misaligned buffers (off = 1: bf16 only 2-byte aligned), N = 0;
// dropout forward/backward with p = 0, 0.1, 0.5; linear_backward with dweight == nullptr.
// The GEMMs run in the reference cuBLASLt (reference_cublaslt.cpp: double sums, one rounding).
//
// Tolerances, per element, from the magnitude P of the product that forms it: P is the same
// product of absolute values (e.g. P_out[n,o] = sum_j |xs[n,j]| |B[o,j]|, P_xs = scaling
// sum_i |inp[n,i]| |A[j,i]|), and y0 the accumulator's value before a += (0 for xs, dxs).
//   f32:  1e-5 (|y0| + P). The CPU sums k <= 300 products in f32 (error a few 2^-24 sqrt(k) P,
//         worst case k 2^-24 P = 1.8e-5 P at k = 300, never approached by random signs), the
//         reference cuBLASLt in double; the f32 rounding of xs / dxs carried into the next
//         product is ~2^-24 of its P.
//   bf16: xs, dxs (rounded once when stored): 2^-8 |ref| (half an ulp of an 8-bit significand,
//         an ulp being at most 2^-7 |x|) + the f32 term.
//         out, dinp (read a rounded xs / dxs, add to a bf16 y0, round once): 2^-8 |ref|
//         + 2^-8 P (each rounded xs / dxs term is off by at most 2^-8 of itself) + f32 term.
//         dA (f32, reads the rounded dxs): 2^-8 P + f32 term. dB (f32, from the exact bf16
//         xs and dout): f32 term only.
//         These are worst cases, not estimates: with r = 1 one rounded xs term carries the whole
//         product and ratios near 1 occur (0.97 seen); the factors 1.001 and 1 + 2^-7 on them
//         cover the second-order terms (the final rounding of an already perturbed sum).
//   xs and dxs are also checked to equal f32_to_bf16(ref) for most elements (they differ only
//   where the f32 noise straddles a rounding boundary): the smallest fraction is printed.
// Dropout is exact: f32 outputs bitwise the CPU's (the same keep mask from
// common/dropout_mask.h, in * scale and dinp + dout * scale in the same f32 ops); bf16 outputs
// bitwise f32_to_bf16 of the CPU's f32 result on the same bf16 inputs (one rounding); dropped
// dinp elements untouched. linear_backward with a null dweight: dinp and dbias bitwise those
// of the full call (the same GEMM and column sum).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "native/cpu/linear.h"
#include "native/cpu/lora.h"
#include "native/cuda/linear.h"
#include "native/cuda/lora.h"
#include "support.h"

using plw::bf16;
using plw::bf16_to_f32;
using plw::f32_to_bf16;
using plw::WeightLayout;

namespace {

using test::alloc;
using test::rne_fraction;
using test::to_bf16;

float* copy_f32(const float* p, size_t n, int off) {
    float* c = alloc<float>(n, off);
    std::memcpy(c, p, n * 4);
    return c;
}
bf16* copy_bf16(const bf16* p, size_t n, int off) {
    bf16* c = alloc<bf16>(n, off);
    std::memcpy(c, p, n * 2);
    return c;
}

// P (R, C): P[i, j] = sum_k |x(i, k)| |y(k, j)|, in double.
template <typename FX, typename FY>
std::vector<double> absprod(int R, int C, int K, FX x, FY y, double scale = 1.0) {
    std::vector<double> p(size_t(R) * C);
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += std::fabs(double(x(i, k))) * std::fabs(double(y(k, j)));
            p[size_t(i) * C + j] = std::fabs(scale) * s;
        }
    return p;
}

// |got - ref| <= bound[i] for every i (equal values pass); returns the worst |err| / bound.
double within(const char* what, const float* got, const float* ref, const std::vector<double>& bound) {
    double worst = 0;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < bound.size(); i++) {
        if (got[i] == ref[i]) continue;
        const double d = std::fabs(double(got[i]) - double(ref[i]));
        if (!(d <= bound[i])) bad++;
        const double r = std::isnan(d) ? INFINITY : d / bound[i];
        if (r > worst) {
            worst = r;
            wi = i;
        }
    }
    EXPECT(bad == 0, "%s: %d of %zu out of bound; worst at %zu got %.9g ref %.9g bound %.3g", what, bad,
           bound.size(), wi, got[wi], ref[wi], bound.empty() ? 0.0 : bound[wi]);
    return worst;
}
double within_bf16(const char* what, const bf16* got, const float* ref, const std::vector<double>& bound) {
    const std::vector<float> g = test::widen(got, bound.size());
    return within(what, g.data(), ref, bound);
}

// Bounds (see the top): f32 term 1e-5 (|y0| + P), plus 2^-8 |ref| where the result is stored
// bf16 and 2^-8 P where the product reads a rounded bf16 intermediate.
constexpr double kF32 = 1e-5;
const double kHalfUlp = std::ldexp(1.0, -8);
std::vector<double> bound_for(const float* ref, const float* y0, const std::vector<double>& P, bool stored_bf16,
                              bool rounded_input) {
    std::vector<double> b(P.size());
    for (size_t i = 0; i < P.size(); i++) {
        const double a = y0 ? std::fabs(double(y0[i])) : 0.0;
        b[i] = kF32 * (a + P[i]) + (stored_bf16 ? kHalfUlp * 1.001 * std::fabs(double(ref[i])) : 0.0) +
               (rounded_input ? kHalfUlp * (1 + 2 * kHalfUlp) * P[i] : 0.0) + 1e-30;
    }
    return b;
}

double worst_f32 = 0;   // worst error / tolerance over the f32 comparisons
double worst_bf16 = 0;  // worst error / tolerance over the bf16 comparisons
std::string worst_f32_at, worst_bf16_at;  // which comparison and shape gave it
std::string current;    // the shape under test
double min_rne = 1.0;   // smallest fraction of bf16 xs / dxs equal to f32_to_bf16(ref)
void note(double w, const char* what, double* worst, std::string* at) {
    if (w >= *worst) {
        *worst = w;
        *at = std::string(what) + " " + current;
    }
}
// Compare and note the worst ratio: f32 results of the f32 path; bf16 results; f32 results
// of the bf16 path (dA, dB) noted with the f32 or bf16 worst as their tolerance is.
void check_f32(const char* what, const float* got, const float* ref, const std::vector<double>& bound) {
    note(within(what, got, ref, bound), what, &worst_f32, &worst_f32_at);
}
void check_bf16(const char* what, const bf16* got, const float* ref, const std::vector<double>& bound) {
    note(within_bf16(what, got, ref, bound), what, &worst_bf16, &worst_bf16_at);
}
void check_f32_in_bf16(const char* what, const float* got, const float* ref, const std::vector<double>& bound) {
    note(within(what, got, ref, bound), what, &worst_bf16, &worst_bf16_at);
}
void summary(const char* group) {
    std::printf("%s vs reference: f32 worst error / tolerance %.3f (%s); bf16 worst error / tolerance %.3f (%s); "
                "smallest fraction of xs/dxs equal to f32_to_bf16(ref) %.6f\n",
                group, worst_f32, worst_f32_at.c_str(), worst_bf16, worst_bf16_at.c_str(), min_rne);
    worst_f32 = worst_bf16 = 0;
    min_rne = 1.0;
}

// ---------------------------------------------------------------- lora products
void test_lora(int N, int IC, int OC, int r, float scaling, int off) {
    char shape[96];
    std::snprintf(shape, sizeof shape, "N=%d IC=%d OC=%d r=%d off=%d", N, IC, OC, r, off);
    current = shape;
    const size_t nI = size_t(N) * IC, nO = size_t(N) * OC, nR = size_t(N) * r;
    const size_t nA = size_t(r) * IC, nB = size_t(OC) * r;
    std::vector<float> inp(nI), A(nA), B(nB), out0(nO), dout(nO), dinp0(nI), dA0(nA), dB0(nB);
    test::fill(inp.data(), nI, 1.0f);
    test::fill(A.data(), nA, float(1.0 / std::sqrt(double(IC))));
    test::fill(B.data(), nB, 0.5f);
    test::fill(out0.data(), nO, 1.0f);
    test::fill(dout.data(), nO, 1.0f);
    test::fill(dinp0.data(), nI, 1.0f);
    test::fill(dA0.data(), nA, 0.1f);
    test::fill(dB0.data(), nB, 0.1f);

    // The reference and the magnitudes of its products on the current (f32 or rounded) inputs.
    struct Ref {
        std::vector<float> out, xs, dinp, dA, dB, dxs;
        std::vector<double> P_xs, P_out, P_dB, P_dxs, P_dA, P_dinp;
    };
    auto reference = [&](const std::vector<float>& xs_in) {
        Ref R;
        R.out = out0;
        R.xs.assign(nR, NAN);
        plw::cpu::lora_forward(R.out.data(), R.xs.data(), inp.data(), A.data(), B.data(), N, IC, OC, r, scaling);
        // the backward from the given xs (the forward's, rounded as the device keeps it)
        R.dinp = dinp0;
        R.dA = dA0;
        R.dB = dB0;
        R.dxs.assign(nR, NAN);
        const std::vector<float>& xs = xs_in.empty() ? R.xs : xs_in;
        plw::cpu::lora_backward(R.dinp.data(), R.dA.data(), R.dB.data(), R.dxs.data(), dout.data(), inp.data(),
                                xs.data(), A.data(), B.data(), N, IC, OC, r, scaling);
        R.P_xs = absprod(N, r, IC, [&](int n, int i) { return inp[size_t(n) * IC + i]; },
                         [&](int i, int j) { return A[size_t(j) * IC + i]; }, scaling);
        R.P_out = absprod(N, OC, r, [&](int n, int j) { return R.xs[size_t(n) * r + j]; },
                          [&](int j, int o) { return B[size_t(o) * r + j]; });
        R.P_dB = absprod(OC, r, N, [&](int o, int n) { return dout[size_t(n) * OC + o]; },
                         [&](int n, int j) { return xs[size_t(n) * r + j]; });
        R.P_dxs = absprod(N, r, OC, [&](int n, int o) { return dout[size_t(n) * OC + o]; },
                          [&](int o, int j) { return B[size_t(o) * r + j]; }, scaling);
        R.P_dA = absprod(r, IC, N, [&](int j, int n) { return R.dxs[size_t(n) * r + j]; },
                         [&](int n, int i) { return inp[size_t(n) * IC + i]; });
        R.P_dinp = absprod(N, IC, r, [&](int n, int j) { return R.dxs[size_t(n) * r + j]; },
                           [&](int j, int i) { return A[size_t(j) * IC + i]; });
        return R;
    };

    // f32 vs the CPU
    {
        const Ref R = reference({});
        float* o = copy_f32(out0.data(), nO, off);
        float* xs = alloc<float>(nR, off);  // NaN: must be written
        plw::cuda::lora_forward(o, xs, inp.data(), A.data(), B.data(), N, IC, OC, r, scaling);
        check_f32("lora f32 xs", xs, R.xs.data(), bound_for(R.xs.data(), nullptr, R.P_xs, false, false));
        check_f32("lora f32 out (+=)", o, R.out.data(), bound_for(R.out.data(), out0.data(), R.P_out, false, false));

        float* di = copy_f32(dinp0.data(), nI, off);
        float* dA = copy_f32(dA0.data(), nA, off);
        float* dB = copy_f32(dB0.data(), nB, off);
        float* dxs = alloc<float>(nR, off);  // scratch: NaN, must be overwritten
        plw::cuda::lora_backward(di, dA, dB, dxs, dout.data(), inp.data(), R.xs.data(), A.data(), B.data(), N, IC,
                                 OC, r, scaling);
        check_f32("lora f32 dB (+=)", dB, R.dB.data(), bound_for(R.dB.data(), dB0.data(), R.P_dB, false, false));
        check_f32("lora f32 dxs", dxs, R.dxs.data(), bound_for(R.dxs.data(), nullptr, R.P_dxs, false, false));
        check_f32("lora f32 dA (+=)", dA, R.dA.data(), bound_for(R.dA.data(), dA0.data(), R.P_dA, false, false));
        check_f32("lora f32 dinp (+=)", di, R.dinp.data(),
                        bound_for(R.dinp.data(), dinp0.data(), R.P_dinp, false, false));
    }

    // bf16 (inputs rounded in place: the reference sees the same values)
    {
        bf16* inp_b = to_bf16(inp.data(), nI, off);
        bf16* A_b = to_bf16(A.data(), nA, off);
        bf16* B_b = to_bf16(B.data(), nB, off);
        bf16* out0_b = to_bf16(out0.data(), nO, off);
        bf16* dout_b = to_bf16(dout.data(), nO, off);
        bf16* dinp0_b = to_bf16(dinp0.data(), nI, off);
        bf16* o = copy_bf16(out0_b, nO, off);
        bf16* xs = alloc<bf16>(nR, off);
        plw::cuda::lora_forward(o, xs, inp_b, A_b, B_b, N, IC, OC, r, scaling);
        // the backward's xs: the device's bf16 xs, also the reference's
        const std::vector<float> xs_f = test::widen(xs, nR);
        const Ref R = reference(xs_f);
        check_bf16("lora bf16 xs", xs, R.xs.data(), bound_for(R.xs.data(), nullptr, R.P_xs, true, false));
        min_rne = std::min(min_rne, rne_fraction(xs, R.xs.data(), nR));
        check_bf16("lora bf16 out (+=)", o, R.out.data(),
                              bound_for(R.out.data(), out0.data(), R.P_out, true, true));

        bf16* di = copy_bf16(dinp0_b, nI, off);
        float* dA = copy_f32(dA0.data(), nA, off);
        float* dB = copy_f32(dB0.data(), nB, off);
        bf16* dxs = alloc<bf16>(nR, off);
        plw::cuda::lora_backward(di, dA, dB, dxs, dout_b, inp_b, xs, A_b, B_b, N, IC, OC, r, scaling);
        check_f32("lora bf16 dB (+=, f32)", dB, R.dB.data(), bound_for(R.dB.data(), dB0.data(), R.P_dB, false, false));
        check_bf16("lora bf16 dxs", dxs, R.dxs.data(), bound_for(R.dxs.data(), nullptr, R.P_dxs, true, false));
        min_rne = std::min(min_rne, rne_fraction(dxs, R.dxs.data(), nR));
        check_f32_in_bf16("lora bf16 dA (+=, f32)", dA, R.dA.data(), bound_for(R.dA.data(), dA0.data(), R.P_dA, false, true));
        check_bf16("lora bf16 dinp (+=)", di, R.dinp.data(),
                              bound_for(R.dinp.data(), dinp0.data(), R.P_dinp, true, true));
    }
    std::printf("lora N=%d IC=%d OC=%d r=%d scaling=%g off=%d done\n", N, IC, OC, r, scaling, off);
}

// N = 0: nothing is read or written (null inputs are fine), in both precisions.
void test_lora_empty() {
    float out[4] = {1, 2, 3, 4};
    plw::cuda::lora_forward(out, nullptr, static_cast<const float*>(nullptr), nullptr, nullptr, 0, 8, 4, 2, 1.f);
    plw::cuda::lora_backward(static_cast<float*>(nullptr), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                             nullptr, nullptr, 0, 8, 4, 2, 1.f);
    plw::cuda::lora_forward(static_cast<bf16*>(nullptr), nullptr, nullptr, nullptr, nullptr, 0, 8, 4, 2, 1.f);
    EXPECT(out[0] == 1 && out[3] == 4, "lora N=0 wrote out");
    std::printf("lora N=0 done\n");
}

// ---------------------------------------------------------------- dropout
void test_dropout(size_t n, float p, uint64_t seed, int off) {
    std::vector<float> in(n), dout(n), dinp0(n);
    test::fill(in.data(), n, 1.0f, 0.1f);
    test::fill(dout.data(), n, 1.0f);
    test::fill(dinp0.data(), n, 1.0f);
    const float scale = 1.0f / (1.0f - p);

    // f32: bitwise the CPU's
    size_t kept = 0;
    {
        std::vector<float> ref(n, NAN);
        plw::cpu::dropout_forward(ref.data(), in.data(), n, p, seed);
        float* o = alloc<float>(n, off);
        plw::cuda::dropout_forward(o, in.data(), n, p, seed);
        test::same_bits("dropout f32 fwd", o, ref.data(), n * 4);
        for (size_t i = 0; i < n; i++) {
            kept += ref[i] != 0.0f;  // inputs are never 0
            EXPECT(ref[i] == 0.0f || ref[i] == in[i] * scale, "dropout f32 fwd: element %zu not in * scale", i);
        }
        float* ip = copy_f32(in.data(), n, off);  // in place
        plw::cuda::dropout_forward(ip, ip, n, p, seed);
        test::same_bits("dropout f32 fwd in place", ip, ref.data(), n * 4);

        std::vector<float> dref(dinp0);
        plw::cpu::dropout_backward(dref.data(), dout.data(), n, p, seed);
        float* di = copy_f32(dinp0.data(), n, off);
        plw::cuda::dropout_backward(di, dout.data(), n, p, seed);
        test::same_bits("dropout f32 bwd (+=)", di, dref.data(), n * 4);
        int wrong = 0;  // kept: dinp0 + dout * scale; dropped: dinp0 untouched (same mask as forward)
        for (size_t i = 0; i < n; i++) {
            const float want = ref[i] != 0.0f ? dinp0[i] + dout[i] * scale : dinp0[i];
            wrong += std::memcmp(&di[i], &want, 4) != 0;
        }
        EXPECT(wrong == 0, "dropout f32 bwd: %d elements not dinp0 (+ dout * scale where kept)", wrong);
        // the kept fraction is 1 - p to within 5 standard deviations
        const double sd = std::sqrt(double(n) * p * (1 - p));
        EXPECT(std::fabs(double(kept) - double(n) * (1 - p)) <= 5 * sd + 1e-9,
               "dropout p=%g n=%zu: %zu kept, expected %.1f", p, n, kept, double(n) * (1 - p));
    }
    // bf16: the same mask, each value f32_to_bf16 of the CPU's f32 result on the rounded inputs
    {
        bf16* in_b = to_bf16(in.data(), n, off);
        bf16* dout_b = to_bf16(dout.data(), n, off);
        bf16* dinp0_b = to_bf16(dinp0.data(), n, off);
        std::vector<float> ref(n, NAN);
        plw::cpu::dropout_forward(ref.data(), in.data(), n, p, seed);
        bf16* o = alloc<bf16>(n, off);
        plw::cuda::dropout_forward(o, in_b, n, p, seed);
        int wrong = 0;
        for (size_t i = 0; i < n; i++) wrong += o[i].bits != f32_to_bf16(ref[i]).bits;
        EXPECT(wrong == 0, "dropout bf16 fwd: %d of %zu not f32_to_bf16(cpu)", wrong, n);
        bf16* ip = copy_bf16(in_b, n, off);
        plw::cuda::dropout_forward(ip, ip, n, p, seed);
        test::same_bits("dropout bf16 fwd in place", ip, o, n * 2);

        std::vector<float> dref(dinp0);
        plw::cpu::dropout_backward(dref.data(), dout.data(), n, p, seed);
        bf16* di = copy_bf16(dinp0_b, n, off);
        plw::cuda::dropout_backward(di, dout_b, n, p, seed);
        wrong = 0;
        int touched = 0;
        for (size_t i = 0; i < n; i++) {
            wrong += di[i].bits != f32_to_bf16(dref[i]).bits;
            touched += ref[i] == 0.0f && di[i].bits != dinp0_b[i].bits;
        }
        EXPECT(wrong == 0, "dropout bf16 bwd (+=): %d of %zu not f32_to_bf16(cpu)", wrong, n);
        EXPECT(touched == 0, "dropout bf16 bwd: %d dropped elements changed", touched);
    }
    std::printf("dropout n=%zu p=%g seed=%llu off=%d: %zu kept (%.4f) done\n", n, p,
                static_cast<unsigned long long>(seed), off, kept, n ? double(kept) / n : 0.0);
}

// Another seed gives another mask; the same seed the same one.
void test_dropout_seeds() {
    const size_t n = 4096;
    std::vector<float> in(n, 1.0f);
    float* a = alloc<float>(n, 0);
    float* b = alloc<float>(n, 0);
    float* c = alloc<float>(n, 0);
    plw::cuda::dropout_forward(a, in.data(), n, 0.5f, 42);
    plw::cuda::dropout_forward(b, in.data(), n, 0.5f, 42);
    plw::cuda::dropout_forward(c, in.data(), n, 0.5f, 43);
    test::same_bits("dropout same seed", a, b, n * 4);
    size_t differ = 0;
    for (size_t i = 0; i < n; i++) differ += a[i] != c[i];
    EXPECT(differ > n / 4, "dropout seeds 42 and 43: only %zu of %zu elements differ", differ, n);
    std::printf("dropout seeds: 42 vs 43 differ in %zu of %zu\n", differ, n);
}

// ---------------------------------------------------------------- linear, frozen weight
// linear_backward with dweight == nullptr: dinp and dbias bitwise those of the full call, and
// the CPU's null-dweight call agrees with the CPU's full call (the lead's change).
template <typename T>
void test_linear_frozen(int N, int IC, int OC, bool with_bias, WeightLayout layout, int off) {
    constexpr bool kBf16 = sizeof(T) == 2;
    std::vector<float> inp(size_t(N) * IC), w(size_t(IC) * OC), dout(size_t(N) * OC), dinp0(size_t(N) * IC), db0(OC);
    test::fill(inp.data(), inp.size(), 1.0f);
    test::fill(w.data(), w.size(), 0.3f);
    test::fill(dout.data(), dout.size(), 1.0f);
    test::fill(dinp0.data(), dinp0.size(), 1.0f);
    test::fill(db0.data(), OC, 1.0f);
    auto dev = [&](std::vector<float>& v) -> T* {
        if constexpr (kBf16) return to_bf16(v.data(), v.size(), off);
        else return copy_f32(v.data(), v.size(), off);
    };
    T* inp_d = dev(inp);
    T* w_d = dev(w);
    T* dout_d = dev(dout);
    T* dinp0_d = dev(dinp0);
    auto fresh = [&](T* src, size_t n) -> T* {
        T* c = alloc<T>(n, off);
        std::memcpy(static_cast<void*>(c), src, n * sizeof(T));
        return c;
    };
    T* di_full = fresh(dinp0_d, dinp0.size());
    T* di_frozen = fresh(dinp0_d, dinp0.size());
    float* db_full = copy_f32(db0.data(), OC, off);
    float* db_frozen = copy_f32(db0.data(), OC, off);
    std::vector<float> dw(w.size(), 0.0f);
    plw::cuda::linear_backward(di_full, dw.data(), with_bias ? db_full : nullptr, dout_d, inp_d, w_d, N, IC, OC, layout);
    plw::cuda::linear_backward(di_frozen, nullptr, with_bias ? db_frozen : nullptr, dout_d, inp_d, w_d, N, IC, OC,
                               layout);
    test::same_bits("linear frozen dinp", di_frozen, di_full, dinp0.size() * sizeof(T));
    test::same_bits("linear frozen dbias", db_frozen, db_full, OC * 4);
    if (!kBf16) {  // the CPU twin: null dweight gives the full call's dinp and dbias
        std::vector<float> dic(dinp0), dic_frozen(dinp0), dbc(db0), dbc_frozen(db0), dwc(w.size(), 0.0f);
        plw::cpu::linear_backward(dic.data(), dwc.data(), with_bias ? dbc.data() : nullptr, dout.data(), inp.data(),
                                  w.data(), N, IC, OC, layout);
        plw::cpu::linear_backward(dic_frozen.data(), nullptr, with_bias ? dbc_frozen.data() : nullptr, dout.data(),
                                  inp.data(), w.data(), N, IC, OC, layout);
        test::same_bits("cpu linear frozen dinp", dic_frozen.data(), dic.data(), dic.size() * 4);
        test::same_bits("cpu linear frozen dbias", dbc_frozen.data(), dbc.data(), OC * 4);
    }
    std::printf("linear frozen %s N=%d IC=%d OC=%d bias=%d %s off=%d done\n", kBf16 ? "bf16" : "f32", N, IC, OC,
                with_bias, layout == WeightLayout::InOut ? "InOut" : "OutIn", off);
}

}  // namespace

int main(int argc, char** argv) {
    if (test::selected(argc, argv, "lora")) {
        test_lora(37, 24, 40, 8, 16.0f / 8, 0);      // r = 8, alpha 16
        test_lora(33, 7, 13, 1, 16.0f, 0);           // r = 1, IC/OC odd
        test_lora(33, 7, 13, 1, 16.0f, 1);           // misaligned (bf16 2-byte aligned)
        test_lora(5, 100, 36, 16, 32.0f / 16, 0);    // r = 16
        test_lora(20, 45, 27, 16, float(16 / std::sqrt(16.0)), 1);  // rsLoRA scaling, odd, misaligned
        test_lora(1, 64, 96, 8, 2.0f, 0);            // N = 1: the decode path
        test_lora(1, 37, 19, 16, 0.5f, 1);           // N = 1, odd, misaligned
        test_lora(300, 16, 35, 4, float(8 / std::sqrt(4.0)), 0);  // long sums over N for dA / dB
        test_lora(64, 48, 48, 1, 1.0f, 0);           // r = 1, square
        test_lora_empty();
        summary("lora");
    }
    if (test::selected(argc, argv, "dropout")) {
        test_dropout(1, 0.1f, 7, 0);
        test_dropout(1000, 0.1f, 7, 0);
        test_dropout(1000, 0.5f, 7, 0);
        test_dropout(4099, 0.1f, 0x9E3779B97F4A7C15ull, 1);  // odd n, misaligned
        test_dropout(4099, 0.5f, 123456789, 1);
        test_dropout(100003, 0.1f, 5, 0);            // 391 blocks
        test_dropout(100003, 0.5f, 5, 3);
        test_dropout(777, 0.0f, 11, 0);              // p = 0: the identity
        test_dropout(0, 0.5f, 11, 0);                // n = 0: nothing
        test_dropout_seeds();
    }
    if (test::selected(argc, argv, "linear")) {
        for (WeightLayout layout : {WeightLayout::InOut, WeightLayout::OutIn}) {
            test_linear_frozen<float>(37, 24, 40, true, layout, 0);
            test_linear_frozen<float>(33, 7, 13, false, layout, 0);
            test_linear_frozen<float>(1, 32, 96, true, layout, 0);
            test_linear_frozen<bf16>(37, 24, 40, true, layout, 0);
            test_linear_frozen<bf16>(33, 7, 13, true, layout, 1);
            test_linear_frozen<bf16>(300, 16, 35, false, layout, 0);
        }
    }
    return test::finish("test_lora_ops");
}
