// CUDA twin of native/cpu/adamw.h: the same update, element for element.
#pragma once
#include <cstddef>

#include "../common/bf16.h"
#include "../cpu/adamw.h"  // AdamWParams and clip_coefficient are plain host code

namespace plw::cuda {

using plw::cpu::AdamWParams;

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp);
// The same update (bit-identical params, m, v); when params_bf16 is not null it also stores
// each new parameter rounded to bf16 (nearest even) there, in the same pass: the working
// copy that the bf16 GEMMs read.
void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp, bf16* params_bf16);

// Sum of squares in double, deterministic; synchronizes and returns on the host.
double grad_sum_squares(const float* grads, size_t n);

}  // namespace plw::cuda
