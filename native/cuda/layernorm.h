// CUDA twin of native/cpu/layernorm.h: same names, arguments and math; device pointers.
// LayerNorm over the last dimension, eps 1e-5 (GPT-2). Shapes: N rows (B*T), C channels.
//   mean[n] = mean(x[n,:]); rstd[n] = 1 / sqrt(var(x[n,:]) + eps)   (biased variance)
//   out[n,c] = (x[n,c] - mean[n]) * rstd[n] * weight[c] + bias[c]
// The backward accumulates (+=) into dinp, dweight and dbias (llm.c's convention: every
// parameter gradient, and dinp here because the residual stream adds into it).
// Activations (out, inp, dinp, dout) are f32 or bf16; weight, bias, mean, rstd, dweight and
// dbias are f32 in both. bf16 math is f32, each stored bf16 rounded once (nearest even).
#pragma once

#include "../common/bf16.h"

namespace plw::cuda {

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C);
void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const float* weight,
                       const float* bias, int N, int C);

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C);
void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout,
                        const bf16* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C);

}  // namespace plw::cuda
