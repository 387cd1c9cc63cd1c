// CUDA twin of native/cpu/rmsnorm.h: same names, arguments and math; device pointers.
// RMSNorm over the last dimension (Hugging Face LlamaRMSNorm). Shapes: N rows, C channels
// (Qwen3's per-head q/k norm: N = B*T*H rows of C = head_dim).
//   rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps);   out[n,c] = (x[n,c] * rstd[n]) * weight[c]
// rstd may be null in the forward (inference): then it is not written. The backward
// accumulates (+=) into dinp and dweight, deterministically (no float atomics).
// Activations (out, inp, dinp, dout) are f32 or bf16; weight, rstd and dweight are f32 in
// both. bf16 math is f32, each stored bf16 rounded once (nearest even).
#pragma once

#include "../common/bf16.h"

namespace plw::cuda {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps);
void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const float* weight, int N, int C,
                     float eps);

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);
void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp,
                      const float* weight, const float* rstd, int N, int C);

}  // namespace plw::cuda
