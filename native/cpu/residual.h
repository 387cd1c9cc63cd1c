// Residual connection: out = a + b elementwise. Its backward is a copy of dout into both
// inputs' gradients, which the engine does by accumulating (+=) dout into each.
#pragma once
#include <cstddef>

namespace plw::cpu {

void residual_forward(float* out, const float* a, const float* b, size_t n);
void residual_backward(float* da, float* db, const float* dout, size_t n);  // da += dout; db += dout

}  // namespace plw::cpu
