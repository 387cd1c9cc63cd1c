// CPU reference: LayerNorm over the last dimension (see layernorm.h for the math and shapes).
// This file is the reference the CUDA twin (native/cuda/layernorm.h) is tested against.
//
// Shapes: N = rows (B*T), C = channels.
//
// Forward and the dinp part of the backward: rows are independent, split across OpenMP
// threads (static schedule); each row is a few vectorized sweeps over C. Statistics are
// two-pass in f32 (mean, then the mean of (x - mean)^2), which keeps the variance accurate
// when |mean| >> std.
//
// dweight and dbias sum over rows, so rows cannot be split across threads without a split
// reduction (whose result would depend on the thread count). Channels are split instead:
// each thread owns a slice of channels and walks all rows in order, so every sum has one
// fixed order and the result is bitwise the same for any number of threads.
#include "layernorm.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include <omp.h>

namespace plw::cpu {

namespace {

constexpr float kEps = 1e-5f;

// The slice [c0, c1) of C columns owned by the calling thread of a parallel region: equal
// parts rounded up to 16 floats (one cache line), so no two threads write the same line.
void column_slice(int C, int* c0, int* c1) {
    const int nt = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    const int per = ((C + nt - 1) / nt + 15) / 16 * 16;
    *c0 = std::min(C, tid * per);
    *c1 = std::min(C, *c0 + per);
}

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* x = inp + static_cast<size_t>(n) * C;
        float* o = out + static_cast<size_t>(n) * C;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int c = 0; c < C; c++) s += x[c];
        const float m = s / static_cast<float>(C);
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int c = 0; c < C; c++) {
            const float d = x[c] - m;
            v += d * d;
        }
        const float r = 1.0f / std::sqrt(v / static_cast<float>(C) + kEps);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
        mean[n] = m;
        rstd[n] = r;
    }
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
    // dinp = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)), dnorm = dout * weight,
    // norm = (x - mean) * rstd: the derivative through the mean and the variance.
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const size_t row = static_cast<size_t>(n) * C;
        const float* x = inp + row;
        const float* d = dout + row;
        float* dx = dinp + row;
        const float m = mean[n], r = rstd[n];
        float a = 0.0f, b = 0.0f;
#pragma omp simd reduction(+ : a, b)
        for (int c = 0; c < C; c++) {
            const float dn = d[c] * weight[c];
            a += dn;
            b += dn * ((x[c] - m) * r);
        }
        a /= static_cast<float>(C);
        b /= static_cast<float>(C);
#pragma omp simd
        for (int c = 0; c < C; c++) {
            const float norm = (x[c] - m) * r;
            dx[c] += (d[c] * weight[c] - a - norm * b) * r;
        }
    }
#pragma omp parallel
    {
        int c0, c1;
        column_slice(C, &c0, &c1);
        for (int n = 0; n < N; n++) {
            const size_t row = static_cast<size_t>(n) * C;
            const float* x = inp + row;
            const float* d = dout + row;
            const float m = mean[n], r = rstd[n];
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                dweight[c] += d[c] * ((x[c] - m) * r);
                dbias[c] += d[c];
            }
        }
    }
}

}  // namespace plw::cpu
