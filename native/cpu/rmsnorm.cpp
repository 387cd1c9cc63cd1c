// CPU reference: RMSNorm over the last dimension (see rmsnorm.h for the math and shapes).
// This file is the reference the CUDA twin (native/cuda/rmsnorm.h) is tested against.
//
// Shapes: N = rows, C = channels.
//   rstd[n] = 1 / sqrt(sum_c x[n,c]^2 / C + eps);   out[n,c] = (x[n,c] * rstd[n]) * weight[c]
// Backward, with xhat = x * rstd and dxhat = dout * weight (rstd depends on the whole row):
//   dinp[n,c]  += (dxhat - xhat * mean_c(dxhat * xhat)) * rstd
//   dweight[c] += sum_n dout[n,c] * xhat[n,c]
// All in f32, as HF (hidden_states.to(float32), pow(2).mean(-1), rsqrt, then * weight).
//
// Forward: rows are independent, split across OpenMP threads (static schedule); each row is
// two vectorized sweeps over C (sum of squares, then the output).
//
// Backward, deterministic for any thread count: the rows are cut into fixed chunks (their
// size a function of N and C only, never of the thread count). Each chunk is walked in row
// order by one thread, which updates dinp and adds dout * xhat into the chunk's own partial
// row of dweight; then the partial rows are added in chunk order, column by column, into
// dweight. So every sum has one fixed order. Unlike layernorm_backward (which splits dweight
// by channels and reads every row a second time), this keeps all threads busy when C is
// small and N large (Qwen3's q/k norm: C = head_dim = 128, N = tokens * heads), and reads
// each row once. Chunks: at most kMaxChunks, and at least kMinChunkElems elements each
// (rows * C), so the partials are at most kMaxChunks * C floats.
#include "rmsnorm.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include <omp.h>

namespace plw::cpu {

namespace {

constexpr int kMaxChunks = 64;
constexpr int kMinChunkElems = 4096;

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

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* x = inp + static_cast<size_t>(n) * C;
        float* o = out + static_cast<size_t>(n) * C;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        const float r = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = (x[c] * r) * weight[c];
        if (rstd != nullptr) rstd[n] = r;
    }
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
    if (N <= 0 || C <= 0) return;
    const int min_rows = (kMinChunkElems + C - 1) / C;
    const int rows = std::max((N + kMaxChunks - 1) / kMaxChunks, min_rows);
    const int chunks = (N + rows - 1) / rows;
    std::vector<float> partials(static_cast<size_t>(chunks) * C, 0.0f);  // (chunks, C)

#pragma omp parallel for schedule(static)
    for (int k = 0; k < chunks; k++) {
        float* part = partials.data() + static_cast<size_t>(k) * C;
        const int n1 = std::min(N, (k + 1) * rows);
        for (int n = k * rows; n < n1; n++) {
            const size_t row = static_cast<size_t>(n) * C;
            const float* x = inp + row;
            const float* d = dout + row;
            float* dx = dinp + row;
            const float r = rstd[n];
            float b = 0.0f;
#pragma omp simd reduction(+ : b)
            for (int c = 0; c < C; c++) b += (d[c] * weight[c]) * (x[c] * r);
            b /= static_cast<float>(C);
#pragma omp simd
            for (int c = 0; c < C; c++) {
                const float xhat = x[c] * r;
                dx[c] += (d[c] * weight[c] - xhat * b) * r;
                part[c] += d[c] * xhat;
            }
        }
    }
    // dweight += the partial rows, added in chunk order (into row 0, then into dweight)
#pragma omp parallel
    {
        int c0, c1;
        column_slice(C, &c0, &c1);
        float* total = partials.data();
        for (int k = 1; k < chunks; k++) {
            const float* part = partials.data() + static_cast<size_t>(k) * C;
#pragma omp simd
            for (int c = c0; c < c1; c++) total[c] += part[c];
        }
#pragma omp simd
        for (int c = c0; c < c1; c++) dweight[c] += total[c];
    }
}

}  // namespace plw::cpu
