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
// stored (dq, dk, dv: once per call, round(old + increment)); the tensor-core path also rounds
// the operands of its products (below): bf16 P and dS; for f32, Q, K, V, dO, P and dS to tf32.
// No cuBLASLt: these kernels work in any CUDA build.
//
// Two implementations, the same op and contract (masks, GQA, strides, lse, +=, determinism):
//   - SIMT (flash_attention.cu): plain f32 FMAs on f32 tiles in shared memory, for f32 and
//     bf16; a bf16 result is rounded once, when stored. Taken with PLW_CUDA_FLASH=simt.
//   - tensor cores (flash_attention_mma.cu, sm_80+): mma.sync with f32 accumulation for
//     S = Q K^T, O += P V, dP = dO V^T, dQ += dS K, dV += P^T dO, dK += dS^T Q: bf16 operands
//     on m16n8k16, f32 activations as TF32 operands on m16n8k8 (cvt.rna.tf32.f32 of Q, K, V,
//     dO, P and dS: 10-bit mantissas, as the cuBLASLt path of attention.h runs f32 GEMMs in
//     TF32); the online softmax and dS are computed on the accumulator fragments in
//     registers, and P and dS are rounded to the operand type before their products (as the
//     cuBLASLt path rounds att and dS), so errors reach the unfused path's bounds
//     (test/emulator/test_attention.cpp; TF32's for f32) rather than the SIMT kernels'.
//     Shared memory stays within 48 KiB (no opt-in); no ldmatrix, cp.async or wgmma yet.
// Both types take the tensor-core kernels when the device is sm_80 or newer (every device the
// runtime accepts) unless the environment variable PLW_CUDA_FLASH=simt, read once per process
// (flash_attention_uses_mma). Both paths are proven in the host emulator
// (test/emulator: test_flash_attention for SIMT, test_flash_attention_mma, with the mma
// instruction emulated from the PTX fragment layout); only a GPU run shows real speed and the
// hardware's rounding inside an mma. What sm_90 would add next: wgmma (warpgroup MMA reading
// K/V from shared memory) with TMA loads and warp-specialized pipelines (FlashAttention-3's
// layout), and > 48 KiB of shared memory by cudaFuncSetAttribute opt-in for larger tiles.
// Determinism is kept by the split into a dQ kernel per query tile and a dK/dV kernel per key
// tile (FlashAttention-2's atomicAdd on dQ is what this design avoids).
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

// Whether the four functions run the tensor-core kernels (flash_attention_mma.cu; f32 as TF32):
// the device is sm_80 or newer and the environment variable PLW_CUDA_FLASH is not "simt" (read
// once, on the first call; "mma" or unset: tensor cores where the device has them; anything
// else throws). Otherwise both types run the SIMT kernels.
bool flash_attention_uses_mma();

// Device scratch the backward takes from the ScratchBuffer pool (runtime.h), for the memory
// bill: D = rowsum(dout * out), (B, NH, T) f32. The forward takes none; hs does not matter.
size_t flash_attention_scratch_bytes(int B, int T, int NH, int hs);

}  // namespace plw::cuda
