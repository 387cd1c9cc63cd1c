// CPU reference: causal multi-head self-attention with packed-segment masks (see attention.h).
// This file is the reference the CUDA twin (native/cuda/attention.h) is tested against.
//
// Shapes: B = batch, T = time, C = channels, NH = heads, hs = C / NH (head size).
//   qkv  (B,T,3C)     row [q | k | v]; head h is channels [h*hs, (h+1)*hs) of each part
//   out  (B,T,C)      heads concatenated
//   att  (B,NH,T,T)   softmax probabilities, 0 where masked (t2 > t or another segment)
//   dqkv (B,T,3C)     accumulated (+=)
//
// Per (batch, head) pair the products are matrix products on the SGEMM (matmul.h), which
// reads the head's Q, K, V and dO in place through their row strides (3C or C):
//   forward   S = Q K^T / sqrt(hs)  (T,T), masked softmax row by row into att,  O = att V
//   backward  dA = dO V^T, dS = att * (dA - rowsum(att * dA)) / sqrt(hs),
//             dQ += dS K,  dK += dS^T Q,  dV += att^T dO
// The full T x T products are taken (the causal triangle would be half), because the SGEMM
// runs them ~7x faster than dot products key by key: the trade is a clear win at every T.
//
// Parallel over the B*NH pairs, static schedule; inside a parallel region the SGEMM runs on
// its own thread. A pair owns its att block and its head's channels of out and dqkv, and
// the SGEMM never splits a reduction, so results are bitwise the same for any number of
// threads. Softmax in f32 with the row max subtracted (exp_nonpositive), over the allowed
// keys only; a query always sees itself, so the row sum is >= 1. segments == nullptr is
// one segment per row.
#include "attention.h"

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "matmul.h"
#include "vec_math.h"

namespace plw::cpu {

namespace {

inline bool allowed(const int32_t* seg, int t, int t2) { return t2 <= t && (!seg || seg[t2] == seg[t]); }

}  // namespace

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B, int T,
                       int C, int NH) {
    const int hs = C / NH;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const size_t C3 = static_cast<size_t>(3) * C;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        const float* q = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * hs;
        const float* k = q + C;
        const float* v = q + 2 * static_cast<size_t>(C);
        const int32_t* seg = segments ? segments + static_cast<size_t>(b) * T : nullptr;
        float* a = att + static_cast<size_t>(bh) * T * T;
        sgemm(false, true, T, T, hs, scale, q, static_cast<int>(C3), k, static_cast<int>(C3), 0.0f, a, T);
        for (int t = 0; t < T; t++) {
            float* row = a + static_cast<size_t>(t) * T;
            float m = -std::numeric_limits<float>::infinity();
            for (int t2 = 0; t2 <= t; t2++)
                if (allowed(seg, t, t2) && row[t2] > m) m = row[t2];
            float z = 0.0f;
            for (int t2 = 0; t2 < T; t2++) {
                const float e = allowed(seg, t, t2) ? exp_nonpositive(row[t2] - m) : 0.0f;
                row[t2] = e;
                z += e;
            }
            const float inv = 1.0f / z;
#pragma omp simd
            for (int t2 = 0; t2 <= t; t2++) row[t2] *= inv;
        }
        float* o = out + static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * hs;
        sgemm(false, false, T, hs, T, 1.0f, a, T, v, static_cast<int>(C3), 0.0f, o, C);
    }
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH) {
    (void)segments;  // the mask is in att: its zeros make dS zero where masked
    const int hs = C / NH;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int C3 = 3 * C;
#pragma omp parallel
    {
        std::vector<float> ds(static_cast<size_t>(T) * T);  // dA, then dS in place
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const size_t row0 = static_cast<size_t>(b) * T;
            const float* q = qkv + row0 * C3 + static_cast<size_t>(h) * hs;
            const float* k = q + C;
            const float* v = q + 2 * static_cast<size_t>(C);
            float* dq = dqkv + row0 * C3 + static_cast<size_t>(h) * hs;
            float* dk = dq + C;
            float* dv = dq + 2 * static_cast<size_t>(C);
            const float* dO = dout + row0 * C + static_cast<size_t>(h) * hs;
            const float* a = att + static_cast<size_t>(bh) * T * T;
            sgemm(false, true, T, T, hs, 1.0f, dO, C, v, C3, 0.0f, ds.data(), T);  // dA = dO V^T
            for (int t = 0; t < T; t++) {
                const float* ar = a + static_cast<size_t>(t) * T;
                float* dr = ds.data() + static_cast<size_t>(t) * T;
                float dot = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) dot += ar[t2] * dr[t2];
#pragma omp simd
                for (int t2 = 0; t2 < T; t2++) dr[t2] = ar[t2] * (dr[t2] - dot) * scale;
            }
            sgemm(false, false, T, hs, T, 1.0f, ds.data(), T, k, C3, 1.0f, dq, C3);  // dQ += dS K
            sgemm(true, false, T, hs, T, 1.0f, ds.data(), T, q, C3, 1.0f, dk, C3);   // dK += dS^T Q
            sgemm(true, false, T, hs, T, 1.0f, a, T, dO, C, 1.0f, dv, C3);           // dV += att^T dO
        }
    }
}

}  // namespace plw::cpu
