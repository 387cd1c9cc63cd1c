// CUDA twin of native/cpu/cross_entropy.h: same names, arguments and math; pointers are
// device pointers. Shapes: N rows, V real vocab, Vp row stride (>= V).
#pragma once
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

void weighted_cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp);
void weighted_cross_entropy_forward(float* losses, const bf16* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp);

void weighted_cross_entropy_backward(float* dlogits, float* losses, const float* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp);
void weighted_cross_entropy_backward(bf16* dlogits, float* losses, const bf16* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp);

// Results land on the host (the call synchronizes). Deterministic (fixed reduction order).
void weighted_loss_sum(double* loss_sum, double* weight_sum, const float* losses,
                       const float* weights, int N);

// Index of the first row with a non-zero weight and a target outside [0, V), or -1.
// Synchronizes.
int64_t find_invalid_target(const int32_t* targets, const float* weights, int N, int V);

}  // namespace plw::cuda
