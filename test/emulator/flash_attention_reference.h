// The CPU side shared by the fused-attention programs (test_flash_attention.cpp: the SIMT
// kernels; test_flash_attention_mma.cpp: the tensor-core kernels, bf16 and f32 as tf32): shapes and buffers, segment
// modes, the references (the unfused CPU op, the CPU flash twin, a float64 lse), the
// magnitudes the error bounds are built from, and the checks.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "native/cpu/attention.h"
#include "native/cpu/flash_attention.h"
#include "native/cuda/flash_attention.h"
#include "support.h"

namespace flash_test {

using test::Buf;

const double kU = std::ldexp(1.0, -8);   // bf16 unit roundoff (8 significant bits)
const double kU32 = std::ldexp(1.0, -24);  // f32 unit roundoff
const double kUtf32 = std::ldexp(1.0, -11);  // tf32 unit roundoff (11 significant bits, rounding to nearest)

inline float b2f(plw::bf16 x) { return plw::bf16_to_f32(x); }

// Segment modes: 0 segments == null; 1 one explicit segment per row (must give the bits of
// 0); 2 packed examples of random lengths (1 and up); 3 two examples, then padding with its
// own id (-1, as ts/data/batch.ts writes it); 4 two examples, the padding sharing the last id.
const int kSegModes = 5;
inline std::vector<int32_t> make_segments(int B, int T, int mode) {
    std::vector<int32_t> seg(size_t(B) * T);
    for (int b = 0; b < B; b++) {
        int id = 0;
        for (int t = 0; t < T; t++) {
            if (mode == 2 && t > 0 && test::rng() % 5 == 0) id++;
            if (mode == 3 || mode == 4) id = t < T / 3 ? 0 : 1;
            seg[size_t(b) * T + t] = id;
            if (mode == 3 && t >= T - T / 4 && t > 0) seg[size_t(b) * T + t] = -1;
        }
    }
    return seg;
}

// |got - ref| <= tol elementwise (NaN fails); returns the worst err / tol.
inline double check(const char* what, const std::vector<double>& got, const std::vector<double>& ref,
             const std::vector<double>& tol) {
    double worst = 0, worst_abs = 0;
    size_t wi = 0, bad = 0;
    for (size_t i = 0; i < got.size(); i++) {
        const double d = std::fabs(got[i] - ref[i]);
        if (!(d <= tol[i])) bad++;
        worst_abs = std::max(worst_abs, d);
        const double r = std::isnan(got[i]) ? INFINITY : d / tol[i];
        if (r > worst) { worst = r; wi = i; }
    }
    EXPECT(bad == 0, "%s: %zu of %zu out of tolerance; worst at %zu got %.9g ref %.9g tol %.3g", what, bad,
           got.size(), wi, got[wi], ref[wi], tol[wi]);
    if (getenv("VERBOSE")) std::printf("  %-28s worst err/tol %.3f, largest |err| %.3g\n", what, worst, worst_abs);
    return worst;
}

// Where q, k, v (and dq, dk, dv at the same places of the gradient buffer) live, all in one
// buffer: fused rows [q (NH*hs) | k (NKV*hs) | v (NKV*hs)] (GPT-2's qkv when NKV = NH), or
// (separate) the q rows, then the k rows, then the v rows, each row padded by `pad`
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
    size_t nlse() const { return size_t(B) * NH * T; }
    size_t natt() const { return size_t(B) * NH * T * T; }
    size_t qi(int b, int t, int h) const { return (size_t(b) * T + t) * qs() + size_t(h) * hs; }
    size_t ki(int b, int t, int j) const { return k_off() + (size_t(b) * T + t) * kvs() + size_t(j) * hs; }
    size_t vi(int b, int t, int j) const { return v_off() + (size_t(b) * T + t) * kvs() + size_t(j) * hs; }
    size_t oi(int b, int t, int h) const { return (size_t(b) * T + t) * C() + size_t(h) * hs; }
    // f32 += roundings into each element of dqkv in the unfused CPU backward: 1 (dq), n_rep
    // (dk, dv: one per query head), 0 (row padding); the fused kernels round once.
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

inline const char* desc(const Shape& s) {
    static char buf[160];
    std::snprintf(buf, sizeof buf, "B=%d T=%d NH=%d NKV=%d hs=%d %s pad=%d", s.B, s.T, s.NH, s.nkv(), s.hs,
                  s.separate ? "separate" : "fused", s.pad);
    return buf;
}

// The ops on a Shape's buffers.
template <typename T>
void gpu_forward(const Shape& s, T* out, float* lse, const T* qkv, const int32_t* seg) {
    plw::cuda::flash_attention_forward(out, lse, qkv, qkv + s.k_off(), qkv + s.v_off(), seg, s.B, s.T, s.NH,
                                       s.nkv(), s.hs, s.qs(), s.kvs());
}
template <typename T>
void gpu_backward(const Shape& s, T* d, const T* dout, const T* out, const float* lse, const T* qkv,
                  const int32_t* seg) {
    plw::cuda::flash_attention_backward(d, d + s.k_off(), d + s.v_off(), dout, out, lse, qkv, qkv + s.k_off(),
                                        qkv + s.v_off(), seg, s.B, s.T, s.NH, s.nkv(), s.hs, s.qs(), s.kvs());
}

// Everything the CPU side knows about one set of inputs (f32 values; for bf16 tests the
// values are on the bf16 grid, so the CPU sees exactly the bf16 inputs).
struct Reference {
    std::vector<float> out, att, dqkv;         // unfused CPU: out, probabilities, dqkv0 + increments
    std::vector<float> fout, flse, fdqkv;      // CPU flash twin: out, lse, dqkv0 + increments
    std::vector<double> lse;                   // float64 log-sum-exp
    std::vector<double> lse_tol;               // its f32 error bound (see lse_bound)
    std::vector<double> m_abs_s;               // per (b, h, t): max over allowed t2 of scale sum_d |q k|
    std::vector<double> m_out, m_dq, m_D, m_F, m_W;  // error magnitudes (see magnitudes)
};

// f32 error of lse: the score s = (q.k in f32, HS terms in order) * scale is off by at most
// HS 2^-24 sum_d |q k| scale (each partial sum rounds once; the product once more, + 2^-24
// |s|); exp and the row sum over the tiles (at most T terms) add (T + 8) 2^-24 relative to
// the sum, log and the final add 4 2^-24 (|lse| + 1).
inline double lse_bound(int hs, int T, double m_abs_s, double lse) {
    return (hs + 2) * kU32 * m_abs_s + (T + 8) * kU32 + 4 * kU32 * (std::fabs(lse) + 1);
}

// Magnitudes for the error bounds, in double from the CPU's probabilities att:
//   m_out = sum_t2 att |v|;  m_dq: dq = scale sum M_dS |k|, dk = scale sum M_dS |q|,
//     dv = sum att |dout| (dk, dv summed over the query heads of their KV head), with
//     M_dS = att (2 |dP - D| + sum_t3 att |dP|) (as test_attention.cpp);
//   m_D, m_F: the fused backward forms dS = P (dP - D) from two independent dot products,
//     dP = dout . v (HS terms) and D = rowsum(dout * out) (HS terms), where the unfused op
//     subtracts sum att dP from the same dP values (its rounding errors cancel). With rows that
//     cancel (D small against its sum of |terms|), dS then carries a few f32 roundings of
//     mdP = sum_d |dout v| and mD = sum_d |dout out| (times P):
//       m_F: dq = scale sum_t2 P (mdP + mD) |k|, dk = scale sum_h sum_t P (mdP + mD) |q|,
//       m_D: the same with mD alone: the bf16 kernels take D from the stored bf16 out, so D
//         is off by up to u_bf16 mD more.
//     dv takes no dS: 0.
//   m_W: the same with P (t, t2) W(t), W(t) = sum_t3 att(t, t3) mdP(t3) (= sum_d |dout| m_out
//     of row t: how far D moves when out carries errors of a relative size, the tf32 kernels'
//     out); dv: 0.
inline void magnitudes(const Shape& s, const std::vector<float>& qkv, const std::vector<float>& dout, Reference& R) {
    const int B = s.B, T = s.T, NH = s.NH, hs = s.hs;
    const double scale = 1.0 / std::sqrt(double(float(hs)));
    R.m_out.assign(s.nout(), 0);
    R.m_dq.assign(s.nqkv(), 0);
    R.m_D.assign(s.nqkv(), 0);
    R.m_F.assign(s.nqkv(), 0);
    R.m_W.assign(s.nqkv(), 0);
    const size_t TT = size_t(T) * T;
    std::vector<double> m_dS(TT), m_DS(TT), m_FS(TT), m_WS(TT), mD(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int j = h / s.n_rep();
            const float* a = R.att.data() + (size_t(b) * NH + h) * TT;
            auto q = [&](int t, int d) { return double(qkv[s.qi(b, t, h) + d]); };
            auto k = [&](int t, int d) { return double(qkv[s.ki(b, t, j) + d]); };
            auto v = [&](int t, int d) { return double(qkv[s.vi(b, t, j) + d]); };
            auto dO = [&](int t, int d) { return double(dout[s.oi(b, t, h) + d]); };
            for (int t = 0; t < T; t++) {
                mD[t] = 0;
                for (int d = 0; d < hs; d++) mD[t] += std::fabs(dO(t, d) * R.out[s.oi(b, t, h) + d]);
            }
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    double sum = 0, sum_v = 0;
                    for (int t2 = 0; t2 < T; t2++) {
                        sum += a[size_t(t) * T + t2] * std::fabs(v(t2, d));
                        sum_v += a[size_t(t2) * T + t] * std::fabs(dO(t2, d));  // dv[t] over rows t2
                    }
                    R.m_out[s.oi(b, t, h) + d] = sum;
                    R.m_dq[s.vi(b, t, j) + d] += sum_v;
                }
            for (int t = 0; t < T; t++) {
                std::vector<double> dP(T), mdP(T);
                double dot = 0, abs_dot = 0;
                for (int t2 = 0; t2 < T; t2++) {
                    double x = 0, xa = 0;
                    for (int d = 0; d < hs; d++) {
                        x += dO(t, d) * v(t2, d);
                        xa += std::fabs(dO(t, d) * v(t2, d));
                    }
                    dP[t2] = x;
                    mdP[t2] = xa;
                    dot += a[size_t(t) * T + t2] * x;
                    abs_dot += a[size_t(t) * T + t2] * std::fabs(x);
                }
                double W = 0;
                for (int t2 = 0; t2 < T; t2++) W += a[size_t(t) * T + t2] * mdP[t2];
                for (int t2 = 0; t2 < T; t2++) {
                    const double at = a[size_t(t) * T + t2];
                    m_dS[size_t(t) * T + t2] = at * (2 * std::fabs(dP[t2] - dot) + abs_dot);
                    m_DS[size_t(t) * T + t2] = at * mD[t];
                    m_FS[size_t(t) * T + t2] = at * (mdP[t2] + mD[t]);
                    m_WS[size_t(t) * T + t2] = at * W;
                }
            }
            for (int t = 0; t < T; t++)
                for (int d = 0; d < hs; d++) {
                    double sq = 0, sk = 0, Dq = 0, Dk = 0, Fq = 0, Fk = 0, Wq = 0, Wk = 0;
                    for (int t2 = 0; t2 < T; t2++) {
                        const size_t row = size_t(t) * T + t2, col = size_t(t2) * T + t;  // dq[t]; dk[t]
                        sq += m_dS[row] * std::fabs(k(t2, d));
                        sk += m_dS[col] * std::fabs(q(t2, d));
                        Dq += m_DS[row] * std::fabs(k(t2, d));
                        Dk += m_DS[col] * std::fabs(q(t2, d));
                        Fq += m_FS[row] * std::fabs(k(t2, d));
                        Fk += m_FS[col] * std::fabs(q(t2, d));
                        Wq += m_WS[row] * std::fabs(k(t2, d));
                        Wk += m_WS[col] * std::fabs(q(t2, d));
                    }
                    R.m_dq[s.qi(b, t, h) + d] = scale * sq;
                    R.m_dq[s.ki(b, t, j) + d] += scale * sk;
                    R.m_D[s.qi(b, t, h) + d] = scale * Dq;
                    R.m_D[s.ki(b, t, j) + d] += scale * Dk;
                    R.m_F[s.qi(b, t, h) + d] = scale * Fq;
                    R.m_F[s.ki(b, t, j) + d] += scale * Fk;
                    R.m_W[s.qi(b, t, h) + d] = scale * Wq;
                    R.m_W[s.ki(b, t, j) + d] += scale * Wk;
                }
        }
}

// The CPU side of a test: both CPU ops, the float64 lse and the magnitudes.
inline Reference reference(const Shape& s, const std::vector<float>& qkv, const std::vector<float>& dout,
                    const std::vector<float>& dqkv0, const int32_t* segp) {
    Reference R;
    const float* k = qkv.data() + s.k_off();
    const float* v = qkv.data() + s.v_off();
    R.out.resize(s.nout());
    R.att.resize(s.natt());
    plw::cpu::attention_forward(R.out.data(), R.att.data(), qkv.data(), k, v, segp, s.B, s.T, s.NH, s.nkv(), s.hs,
                                s.qs(), s.kvs());
    R.dqkv = dqkv0;
    float* d = R.dqkv.data();
    plw::cpu::attention_backward(d, d + s.k_off(), d + s.v_off(), dout.data(), qkv.data(), k, v, R.att.data(), segp,
                                 s.B, s.T, s.NH, s.nkv(), s.hs, s.qs(), s.kvs());
    R.fout.resize(s.nout());
    R.flse.resize(s.nlse());
    plw::cpu::flash_attention_forward(R.fout.data(), R.flse.data(), qkv.data(), k, v, segp, s.B, s.T, s.NH, s.nkv(),
                                      s.hs, s.qs(), s.kvs());
    R.fdqkv = dqkv0;
    float* f = R.fdqkv.data();
    plw::cpu::flash_attention_backward(f, f + s.k_off(), f + s.v_off(), dout.data(), R.fout.data(), R.flse.data(),
                                       qkv.data(), k, v, segp, s.B, s.T, s.NH, s.nkv(), s.hs, s.qs(), s.kvs());
    // float64 lse over the allowed keys, with the op's f32 scale
    const double scale = double(1.0f / std::sqrt(float(s.hs)));
    R.lse.resize(s.nlse());
    R.lse_tol.resize(s.nlse());
    R.m_abs_s.resize(s.nlse());
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.NH; h++)
            for (int t = 0; t < s.T; t++) {
                const int j = h / s.n_rep();
                std::vector<double> sc;
                double m = -INFINITY, m_abs = 0;
                for (int t2 = 0; t2 <= t; t2++) {
                    if (segp && segp[size_t(b) * s.T + t2] != segp[size_t(b) * s.T + t]) continue;
                    double x = 0, xa = 0;
                    for (int d = 0; d < s.hs; d++) {
                        const double p = double(qkv[s.qi(b, t, h) + d]) * qkv[s.ki(b, t2, j) + d];
                        x += p;
                        xa += std::fabs(p);
                    }
                    sc.push_back(x * scale);
                    m = std::max(m, x * scale);
                    m_abs = std::max(m_abs, xa * scale);
                }
                double z = 0;
                for (double x : sc) z += std::exp(x - m);
                const size_t i = (size_t(b) * s.NH + h) * s.T + t;
                R.lse[i] = m + std::log(z);
                R.lse_tol[i] = lse_bound(s.hs, s.T, m_abs, R.lse[i]);
                R.m_abs_s[i] = m_abs;
            }
    magnitudes(s, qkv, dout, R);
    return R;
}

// A Buf's bytes before and after its n elements still hold the 0xff fill: nothing was
// written out of bounds.
template <typename T>
void check_bounds(const char* what, const Buf<T>& b) {
    const auto* first = reinterpret_cast<const unsigned char*>(b.p);
    const auto* last = reinterpret_cast<const unsigned char*>(b.p + b.n);
    size_t bad = 0;
    for (const unsigned char* c = b.store.data(); c < first; c++) bad += *c != 0xff;
    for (const unsigned char* c = last; c < b.store.data() + b.store.size(); c++) bad += *c != 0xff;
    EXPECT(bad == 0, "%s: %zu bytes written out of bounds", what, bad);
}

// The row padding of dqkv (no accumulations) must hold exactly what it held before.
template <typename T>
void check_padding(const char* what, const Shape& s, const std::vector<int>& nacc, const T* got, const T* before) {
    size_t bad = 0;
    for (size_t i = 0; i < s.nqkv(); i++) bad += nacc[i] == 0 && std::memcmp(&got[i], &before[i], sizeof(T)) != 0;
    EXPECT(bad == 0, "%s: %zu padding elements written", what, bad);
}

inline double g_worst = 0;  // largest err / tol of all checks

inline void note(double w) { g_worst = std::max(g_worst, w); }

// lse of the GPU (both types) against float64 and the CPU twin. c_s: a further c_s m_abs_s of
// error in the scores (tf32 operands: 2 u_tf32 with its margin; f32 and bf16: 0).
inline void check_lse(const char* type, const Shape& s, const Reference& R, const float* lse_g, double c_s = 0) {
    char what[64];
    std::vector<double> g(lse_g, lse_g + s.nlse()), r(R.lse.begin(), R.lse.end()), f(R.flse.begin(), R.flse.end());
    std::vector<double> tol(R.lse_tol);
    for (size_t i = 0; i < tol.size(); i++) tol[i] += c_s * R.m_abs_s[i];
    std::snprintf(what, sizeof what, "%s lse vs float64", type);
    note(check(what, g, r, tol));
    // the CPU twin is an f32 computation with the same bound
    std::vector<double> tol2(tol);
    for (size_t i = 0; i < tol2.size(); i++) tol2[i] += R.lse_tol[i];
    std::snprintf(what, sizeof what, "%s lse vs cpu flash", type);
    note(check(what, g, f, tol2));
    std::snprintf(what, sizeof what, "cpu flash lse vs float64");
    note(check(what, f, r, R.lse_tol));
}

// ---------------------------------------------------------------- f32
// Tolerances (both sides f32; as test_attention.cpp): out 1e-7 + 1e-5 |ref| + 2e-6 m_out (sums
// of up to T + HS products, ~sqrt(K) 2^-24 of the sum of |terms|, with margin); gradients:
// grad_noise.

// f32 error of a gradient element against a reference: 1e-6 + 1e-5 |inc| + 2e-6 m_dq (as
// test_attention.cpp), + 2 (n + 1) 2^-24 (|dqkv0| + m_dq) for the f32 += roundings into the
// element (the unfused CPU rounds n = n_rep times into dk, dv; the kernels once), + c_F 2^-24
// m_F for the fused form of dS (see magnitudes: a few roundings of the dot products behind dP
// and D; up to ~1.5 seen): c_F = 4 against the unfused op, 8 against the CPU flash twin (both
// sides carry it).
inline double grad_noise(const Reference& R, size_t i, int nacc, double d0, double ref_inc, double c_F) {
    return 1e-6 + 1e-5 * std::fabs(ref_inc) + 2e-6 * R.m_dq[i] + 2 * kU32 * (nacc + 1) * (std::fabs(d0) + R.m_dq[i]) +
           c_F * kU32 * R.m_F[i];
}

}  // namespace flash_test
