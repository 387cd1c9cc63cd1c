// CUDA twin of native/cpu/embedding.h. out / dout are f32 or bf16 (mixed precision); the
// tables wte, wpe and their gradients are f32 in both (a bf16 out is the f32 sum rounded
// once to nearest even).
//   out[n, :] = wte[tokens[n], :] + wpe[positions[n], :]
//   wpe == nullptr: no position table (Llama family): out[n, :] = wte[tokens[n], :], and
//   positions may be nullptr. In the backward, dwpe == nullptr: positions is not read.
#pragma once
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C);
void embedding_forward(bf16* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C);

// Accumulates into dwte and dwpe (dwpe may be null). Deterministic (no float atomics): see
// embedding.cu.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C);
void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C);

// Index of the first id outside [0, limit), or -1. Synchronizes.
int64_t find_out_of_range(const int32_t* ids, int64_t n, int32_t limit);

}  // namespace plw::cuda
