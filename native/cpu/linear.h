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
// dweight may be null: a frozen weight (LoRA's base), input gradient only.
// All gradients accumulate (+=).
#pragma once

#include "../common/layout.h"

namespace plw::cpu {

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout);

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout);

}  // namespace plw::cpu
