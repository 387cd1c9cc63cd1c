// LoRA (Hu et al. 2021) as PEFT computes it, the part added to a frozen linear layer:
//   y = base(x) + scaling * (dropout(x) . A^T) . B^T
// with A stored (r, IC) and B stored (OC, r) (nn.Linear layout, PEFT's lora_A / lora_B),
// scaling = alpha / r (or alpha / sqrt(r) with rsLoRA). The input here is already dropped.
// Shapes: N rows (B*T), IC in channels, OC out channels, r the adapter's rank.
//   forward:  xs  (N, r)  = scaling * inp (N, IC) . A^T       (kept for the backward)
//             out (N, OC) += xs . B^T
//   backward: dB  (OC, r) += dout^T . xs
//             dxs (N, r)  = scaling * dout . B                 (scratch, overwritten)
//             dA  (r, IC) += dxs^T . inp
//             dinp (N, IC) += dxs . A
// Parameter gradients and dinp accumulate (+=), as linear_backward's do.
//
// Dropout (common/dropout_mask.h decides which elements are kept, from a seed):
//   dropout_forward:  out = keep(i) ? in / (1 - p) : 0         (n elements)
//   dropout_backward: dinp += keep(i) ? dout / (1 - p) : 0
// p in [0, 1); p = 0 is the identity (callers skip it).
#pragma once
#include <cstddef>
#include <cstdint>

namespace plw::cpu {

void lora_forward(float* out, float* xs, const float* inp, const float* A, const float* B, int N, int IC,
                  int OC, int r, float scaling);

void lora_backward(float* dinp, float* dA, float* dB, float* dxs, const float* dout, const float* inp,
                   const float* xs, const float* A, const float* B, int N, int IC, int OC, int r,
                   float scaling);

void dropout_forward(float* out, const float* in, size_t n, float p, uint64_t seed);
void dropout_backward(float* dinp, const float* dout, size_t n, float p, uint64_t seed);

}  // namespace plw::cpu
