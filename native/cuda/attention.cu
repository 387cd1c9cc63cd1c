// Causal multi-head self-attention with packed-segment masks and grouped-query attention,
// the CUDA twin of native/cpu/attention.h (the reference: same names, arguments and math),
// for f32 and bf16 activations (Act = float or bf16; one templated implementation).
//
// Shapes: B = batch, T = time, NH = query heads, NKV = key/value heads, hs = head size,
// n_rep = NH / NKV; query head h = j * n_rep + r reads KV head j; z = b * NH + h.
//   q (rows of q_stride): row (b, t), head h at channels h*hs .. h*hs+hs
//   k, v (rows of kv_stride): row (b, t), KV head j at channels j*hs .. j*hs+hs
//   allowed(t, t2) = t2 <= t && (segments == null || segments[b, t2] == segments[b, t])
//   S[z, t, t2]   = scale * q[b, t, h] . k[b, t2, j]            scale = 1 / sqrt(hs)
//   att[z, t, t2] = softmax over allowed t2 of S, exactly 0 where not allowed
//   out[b, t, h*hs + d] = sum_t2 att[z, t, t2] * v[b, t2, j*hs + d]      (out rows: NH*hs)
// Backward (everything accumulates into dq, dk, dv, which have q's, k's and v's strides):
//   dP[t, t2] = dout[b, t, h] . v[b, t2, j]
//   dS[t, t2] = att[t, t2] * (dP[t, t2] - sum_t3 att[t, t3] * dP[t, t3])
//   dq[t, h]  += scale * sum_t2 dS[t, t2] k[t2, j];  dk[t2, j] += scale * sum_t dS[t, t2] q[t, h]
//   dv[t2, j] += sum_t att[t, t2] dout[t, h]      (dk, dv: summed over the n_rep heads h of j)
// The backward takes the mask from att's zeros (dS = 0 wherever att = 0), so it does not
// read segments.
//
// The products are cuBLASLt GEMMs (lt_matmul.cuh), per batch row b, as strided batches of
// views straight into the tensors (no permutes). A KV head's channels sit at a constant
// stride of hs in the rows of k and v, but the query head h = j * n_rep + r is not a constant
// stride away from KV head j unless n_rep = 1; so each GEMM is one call per r in [0, n_rep),
// batched over the NKV KV heads j: query-side operands (q, out, dout, dq) start at head r
// with a stride of n_rep*hs, the (T, T) ones (S, att, dP, dS) at head r with a stride of
// n_rep*T*T, and the KV-side ones (k, v, dk, dv) at head 0 with a stride of hs. With n_rep = 1
// (GPT-2) that is one call batched over all NH heads. dk and dv accumulate the n_rep calls
// with beta = 1 in increasing r, on one stream: a fixed order, bitwise reproducible (for bf16
// each call rounds the running sum to bf16 once: n_rep roundings).
// Inputs are Act: f32 -> CUBLAS_COMPUTE_32F_FAST_TF32 (TF32 tensor cores: ~1e-3 relative, as
// linear.cu), bf16 -> CUBLAS_COMPUTE_32F (bf16 tensor cores, f32 accumulation). Per b:
//   forward   S (NH, T, T) f32 = scale * Q.K^T -> softmax_forward_kernel -> att (Act)
//             out (Act) = att . V
//   backward  dV += att^T . dout; dP (NH, T, T) f32 = dout . V^T
//             -> softmax_backward_kernel -> dS (Act); dQ += scale * dS . K;
//             dK += scale * dS^T . Q                      (all three beta = 1)
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
// Costs per call (B*NH query heads): each GEMM is 2 * T * T * hs flops per head, 2 in the forward
// and 4 in the backward, i.e. 2 * hs flops per att element per GEMM (128 at hs = 64); the
// DRAM traffic per att element is ~16 bytes forward (f32: S written and read, att written
// and read) or ~12 (bf16), ~28 bytes backward (f32) or ~18 (bf16). At ~20 flops per byte
// that is far below the tensor cores' ridge point (H100: ~150 TF32, ~300 bf16): the (T, T)
// round trips through DRAM, not the flops, bound this version. A fused flash-style kernel
// (scores, softmax and att . V per tile in on-chip memory, no (T, T) tensor in DRAM) is the
// next step once this one is proven on a GPU. Host side: 1 + 2 * n_rep (forward) and
// 1 + 4 * n_rep (backward) launches per batch row (the GEMMs reuse the cached heuristic
// answer, lt_matmul.cuh).
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

void check_shape(const char* what, int B, int T, int NH, int NKV, int hs, int q_stride,
                 int kv_stride) {
    PLW_CHECK(B >= 0 && T > 0 && NH > 0 && NKV > 0 && NH % NKV == 0 && hs > 0,
              what << ": bad shape B=" << B << " T=" << T << " NH=" << NH << " NKV=" << NKV
                   << " hs=" << hs << " (NH must be a multiple of NKV)");
    PLW_CHECK(static_cast<int64_t>(q_stride) >= static_cast<int64_t>(NH) * hs &&
                  static_cast<int64_t>(kv_stride) >= static_cast<int64_t>(NKV) * hs,
              what << ": row strides q_stride=" << q_stride << " kv_stride=" << kv_stride
                   << " shorter than the heads (NH*hs=" << static_cast<int64_t>(NH) * hs
                   << ", NKV*hs=" << static_cast<int64_t>(NKV) * hs << ")");
    PLW_CHECK(static_cast<int64_t>(NH) * T <= INT32_MAX / 2 &&
                  static_cast<int64_t>(NH) * hs <= INT32_MAX,
              what << ": shape too large T=" << T << " NH=" << NH << " hs=" << hs
                   << " (NH * T rows of att per batch row must fit in 32 bits)");
}

// cuBLASLt is column-major: a head's row-major (T, hs) slice with row stride ld (q: q_stride;
// k, v: kv_stride; out, dout: NH*hs) is, in the same memory, a column-major (hs, T) matrix
// with leading dimension ld, X(d, t) = x[t, d]; a head's row-major (T, T) att/S/dP/dS is a
// column-major (T, T) matrix A(t2, t) = att[t, t2] with ld T. Each GEMM below is written on
// those views; the batch runs over the KV heads j (see the file comment for the strides).
template <typename Act>
LtOperand head_view(const Act* x, int64_t ld, int hs, int T) {
    return LtOperand{x, LtTypes<Act>::kData, uint64_t(hs), uint64_t(T), ld};
}
template <typename Act>
LtOperand square_view(const Act* x, cudaDataType_t type, int T) {
    return LtOperand{x, type, uint64_t(T), uint64_t(T), T};
}

template <typename Act>
void forward_impl(Act* out, Act* att, const Act* q, const Act* k, const Act* v,
                  const int32_t* segments, int B, int T, int NH, int NKV, int hs, int q_stride,
                  int kv_stride) {
    check_shape("attention_forward", B, T, NH, NKV, hs, q_stride, kv_stride);
    if (B == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && att != nullptr && q != nullptr && k != nullptr && v != nullptr,
              "attention_forward: null device pointer");
    const int n_rep = NH / NKV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int64_t TT = static_cast<int64_t>(T) * T;
    const int64_t C = static_cast<int64_t>(NH) * hs;  // out's row
    const int64_t hs1 = hs;
    constexpr cudaDataType_t kAct = LtTypes<Act>::kData;
    constexpr cublasComputeType_t kCompute = LtTypes<Act>::kCompute;
    constexpr bool kF32 = sizeof(Act) == sizeof(float);

    // f32: S goes straight into att (softmax in place); bf16: into the f32 scratch.
    ScratchBuffer scratch(kF32 ? 0 : static_cast<size_t>(NH) * static_cast<size_t>(TT) *
                                         sizeof(float));
    const int rows = NH * T;
    for (int b = 0; b < B; ++b) {
        const Act* q_b = q + static_cast<int64_t>(b) * T * q_stride;
        const Act* k_b = k + static_cast<int64_t>(b) * T * kv_stride;
        const Act* v_b = v + static_cast<int64_t>(b) * T * kv_stride;
        Act* att_b = att + static_cast<int64_t>(b) * NH * TT;
        float* s = kF32 ? reinterpret_cast<float*>(att_b) : static_cast<float*>(scratch.data());

        // Query heads r, r + n_rep, ... (batch over their KV heads j):
        // S^T-view (T, T) = scale * K-view^T (T, hs) . Q-view (hs, T):
        //   D(t2, t) = scale * sum_d k[t2, j, d] q[t, h, d] = S[t, t2]
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention scores", kCompute, CUBLAS_OP_T,
                              head_view(k_b, kv_stride, hs, T), CUBLAS_OP_N,
                              head_view(q_b + r * hs1, q_stride, hs, T), s + r * TT, CUDA_R_32F,
                              uint64_t(T), uint64_t(T), T, scale, 0.0f,
                              LtBatch{NKV, hs1, n_rep * hs1, n_rep * TT});
        }

        softmax_forward_kernel<Act><<<row_blocks(rows), kRowThreads>>>(
            att_b, s, segments != nullptr ? segments + static_cast<int64_t>(b) * T : nullptr,
            rows, T);
        PLW_CUDA_CHECK_LAUNCH("softmax_forward_kernel");

        // out-view (hs, T) = V-view (hs, T) . att-view (T, T):
        //   D(d, t) = sum_t2 v[t2, j, d] att[t, t2] = out[t, h, d]
        Act* out_b = out + static_cast<int64_t>(b) * T * C;
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention att.v", kCompute, CUBLAS_OP_N,
                              head_view(v_b, kv_stride, hs, T), CUBLAS_OP_N,
                              square_view(att_b + r * TT, kAct, T), out_b + r * hs1, kAct,
                              uint64_t(hs), uint64_t(T), C, 1.0f, 0.0f,
                              LtBatch{NKV, hs1, n_rep * TT, n_rep * hs1});
        }
    }
}

template <typename Act>
void backward_impl(Act* dq, Act* dk, Act* dv, const Act* dout, const Act* q, const Act* k,
                   const Act* v, const Act* att, int B, int T, int NH, int NKV, int hs,
                   int q_stride, int kv_stride) {
    check_shape("attention_backward", B, T, NH, NKV, hs, q_stride, kv_stride);
    if (B == 0) {
        return;
    }
    PLW_CHECK(dq != nullptr && dk != nullptr && dv != nullptr && dout != nullptr &&
                  q != nullptr && k != nullptr && v != nullptr && att != nullptr,
              "attention_backward: null device pointer");
    const int n_rep = NH / NKV;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int64_t TT = static_cast<int64_t>(T) * T;
    const int64_t C = static_cast<int64_t>(NH) * hs;  // dout's row
    const int64_t hs1 = hs;
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
        const int64_t q0 = static_cast<int64_t>(b) * T * q_stride;
        const int64_t kv0 = static_cast<int64_t>(b) * T * kv_stride;
        const Act* q_b = q + q0;
        const Act* k_b = k + kv0;
        const Act* v_b = v + kv0;
        Act* dq_b = dq + q0;
        Act* dk_b = dk + kv0;
        Act* dv_b = dv + kv0;
        const Act* dout_b = dout + static_cast<int64_t>(b) * T * C;
        const Act* att_b = att + static_cast<int64_t>(b) * NH * TT;

        // dV-view (hs, T) += dout-view (hs, T) . att-view^T (T, T), r = 0, 1, ... in order:
        //   D(d, t2) += sum_t dout[t, h, d] att[t, t2] = dv[t2, j, d]
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention dv", kCompute, CUBLAS_OP_N,
                              head_view(dout_b + r * hs1, C, hs, T), CUBLAS_OP_T,
                              square_view(att_b + r * TT, kAct, T), dv_b, kAct, uint64_t(hs),
                              uint64_t(T), kv_stride, 1.0f, 1.0f,
                              LtBatch{NKV, n_rep * hs1, n_rep * TT, hs1});
        }

        // dP^T-view (T, T) = V-view^T (T, hs) . dout-view (hs, T):
        //   D(t2, t) = sum_d v[t2, j, d] dout[t, h, d] = dP[t, t2]
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention dp", kCompute, CUBLAS_OP_T,
                              head_view(v_b, kv_stride, hs, T), CUBLAS_OP_N,
                              head_view(dout_b + r * hs1, C, hs, T), dp + r * TT, CUDA_R_32F,
                              uint64_t(T), uint64_t(T), T, 1.0f, 0.0f,
                              LtBatch{NKV, hs1, n_rep * hs1, n_rep * TT});
        }

        softmax_backward_kernel<Act><<<row_blocks(rows), kRowThreads>>>(ds, dp, att_b, rows, T);
        PLW_CUDA_CHECK_LAUNCH("softmax_backward_kernel");

        // dQ-view (hs, T) += scale * K-view (hs, T) . dS-view (T, T):
        //   D(d, t) += scale * sum_t2 k[t2, j, d] dS[t, t2] = dq[t, h, d]
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention dq", kCompute, CUBLAS_OP_N,
                              head_view(k_b, kv_stride, hs, T), CUBLAS_OP_N,
                              square_view(ds + r * TT, kAct, T), dq_b + r * hs1, kAct,
                              uint64_t(hs), uint64_t(T), q_stride, scale, 1.0f,
                              LtBatch{NKV, hs1, n_rep * TT, n_rep * hs1});
        }

        // dK-view (hs, T) += scale * Q-view (hs, T) . dS-view^T (T, T), r = 0, 1, ... in order:
        //   D(d, t2) += scale * sum_t q[t, h, d] dS[t, t2] = dk[t2, j, d]
        for (int r = 0; r < n_rep; ++r) {
            lt_matmul_batched("attention dk", kCompute, CUBLAS_OP_N,
                              head_view(q_b + r * hs1, q_stride, hs, T), CUBLAS_OP_T,
                              square_view(ds + r * TT, kAct, T), dk_b, kAct, uint64_t(hs),
                              uint64_t(T), kv_stride, scale, 1.0f,
                              LtBatch{NKV, n_rep * hs1, n_rep * TT, hs1});
        }
    }
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// attention.h

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                       int q_stride, int kv_stride) {
    forward_impl(out, att, q, k, v, segments, B, T, NH, NKV, hs, q_stride, kv_stride);
}

void attention_forward(bf16* out, bf16* att, const bf16* q, const bf16* k, const bf16* v,
                       const int32_t* segments, int B, int T, int NH, int NKV, int hs,
                       int q_stride, int kv_stride) {
    forward_impl(raw(out), raw(att), raw(q), raw(k), raw(v), segments, B, T, NH, NKV, hs,
                 q_stride, kv_stride);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* att, const int32_t* segments,
                        int B, int T, int NH, int NKV, int hs, int q_stride, int kv_stride) {
    (void)segments;  // the mask is att's zeros (see the file comment)
    backward_impl(dq, dk, dv, dout, q, k, v, att, B, T, NH, NKV, hs, q_stride, kv_stride);
}

void attention_backward(bf16* dq, bf16* dk, bf16* dv, const bf16* dout, const bf16* q,
                        const bf16* k, const bf16* v, const bf16* att, const int32_t* segments,
                        int B, int T, int NH, int NKV, int hs, int q_stride, int kv_stride) {
    (void)segments;
    backward_impl(raw(dq), raw(dk), raw(dv), raw(dout), raw(q), raw(k), raw(v), raw(att), B, T,
                  NH, NKV, hs, q_stride, kv_stride);
}

#else  // no cuBLASLt: the backend reports itself unavailable, and these throw if reached

void attention_forward(float*, float*, const float*, const float*, const float*, const int32_t*,
                       int, int, int, int, int, int, int) {
    detail::no_cublaslt("attention_forward", __FILE__, __LINE__);
}

void attention_forward(bf16*, bf16*, const bf16*, const bf16*, const bf16*, const int32_t*, int,
                       int, int, int, int, int, int) {
    detail::no_cublaslt("attention_forward", __FILE__, __LINE__);
}

void attention_backward(float*, float*, float*, const float*, const float*, const float*,
                        const float*, const float*, const int32_t*, int, int, int, int, int, int,
                        int) {
    detail::no_cublaslt("attention_backward", __FILE__, __LINE__);
}

void attention_backward(bf16*, bf16*, bf16*, const bf16*, const bf16*, const bf16*, const bf16*,
                        const bf16*, const int32_t*, int, int, int, int, int, int, int) {
    detail::no_cublaslt("attention_backward", __FILE__, __LINE__);
}

#endif

}  // namespace plw::cuda
