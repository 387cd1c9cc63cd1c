// CUDA twin of native/cpu/decode.h: same names, arguments and math; device pointers.
// Ops used only by generation with a KV cache: one new token at a time.
// Shapes: C channels, NH heads, hs = C / NH, T cached positions (the new one included),
// V vocabulary, S the cache's row capacity.
//   attention_decode_forward: out (C) = softmax(q . K[:T]^T / sqrt(hs)) . V[:T] per head, where
//     q (C) is the new token's query and kcache/vcache (S, C) hold the keys/values of
//     positions 0..T-1 (causality is implicit: the cache holds only the past and the new token).
//   head_logits_forward: out (V) = x (C) . wte[:V]^T, the tied LM head for one row.
#pragma once

namespace plw::cuda {

void attention_decode_forward(float* out, const float* q, const float* kcache, const float* vcache, int T,
                              int C, int NH);

void head_logits_forward(float* out, const float* x, const float* wte, int C, int V);

}  // namespace plw::cuda
