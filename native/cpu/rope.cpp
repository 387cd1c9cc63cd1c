// CPU reference: rotary position embedding, rotate-half layout (see rope.h for the math and
// shapes). This file is the reference the CUDA twin (native/cuda/rope.h) is tested against.
//
// Shapes: N = rows (tokens), H = heads, hs = head size (even), h = hs / 2.
//
// The angle depends on the row and the pair index only, so each row computes its h cosines
// and sines once (std::cos / std::sin of the f32 angle: libm, correctly reduced for any
// argument, so a position of 8000 loses nothing beyond the f32 rounding of the angle itself,
// which HF shares) and applies them to its H heads with a vectorized loop. Rows are
// independent, split across OpenMP threads: the split cannot change a result.
//
// HF computes cos/sin in f32 and, in a bf16 model, rounds them and the rotated values to bf16
// op by op; this reference (and the CUDA twin's bf16 path) keeps f32 throughout and rounds
// once, which is closer to the exact rotation.
#include "rope.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace plw::cpu {

namespace {

// sign = +1: the rotation by a; sign = -1: its transpose (the rotation by -a).
void rotate(float* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs,
            float sign) {
    const int h = hs / 2;
#pragma omp parallel
    {
        std::vector<float> cs(2 * static_cast<size_t>(h));  // [cos (h) | sign * sin (h)]
        float* cosv = cs.data();
        float* sinv = cs.data() + h;
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float p = static_cast<float>(positions[n]);
            for (int i = 0; i < h; i++) {
                const float a = p * inv_freq[i];
                cosv[i] = std::cos(a);
                sinv[i] = sign * std::sin(a);
            }
            for (int head = 0; head < H; head++) {
                float* lo = x + (static_cast<size_t>(n) * H + head) * hs;
                float* hi = lo + h;
#pragma omp simd
                for (int i = 0; i < h; i++) {
                    const float x0 = lo[i], x1 = hi[i];
                    lo[i] = x0 * cosv[i] - x1 * sinv[i];
                    hi[i] = x1 * cosv[i] + x0 * sinv[i];
                }
            }
        }
    }
}

}  // namespace

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs) {
    rotate(x, positions, inv_freq, N, H, hs, 1.0f);
}

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs) {
    rotate(dx, positions, inv_freq, N, H, hs, -1.0f);
}

}  // namespace plw::cpu
