// CPU reference: LM head fused with the weighted cross-entropy (see fused_head.h).
// Per chunk of rows: one GEMM to the logits, the loss kernel in place on them, and, in the
// backward, two GEMMs out of the gradient. Chunks whose weights are all zero (masked
// prompts, padding) skip the GEMMs: their loss and gradient are zero by the contract.
#include "fused_head.h"

#include <algorithm>
#include <cstring>

#include "cross_entropy.h"
#include "matmul.h"

namespace plw::cpu {

namespace {
bool all_zero(const float* w, int n) {
    for (int i = 0; i < n; i++)
        if (w[i] != 0.0f) return false;
    return true;
}
}  // namespace

size_t fused_head_scratch_floats(int chunk, int V) {
    return static_cast<size_t>(chunk) * static_cast<size_t>(V);
}

void fused_head_cross_entropy_forward(float* losses, float* scratch, const float* hidden,
                                      const float* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk) {
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int n = std::min(chunk, N - r0);
        if (all_zero(weights + r0, n)) {
            std::fill(losses + r0, losses + r0 + n, 0.0f);
            continue;
        }
        const float* h = hidden + static_cast<size_t>(r0) * C;
        sgemm(false, true, n, V, C, 1.0f, h, C, wte, C, 0.0f, scratch, V);  // logits = h . wte^T
        weighted_cross_entropy_forward(losses + r0, scratch, targets + r0, weights + r0, n, V, V);
    }
}

void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, float* scratch,
                                       const float* hidden, const float* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk) {
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int n = std::min(chunk, N - r0);
        float* dh = dhidden + static_cast<size_t>(r0) * C;
        if (all_zero(weights + r0, n)) {
            std::fill(losses + r0, losses + r0 + n, 0.0f);
            std::memset(dh, 0, sizeof(float) * static_cast<size_t>(n) * C);
            continue;
        }
        const float* h = hidden + static_cast<size_t>(r0) * C;
        sgemm(false, true, n, V, C, 1.0f, h, C, wte, C, 0.0f, scratch, V);  // logits = h . wte^T
        weighted_cross_entropy_backward(scratch, losses + r0, scratch, targets + r0, weights + r0,
                                        grad_scale, n, V, V);                 // dlogits in place
        sgemm(false, false, n, C, V, 1.0f, scratch, V, wte, C, 0.0f, dh, C);   // dh = dlogits . wte
        if (dwte) sgemm(true, false, V, C, n, 1.0f, scratch, V, h, C, 1.0f, dwte, C);  // dwte += dlogits^T . h
    }
}

}  // namespace plw::cpu
