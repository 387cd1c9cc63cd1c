// CUDA twin of native/cpu/fused_head.h. The three GEMMs go through cuBLASLt; the loss
// between them is the kernel of cross_entropy.cu working in place on the chunk of logits.
// hidden and wte are both f32 (TF32 tensor-core GEMMs) or both bf16 (bf16 GEMMs); the
// logits scratch has their dtype; accumulation, losses and dwte are f32 (dwte may be null: a
// frozen head). dhidden is f32,
// or bf16 in the bf16 overload that takes a bf16* dhidden (the mixed-precision engine's
// activation gradient: the GEMM rounds it once when it stores it).
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

// Bytes of scratch the two calls need for a given chunk and input element size (4 or 2).
size_t fused_head_scratch_bytes(int chunk, int V, size_t elem_size);

void fused_head_cross_entropy_forward(float* losses, void* scratch, const float* hidden,
                                      const float* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk);
void fused_head_cross_entropy_forward(float* losses, void* scratch, const bf16* hidden,
                                      const bf16* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk);

void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, void* scratch,
                                       const float* hidden, const float* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk);
void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, void* scratch,
                                       const bf16* hidden, const bf16* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk);
void fused_head_cross_entropy_backward(float* losses, bf16* dhidden, float* dwte, void* scratch,
                                       const bf16* hidden, const bf16* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk);

}  // namespace plw::cuda
