// CUDA twin of native/cpu/residual.h: same names, arguments and math; device pointers.
// Residual connection: out = a + b elementwise. Its backward is a copy of dout into both
// inputs' gradients, which the engine does by accumulating (+=) dout into each.
// Values are f32 or bf16; bf16 sums are f32, each stored bf16 rounded once (nearest even).
#pragma once
#include <cstddef>

#include "../common/bf16.h"

namespace plw::cuda {

void residual_forward(float* out, const float* a, const float* b, size_t n);
void residual_backward(float* da, float* db, const float* dout, size_t n);  // da += dout; db += dout
void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n);
void residual_backward(bf16* da, bf16* db, const bf16* dout, size_t n);  // da += dout; db += dout

}  // namespace plw::cuda
