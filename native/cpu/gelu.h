// GELU, tanh approximation (GPT-2's "gelu_new"):
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// Elementwise over n values; the backward accumulates: dinp += gelu'(inp) * dout.
#pragma once
#include <cstddef>

namespace plw::cpu {

void gelu_forward(float* out, const float* inp, size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);

}  // namespace plw::cpu
