// CUDA twin of native/cpu/adamw.h: the same update, element for element.
#pragma once
#include <cstddef>

#include "../cpu/adamw.h"  // AdamWParams and clip_coefficient are plain host code

namespace plw::cuda {

using plw::cpu::AdamWParams;

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp);

// Sum of squares in double, deterministic; synchronizes and returns on the host.
double grad_sum_squares(const float* grads, size_t n);

}  // namespace plw::cuda
