// CUDA twin of native/cpu/rope.h: same names, arguments and math; device pointers
// (positions and inv_freq too).
// Rotary position embedding, rotate-half layout (Hugging Face apply_rotary_pos_emb).
// Shapes: N rows (tokens), H heads, hs head size (even), h = hs / 2.
//   x (N, H, hs), rotated in place; positions (N) int32; inv_freq (h) f32
//   a = float(positions[n]) * inv_freq[i];  c = cos(a), s = sin(a)      (f32, as HF)
//   x'[i] = x[i] c - x[i + h] s;   x'[i + h] = x[i + h] c + x[i] s       (i < h)
// The backward rotates dx in place by the transposed rotation (angle -> -angle): no +=.
// x / dx are f32 or bf16; bf16 math is f32, each stored bf16 rounded once (nearest even).
#pragma once
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs);
void rope_forward(bf16* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs);

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs);
void rope_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs);

}  // namespace plw::cuda
