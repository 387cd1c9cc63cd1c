// Causal multi-head self-attention with packed-segment masks, the CUDA twin of
// native/cpu/attention.h (the reference: same names, arguments and math), for f32 and bf16
// activations (Act = float or bf16; one templated implementation).
//
// Shapes: B = batch, T = time, C = channels, NH = heads, hs = C / NH; z = b * NH + h.
//   qkv (B, T, 3C): row (b, t) = [q (C) | k (C) | v (C)], head h at channels h*hs .. h*hs+hs
//   allowed(t, t2) = t2 <= t && (segments == null || segments[b, t2] == segments[b, t])
//   S[z, t, t2]   = scale * q[b, t, h] . k[b, t2, h]            scale = 1 / sqrt(hs)
//   att[z, t, t2] = softmax over allowed t2 of S, exactly 0 where not allowed
//   out[b, t, h*hs + d] = sum_t2 att[z, t, t2] * v[b, t2, h*hs + d]
// Backward (everything accumulates into dqkv):
//   dP[t, t2] = dout[b, t, h] . v[b, t2, h]
//   dS[t, t2] = att[t, t2] * (dP[t, t2] - sum_t3 att[t, t3] * dP[t, t3])
//   dq[t]  += scale * sum_t2 dS[t, t2] k[t2];  dk[t2] += scale * sum_t dS[t, t2] q[t];
//   dv[t2] += sum_t att[t, t2] dout[t]
// The backward takes the mask from att's zeros (dS = 0 wherever att = 0), so it does not
// read segments.
//
// The products are cuBLASLt GEMMs (lt_matmul.cuh), one call per batch row b batched over the
// NH heads: a head's q/k/v, out, dout and dqkv sit at a constant stride of hs elements
// inside rows of stride 3C (or C), and its (T, T) scores at a stride of T*T, so the heads are
// strided batches of views straight into the tensors (no permutes). Inputs are Act:
// f32 -> CUBLAS_COMPUTE_32F_FAST_TF32 (TF32 tensor cores: ~1e-3 relative, as linear.cu),
// bf16 -> CUBLAS_COMPUTE_32F (bf16 tensor cores, f32 accumulation). Per b:
//   forward   S (NH, T, T) f32 = scale * Q.K^T -> softmax_forward_kernel -> att (Act)
//             out (Act) = att . V
//   backward  dV += att^T . dout; dP (NH, T, T) f32 = dout . V^T
//             -> softmax_backward_kernel -> dS (Act); dQ += scale * dS . K;
//             dK += scale * dS^T . Q                      (all three beta = 1 into dqkv)
// S and dP stay f32 whatever Act is: bf16 scores would carry a relative error of up to 2^-8
// of |S|, i.e. an absolute error in the softmax's logits that grows with them (a score of 16
// would be off by up to 1/16, 6% on its probability); att, dS and the outputs are rounded
// once, when stored.
//
// The GEMMs compute the full T x T products, causal half included: on tensor cores the 2x
// flops are cheaper than our own skipped-tile kernel. The results are the masked math
// exactly: the softmax reads only allowed scores and writes exact zeros above the diagonal
// and across segments, so the att . V terms there are + 0 * v; dS is exactly 0 wherever att
// is (above the diagonal the kernel writes 0 without reading dP).
//
// Scratch (attention_scratch_bytes, from the ScratchBuffer pool, reused by every b): f32 S
// or dP for one batch row, (NH, T, T); for bf16 also dS (NH, T, T) bf16 after it (256-byte
// aligned). With f32 the forward writes S into att and the softmax works in place, and the
// backward writes dS over dP in place: no extra scratch in the forward, one (NH, T, T) f32 in
// the backward.
//
// Kernels:
// - softmax_forward_kernel / softmax_backward_kernel: one warp per (h, t) row, three (two)
//   passes over the row with f32 warp reductions; memory-bound.
// Costs per call (B*NH heads): each GEMM is 2 * T * T * hs flops per head, 2 in the forward
// and 4 in the backward, i.e. 2 * hs flops per att element per GEMM (128 at hs = 64); the
// DRAM traffic per att element is ~16 bytes forward (f32: S written and read, att written
// and read) or ~12 (bf16), ~28 bytes backward (f32) or ~18 (bf16). At ~20 flops per byte
// that is far below the tensor cores' ridge point (H100: ~150 TF32, ~300 bf16): the (T, T)
// round trips through DRAM, not the flops, bound this version. A fused flash-style kernel
// (scores, softmax and att . V per tile in on-chip memory, no (T, T) tensor in DRAM) is the
// next step once this one is proven on a GPU. Host side: 3 (forward) and 5 (backward)
// launches per batch row (the GEMMs reuse the cached heuristic answer, lt_matmul.cuh).
#include "attention.h"

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "lt_matmul.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::from_float;
using detail::to_float;
using detail::warp_max;
using detail::warp_sum;

constexpr int kRowThreads = 256;  // softmax kernels: 8 warps, one row each

// The bf16 dS follows the f32 scores in the scratch at this alignment.
size_t ds_offset(size_t elems) { return (elems * sizeof(float) + 255) / 256 * 256; }

// ----------------------------------------------------------------------------
// CUDA kernels (templates over Act = float or uint16_t, raw bf16; instantiated only in a
// build with cuBLASLt)

// One batch row: one warp per row (h, t) of its (NH, T, T) scores, rows = NH * T. Reads S
// (f32) for the allowed t2 <= t only; writes the probabilities to att for every t2, 0 where
// not allowed. For Act = float, s may equal att (in place: each lane reads an element
// before it writes it).
template <typename Act>
__global__ void __launch_bounds__(kRowThreads)
    softmax_forward_kernel(Act* att,                // (NH, T, T)
                           const float* s,          // (NH, T, T)
                           const int32_t* segments,  // (T) of this batch row, or null
                           int rows, int T) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (kRowThreads / 32) + (threadIdx.x >> 5);
    if (row >= rows) {
        return;  // the whole warp
    }
    const int t = row % T;
    const int64_t offset = static_cast<int64_t>(row) * T;
    const float* p = s + offset;
    Act* a = att + offset;
    const int32_t own = segments != nullptr ? segments[t] : 0;

    float mx = -INFINITY;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        if (segments == nullptr || segments[t2] == own) {
            mx = fmaxf(mx, p[t2]);
        }
    }
    mx = warp_max(mx);  // finite: t2 = t is always allowed
    float sum = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        if (segments == nullptr || segments[t2] == own) {
            sum += expf(p[t2] - mx);
        }
    }
    const float inv_sum = 1.0f / warp_sum(sum);  // sum >= 1 (the max's own term)
    for (int t2 = lane; t2 < T; t2 += 32) {
        const bool allowed = t2 <= t && (segments == nullptr || segments[t2] == own);
        a[t2] = from_float<Act>(allowed ? expf(p[t2] - mx) * inv_sum : 0.0f);
    }
}

// One batch row: one warp per row (h, t), rows = NH * T. dS = att * (dP - sum_t3 att dP)
// for t2 <= t (0 where att is 0) and 0 above the diagonal, where dP is not read. For
// Act = float, ds may equal dp (in place, as above).
template <typename Act>
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_kernel(Act* ds,          // (NH, T, T)
                            const float* dp,  // (NH, T, T)
                            const Act* att,   // (NH, T, T)
                            int rows, int T) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (kRowThreads / 32) + (threadIdx.x >> 5);
    if (row >= rows) {
        return;
    }
    const int t = row % T;
    const int64_t offset = static_cast<int64_t>(row) * T;
    const Act* a = att + offset;
    const float* d = dp + offset;
    Act* out = ds + offset;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        dot += to_float(a[t2]) * d[t2];
    }
    dot = warp_sum(dot);
    for (int t2 = lane; t2 < T; t2 += 32) {
        out[t2] = from_float<Act>(t2 <= t ? to_float(a[t2]) * (d[t2] - dot) : 0.0f);
    }
}

}  // namespace

size_t attention_scratch_bytes(int T, int NH, size_t act_size) {
    PLW_CHECK(T > 0 && NH > 0, "attention_scratch_bytes: bad shape T=" << T << " NH=" << NH);
    PLW_CHECK(act_size == 2 || act_size == 4,
              "attention_scratch_bytes: act_size must be 2 (bf16) or 4 (f32), got " << act_size);
    const size_t elems = static_cast<size_t>(NH) * static_cast<size_t>(T) * static_cast<size_t>(T);
    return act_size == sizeof(float) ? elems * sizeof(float)
                                     : ds_offset(elems) + elems * sizeof(uint16_t);
}

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT

namespace {

using detail::lt_matmul_batched;
using detail::LtBatch;
using detail::LtOperand;
using detail::LtTypes;

int row_blocks(int64_t rows) {
    return static_cast<int>(ceil_div<int64_t>(rows, kRowThreads / 32));
}

void check_shape(const char* what, int B, int T, int C, int NH) {
    PLW_CHECK(B >= 0 && T > 0 && C > 0 && NH > 0 && C % NH == 0,
              what << ": bad shape B=" << B << " T=" << T << " C=" << C << " NH=" << NH
                   << " (C must be a multiple of NH)");
    PLW_CHECK(static_cast<int64_t>(NH) * T <= INT32_MAX / 2,
              what << ": shape too large T=" << T << " NH=" << NH
                   << " (NH * T rows of att per batch row must fit in 32 bits)");
}

// cuBLASLt is column-major: a head's row-major (T, hs) slice with row stride ld (q, k, v: 3C;
// out, dout: C) is, in the same memory, a column-major (hs, T) matrix with leading dimension
// ld, X(d, t) = x[t, d]; a head's row-major (T, T) att/S/dP/dS is a column-major (T, T)
// matrix A(t2, t) = att[t, t2] with ld T. Each GEMM below is written on those views, batched
// over the heads (strides hs for the channel slices, T*T for the (T, T) ones).
template <typename Act>
LtOperand head_view(const Act* x, int64_t ld, int hs, int T) {
    return LtOperand{x, LtTypes<Act>::kData, uint64_t(hs), uint64_t(T), ld};
}
template <typename Act>
LtOperand square_view(const Act* x, cudaDataType_t type, int T) {
    return LtOperand{x, type, uint64_t(T), uint64_t(T), T};
}

template <typename Act>
void forward_impl(Act* out, Act* att, const Act* qkv, const int32_t* segments, int B, int T,
                  int C, int NH) {
    check_shape("attention_forward", B, T, C, NH);
    if (B == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && att != nullptr && qkv != nullptr,
              "attention_forward: null device pointer");
    const int hs = C / NH;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int64_t TT = static_cast<int64_t>(T) * T;
    const int64_t C1 = C;
    const int64_t C3 = 3 * C1;
    constexpr cudaDataType_t kAct = LtTypes<Act>::kData;
    constexpr cublasComputeType_t kCompute = LtTypes<Act>::kCompute;
    constexpr bool kF32 = sizeof(Act) == sizeof(float);

    // f32: S goes straight into att (softmax in place); bf16: into the f32 scratch.
    ScratchBuffer scratch(kF32 ? 0 : static_cast<size_t>(NH) * static_cast<size_t>(TT) *
                                         sizeof(float));
    const int rows = NH * T;
    for (int b = 0; b < B; ++b) {
        const Act* q = qkv + static_cast<int64_t>(b) * T * C3;
        const Act* k = q + C1;
        const Act* v = q + 2 * C1;
        Act* att_b = att + static_cast<int64_t>(b) * NH * TT;
        float* s = kF32 ? reinterpret_cast<float*>(att_b) : static_cast<float*>(scratch.data());

        // S^T-view (T, T) = scale * K-view^T (T, hs) . Q-view (hs, T):
        //   D(t2, t) = scale * sum_d k[t2, d] q[t, d] = S[t, t2]
        lt_matmul_batched("attention scores", kCompute, CUBLAS_OP_T, head_view(k, C3, hs, T),
                          CUBLAS_OP_N, head_view(q, C3, hs, T), s, CUDA_R_32F, uint64_t(T),
                          uint64_t(T), T, scale, 0.0f, LtBatch{NH, hs, hs, TT});

        softmax_forward_kernel<Act><<<row_blocks(rows), kRowThreads>>>(
            att_b, s, segments != nullptr ? segments + static_cast<int64_t>(b) * T : nullptr,
            rows, T);
        PLW_CUDA_CHECK_LAUNCH("softmax_forward_kernel");

        // out-view (hs, T) = V-view (hs, T) . att-view (T, T):
        //   D(d, t) = sum_t2 v[t2, d] att[t, t2] = out[t, d]
        Act* out_b = out + static_cast<int64_t>(b) * T * C1;
        lt_matmul_batched("attention att.v", kCompute, CUBLAS_OP_N, head_view(v, C3, hs, T),
                          CUBLAS_OP_N, square_view(att_b, kAct, T), out_b, kAct, uint64_t(hs),
                          uint64_t(T), C1, 1.0f, 0.0f, LtBatch{NH, hs, TT, hs});
    }
}

template <typename Act>
void backward_impl(Act* dqkv, const Act* dout, const Act* qkv, const Act* att, int B, int T,
                   int C, int NH) {
    check_shape("attention_backward", B, T, C, NH);
    if (B == 0) {
        return;
    }
    PLW_CHECK(dqkv != nullptr && dout != nullptr && qkv != nullptr && att != nullptr,
              "attention_backward: null device pointer");
    const int hs = C / NH;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int64_t TT = static_cast<int64_t>(T) * T;
    const int64_t C1 = C;
    const int64_t C3 = 3 * C1;
    constexpr cudaDataType_t kAct = LtTypes<Act>::kData;
    constexpr cublasComputeType_t kCompute = LtTypes<Act>::kCompute;
    constexpr bool kF32 = sizeof(Act) == sizeof(float);

    // dP (f32) then, for bf16, dS (Act); for f32 dS overwrites dP.
    const size_t elems = static_cast<size_t>(NH) * static_cast<size_t>(TT);
    ScratchBuffer scratch(attention_scratch_bytes(T, NH, sizeof(Act)));
    float* dp = static_cast<float*>(scratch.data());
    Act* ds = kF32 ? reinterpret_cast<Act*>(dp)
                   : reinterpret_cast<Act*>(static_cast<char*>(scratch.data()) + ds_offset(elems));
    const int rows = NH * T;
    for (int b = 0; b < B; ++b) {
        const Act* q = qkv + static_cast<int64_t>(b) * T * C3;
        const Act* k = q + C1;
        const Act* v = q + 2 * C1;
        const Act* dout_b = dout + static_cast<int64_t>(b) * T * C1;
        const Act* att_b = att + static_cast<int64_t>(b) * NH * TT;
        Act* dq = dqkv + static_cast<int64_t>(b) * T * C3;
        Act* dk = dq + C1;
        Act* dv = dq + 2 * C1;

        // dV-view (hs, T) += dout-view (hs, T) . att-view^T (T, T):
        //   D(d, t2) += sum_t dout[t, d] att[t, t2] = dv[t2, d]
        lt_matmul_batched("attention dv", kCompute, CUBLAS_OP_N, head_view(dout_b, C1, hs, T),
                          CUBLAS_OP_T, square_view(att_b, kAct, T), dv, kAct, uint64_t(hs),
                          uint64_t(T), C3, 1.0f, 1.0f, LtBatch{NH, hs, TT, hs});

        // dP^T-view (T, T) = V-view^T (T, hs) . dout-view (hs, T):
        //   D(t2, t) = sum_d v[t2, d] dout[t, d] = dP[t, t2]
        lt_matmul_batched("attention dp", kCompute, CUBLAS_OP_T, head_view(v, C3, hs, T),
                          CUBLAS_OP_N, head_view(dout_b, C1, hs, T), dp, CUDA_R_32F,
                          uint64_t(T), uint64_t(T), T, 1.0f, 0.0f, LtBatch{NH, hs, hs, TT});

        softmax_backward_kernel<Act><<<row_blocks(rows), kRowThreads>>>(ds, dp, att_b, rows, T);
        PLW_CUDA_CHECK_LAUNCH("softmax_backward_kernel");

        // dQ-view (hs, T) += scale * K-view (hs, T) . dS-view (T, T):
        //   D(d, t) += scale * sum_t2 k[t2, d] dS[t, t2] = dq[t, d]
        lt_matmul_batched("attention dq", kCompute, CUBLAS_OP_N, head_view(k, C3, hs, T),
                          CUBLAS_OP_N, square_view(ds, kAct, T), dq, kAct, uint64_t(hs),
                          uint64_t(T), C3, scale, 1.0f, LtBatch{NH, hs, TT, hs});

        // dK-view (hs, T) += scale * Q-view (hs, T) . dS-view^T (T, T):
        //   D(d, t2) += scale * sum_t q[t, d] dS[t, t2] = dk[t2, d]
        lt_matmul_batched("attention dk", kCompute, CUBLAS_OP_N, head_view(q, C3, hs, T),
                          CUBLAS_OP_T, square_view(ds, kAct, T), dk, kAct, uint64_t(hs),
                          uint64_t(T), C3, scale, 1.0f, LtBatch{NH, hs, TT, hs});
    }
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// attention.h

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH) {
    forward_impl(out, att, qkv, segments, B, T, C, NH);
}

void attention_forward(bf16* out, bf16* att, const bf16* qkv, const int32_t* segments, int B,
                       int T, int C, int NH) {
    forward_impl(raw(out), raw(att), raw(qkv), segments, B, T, C, NH);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH) {
    (void)segments;  // the mask is att's zeros (see the file comment)
    backward_impl(dqkv, dout, qkv, att, B, T, C, NH);
}

void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* att,
                        const int32_t* segments, int B, int T, int C, int NH) {
    (void)segments;
    backward_impl(raw(dqkv), raw(dout), raw(qkv), raw(att), B, T, C, NH);
}

#else  // no cuBLASLt: the backend reports itself unavailable, and these throw if reached

void attention_forward(float*, float*, const float*, const int32_t*, int, int, int, int) {
    detail::no_cublaslt("attention_forward", __FILE__, __LINE__);
}

void attention_forward(bf16*, bf16*, const bf16*, const int32_t*, int, int, int, int) {
    detail::no_cublaslt("attention_forward", __FILE__, __LINE__);
}

void attention_backward(float*, const float*, const float*, const float*, const int32_t*, int,
                        int, int, int) {
    detail::no_cublaslt("attention_backward", __FILE__, __LINE__);
}

void attention_backward(bf16*, const bf16*, const bf16*, const bf16*, const int32_t*, int, int,
                        int, int) {
    detail::no_cublaslt("attention_backward", __FILE__, __LINE__);
}

#endif

}  // namespace plw::cuda
