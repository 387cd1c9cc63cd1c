// AdamW with the exact semantics of torch.optim.AdamW (foreach=False, fused=False,
// amsgrad=False, maximize=False), preceded by global-norm gradient clipping as
// torch.nn.utils.clip_grad_norm_ does it. Per step t (1-based), for each element:
//   g  = grad * grad_scale                  (grad_scale = clip coefficient, 1 when off)
//   p  = p * (1 - lr * weight_decay)        (decoupled decay; weight_decay 0 for no-decay tensors)
//   m  = m + (1 - beta1) * (g - m)          (torch's lerp)
//   v  = beta2 * v + (1 - beta2) * g * g
//   p  = p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// Hyperparameters stay double until the per-element factors (1 - beta2, lr / bc1, ...) are
// formed, as torch forms them from Python floats: rounding beta2 = 0.999 to float first
// would make 1 - beta2 wrong by 1.3e-5 relative. The factors are then applied in float.
#pragma once
#include <cstddef>

namespace plw::cpu {

struct AdamWParams {
    double lr;
    double beta1;
    double beta2;
    double eps;
    double weight_decay;
    int step;          // t >= 1, after incrementing, as torch counts it
    float grad_scale;  // multiplies every gradient element (clipping); 1 = none
};

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp);

// sum of squares of grads, in double (the building block of the global norm).
double grad_sum_squares(const float* grads, size_t n);

// The per-element factors in float, formed in double from AdamWParams (shared by both backends).
struct AdamWFactors {
    float decay;            // 1 - lr * weight_decay
    float one_minus_beta1;  // 1 - beta1
    float beta2;
    float one_minus_beta2;  // 1 - beta2
    float step_size;        // lr / (1 - beta1^t)
    float bc2_sqrt;         // sqrt(1 - beta2^t)
    float eps;
    float grad_scale;
};
AdamWFactors adamw_factors(const AdamWParams& hp);

// torch.nn.utils.clip_grad_norm_: coefficient = max_norm / (total_norm + 1e-6), clamped to 1.
// max_norm <= 0 means no clipping (coefficient 1).
float clip_coefficient(double total_norm, float max_norm);

}  // namespace plw::cpu
