// Causal multi-head self-attention computed tile by tile (flash attention): the same op as
// attention.h, with memory O(T) per head instead of the (B,NH,T,T) probabilities. The forward
// keeps one statistic per query row, the log-sum-exp of its scores; the backward recomputes
// the probabilities from q, k and that statistic, tile by tile.
// Shapes, strides, masks and GQA exactly as attention.h:
//   B batch, T time, NH query heads, NKV key/value heads (NH % NKV == 0), hs head size,
//   n_rep = NH / NKV: query head h reads KV head h / n_rep.
//   q: row (b,t) starts at q + (b*T + t) * q_stride, query head h at + h*hs
//   k, v: row (b,t) starts at k + (b*T + t) * kv_stride, KV head j at + j*hs
//   segments (B,T) int32: token t attends to t2 <= t only where segments[b,t2] == segments[b,t];
//     segments == nullptr means one segment per row.
//   out (B,T,NH*hs) contiguous, overwritten: softmax(q.k^T / sqrt(hs), masked) . v
//   lse (B,NH,T) f32, overwritten: natural-log log-sum-exp of row t's allowed scores
//     s = q.k / sqrt(hs) (the only statistic kept for the backward)
// The backward accumulates (+=) into dq, dk, dv (strides of q, k, v), recomputing the
// probabilities from q, k and lse; D = rowsum(dout * out) is computed inside. The gradient of
// a KV head sums the contributions of its n_rep query heads in increasing head order (a fixed
// order). Results are bitwise the same for any number of OpenMP threads.
// flash_attention_scratch_bytes: the most host scratch the two calls allocate (for the memory
// bill), for `threads` OpenMP threads; the SGEMM's own pack buffers (matmul.cpp) not included.
#pragma once
#include <cstddef>
#include <cstdint>

namespace plw::cpu {

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                             int kv_stride);

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                              int kv_stride);

size_t flash_attention_scratch_bytes(int T, int NH, int hs, int threads);

}  // namespace plw::cpu
