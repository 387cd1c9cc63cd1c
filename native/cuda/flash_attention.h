// CUDA twin of native/cpu/flash_attention.h: same names, arguments and math; device pointers.
// Causal multi-head self-attention computed tile by tile (flash attention): the op of
// attention.h with O(T) memory per head instead of the (B,NH,T,T) probabilities. The forward
// keeps one statistic per query row, the log-sum-exp of its scores; the backward recomputes
// the probabilities tile by tile from q, k and that statistic.
// Shapes, strides, masks and GQA exactly as attention.h:
//   B batch, T time, NH query heads, NKV key/value heads (NH % NKV == 0), hs head size,
//   n_rep = NH / NKV: query head h reads KV head h / n_rep.
//   q: row (b,t) starts at q + (b*T + t) * q_stride, query head h at + h*hs
//   k, v: row (b,t) starts at k + (b*T + t) * kv_stride, KV head j at + j*hs
//   segments (B,T) int32: token t attends to t2 <= t only where segments[b,t2] == segments[b,t];
//     segments == nullptr means one segment per row.
//   out (B,T,NH*hs) contiguous, overwritten: softmax(q.k^T / sqrt(hs), masked) . v
//   lse (B,NH,T) f32, overwritten: natural-log log-sum-exp of row t's allowed scores
//     s = q.k / sqrt(hs) (the only statistic kept for the backward)
// The backward accumulates (+=) into dq, dk, dv (strides of q, k, v), recomputing the
// probabilities from q, k and lse; D = rowsum(dout * out) is computed inside (into scratch).
// The gradient of a KV head sums the contributions of its n_rep query heads in increasing
// head order. No atomics: every output element is written by one thread, once per call, so
// results are bitwise the same run to run.
//
// Activations are f32 or bf16 (every tensor of a call but lse has the same type); scores,
// softmax statistics and every sum stay f32 inside, and a bf16 result is rounded once, when
// stored (dq, dk, dv: once per call, round(old + increment)). No cuBLASLt: these kernels work
// in any CUDA build.
//
// This version is SIMT: plain f32 FMAs on f32 tiles in shared memory (at most 48 KiB a block,
// no opt-in), so that the host emulator (test/emulator) proves it. What a tensor-core version
// would change (the algorithm, masks, tile order and determinism stay):
//   - sm_80+: mma.sync.m16n8k16 bf16 (f32 accumulate) for S = Q K^T, O += P V, dP = dO V^T,
//     dV += P^T dO, dK += dS^T Q, dQ += dS K, operands fed by ldmatrix from bf16 tiles in
//     shared memory (half the bytes: 64 x 128 tiles at hs = 128), cp.async double-buffered
//     loads, > 48 KiB of shared memory by cudaFuncSetAttribute opt-in; the S accumulator
//     fragment is reused as the A operand of P V after rounding P to bf16 in registers. f32
//     activations would run TF32 mma (m16n8k8) or keep this path.
//   - sm_90: wgmma (warpgroup MMA reading K/V straight from shared memory) with TMA loads
//     and warp-specialized producer/consumer pipelines (FlashAttention-3's layout).
//   - numerics: P and dS rounded to bf16 before their products (as the cuBLASLt path rounds
//     att and dS today), so bf16 errors grow to the unfused path's bounds
//     (test/emulator/test_attention.cpp), while this SIMT version rounds only the outputs.
//   - determinism is kept by the same split as here: dQ in its own kernel per query tile,
//     dK/dV per key tile (FlashAttention-2's atomicAdd on dQ is what this design avoids).
// The inline PTX of such a version would sit behind a compile-time switch that the emulator
// build leaves off, with this path as its reference.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../common/bf16.h"

namespace plw::cuda {

void flash_attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                             int q_stride, int kv_stride);
void flash_attention_forward(bf16* out, float* lse, const bf16* q, const bf16* k, const bf16* v,
                             const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                             int q_stride, int kv_stride);

void flash_attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                              const float* lse, const float* q, const float* k, const float* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                              int q_stride, int kv_stride);
void flash_attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* out,
                              const float* lse, const bf16* q, const bf16* k, const bf16* v,
                              const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                              int q_stride, int kv_stride);

// Whether the fused kernels take this head size (64, 80, 96, 128); the others use
// attention.h. The four functions above throw for any other.
bool flash_attention_supports(int hs);

// Device scratch the backward takes from the ScratchBuffer pool (runtime.h), for the memory
// bill: D = rowsum(dout * out), (B, NH, T) f32. The forward takes none; hs does not matter.
size_t flash_attention_scratch_bytes(int B, int T, int NH, int hs);

}  // namespace plw::cuda
