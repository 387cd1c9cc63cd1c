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
#pragma once
#include <cstdint>

namespace plw::cpu {

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH);

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH);

}  // namespace plw::cpu
