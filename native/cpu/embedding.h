// Token + position embedding.
// Shapes: N = rows (B*T flattened), C = channels. positions are explicit per row so that
// packed rows (several examples in one sequence) restart their positions at 0.
//   out[n, :] = wte[tokens[n], :] + wpe[positions[n], :]
//   wpe == nullptr: no position table (Llama family, positions come from RoPE):
//   out[n, :] = wte[tokens[n], :], and positions may be nullptr (it is not read).
// Ids must already be validated (find_out_of_range) by the caller.
#pragma once
#include <cstdint>

namespace plw::cpu {

void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C);

// Accumulates (+=) into dwte and dwpe; dwte is the same gradient the tied head writes.
// dwpe == nullptr: no position table; positions is then not read (may be nullptr).
// Deterministic: each thread owns a slice of channels, rows are summed in order.
void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C);

// Index of the first id outside [0, limit), or -1.
int64_t find_out_of_range(const int32_t* ids, int64_t n, int32_t limit);

}  // namespace plw::cpu
