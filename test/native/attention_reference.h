// The float64 attention reference shared by the attention checks (ops_check.cpp: attention.h;
// flash_attention_check.cpp: flash_attention.h): where q, k, v sit in the test buffer X
// (AttLayout), the forward and backward written from the math (no kernel code shared), the
// row padding that no kernel may write, and a slice of rows of X.
//
// Everything is inline, in plw_check (see check.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"

namespace plw_check {

// Where q, k, v live (and dq, dk, dv, at the same places of the gradient buffer): all in one
// buffer X, in one of two layouts:
//   fused     rows [q (NH*hs) | k (NKV*hs) | v (NKV*hs)], q_stride = kv_stride = (NH+2*NKV)*hs:
//             GPT-2's qkv (NKV = NH: [q | k | v] of C each) and a fused GQA projection
//   separate  three regions, the q rows (NH*hs + pad_q floats) then the k rows and the v rows
//             (NKV*hs + pad_kv each): Llama's separate projections, here with padded rows so
//             that the strides differ from the heads' width and the padding (which no kernel
//             may write) is there to check
struct AttLayout {
    int B, T, NH, NKV, hs;
    bool fused;
    int pad_q = 0, pad_kv = 0;

    int q_stride() const { return fused ? (NH + 2 * NKV) * hs : NH * hs + pad_q; }
    int kv_stride() const { return fused ? q_stride() : NKV * hs + pad_kv; }
    size_t rows() const { return static_cast<size_t>(B) * T; }
    size_t k_off() const { return fused ? static_cast<size_t>(NH) * hs : rows() * q_stride(); }
    size_t v_off() const { return fused ? static_cast<size_t>(NH + NKV) * hs : k_off() + rows() * kv_stride(); }
    size_t size() const { return fused ? rows() * q_stride() : v_off() + rows() * kv_stride(); }
    size_t n_out() const { return rows() * NH * hs; }
    size_t n_att() const { return static_cast<size_t>(B) * NH * T * T; }
    size_t n_lse() const { return rows() * NH; }
    // first element of query head h / KV head j of row (b, t), and of out's head h
    size_t qi(int b, int t, int h) const { return (static_cast<size_t>(b) * T + t) * q_stride() + static_cast<size_t>(h) * hs; }
    size_t ki(int b, int t, int j) const { return k_off() + (static_cast<size_t>(b) * T + t) * kv_stride() + static_cast<size_t>(j) * hs; }
    size_t vi(int b, int t, int j) const { return v_off() + (static_cast<size_t>(b) * T + t) * kv_stride() + static_cast<size_t>(j) * hs; }
    size_t oi(int b, int t, int h) const { return (static_cast<size_t>(b) * T + t) * NH * hs + static_cast<size_t>(h) * hs; }
    AttLayout with_rows(int b, int t) const {
        AttLayout l = *this;
        l.B = b;
        l.T = t;
        return l;
    }
    std::string tag() const {
        return fmt("B=%d T=%d NH=%d NKV=%d hs=%d ", B, T, NH, NKV, hs) +
               (fused ? std::string("fused") : fmt("separate (pad %d/%d)", pad_q, pad_kv));
    }
};

// Forward in double, straight from the definition: query head h uses KV head
// j = h / (NH/NKV); s = q.k / sqrt(hs) over the allowed keys (t2 <= t and same segment),
// P = softmax of s (exactly 0 elsewhere), out = P v. att (P) is (B,NH,T,T); lse (when not
// null) is (B,NH,T), the log-sum-exp of the allowed scores.
inline void attention_ref(DVec& out, DVec& att, const Vec& X, const AttLayout& L, const int32_t* seg,
                          DVec* lse = nullptr) {
    const int B = L.B, T = L.T, NH = L.NH, hs = L.hs, n_rep = L.NH / L.NKV;
    out.assign(L.n_out(), 0.0);
    att.assign(L.n_att(), 0.0);
    if (lse) lse->assign(L.n_lse(), 0.0);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const int j = h / n_rep;
            for (int t = 0; t < T; t++) {
                auto allowed = [&](int t2) { return t2 <= t && (!seg || seg[b * T + t2] == seg[b * T + t]); };
                const float* q = &X[L.qi(b, t, h)];
                double* a = &att[((static_cast<size_t>(b) * NH + h) * T + t) * T];
                double m = -INFINITY, sum = 0.0;
                DVec s(T, 0.0);
                for (int t2 = 0; t2 < T; t2++) {
                    if (!allowed(t2)) continue;
                    const float* k = &X[L.ki(b, t2, j)];
                    for (int i = 0; i < hs; i++) s[t2] += static_cast<double>(q[i]) * k[i];
                    s[t2] /= std::sqrt(static_cast<double>(hs));
                    m = std::max(m, s[t2]);
                }
                for (int t2 = 0; t2 < T; t2++) {
                    if (allowed(t2)) sum += a[t2] = std::exp(s[t2] - m);
                }
                for (int t2 = 0; t2 < T; t2++) a[t2] /= sum;
                if (lse) (*lse)[(static_cast<size_t>(b) * NH + h) * T + t] = m + std::log(sum);
                double* o = &out[L.oi(b, t, h)];
                for (int t2 = 0; t2 < T; t2++) {
                    const float* v = &X[L.vi(b, t2, j)];
                    for (int i = 0; i < hs; i++) o[i] += a[t2] * v[i];
                }
            }
        }
    }
}

// Backward in double from the reference's att: dP = g v, dS = P (dP - sum P dP) / sqrt(hs),
// dq = dS k, dk = dS q, dv = P g. dX: the gradient at X's places (dq, dk, dv; 0 in the
// padding); a KV head's gradient sums its query heads'.
inline void attention_backward_ref(DVec& dX, const Vec& g, const Vec& X, const DVec& att, const AttLayout& L) {
    const int B = L.B, T = L.T, NH = L.NH, hs = L.hs, n_rep = L.NH / L.NKV;
    const double scale = 1.0 / std::sqrt(static_cast<double>(hs));
    dX.assign(L.size(), 0.0);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            const int j = h / n_rep;
            for (int t = 0; t < T; t++) {
                const double* a = &att[((static_cast<size_t>(b) * NH + h) * T + t) * T];
                const float* gt = &g[L.oi(b, t, h)];
                const size_t qo = L.qi(b, t, h);
                DVec dp(T, 0.0);
                double pd = 0.0;
                for (int t2 = 0; t2 < T; t2++) {
                    const size_t vo = L.vi(b, t2, j);
                    for (int i = 0; i < hs; i++) {
                        dp[t2] += static_cast<double>(gt[i]) * X[vo + i];
                        dX[vo + i] += a[t2] * gt[i];
                    }
                    pd += a[t2] * dp[t2];
                }
                for (int t2 = 0; t2 < T; t2++) {
                    const double ds = a[t2] * (dp[t2] - pd) * scale;  // 0 where masked (a = 0)
                    const size_t ko = L.ki(b, t2, j);
                    for (int i = 0; i < hs; i++) {
                        dX[qo + i] += ds * X[ko + i];
                        dX[ko + i] += ds * X[qo + i];
                    }
                }
            }
        }
    }
}

// true at X's row padding (separate layout), which the backward must leave as it was.
inline std::vector<bool> padding_of(const AttLayout& L) {
    std::vector<bool> pad(L.size(), false);
    if (L.fused) return pad;
    for (size_t row = 0; row < L.rows(); row++) {
        for (int i = L.NH * L.hs; i < L.q_stride(); i++) pad[row * L.q_stride() + i] = true;
        for (int i = L.NKV * L.hs; i < L.kv_stride(); i++) {
            pad[L.k_off() + row * L.kv_stride() + i] = true;
            pad[L.v_off() + row * L.kv_stride() + i] = true;
        }
    }
    return pad;
}

// true when d (a gradient buffer of layout L, pre-filled with d0) still holds d0 at all of X's
// row padding.
inline bool padding_untouched(const Vec& d, const Vec& d0, const AttLayout& L) {
    const std::vector<bool> pad = padding_of(L);
    bool untouched = true;
    for (size_t i = 0; i < L.size(); i++) untouched = untouched && (!pad[i] || d[i] == d0[i]);
    return untouched;
}

// Rows [t0, t0 + len) of a B = 1 buffer X of layout L, as a buffer of L.with_rows(1, len).
inline Vec rows_of(const Vec& X, const AttLayout& L, int t0, int len) {
    const AttLayout S = L.with_rows(1, len);
    Vec Y(S.size());
    for (int t = 0; t < len; t++) {
        const size_t qs = L.q_stride(), kvs = L.kv_stride();
        std::copy_n(&X[(t0 + t) * qs], qs, &Y[t * qs]);  // fused: the whole row
        if (!L.fused) {
            std::copy_n(&X[L.k_off() + (t0 + t) * kvs], kvs, &Y[S.k_off() + t * kvs]);
            std::copy_n(&X[L.v_off() + (t0 + t) * kvs], kvs, &Y[S.v_off() + t * kvs]);
        }
    }
    return Y;
}

// GQA vs multi-head attention on K and V with each KV head repeated NH/NKV times (what
// transformers' repeat_kv does): the layout of the latter (separate, unpadded, NKV = NH) and
// X of layout L copied into it.
inline AttLayout repeat_kv_layout(const AttLayout& L) { return AttLayout{L.B, L.T, L.NH, L.NH, L.hs, false}; }
inline Vec repeat_kv(const Vec& X, const AttLayout& L) {
    const int n_rep = L.NH / L.NKV;
    const AttLayout M = repeat_kv_layout(L);
    Vec XM(M.size());
    for (int b = 0; b < L.B; b++)
        for (int t = 0; t < L.T; t++)
            for (int h = 0; h < L.NH; h++) {
                std::copy_n(&X[L.qi(b, t, h)], L.hs, &XM[M.qi(b, t, h)]);
                std::copy_n(&X[L.ki(b, t, h / n_rep)], L.hs, &XM[M.ki(b, t, h)]);
                std::copy_n(&X[L.vi(b, t, h / n_rep)], L.hs, &XM[M.vi(b, t, h)]);
            }
    return XM;
}

// The gradients d (layout L) vs dM (layout repeat_kv_layout(L)): true when dq is bitwise
// equal; dkv gets L's dk, dv and dkvM the sums over the repeated heads of M.
inline bool compare_repeat_kv_grads(DVec& dkv, DVec& dkvM, const Vec& d, const Vec& dM, const AttLayout& L) {
    const int n_rep = L.NH / L.NKV;
    const AttLayout M = repeat_kv_layout(L);
    bool same = true;
    for (int b = 0; b < L.B; b++)
        for (int t = 0; t < L.T; t++) {
            for (int h = 0; h < L.NH; h++)
                same = same && std::equal(&d[L.qi(b, t, h)], &d[L.qi(b, t, h)] + L.hs, &dM[M.qi(b, t, h)]);
            for (int j = 0; j < L.NKV; j++)
                for (int i = 0; i < L.hs; i++) {
                    double sk = 0.0, sv = 0.0;
                    for (int rr = 0; rr < n_rep; rr++) {
                        sk += dM[M.ki(b, t, j * n_rep + rr) + i];
                        sv += dM[M.vi(b, t, j * n_rep + rr) + i];
                    }
                    dkv.insert(dkv.end(), {d[L.ki(b, t, j) + i], d[L.vi(b, t, j) + i]});
                    dkvM.insert(dkvM.end(), {sk, sv});
                }
        }
    return same;
}

}  // namespace plw_check
