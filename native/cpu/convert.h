// f32 <-> bf16 over arrays, the reference for native/cuda/convert.h. f32 -> bf16 rounds to
// nearest even (NaN stays NaN); bf16 -> f32 is exact. The engine uses the CUDA twin to keep
// the bf16 working copy of the weights and to read bf16 activations back as f32.
#pragma once
#include <cstddef>

#include "../common/bf16.h"

namespace plw::cpu {

void convert(bf16* dst, const float* src, size_t n);
void convert(float* dst, const bf16* src, size_t n);

}  // namespace plw::cpu
