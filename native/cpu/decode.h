// Ops used only by generation with a KV cache: one new token at a time.
// Shapes: C channels, NH query heads, NKV key/value heads (NH % NKV == 0; query head h reads
// KV head h / (NH/NKV)), hs head size, T cached positions (the new one included),
// V vocabulary, S the cache's row capacity.
//   attention_decode_forward: out (NH*hs) = softmax(q . K[:T]^T / sqrt(hs)) . V[:T] per query
//     head, where q (NH*hs) is the new token's query and kcache/vcache (S, NKV*hs) hold the
//     keys/values of positions 0..T-1 (causality is implicit: the cache holds only the past
//     and the new token). GPT-2: NKV = NH, hs = C / NH.
//   head_logits_forward: out (V) = x (C) . wte[:V]^T, the tied LM head for one row.
#pragma once

namespace plw::cpu {

void attention_decode_forward(float* out, const float* q, const float* kcache, const float* vcache, int T,
                              int NH, int NKV, int hs);

void head_logits_forward(float* out, const float* x, const float* wte, int C, int V);

}  // namespace plw::cpu
