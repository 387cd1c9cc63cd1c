// Weighted cross-entropy over logits, the loss contract of plwtune (docs/loss-contract.md).
//
// Shapes: N = rows (tokens of the batch, flattened B*T), V = real vocabulary size,
// Vp = row stride of the logits (V padded for speed, Vp >= V). Columns [V, Vp) are
// padding: they never enter the softmax, and their gradient is written as 0.
//
//   CE_n    = logsumexp(logits[n, :V]) - logits[n, targets[n]]
//   loss    = sum_n weights[n] * CE_n             (the caller divides by the normalizer)
//   dlogits = weights[n] * grad_scale * (softmax(logits[n, :V]) - onehot(targets[n]))
//
// A row whose weight is 0 contributes nothing and gets a zero gradient; its target is not
// read, so padding may carry any target (e.g. -100). A target outside [0, V) with a
// non-zero weight is an error the caller must reject first (find_invalid_target).
#pragma once
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cpu {

// losses: (N) CE_n for rows with a non-zero weight, 0 elsewhere.
void weighted_cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp);
void weighted_cross_entropy_forward(float* losses, const bf16* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp);

// One pass: per-row losses (nullable) and dlogits. dlogits may alias logits (in place).
// grad_scale is 1/normalizer, the normalizer being sum of weights over the whole optimizer step.
void weighted_cross_entropy_backward(float* dlogits, float* losses, const float* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp);
void weighted_cross_entropy_backward(bf16* dlogits, float* losses, const bf16* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp);

// sum_n weights[n] * losses[n] and sum_n weights[n], accumulated in double.
void weighted_loss_sum(double* loss_sum, double* weight_sum, const float* losses,
                       const float* weights, int N);

// Index of the first row with a non-zero weight and a target outside [0, V), or -1.
int64_t find_invalid_target(const int32_t* targets, const float* weights, int N, int V);

}  // namespace plw::cpu
