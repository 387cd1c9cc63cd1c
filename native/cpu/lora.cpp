// CPU reference: the LoRA adapter's products and dropout (see lora.h). The four products go
// through sgemm (matmul.h) with scaling as its alpha, so they are bitwise independent of the
// thread count as the linear layer's are:
//   forward   xs = scaling * inp . A^T        sgemm NT, beta 0   (A stored (r, IC))
//             out += xs . B^T                 sgemm NT, beta 1   (B stored (OC, r))
//   backward  dB += dout^T . xs               sgemm TN, beta 1
//             dxs = scaling * dout . B        sgemm NN, beta 0
//             dA += dxs^T . inp               sgemm TN, beta 1
//             dinp += dxs . A                 sgemm NN, beta 1
#include "lora.h"

#include <cstddef>

#include "../common/dropout_mask.h"
#include "matmul.h"

namespace plw::cpu {

void lora_forward(float* out, float* xs, const float* inp, const float* A, const float* B, int N, int IC,
                  int OC, int r, float scaling) {
    sgemm(false, true, N, r, IC, scaling, inp, IC, A, IC, 0.0f, xs, r);
    sgemm(false, true, N, OC, r, 1.0f, xs, r, B, r, 1.0f, out, OC);
}

void lora_backward(float* dinp, float* dA, float* dB, float* dxs, const float* dout, const float* inp,
                   const float* xs, const float* A, const float* B, int N, int IC, int OC, int r,
                   float scaling) {
    sgemm(true, false, OC, r, N, 1.0f, dout, OC, xs, r, 1.0f, dB, r);
    sgemm(false, false, N, r, OC, scaling, dout, OC, B, r, 0.0f, dxs, r);
    sgemm(true, false, r, IC, N, 1.0f, dxs, r, inp, IC, 1.0f, dA, IC);
    sgemm(false, false, N, IC, r, 1.0f, dxs, r, A, IC, 1.0f, dinp, IC);
}

void dropout_forward(float* out, const float* in, size_t n, float p, uint64_t seed) {
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    const ptrdiff_t count = static_cast<ptrdiff_t>(n);
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < count; i++) out[i] = dropout_keep(seed, static_cast<uint64_t>(i), threshold) ? in[i] * scale : 0.0f;
}

void dropout_backward(float* dinp, const float* dout, size_t n, float p, uint64_t seed) {
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    const ptrdiff_t count = static_cast<ptrdiff_t>(n);
#pragma omp parallel for schedule(static)
    for (ptrdiff_t i = 0; i < count; i++)
        if (dropout_keep(seed, static_cast<uint64_t>(i), threshold)) dinp[i] += dout[i] * scale;
}

}  // namespace plw::cpu
