// How a linear layer's weight is stored, shared by the CPU and CUDA backends (linear.h).
//   InOut: weight (IC, OC), y = x . W     Hugging Face's Conv1D (GPT-2)
//   OutIn: weight (OC, IC), y = x . W^T   torch nn.Linear (Llama, Qwen, Mistral, ...)
// The weight gradient has the weight's layout.
#pragma once

namespace plw {

enum class WeightLayout { InOut, OutIn };

}  // namespace plw
