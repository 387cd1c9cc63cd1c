// RMSNorm over the last dimension (Hugging Face LlamaRMSNorm; Llama, Qwen2/3, Mistral).
// Shapes: N rows, C channels (N = B*T for the block's norms; Qwen3's per-head q/k norm is the
// same op on N = B*T*H rows of C = head_dim).
//   rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps)          (in f32, as HF upcasts to f32)
//   out[n,c] = (x[n,c] * rstd[n]) * weight[c]
// eps comes from the model config (rms_norm_eps, e.g. 1e-5 or 1e-6). rstd is kept for the
// backward; it may be null in the forward (inference), then it is not written.
// The backward accumulates (+=) into dinp and dweight (llm.c's convention, as layernorm).
#pragma once

namespace plw::cpu {

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps);

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C);

}  // namespace plw::cpu
