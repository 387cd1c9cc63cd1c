// f32 <-> bf16 conversion of n contiguous values on the device (device pointers). The CUDA
// twin of plw::f32_to_bf16 / plw::bf16_to_f32 (../common/bf16.h), bit for bit: f32 -> bf16
// rounds to nearest even, NaN stays NaN (quieted, sign and top payload bits kept), infinities
// and subnormals are kept; bf16 -> f32 is exact. dst and src must not overlap.
#pragma once
#include <cstddef>

#include "../common/bf16.h"

namespace plw::cuda {

void convert(bf16* dst, const float* src, size_t n);  // f32 -> bf16, round to nearest even
void convert(float* dst, const bf16* src, size_t n);  // bf16 -> f32, exact

}  // namespace plw::cuda
