// CPU reference: SwiGLU, out = silu(gate) * up (see swiglu.h).
//
// The sigmoid is taken from e = exp(-|g|) (a non-positive argument, so exp_nonpositive, which
// GCC vectorizes; std::exp is a libm call that stops the vectorizer):
//   s = sigmoid(g) = 1 / (1 + e)  for g >= 0,   e / (1 + e)  for g < 0
//   q = 1 - s      = e / (1 + e)  for g >= 0,   1 / (1 + e)  for g < 0
// Both forms are free of cancellation and of overflow (e <= 1), so s and q keep their
// relative accuracy on both tails, and g = +-100 gives finite results: silu(100) = 100,
// silu(-100) ~ -1e-36 (exp_nonpositive clamps its argument at -87.3, where the exact value,
// -4e-42, would be subnormal; both are 0 next to any other term), silu'(+-100) = 1 and ~0.
// The form g / (1 + exp(-g)) that HF evaluates overflows exp at g < -88 (to -0, harmless
// there, but its derivative would be inf / inf).
//   silu(g)  = g * s
//   silu'(g) = s * (1 + g * q)
// Elementwise: the split across threads cannot change a result. out may alias gate or up;
// each element is read before it is written.
#include "swiglu.h"

#include <cstddef>

#include "vec_math.h"

namespace plw::cpu {

void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float e = exp_nonpositive(g >= 0.0f ? -g : g);
        const float s = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
        out[i] = g * s * up[i];
    }
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float e = exp_nonpositive(g >= 0.0f ? -g : g);
        const float inv = 1.0f / (1.0f + e);
        const float s = (g >= 0.0f ? 1.0f : e) * inv;
        const float q = (g >= 0.0f ? e : 1.0f) * inv;
        const float d = dout[i];
        dgate[i] += d * up[i] * (s * (1.0f + g * q));
        dup[i] += d * (g * s);
    }
}

}  // namespace plw::cpu
