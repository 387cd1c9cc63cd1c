// CUDA twin of native/cpu/swiglu.h: same names, arguments and math; device pointers.
// SwiGLU, the middle of Hugging Face's LlamaMLP down(silu(gate(x)) * up(x)):
//   out = silu(gate) * up,   silu(g) = g * sigmoid(g)
// Elementwise over n values; the backward accumulates:
//   dgate += dout * up * silu'(gate),  silu'(g) = s (1 + g (1 - s)),  s = sigmoid(g)
//   dup   += dout * silu(gate)
// Values are f32 or bf16; bf16 math is f32, each stored bf16 rounded once (nearest even).
#pragma once
#include <cstddef>

#include "../common/bf16.h"

namespace plw::cuda {

void swiglu_forward(float* out, const float* gate, const float* up, size_t n);
void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, size_t n);

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n);
void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up,
                     size_t n);

}  // namespace plw::cuda
