// CUDA twin of native/cpu/gelu.h: same names, arguments and math; device pointers.
// GELU, tanh approximation (GPT-2's "gelu_new"):
//   gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
// Elementwise over n values; the backward accumulates: dinp += gelu'(inp) * dout.
// Values are f32 or bf16; bf16 math is f32, each stored bf16 rounded once (nearest even).
#pragma once
#include <cstddef>

#include "../common/bf16.h"

namespace plw::cuda {

void gelu_forward(float* out, const float* inp, size_t n);
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);
void gelu_forward(bf16* out, const bf16* inp, size_t n);
void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n);

}  // namespace plw::cuda
