// CUDA twin of native/cpu/linear.h: same names, arguments and math; device pointers.
// Linear layer, y = x . W + b, with the weight stored in either layout (common/layout.h):
//   WeightLayout::InOut  weight (IC, OC): Hugging Face's Conv1D (GPT-2)
//   WeightLayout::OutIn  weight (OC, IC): torch nn.Linear (Llama family), y = x . W^T + b
// Shapes: N rows (B*T), IC in channels, OC out channels; W below is the (IC, OC) matrix
// x is multiplied by, i.e. weight itself (InOut) or its transpose (OutIn).
//   forward:  out (N,OC) = inp (N,IC) . W + bias (OC)                  (bias may be null)
//   backward: dinp (N,IC) += dout (N,OC) . W^T
//             dweight += inp^T . dout, stored in weight's layout:
//               InOut (IC,OC) += inp^T . dout;  OutIn (OC,IC) += dout^T . inp
//             dbias (OC) += sum over rows of dout                      (dbias may be null)
// dweight may be null: a frozen weight, input gradient only.
// All gradients accumulate (+=).
// Two precisions: all f32 (TF32 GEMMs), or bf16 mixed precision: activations, their
// gradients, weight and bias (the bf16 working copy of the parameters) in bf16, GEMMs with
// f32 accumulation, and the parameter gradients dweight / dbias in f32.
#pragma once

#include "../common/bf16.h"
#include "../common/layout.h"

namespace plw::cuda {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout);
void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N,
                    int IC, int OC, WeightLayout layout);

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout);
void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int IC, int OC, WeightLayout layout);

}  // namespace plw::cuda
