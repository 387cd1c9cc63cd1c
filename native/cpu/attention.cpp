// CPU reference: causal multi-head self-attention with packed-segment masks (see attention.h).
// This file is the reference the CUDA twin (native/cuda/attention.h) is tested against.
//
// Shapes: B = batch, T = time, C = channels, NH = heads, hs = C / NH (head size).
//   qkv  (B,T,3C)     row [q | k | v]; head h is channels [h*hs, (h+1)*hs) of each part
//   out  (B,T,C)      heads concatenated
//   att  (B,NH,T,T)   softmax probabilities, 0 where masked (t2 > t or another segment)
//   dqkv (B,T,3C)     accumulated (+=)
//
// The plain O(T^2) algorithm (the full att matrix is kept for the backward), fine for the
// CPU backend's sizes (T <= 1024, hs = 64). Parallel over the B*NH (batch, head) pairs,
// static schedule: a pair owns its att block and its head's channels of out and dqkv, so
// threads never write the same memory, and each value is computed by one thread in one
// fixed order: results are bitwise the same for any number of threads. Every pair has the
// same causal triangle of work, so a static split is balanced.
//
// Softmax in f32 with the row max subtracted (exp_nonpositive, vectorized), over the
// allowed keys only; a query always sees itself, so the row sum is >= 1. Dot products over
// hs and the axpys over hs are the vectorized inner loops.
//
// segments == nullptr is run as one segment per row (an all-zero id vector), so it gives
// bitwise what explicit equal ids give.
#include "attention.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "vec_math.h"

namespace plw::cpu {

namespace {

inline float dot(const float* a, const float* b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const std::vector<int32_t> one_segment(segments ? 0 : T, 0);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const float* base = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * hs;
        const int32_t* seg = segments ? segments + static_cast<size_t>(b) * T : one_segment.data();
        for (int t = 0; t < T; t++) {
            const float* q = base + t * C3;
            float* a = att + (static_cast<size_t>(bh) * T + t) * T;
            const int32_t st = seg[t];
            // scores q.k * scale of the allowed keys, and their max; -inf marks the masked
            float m = -std::numeric_limits<float>::infinity();
            for (int t2 = 0; t2 <= t; t2++) {
                if (seg[t2] != st) {
                    a[t2] = -std::numeric_limits<float>::infinity();
                    continue;
                }
                const float s = dot(q, base + t2 * C3 + C, hs) * scale;
                a[t2] = s;
                m = s > m ? s : m;
            }
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int t2 = 0; t2 <= t; t2++) {
                const float e = seg[t2] == st ? exp_nonpositive(a[t2] - m) : 0.0f;
                a[t2] = e;
                sum += e;
            }
            const float inv = 1.0f / sum;
#pragma omp simd
            for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
            for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
            // out = att . v over the allowed keys
            float* o = out + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
            for (int i = 0; i < hs; i++) o[i] = 0.0f;
            for (int t2 = 0; t2 <= t; t2++) {
                if (seg[t2] != st) continue;
                const float* v = base + t2 * C3 + 2 * static_cast<size_t>(C);
                const float w = a[t2];
#pragma omp simd
                for (int i = 0; i < hs; i++) o[i] += w * v[i];
            }
        }
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH) {
    // With P = att, S = scaled scores, O = P V, and dO given:
    //   dP[t,t2] = dO[t] . v[t2]                 dv[t2] += sum_t P[t,t2] dO[t]
    //   dS[t,t2] = P[t,t2] (dP[t,t2] - sum_j P[t,j] dP[t,j])        (softmax backward)
    //   dq[t]   += scale * sum_t2 dS[t,t2] k[t2]     dk[t2] += scale * sum_t dS[t,t2] q[t]
    // Masked entries have P = 0, hence dS = 0: they are skipped.
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const std::vector<int32_t> one_segment(segments ? 0 : T, 0);
#pragma omp parallel
    {
        std::vector<float> datt(T);  // dP of one query row
        std::vector<float> dq(hs);   // dq of one query, summed over keys before it is added
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t head = static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * hs;
            const float* base = qkv + head;
            float* dbase = dqkv + head;
            const int32_t* seg =
                segments ? segments + static_cast<size_t>(b) * T : one_segment.data();
            for (int t = 0; t < T; t++) {
                const float* a = att + (static_cast<size_t>(bh) * T + t) * T;
                const float* d = dout + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
                const int32_t st = seg[t];
                for (int t2 = 0; t2 <= t; t2++) {
                    if (seg[t2] != st) {
                        datt[t2] = 0.0f;
                        continue;
                    }
                    const size_t v_off = t2 * C3 + 2 * static_cast<size_t>(C);
                    datt[t2] = dot(d, base + v_off, hs);
                    float* dv = dbase + v_off;
                    const float w = a[t2];
#pragma omp simd
                    for (int i = 0; i < hs; i++) dv[i] += w * d[i];
                }
                float pd = 0.0f;  // sum_j P[t,j] dP[t,j]
#pragma omp simd reduction(+ : pd)
                for (int t2 = 0; t2 <= t; t2++) pd += a[t2] * datt[t2];
                const float* q = base + t * C3;
                for (int i = 0; i < hs; i++) dq[i] = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) {
                    if (seg[t2] != st) continue;
                    const float ds = a[t2] * (datt[t2] - pd) * scale;
                    const float* k = base + t2 * C3 + C;
                    float* dk = dbase + t2 * C3 + C;
#pragma omp simd
                    for (int i = 0; i < hs; i++) {
                        dq[i] += ds * k[i];
                        dk[i] += ds * q[i];
                    }
                }
                float* dqt = dbase + t * C3;
#pragma omp simd
                for (int i = 0; i < hs; i++) dqt[i] += dq[i];
            }
        }
    }
}

}  // namespace plw::cpu
