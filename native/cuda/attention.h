// CUDA twin of native/cpu/attention.h: same names, arguments and math; device pointers.
// Causal multi-head self-attention with padding and packed-segment masks.
// Shapes: B batch, T time, C channels, NH heads, hs = C / NH.
//   qkv (B,T,3C): per row [q (C) | k (C) | v (C)], each split into NH heads of hs channels
//   segments (B,T) int32: token t attends to t2 <= t only where segments[b,t2] == segments[b,t]
//     (packing: several examples in one row, each its own segment). Padding at the end of a
//     row may share the last segment id: causality already hides it from real tokens.
//     segments == nullptr means one segment per row.
//   out (B,T,C): softmax(q.k^T / sqrt(hs), masked) . v, heads concatenated
//   att (B,NH,T,T): the attention probabilities, kept for the backward (zero where masked)
// The backward accumulates (+=) into dqkv.
//
// Activations are f32 or bf16 (mixed precision: every tensor of a call has the same type;
// scores, softmax and GEMM accumulation stay f32 inside, a bf16 value is rounded once when
// stored). The products run on cuBLASLt; without it (PLW_HAVE_CUBLASLT unset) all four
// functions throw.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH);
void attention_forward(bf16* out, bf16* att, const bf16* qkv, const int32_t* segments, int B,
                       int T, int C, int NH);

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH);
void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att,
                        const int32_t* segments, int B, int T, int C, int NH);

// Device scratch one call above takes at most from the ScratchBuffer pool (runtime.h) for
// activations of act_size bytes (4: f32, 2: bf16): one batch row's (NH, T, T) f32 scores,
// plus (bf16) its (NH, T, T) bf16 dS. Independent of B (the rows reuse it).
size_t attention_scratch_bytes(int T, int NH, size_t act_size);

}  // namespace plw::cuda
