// Attention (f32 and bf16; causal, and with segment masks for packed examples; grouped-query
// heads, NKV < NH; q, k, v in GPT-2's fused rows or in separate buffers with padded rows) in
// the emulator against the CPU reference: the softmax and mask kernels here, the batched GEMMs
// in the reference cuBLASLt. Also checks the number of GEMM calls, the scratch the backward
// takes against attention_scratch_bytes, += into dq/dk/dv (row padding untouched),
// misaligned buffers, and reproducibility.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "native/cpu/attention.h"
#include "native/cuda/attention.h"
#include "support.h"

using test::Buf;

namespace {

const double kU = std::ldexp(1.0, -8);  // bf16 unit roundoff (half an ulp at 1.0 is 2^-8)

float b2f(plw::bf16 x) { return plw::bf16_to_f32(x); }
float rnd(float x) { return b2f(plw::f32_to_bf16(x)); }

void fill(std::vector<float>& v, float scale) {
    test::fill(v.data(), v.size(), scale);
}

std::vector<int32_t> make_segments(int B, int T, int mode) {
    std::vector<int32_t> seg(size_t(B) * T);
    for (int b = 0; b < B; b++) {
        int id = 0;
        for (int t = 0; t < T; t++) {
            if (mode == 1 && t > 0 && (test::rng() % 7) == 0) id++;  // packed examples
            if (mode == 2) id = t / 3;                         // short segments
            if (mode == 3) id = t < T / 3 ? 0 : t < 2 * T / 3 ? 1 : 1;  // two examples + padding
            seg[size_t(b) * T + t] = id + 10 * b;
        }
    }
    return seg;
}

// |got - ref| <= tol elementwise; reports the worst (err / tol).
void check(const char* what, const std::vector<double>& got, const std::vector<double>& ref,
                  const std::vector<double>& tol, double* worst_out = nullptr) {
    double worst = 0, worst_abs = 0;
    size_t wi = 0, bad = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double d = std::fabs(got[i] - ref[i]);
        if (!(d <= tol[i])) bad++;
        const double r = std::isnan(got[i]) ? INFINITY : d / tol[i];
        if (r > worst) { worst = r; wi = i; }
        if (d > worst_abs) worst_abs = d;
    }
    EXPECT(bad == 0, "%s: %zu of %zu out of tolerance; worst at %zu got %.9g ref %.9g tol %.3g",
           what, bad, got.size(), wi, got[wi], ref[wi], tol[wi]);
    if (worst_out) *worst_out = worst;
    if (getenv("VERBOSE")) std::printf("  %-22s worst err/tol %.3f\n", what, worst);
    (void)worst_abs;
}

// Where q, k, v (and dq, dk, dv at the same places of the gradient buffer) live, all in one
// buffer "qkv": fused rows [q (NH*hs) | k (NKV*hs) | v (NKV*hs)] (GPT-2's qkv when NKV = NH),
// or (separate) the q rows, then the k rows, then the v rows, each row padded by `pad`
// elements that no kernel may write. Query head h reads KV head h / n_rep.
struct Shape {
    int B, T, NH, hs;
    int NKV = 0;  // 0: NH (multi-head)
    bool separate = false;
    int pad = 0;
    int nkv() const { return NKV ? NKV : NH; }
    int n_rep() const { return NH / nkv(); }
    int C() const { return NH * hs; }  // out's row
    int qs() const { return separate ? NH * hs + pad : (NH + 2 * nkv()) * hs; }
    int kvs() const { return separate ? nkv() * hs + pad : qs(); }
    size_t rows() const { return size_t(B) * T; }
    size_t k_off() const { return separate ? rows() * qs() : size_t(NH) * hs; }
    size_t v_off() const { return separate ? k_off() + rows() * kvs() : size_t(NH + nkv()) * hs; }
    size_t nqkv() const { return separate ? v_off() + rows() * kvs() : rows() * qs(); }
    size_t nout() const { return rows() * C(); }
    size_t natt() const { return size_t(B) * NH * T * T; }
    size_t qi(int b, int t, int h) const { return (size_t(b) * T + t) * qs() + size_t(h) * hs; }
    size_t ki(int b, int t, int j) const { return k_off() + (size_t(b) * T + t) * kvs() + size_t(j) * hs; }
    size_t vi(int b, int t, int j) const { return v_off() + (size_t(b) * T + t) * kvs() + size_t(j) * hs; }
    size_t oi(int b, int t, int h) const { return (size_t(b) * T + t) * C() + size_t(h) * hs; }
    // GEMM += roundings into each element of dqkv per backward: 1 (dq), n_rep (dk, dv: one
    // per query head of the KV head), 0 (row padding)
    std::vector<int> accumulations() const {
        std::vector<int> n(nqkv(), 0);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                for (int i = 0; i < NH * hs; i++) n[qi(b, t, 0) + i] = 1;
                for (int i = 0; i < nkv() * hs; i++) n[ki(b, t, 0) + i] = n[vi(b, t, 0) + i] = n_rep();
            }
        return n;
    }
};

// The kernels on a Shape's buffers, CPU (f32) and CUDA (f32 or bf16).
template <typename T>
void gpu_forward(const Shape& s, T* out, T* att, const T* qkv, const int32_t* seg) {
    plw::cuda::attention_forward(out, att, qkv, qkv + s.k_off(), qkv + s.v_off(), seg, s.B, s.T, s.NH,
                                 s.nkv(), s.hs, s.qs(), s.kvs());
}
template <typename T>
void gpu_backward(const Shape& s, T* d, const T* dout, const T* qkv, const T* att, const int32_t* seg) {
    plw::cuda::attention_backward(d, d + s.k_off(), d + s.v_off(), dout, qkv, qkv + s.k_off(),
                                  qkv + s.v_off(), att, seg, s.B, s.T, s.NH, s.nkv(), s.hs, s.qs(),
                                  s.kvs());
}
void cpu_forward(const Shape& s, float* out, float* att, const float* qkv, const int32_t* seg) {
    plw::cpu::attention_forward(out, att, qkv, qkv + s.k_off(), qkv + s.v_off(), seg, s.B, s.T, s.NH,
                                s.nkv(), s.hs, s.qs(), s.kvs());
}
void cpu_backward(const Shape& s, float* d, const float* dout, const float* qkv, const float* att,
                  const int32_t* seg) {
    plw::cpu::attention_backward(d, d + s.k_off(), d + s.v_off(), dout, qkv, qkv + s.k_off(),
                                 qkv + s.v_off(), att, seg, s.B, s.T, s.NH, s.nkv(), s.hs, s.qs(),
                                 s.kvs());
}

double g_worst_bf16 = 0;  // largest err / tol seen in the bf16 tests

// Per-element magnitudes for the error bounds, in double from the CPU's att (see test_bf16):
// m_out = sum att|v|; m_dq: dq = scale sum M_dS |k|, dk = scale sum M_dS |q|, dv = sum att|dout|,
// dk and dv summed over the query heads of their KV head.
void magnitudes(const Shape& s, const std::vector<float>& qkv, const std::vector<float>& dout,
                       const std::vector<float>& att_c, std::vector<double>& m_out, std::vector<double>& m_dq) {
    const int B = s.B, T = s.T, NH = s.NH, hs = s.hs;
    const double scale = 1.0 / std::sqrt(double(float(hs)));
    m_out.assign(s.nout(), 0);
    m_dq.assign(s.nqkv(), 0);
    std::vector<double> m_dS(size_t(T) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int j = h / s.n_rep();
            const float* a = att_c.data() + (size_t(b) * NH + h) * T * T;
            auto q = [&](int t, int d) { return double(qkv[s.qi(b, t, h) + d]); };
            auto k = [&](int t, int d) { return double(qkv[s.ki(b, t, j) + d]); };
            auto v = [&](int t, int d) { return double(qkv[s.vi(b, t, j) + d]); };
            auto dO = [&](int t, int d) { return double(dout[s.oi(b, t, h) + d]); };
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    double sum = 0, sum_v = 0;
                    for (int t2 = 0; t2 < T; t2++) {
                        sum += a[size_t(t) * T + t2] * std::fabs(v(t2, d));
                        sum_v += a[size_t(t2) * T + t] * std::fabs(dO(t2, d));  // dv[t] over rows t2
                    }
                    m_out[s.oi(b, t, h) + d] = sum;
                    m_dq[s.vi(b, t, j) + d] += sum_v;
                }
            for (int t = 0; t < T; t++) {
                std::vector<double> dP(T);
                double dot = 0, abs_dot = 0;
                for (int t2 = 0; t2 < T; t2++) {
                    double x = 0;
                    for (int d = 0; d < hs; d++) x += dO(t, d) * v(t2, d);
                    dP[t2] = x;
                    dot += a[size_t(t) * T + t2] * x;
                    abs_dot += a[size_t(t) * T + t2] * std::fabs(x);
                }
                for (int t2 = 0; t2 < T; t2++) {
                    const double at = a[size_t(t) * T + t2];
                    m_dS[size_t(t) * T + t2] = at * (2 * std::fabs(dP[t2] - dot) + abs_dot);
                }
            }
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    double sq = 0, sk = 0;
                    for (int t2 = 0; t2 < T; t2++) {
                        sq += m_dS[size_t(t) * T + t2] * std::fabs(k(t2, d));  // dq[t]
                        sk += m_dS[size_t(t2) * T + t] * std::fabs(q(t2, d));  // dk[t]
                    }
                    m_dq[s.qi(b, t, h) + d] = scale * sq;
                    m_dq[s.ki(b, t, j) + d] += scale * sk;
                }
        }
}

// The row padding (no accumulations) must hold exactly what it held before the backward.
template <typename T>
void check_padding(const char* what, const Shape& s, const std::vector<int>& nacc, const T* got, const T* before) {
    size_t bad = 0;
    for (size_t i = 0; i < s.nqkv(); i++) bad += nacc[i] == 0 && std::memcmp(&got[i], &before[i], sizeof(T)) != 0;
    EXPECT(bad == 0, "%s: %zu padding elements written", what, bad);
}

const char* desc(const Shape& s) {
    static char buf[160];
    std::snprintf(buf, sizeof buf, "B=%d T=%d NH=%d NKV=%d hs=%d %s pad=%d", s.B, s.T, s.NH, s.nkv(), s.hs,
                  s.separate ? "separate" : "fused", s.pad);
    return buf;
}

// ---------------------------------------------------------------- f32
void test_f32(Shape s, int seg_mode, int off) {
    const int B = s.B, T = s.T, NH = s.NH;
    const long n_rep = s.n_rep();
    std::vector<float> qkv(s.nqkv()), dout(s.nout()), dqkv0(s.nqkv());
    fill(qkv, 1.5f);
    fill(dout, 1.f);
    fill(dqkv0, 1.f);
    auto seg = make_segments(B, T, seg_mode);
    const int32_t* segp = seg_mode == 0 ? nullptr : seg.data();
    const std::vector<int> nacc = s.accumulations();
    std::vector<float> out_c(s.nout()), att_c(s.natt());
    cpu_forward(s, out_c.data(), att_c.data(), qkv.data(), segp);

    Buf<float> qkv_g(s.nqkv(), off), out_g(s.nout(), off), att_g(s.natt(), off),
        dout_g(s.nout(), off), dqkv_g(s.nqkv(), off);
    std::copy(qkv.begin(), qkv.end(), qkv_g.p);
    std::copy(dout.begin(), dout.end(), dout_g.p);
    for (size_t i = 0; i < s.natt(); i++) att_g[i] = NAN;  // must be overwritten
    for (size_t i = 0; i < s.nout(); i++) out_g[i] = NAN;
    emu::scratch_peak = 0;
    const long calls0 = emu::lt_calls, batched0 = emu::lt_batched_calls;
    gpu_forward(s, out_g.p, att_g.p, qkv_g.p, segp);
    EXPECT(emu::lt_calls - calls0 == 2L * n_rep * B, "f32 forward: %ld GEMM calls", emu::lt_calls - calls0);
    EXPECT(emu::lt_batched_calls - batched0 == (s.nkv() > 1 ? 2L * n_rep * B : 0), "f32 forward: batched calls");
    EXPECT(emu::scratch_peak == 0, "f32 forward took %zu bytes of scratch", emu::scratch_peak);

    // f32: the CPU sums in f32, the emulated GEMMs in double: ~sqrt(K) 2^-24 of the sum of
    // |terms| (m_out), K <= 130 here; the f32 softmax alike.
    std::vector<double> m_out, m_dq;
    magnitudes(s, qkv, dout, att_c, m_out, m_dq);
    std::vector<double> g, r, tol;
    for (size_t i = 0; i < s.natt(); i++) {
        g.push_back(att_g[i]); r.push_back(att_c[i]); tol.push_back(1e-7 + 1e-5 * std::fabs(att_c[i]));
    }
    check("f32 att", g, r, tol);
    size_t zeros_bad = 0;
    for (size_t i = 0; i < s.natt(); i++) zeros_bad += (att_c[i] == 0.f) != (att_g[i] == 0.f);
    EXPECT(zeros_bad == 0, "f32 att: %zu mask zeros differ", zeros_bad);
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(out_g[i]); r.push_back(out_c[i]); tol.push_back(1e-7 + 1e-5 * std::fabs(out_c[i]) + 2e-6 * m_out[i]);
    }
    check("f32 out", g, r, tol);

    // backward, from the CPU's att, into a random dqkv (accumulate). Each += into dqkv rounds
    // the running sum to f32 on both sides, n times (n = 1 for dq, n_rep for dk and dv):
    // + 2 n 2^-24 (|dqkv0| + m) on top of the single-rounding tolerance.
    std::copy(att_c.begin(), att_c.end(), att_g.p);
    std::vector<float> dqkv_c(dqkv0);
    cpu_backward(s, dqkv_c.data(), dout.data(), qkv.data(), att_c.data(), segp);
    std::copy(dqkv0.begin(), dqkv0.end(), dqkv_g.p);
    emu::scratch_peak = 0;
    const long calls1 = emu::lt_calls;
    gpu_backward(s, dqkv_g.p, dout_g.p, qkv_g.p, att_g.p, segp);
    EXPECT(emu::lt_calls - calls1 == 4L * n_rep * B, "f32 backward: %ld GEMM calls", emu::lt_calls - calls1);
    EXPECT(emu::scratch_peak <= plw::cuda::attention_scratch_bytes(T, NH, 4),
           "f32 backward scratch %zu > attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::attention_scratch_bytes(T, NH, 4));
    check_padding("f32 backward", s, nacc, dqkv_g.p, dqkv0.data());
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        const double inc_c = double(dqkv_c[i]) - dqkv0[i], inc_g = double(dqkv_g[i]) - dqkv0[i];
        g.push_back(inc_g); r.push_back(inc_c);
        tol.push_back(1e-6 + 1e-5 * std::fabs(inc_c) + 2e-6 * m_dq[i] +
                      1.2e-7 * nacc[i] * (std::fabs(dqkv0[i]) + m_dq[i]));
    }
    check("f32 dqkv increments", g, r, tol);

    // += : from zero, twice, is exactly twice once where one GEMM adds into an element (dq;
    // all of them when n_rep = 1); with n_rep > 1 the partial sums round differently. And a
    // second run from zero gives the same bits.
    Buf<float> d1(s.nqkv(), off), d2(s.nqkv(), off), d3(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = d3[i] = 0.f;
    gpu_backward(s, d1.p, dout_g.p, qkv_g.p, att_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, qkv_g.p, att_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, qkv_g.p, att_g.p, segp);
    gpu_backward(s, d3.p, dout_g.p, qkv_g.p, att_g.p, segp);
    size_t not_double = 0;
    for (size_t i = 0; i < s.nqkv(); i++) not_double += nacc[i] <= 1 && d2[i] != 2.f * d1[i];
    EXPECT(not_double == 0, "f32 backward twice: %zu elements not doubled", not_double);
    test::same_bits("f32 backward rerun", d3.p, d1.p, s.nqkv() * 4);
    std::printf("f32  %s seg=%d off=%d done\n", desc(s), seg_mode, off);
}

// ---------------------------------------------------------------- bf16
// Tolerances: u = 2^-8, the relative error bound of one bf16 rounding to nearest (8
// significant bits). The emulated GEMMs sum in double and round once (real cuBLASLt: f32
// sums, ~K * 2^-24 relative, well inside the 1.25 margin below); the CPU reference runs in
// f32 on the same bf16-rounded inputs. To first order in u:
//   att: rounded once from the f32 softmax:        |err| <= u |att|            (+ f32 noise)
//   out: att (rounded) . v, rounded once:          |err| <= u sum att|v| + u |out|
//   dS = att (dP - dot), dot = sum att dP, with att rounded (u), dot from rounded att
//        (u sum att|dP|) and dS rounded (u):
//        |err dS| <= u * M_dS,  M_dS = att (2 |dP - dot| + sum_t3 att |dP|)
//   dq = scale dS . k:  |err| <= u * scale sum_t2 M_dS |k|, dk alike with q,
//   dv = att^T . dout:  |err| <= u sum_t att |dout|,   (dk, dv: summed over the query heads)
//   and each GEMM's += into dqkv (bf16) rounds once more: + u |dqkv0 + inc| for the last,
//   and, for dk and dv with n_rep > 1, + u (|dqkv0| + m) for each of the n_rep - 1 partial
//   sums before it.
// Each bound gets a margin of 1.25, plus 1e-5 of the magnitudes for the f32 reference.
void test_bf16(Shape s, int seg_mode, int off) {
    using plw::bf16;
    const int B = s.B, T = s.T, NH = s.NH;
    const long n_rep = s.n_rep();
    std::vector<float> qkv(s.nqkv()), dout(s.nout()), dqkv0(s.nqkv());
    fill(qkv, 1.5f);
    fill(dout, 1.f);
    fill(dqkv0, 1.f);
    for (auto* v : {&qkv, &dout, &dqkv0})
        for (auto& x : *v) x = rnd(x);  // the bf16 inputs, exactly, as f32
    auto seg = make_segments(B, T, seg_mode);
    const int32_t* segp = seg_mode == 0 ? nullptr : seg.data();
    const std::vector<int> nacc = s.accumulations();
    std::vector<float> out_c(s.nout()), att_c(s.natt());
    cpu_forward(s, out_c.data(), att_c.data(), qkv.data(), segp);

    Buf<bf16> qkv_g(s.nqkv(), off), out_g(s.nout(), off), att_g(s.natt(), off),
        dout_g(s.nout(), off), dqkv_g(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) qkv_g[i] = plw::f32_to_bf16(qkv[i]);
    for (size_t i = 0; i < s.nout(); i++) dout_g[i] = plw::f32_to_bf16(dout[i]);
    for (size_t i = 0; i < s.natt(); i++) att_g[i] = bf16{0x7fc0};  // NaN: must be overwritten
    for (size_t i = 0; i < s.nout(); i++) out_g[i] = bf16{0x7fc0};
    emu::scratch_peak = 0;
    const long calls0 = emu::lt_calls, batched0 = emu::lt_batched_calls;
    gpu_forward(s, out_g.p, att_g.p, qkv_g.p, segp);
    EXPECT(emu::lt_calls - calls0 == 2L * n_rep * B, "bf16 forward: %ld GEMM calls", emu::lt_calls - calls0);
    EXPECT(emu::lt_batched_calls - batched0 == (s.nkv() > 1 ? 2L * n_rep * B : 0), "bf16 forward: batched calls");
    EXPECT(emu::scratch_peak <= plw::cuda::attention_scratch_bytes(T, NH, 2), "bf16 forward scratch");

    double w;
    std::vector<double> g, r, tol;
    for (size_t i = 0; i < s.natt(); i++) {
        g.push_back(b2f(att_g[i])); r.push_back(att_c[i]);
        tol.push_back(1e-7 + (kU + 1e-5) * std::fabs(att_c[i]));
    }
    check("bf16 att", g, r, tol, &w); g_worst_bf16 = std::max(g_worst_bf16, w);
    size_t zeros_bad = 0;
    for (size_t i = 0; i < s.natt(); i++) zeros_bad += (att_c[i] == 0.f) != (b2f(att_g[i]) == 0.f);
    EXPECT(zeros_bad == 0, "bf16 att: %zu mask zeros differ", zeros_bad);

    std::vector<double> m_out, m_dq;
    magnitudes(s, qkv, dout, att_c, m_out, m_dq);

    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nout(); i++) {
        g.push_back(b2f(out_g[i])); r.push_back(out_c[i]);
        const double bound = kU * m_out[i] * 1.25;
        tol.push_back(bound + kU * (std::fabs(out_c[i]) + bound) * 1.25 + 1e-5 * (m_out[i] + std::fabs(out_c[i])) + 1e-30);
    }
    check("bf16 out", g, r, tol, &w); g_worst_bf16 = std::max(g_worst_bf16, w);

    // the bound on dqkv from dqkv0 (see above)
    auto dq_tol = [&](size_t i, double d0, double ref) {
        const double bound = kU * m_dq[i] * 1.25;
        const double partial_sums = nacc[i] > 1 ? (nacc[i] - 1) * (std::fabs(d0) + m_dq[i] + bound) : 0.0;
        return bound + kU * (std::fabs(ref) + bound + partial_sums) * 1.25 +
               1e-5 * (m_dq[i] + std::fabs(ref)) + 1e-30;
    };
    // backward from the GPU's own bf16 att, into a random bf16 dqkv (accumulate)
    std::vector<float> dqkv_c(dqkv0);
    cpu_backward(s, dqkv_c.data(), dout.data(), qkv.data(), att_c.data(), segp);
    for (size_t i = 0; i < s.nqkv(); i++) dqkv_g[i] = plw::f32_to_bf16(dqkv0[i]);
    std::vector<bf16> dqkv_before(dqkv_g.p, dqkv_g.p + s.nqkv());
    emu::scratch_peak = 0;
    const long calls1 = emu::lt_calls;
    gpu_backward(s, dqkv_g.p, dout_g.p, qkv_g.p, att_g.p, segp);
    EXPECT(emu::lt_calls - calls1 == 4L * n_rep * B, "bf16 backward: %ld GEMM calls", emu::lt_calls - calls1);
    EXPECT(emu::scratch_peak <= plw::cuda::attention_scratch_bytes(T, NH, 2),
           "bf16 backward scratch %zu > attention_scratch_bytes %zu", emu::scratch_peak,
           plw::cuda::attention_scratch_bytes(T, NH, 2));
    check_padding("bf16 backward", s, nacc, dqkv_g.p, dqkv_before.data());
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        g.push_back(b2f(dqkv_g[i])); r.push_back(dqkv_c[i]);
        tol.push_back(dq_tol(i, dqkv0[i], dqkv_c[i]));
    }
    check("bf16 dqkv", g, r, tol, &w); g_worst_bf16 = std::max(g_worst_bf16, w);
    // the same on the increments alone (dqkv0 = 0), where the bound is not hidden by dqkv0
    Buf<bf16> d1(s.nqkv(), off), d2(s.nqkv(), off), d3(s.nqkv(), off);
    for (size_t i = 0; i < s.nqkv(); i++) d1[i] = d2[i] = d3[i] = bf16{0};
    gpu_backward(s, d1.p, dout_g.p, qkv_g.p, att_g.p, segp);
    std::vector<float> inc_c(s.nqkv(), 0.f);
    cpu_backward(s, inc_c.data(), dout.data(), qkv.data(), att_c.data(), segp);
    g.clear(); r.clear(); tol.clear();
    for (size_t i = 0; i < s.nqkv(); i++) {
        g.push_back(b2f(d1[i])); r.push_back(inc_c[i]);
        tol.push_back(dq_tol(i, 0.0, inc_c[i]));
    }
    check("bf16 dqkv increments", g, r, tol, &w); g_worst_bf16 = std::max(g_worst_bf16, w);
    // += : twice from zero is exactly twice once (doubling a bf16 is exact) where one GEMM
    // adds into an element; and a second run from zero gives the same bits
    gpu_backward(s, d2.p, dout_g.p, qkv_g.p, att_g.p, segp);
    gpu_backward(s, d2.p, dout_g.p, qkv_g.p, att_g.p, segp);
    gpu_backward(s, d3.p, dout_g.p, qkv_g.p, att_g.p, segp);
    size_t not_double = 0;
    for (size_t i = 0; i < s.nqkv(); i++) not_double += nacc[i] <= 1 && b2f(d2[i]) != 2.f * b2f(d1[i]);
    EXPECT(not_double == 0, "bf16 backward twice: %zu elements not doubled", not_double);
    test::same_bits("bf16 backward rerun", d3.p, d1.p, s.nqkv() * 2);
    // deterministic: the forward again gives the same bits
    Buf<bf16> out2(s.nout(), off), att2(s.natt(), off);
    gpu_forward(s, out2.p, att2.p, qkv_g.p, segp);
    EXPECT(std::memcmp(out2.p, out_g.p, s.nout() * 2) == 0 && std::memcmp(att2.p, att_g.p, s.natt() * 2) == 0,
           "bf16 forward not reproducible");
    std::printf("bf16 %s seg=%d off=%d done\n", desc(s), seg_mode, off);
}

void test_scratch_bytes() {
    using plw::cuda::attention_scratch_bytes;
    EXPECT(attention_scratch_bytes(5, 3, 4) == 3 * 25 * 4, "f32 scratch bytes");
    EXPECT(attention_scratch_bytes(5, 3, 2) == 512 + 3 * 25 * 2, "bf16 scratch bytes %zu",
           attention_scratch_bytes(5, 3, 2));
    EXPECT(attention_scratch_bytes(1024, 12, 2) == size_t(12) * 1024 * 1024 * 6, "gpt2 bf16 scratch bytes");
    bool threw = false;
    try { attention_scratch_bytes(5, 3, 8); } catch (const std::exception&) { threw = true; }
    EXPECT(threw, "act_size 8 accepted");
}

}  // namespace

int main(int argc, char** argv) {
    test_scratch_bytes();
    // multi-head in GPT-2's fused rows, then grouped-query heads (NKV < NH) and NKV = NH in
    // separate buffers with padded rows (odd pads: bf16 rows only 2-byte aligned)
    const Shape shapes[] = {{1, 1, 1, 4}, {2, 5, 3, 4}, {2, 17, 2, 3}, {1, 23, 1, 7}, {3, 9, 3, 1},
                            {2, 9, 4, 8, 2, true, 3}, {1, 17, 6, 4, 1}, {2, 6, 3, 5, 3, true, 1},
                            {3, 11, 6, 16, 2, true, 0}, {1, 7, 8, 2, 2}};
    int i = 0;
    for (const Shape& s : shapes) {
        for (int seg_mode = 0; seg_mode < 4; seg_mode++) {
            if (s.T < 6 && seg_mode == 3) continue;
            const int off = (i++ % 3 == 2) ? 1 : 0;  // every third case misaligned by one element
            if (test::selected(argc, argv, "f32")) test_f32(s, seg_mode, off);
            if (test::selected(argc, argv, "bf16")) test_bf16(s, seg_mode, off);
        }
    }
    // longer rows (several warps per softmax row), head sizes up to 64
    if (test::selected(argc, argv, "f32")) {
        test_f32({1, 70, 2, 8}, 1, 0);
        test_f32({1, 40, 1, 64}, 2, 1);
        test_f32({1, 70, 4, 8, 2, true, 2}, 1, 0);
        test_f32({1, 40, 2, 64, 1}, 2, 1);
    }
    if (test::selected(argc, argv, "bf16")) {
        test_bf16({1, 70, 2, 8}, 1, 0);
        test_bf16({1, 40, 1, 64}, 2, 1);
        test_bf16({1, 70, 4, 8, 2, true, 2}, 1, 0);
        test_bf16({1, 40, 2, 64, 1}, 2, 1);
    }
    std::printf("worst bf16 err / tol: %.3f\n", g_worst_bf16);
    return test::finish("test_attention");
}
