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
// fixed order: results are bitwise the same for any number of threads. Without packing,
// every pair has the same causal triangle of work, so a static split is balanced.
//
// Softmax in f32 with the row max subtracted (exp_nonpositive, vectorized), over the
// allowed keys only; a query always sees itself, so the row sum is >= 1.
//
// Vectorization: the products of one query with all its keys (scores q.k in the forward,
// dP = dO.v in the backward) are not taken as t dot products of hs terms (each ending in a
// horizontal sum) but as hs axpys along the keys, over a transposed copy of the head's K
// (resp. V), (hs, T), made once per (batch, head): every inner loop is then a plain vector
// loop over keys, and each score is summed over channels in order, whatever its position.
// The updates of dv, dk, dq are axpys over hs. Keys before the first one of the query's
// segment are skipped (a packed row costs what its segments alone would).
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

// dst (hs, T) = the (T, hs) slice of rows src + t * stride, transposed.
void transpose_head(float* dst, const float* src, size_t stride, int T, int hs) {
    for (int t = 0; t < T; t++) {
        const float* row = src + t * stride;
        for (int i = 0; i < hs; i++) dst[static_cast<size_t>(i) * T + t] = row[i];
    }
}

// y[t2] = sum_i x[i] * mt[i, t2] for t2 in [lo, hi], mt (hs, T): hs axpys along t2.
void products(float* y, const float* x, const float* mt, int T, int hs, int lo, int hi) {
#pragma omp simd
    for (int t2 = lo; t2 <= hi; t2++) y[t2] = 0.0f;
    for (int i = 0; i < hs; i++) {
        const float xi = x[i];
        const float* m = mt + static_cast<size_t>(i) * T;
#pragma omp simd
        for (int t2 = lo; t2 <= hi; t2++) y[t2] += xi * m[t2];
    }
}

// The first key of the query's segment: keys before it are all masked.
int segment_start(const int32_t* seg, int t) {
    int lo = 0;
    while (seg[lo] != seg[t]) lo++;
    return lo;
}

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH) {
    const int hs = C / NH;
    const size_t C3 = 3 * static_cast<size_t>(C);
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const std::vector<int32_t> one_segment(segments ? 0 : T, 0);
#pragma omp parallel
    {
        std::vector<float> kt(static_cast<size_t>(hs) * T);  // K of the head, transposed (hs, T)
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float* base = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * hs;
            const int32_t* seg =
                segments ? segments + static_cast<size_t>(b) * T : one_segment.data();
            transpose_head(kt.data(), base + C, C3, T, hs);
            for (int t = 0; t < T; t++) {
                float* a = att + (static_cast<size_t>(bh) * T + t) * T;
                const int32_t st = seg[t];
                const int lo = segment_start(seg, t);
                products(a, base + t * C3, kt.data(), T, hs, lo, t);  // q.k, unscaled
                float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
                for (int t2 = lo; t2 <= t; t2++) {
                    const float s = seg[t2] == st ? a[t2] * scale : -std::numeric_limits<float>::infinity();
                    a[t2] = s;
                    m = s > m ? s : m;
                }
                float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
                for (int t2 = lo; t2 <= t; t2++) {
                    const float e = seg[t2] == st ? exp_nonpositive(a[t2] - m) : 0.0f;
                    a[t2] = e;
                    sum += e;
                }
                const float inv = 1.0f / sum;
#pragma omp simd
                for (int t2 = lo; t2 <= t; t2++) a[t2] *= inv;
                for (int t2 = 0; t2 < lo; t2++) a[t2] = 0.0f;
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
                // out = att . v over the allowed keys
                float* o = out + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
                for (int i = 0; i < hs; i++) o[i] = 0.0f;
                for (int t2 = lo; t2 <= t; t2++) {
                    if (seg[t2] != st) continue;
                    const float* v = base + t2 * C3 + 2 * static_cast<size_t>(C);
                    const float w = a[t2];
#pragma omp simd
                    for (int i = 0; i < hs; i++) o[i] += w * v[i];
                }
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
        std::vector<float> vt(static_cast<size_t>(hs) * T);  // V of the head, transposed (hs, T)
        std::vector<float> ds(T);   // dP, then dS * scale, of one query row
        std::vector<float> dq(hs);  // dq of one query, summed over keys before it is added
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t head = static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * hs;
            const float* base = qkv + head;
            float* dbase = dqkv + head;
            const int32_t* seg =
                segments ? segments + static_cast<size_t>(b) * T : one_segment.data();
            transpose_head(vt.data(), base + 2 * static_cast<size_t>(C), C3, T, hs);
            for (int t = 0; t < T; t++) {
                const float* a = att + (static_cast<size_t>(bh) * T + t) * T;
                const float* d = dout + (static_cast<size_t>(b) * T + t) * C + static_cast<size_t>(h) * hs;
                const int32_t st = seg[t];
                const int lo = segment_start(seg, t);
                products(ds.data(), d, vt.data(), T, hs, lo, t);  // dP
                float pd = 0.0f;  // sum_j P[t,j] dP[t,j]
#pragma omp simd reduction(+ : pd)
                for (int t2 = lo; t2 <= t; t2++) pd += seg[t2] == st ? a[t2] * ds[t2] : 0.0f;
#pragma omp simd
                for (int t2 = lo; t2 <= t; t2++) ds[t2] = a[t2] * (ds[t2] - pd) * scale;
                const float* q = base + t * C3;
                for (int i = 0; i < hs; i++) dq[i] = 0.0f;
                for (int t2 = lo; t2 <= t; t2++) {
                    if (seg[t2] != st) continue;
                    const float w = a[t2], g = ds[t2];
                    const float* k = base + t2 * C3 + C;
                    float* dk = dbase + t2 * C3 + C;
                    float* dv = dk + C;
#pragma omp simd
                    for (int i = 0; i < hs; i++) {
                        dv[i] += w * d[i];
                        dq[i] += g * k[i];
                        dk[i] += g * q[i];
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
