// LM head (tied to the token embedding) fused with the weighted cross-entropy.
//
// Shapes: N = rows, C = channels, V = real vocab, Vp = rows of wte (padded, Vp >= V).
//   logits = hidden (N,C) . wte[:V]^T (C,V)    -- computed `chunk` rows at a time into
//   scratch (chunk,V), so memory is O(chunk*V), never O(N*V).
// The loss is the one of cross_entropy.h on those logits; the backward then forms
//   dhidden[rows] = dlogits (chunk,V) . wte[:V] (V,C)          (overwritten)
//   dwte[:V]     += dlogits^T (V,chunk) . hidden[rows] (chunk,C) (accumulated, so the
//                   embedding backward and the head share one gradient)
// Rows of dwte in [V, Vp) are not touched.
// dwte may be null: a frozen head (LoRA), dhidden only.
#pragma once
#include <cstddef>
#include <cstdint>

namespace plw::cpu {

// Floats of scratch the two calls need for a given chunk.
size_t fused_head_scratch_floats(int chunk, int V);

void fused_head_cross_entropy_forward(float* losses, float* scratch, const float* hidden,
                                      const float* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk);

void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, float* scratch,
                                       const float* hidden, const float* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk);

}  // namespace plw::cpu
