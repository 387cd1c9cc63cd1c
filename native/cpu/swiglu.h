// SwiGLU, the middle of Hugging Face's LlamaMLP: down(silu(gate(x)) * up(x)); this op is
//   out = silu(gate) * up,   silu(g) = g * sigmoid(g) = g / (1 + exp(-g))
// elementwise over n values (n = B*T * intermediate_size). The backward accumulates:
//   dgate += dout * up * silu'(gate),  silu'(g) = s (1 + g (1 - s)),  s = sigmoid(g)
//   dup   += dout * silu(gate)
// Finite for every finite input (g = +-100 included: no inf, no NaN).
#pragma once
#include <cstddef>

namespace plw::cpu {

void swiglu_forward(float* out, const float* gate, const float* up, size_t n);
void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n);

}  // namespace plw::cpu
