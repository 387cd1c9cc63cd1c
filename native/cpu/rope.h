// Rotary position embedding, rotate-half layout (Hugging Face apply_rotary_pos_emb; Llama,
// Qwen2/3, Mistral). Shapes: N rows (tokens, B*T), H heads, hs head size (even), h = hs / 2.
//   x (N, H, hs): each head's channels i and i + h (i < h) form one rotated pair
//   positions (N) int32: the position id of each row (restarts at 0 for every example packed
//     into a row; any int32 value is accepted)
//   inv_freq (h): the rotation frequencies, inv_freq[i] = 1 / theta^(2i / hs) with the model's
//     scaling rule (e.g. "llama3") already applied by the caller
// For each row n and i < h, with f32 math as HF:
//   a = float(positions[n]) * inv_freq[i];  c = cos(a), s = sin(a)
//   x'[i]     = x[i] * c - x[i + h] * s
//   x'[i + h] = x[i + h] * c + x[i] * s
// Forward rotates x in place. The backward rotates dx in place by the transposed rotation
// (angle -> -angle): the map is linear and orthogonal, so that is the whole gradient (no +=:
// dx holds d(loss)/d(x') on entry and d(loss)/d(x) on return).
#pragma once
#include <cstdint>

namespace plw::cpu {

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs);

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs);

}  // namespace plw::cpu
