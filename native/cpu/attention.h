// Causal multi-head self-attention with padding and packed-segment masks, and grouped-query
// attention (GQA: several query heads share one key/value head).
// Shapes: B batch, T time, NH query heads, NKV key/value heads (NH % NKV == 0), hs head size
// (independent of the model width), n_rep = NH / NKV: query head h reads KV head h / n_rep.
//   q: row (b,t) starts at q + (b*T + t) * q_stride, query head h at + h*hs (NH heads of hs)
//   k, v: row (b,t) starts at k + (b*T + t) * kv_stride, KV head j at + j*hs (NKV heads of hs)
//     (separate projections: q_stride = NH*hs, kv_stride = NKV*hs; GPT-2's fused qkv (B,T,3C):
//     q = qkv, k = qkv + C, v = qkv + 2C, q_stride = kv_stride = 3C, NKV = NH, hs = C/NH)
//   segments (B,T) int32: token t attends to t2 <= t only where segments[b,t2] == segments[b,t]
//     (packing: several examples in one row, each its own segment). Padding at the end of a
//     row may share the last segment id: causality already hides it from real tokens.
//     segments == nullptr means one segment per row.
//   out (B,T,NH*hs) contiguous: softmax(q.k^T / sqrt(hs), masked) . v, heads concatenated
//   att (B,NH,T,T): the attention probabilities, kept for the backward (zero where masked)
// The backward accumulates (+=) into dq, dk, dv, which have the strides of q, k, v. The
// gradient of a KV head sums the contributions of its n_rep query heads in increasing head
// order (a fixed order: bitwise reproducible, for any number of threads).
#pragma once
#include <cstdint>

namespace plw::cpu {

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                       int q_stride, int kv_stride);

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* att, const int32_t* segments,
                        int B, int T, int NH, int NKV, int hs, int q_stride, int kv_stride);

}  // namespace plw::cpu
