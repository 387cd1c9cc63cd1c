// CUDA twin of native/cpu/embedding.h.
#pragma once
#include <cstdint>

namespace plw::cuda {

void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C);

// Accumulates into dwte and dwpe. Deterministic (no float atomics): see embedding.cu.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C);

// Index of the first id outside [0, limit), or -1. Synchronizes.
int64_t find_out_of_range(const int32_t* ids, int64_t n, int32_t limit);

}  // namespace plw::cuda
