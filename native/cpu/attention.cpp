// CPU reference: causal multi-head self-attention with packed-segment masks and grouped-query
// attention (see attention.h). This file is the reference the CUDA twin
// (native/cuda/attention.h) is tested against.
//
// Shapes: B = batch, T = time, NH = query heads, NKV = key/value heads, hs = head size,
// n_rep = NH / NKV; query head h reads KV head j = h / n_rep.
//   q    rows of q_stride floats, query head h at channels [h*hs, (h+1)*hs) of each row
//   k, v rows of kv_stride floats, KV head j at channels [j*hs, (j+1)*hs)
//   out  (B,T,NH*hs)  heads concatenated
//   att  (B,NH,T,T)   softmax probabilities, 0 where masked (t2 > t or another segment)
//   dq, dk, dv        accumulated (+=), strides of q, k, v
//
// Per (batch, query head) pair the products are matrix products on the SGEMM (matmul.h),
// which reads the head's Q, K, V and dO in place through their row strides:
//   forward   S = Q K^T / sqrt(hs)  (T,T), masked softmax row by row into att,  O = att V
//   backward  dA = dO V^T, dS = att * (dA - rowsum(att * dA)) / sqrt(hs),
//             dQ += dS K,  dK += dS^T Q,  dV += att^T dO
// The full T x T products are taken (the causal triangle would be half), because the SGEMM
// runs them ~7x faster than dot products key by key: the trade is a clear win at every T.
//
// Threads. The forward runs over the B*NH (batch, query head) pairs: a pair owns its att
// block and its head's channels of out. The backward runs over the B*NKV (batch, KV head)
// pairs: a pair owns its KV head's channels of dk and dv and the channels of dq of its n_rep
// query heads, which it takes in increasing order (r = 0..n_rep-1), so each dk/dv element
// sums its query heads' contributions in one fixed order. With at least as many pairs as
// threads, the pairs are spread over the threads (static schedule) and each SGEMM runs on its
// pair's thread; with fewer pairs (small B, few KV heads), the pairs run one after another
// and the SGEMMs and softmax rows use the threads instead. The SGEMM never splits a
// reduction and a softmax row is one thread's, so either way the results are bitwise the
// same for any number of threads. With NKV = NH (GPT-2) the operations and their order are
// exactly those of the multi-head version this one generalizes.
//
// Softmax in f32 with the row max subtracted (exp_nonpositive), over the allowed keys only;
// a query always sees itself, so the row sum is >= 1. segments == nullptr is one segment per
// row.
#include "attention.h"

#include <omp.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <vector>

#include "matmul.h"
#include "vec_math.h"

namespace plw::cpu {

namespace {

inline bool allowed(const int32_t* seg, int t, int t2) { return t2 <= t && (!seg || seg[t2] == seg[t]); }

// The pairs go to the threads when there are enough of them to keep every thread busy;
// otherwise the SGEMMs and row loops inside a pair take the threads (see the file comment).
bool pairs_in_parallel(int pairs) { return pairs >= omp_get_max_threads(); }

// body(t) for t in [0, T): in order on the calling thread when it is one of a parallel
// region's threads (the pairs are spread), else spread over the threads (static schedule).
// Either way each row is computed by one thread, by the same code.
template <typename Body>
void for_each_row(int T, const Body& body) {
    if (omp_in_parallel()) {
        for (int t = 0; t < T; t++) body(t);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) body(t);
}

// Row t of a head's scores (T) -> its masked softmax, in place.
void softmax_row(float* row, const int32_t* seg, int t, int T) {
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

// Row t of dA (T) -> dS = att * (dA - rowsum(att * dA)) * scale, in place.
void softmax_backward_row(float* dr, const float* ar, int t, int T, float scale) {
    float dot = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) dot += ar[t2] * dr[t2];
#pragma omp simd
    for (int t2 = 0; t2 < T; t2++) dr[t2] = ar[t2] * (dr[t2] - dot) * scale;
}

}  // namespace

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                       int q_stride, int kv_stride) {
    const int n_rep = NH / NKV;
    const int C = NH * hs;  // out's row
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for schedule(static) if (pairs_in_parallel(B * NH))
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH, j = h / n_rep;
        const size_t row0 = static_cast<size_t>(b) * T;
        const float* qh = q + row0 * q_stride + static_cast<size_t>(h) * hs;
        const float* kh = k + row0 * kv_stride + static_cast<size_t>(j) * hs;
        const float* vh = v + row0 * kv_stride + static_cast<size_t>(j) * hs;
        const int32_t* seg = segments ? segments + row0 : nullptr;
        float* a = att + static_cast<size_t>(bh) * T * T;
        sgemm(false, true, T, T, hs, scale, qh, q_stride, kh, kv_stride, 0.0f, a, T);
        for_each_row(T, [&](int t) { softmax_row(a + static_cast<size_t>(t) * T, seg, t, T); });
        float* o = out + row0 * C + static_cast<size_t>(h) * hs;
        sgemm(false, false, T, hs, T, 1.0f, a, T, vh, kv_stride, 0.0f, o, C);
    }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* att, const int32_t* segments,
                        int B, int T, int NH, int NKV, int hs, int q_stride, int kv_stride) {
    (void)segments;  // the mask is in att: its zeros make dS zero where masked
    const int n_rep = NH / NKV;
    const int C = NH * hs;  // dout's row
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel if (pairs_in_parallel(B * NKV))
    {
        std::vector<float> ds(static_cast<size_t>(T) * T);  // dA, then dS in place
#pragma omp for schedule(static)
        for (int bj = 0; bj < B * NKV; bj++) {
            const int b = bj / NKV, j = bj % NKV;
            const size_t row0 = static_cast<size_t>(b) * T;
            const size_t kv0 = row0 * kv_stride + static_cast<size_t>(j) * hs;
            const float* kh = k + kv0;
            const float* vh = v + kv0;
            float* dkh = dk + kv0;
            float* dvh = dv + kv0;
            for (int r = 0; r < n_rep; r++) {  // the KV head's query heads, in order
                const int h = j * n_rep + r;
                const size_t q0 = row0 * q_stride + static_cast<size_t>(h) * hs;
                const float* qh = q + q0;
                float* dqh = dq + q0;
                const float* dO = dout + row0 * C + static_cast<size_t>(h) * hs;
                const float* a = att + (static_cast<size_t>(b) * NH + h) * T * T;
                sgemm(false, true, T, T, hs, 1.0f, dO, C, vh, kv_stride, 0.0f, ds.data(), T);  // dA = dO V^T
                float* dsr = ds.data();
                for_each_row(T, [&](int t) {
                    softmax_backward_row(dsr + static_cast<size_t>(t) * T, a + static_cast<size_t>(t) * T, t, T,
                                         scale);
                });
                sgemm(false, false, T, hs, T, 1.0f, ds.data(), T, kh, kv_stride, 1.0f, dqh, q_stride);  // dQ += dS K
                sgemm(true, false, T, hs, T, 1.0f, ds.data(), T, qh, q_stride, 1.0f, dkh, kv_stride);   // dK += dS^T Q
                sgemm(true, false, T, hs, T, 1.0f, a, T, dO, C, 1.0f, dvh, kv_stride);                 // dV += att^T dO
            }
        }
    }
}

}  // namespace plw::cpu
