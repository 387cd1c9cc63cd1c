// Causal multi-head self-attention with packed-segment masks, the CUDA twin of
// native/cpu/attention.h (the reference: same names, arguments and math).
//
// Shapes: B = batch, T = time, C = channels, NH = heads, hs = C / NH; z = b * NH + h.
//   qkv (B, T, 3C): row (b, t) = [q (C) | k (C) | v (C)], head h at channels h*hs .. h*hs+hs
//   allowed(t, t2) = t2 <= t && (segments == null || segments[b, t2] == segments[b, t])
//   S[z, t, t2]   = scale * q[b, t, h] . k[b, t2, h]            scale = 1 / sqrt(hs)
//   att[z, t, t2] = softmax over allowed t2 of S, exactly 0 where not allowed
//   out[b, t, h*hs + d] = sum_t2 att[z, t, t2] * v[b, t2, h*hs + d]
// Backward (everything accumulates into dqkv):
//   dP[t, t2] = dout[b, t, h] . v[b, t2, h]
//   dS[t, t2] = scale * att[t, t2] * (dP[t, t2] - sum_t3 att[t, t3] * dP[t, t3])
//   dq[t]  += sum_t2 dS[t, t2] k[t2];  dk[t2] += sum_t dS[t, t2] q[t];
//   dv[t2] += sum_t att[t, t2] dout[t]
// The backward takes the mask from att's zeros (dS = 0 wherever att = 0), so it does not
// read segments.
//
// This is the straightforward version, correct and deterministic first; a fused
// flash-style kernel (scores, softmax and att.v per tile in on-chip memory, no (T, T)
// round trips through DRAM) is the next step.
//
// Kernels:
// - attention_gemm_kernel: one batched f32 GEMM for all five products, C[z] (=|+=)
//   alpha * A[z] . B[z], with the operands addressed by strides straight inside qkv, out,
//   dout, att and dqkv (no permutes). 64x64 output tile per block of 256 threads, each
//   thread a 4x4 register tile; k in steps of 16 through shared memory. Every output
//   element is summed by one thread over k in increasing order and written once:
//   deterministic, no atomics. Causal structure skips work: the (T, T) products compute
//   only the tiles on or below the diagonal, and the products over t2 (or t) stop at (or
//   start from) the diagonal tile; the terms skipped are exact zeros of att and dS.
//   FMA throughput bound: ~25-40% of the f32 (non-tensor) peak expected (H100 SXM: 67
//   TFLOP/s), no double buffering, scalar global loads (hs and T need no alignment).
// - softmax_forward_kernel / softmax_backward_kernel: one warp per (b, h, t) row, three
//   (two) passes over the row with f32 warp reductions; memory-bound.
// Costs per call (B*NH heads of T x T, hs channels): forward 2 GEMMs of ~B*NH*T*T*hs
// flops each (causal half) plus ~12 bytes per att element (S written, read, P written; att
// read again by att.v); backward 5 GEMMs of the same size plus ~16 bytes per att element.
// The backward needs a (T, T) scratch per head for dP/dS; it runs over groups of batch rows
// so that the scratch stays under kMaxScratchBytes (one batch row, NH * T * T floats, at
// least).
#include "attention.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::warp_max;
using detail::warp_sum;

constexpr int kTile = 64;          // output tile: kTile x kTile
constexpr int kTileK = 16;         // k step through shared memory
constexpr int kGemmThreads = 256;  // 16 x 16 threads, 4 x 4 outputs each
constexpr int kPad = 4;            // shared rows of kTile + 4 floats: fewer bank conflicts,
                                   // rows stay 16-byte aligned for the float4 reads
constexpr int kRowThreads = 256;   // softmax kernels: 8 warps, one row each
constexpr size_t kMaxScratchBytes = size_t(256) << 20;

static_assert(kGemmThreads * 4 == kTile * kTileK, "each thread loads 4 elements per operand");
static_assert(kTile == 16 * 4, "16 x 16 threads, 4 x 4 outputs each");

enum class Causal {
    kOutputLower,  // C is (T, T): only tiles with a column <= a row are computed
    kKUpToRow,     // A is att/dS (t, t2): terms with k = t2 > row are zero
    kKFromRow,     // A is att/dS transposed (t2, t): terms with k = t < row are zero
};

// C[z] (M, N) = alpha * A[z] (M, K) . B[z] (K, N)  (+ C[z] when accumulate), where for
// z = b * NH + h each operand starts at ptr + b * batch + h * head, and
//   A(i, k) = a[i * lda + k]  (A_KCONTIG)   or  a[k * lda + i]
//   B(k, j) = b[j * ldb + k]  (B_KCONTIG)   or  b[k * ldb + j]
//   C(i, j) = c[i * ldc + j]
struct GemmArgs {
    float* c;
    const float* a;
    const float* b;
    int64_t c_batch, c_head, ldc;
    int64_t a_batch, a_head, lda;
    int64_t b_batch, b_head, ldb;
    int M, N, K, NH;
    float alpha;
    bool accumulate;
};

// ----------------------------------------------------------------------------
// CUDA kernels

// grid: (ceil(M / 64) * ceil(N / 64), B * NH); block: 256.
template <bool A_KCONTIG, bool B_KCONTIG, Causal CAUSAL>
__global__ void __launch_bounds__(kGemmThreads) attention_gemm_kernel(GemmArgs g) {
    __shared__ __align__(16) float As[kTileK][kTile + kPad];  // As[k][i]
    __shared__ __align__(16) float Bs[kTileK][kTile + kPad];  // Bs[k][j]
    const int tiles_n = ceil_div(g.N, kTile);
    const int m0 = static_cast<int>(blockIdx.x) / tiles_n * kTile;
    const int n0 = static_cast<int>(blockIdx.x) % tiles_n * kTile;
    if (CAUSAL == Causal::kOutputLower && n0 > m0 + kTile - 1) {
        return;  // the whole tile is above the diagonal (uniform across the block)
    }
    const int zb = static_cast<int>(blockIdx.y) / g.NH;
    const int zh = static_cast<int>(blockIdx.y) % g.NH;
    const float* A = g.a + zb * g.a_batch + zh * g.a_head;
    const float* Bm = g.b + zb * g.b_batch + zh * g.b_head;
    float* Cm = g.c + zb * g.c_batch + zh * g.c_head;

    int k_begin = 0;
    int k_end = g.K;
    if (CAUSAL == Causal::kKUpToRow) {
        k_end = min(g.K, m0 + kTile);
    } else if (CAUSAL == Causal::kKFromRow) {
        k_begin = m0 / kTileK * kTileK;
    }

    const int tid = threadIdx.x;
    const int tx = tid % 16;  // output columns n0 + 4 tx ..
    const int ty = tid / 16;  // output rows m0 + 4 ty ..
    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            acc[r][c] = 0.0f;
        }
    }

    for (int k0 = k_begin; k0 < k_end; k0 += kTileK) {
        // Consecutive threads walk the operand's contiguous dimension (coalesced loads).
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int l = tid + r * kGemmThreads;
            const int ii = A_KCONTIG ? l / kTileK : l % kTile;
            const int kk = A_KCONTIG ? l % kTileK : l / kTile;
            const int gi = m0 + ii;
            const int gk = k0 + kk;
            float v = 0.0f;
            if (gi < g.M && gk < k_end) {
                v = A_KCONTIG ? A[gi * g.lda + gk] : A[gk * g.lda + gi];
            }
            As[kk][ii] = v;
        }
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int l = tid + r * kGemmThreads;
            const int jj = B_KCONTIG ? l / kTileK : l % kTile;
            const int kk = B_KCONTIG ? l % kTileK : l / kTile;
            const int gj = n0 + jj;
            const int gk = k0 + kk;
            float v = 0.0f;
            if (gj < g.N && gk < k_end) {
                v = B_KCONTIG ? Bm[gj * g.ldb + gk] : Bm[gk * g.ldb + gj];
            }
            Bs[kk][jj] = v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
            const float4 a4 = *reinterpret_cast<const float4*>(&As[kk][ty * 4]);
            const float4 b4 = *reinterpret_cast<const float4*>(&Bs[kk][tx * 4]);
            const float a[4] = {a4.x, a4.y, a4.z, a4.w};
            const float b[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
            for (int r = 0; r < 4; ++r) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
                }
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int gi = m0 + ty * 4 + r;
        if (gi >= g.M) {
            continue;
        }
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int gj = n0 + tx * 4 + c;
            if (gj < g.N) {
                float* p = Cm + gi * g.ldc + gj;
                const float v = g.alpha * acc[r][c];
                *p = g.accumulate ? *p + v : v;
            }
        }
    }
}

// One warp per row (z, t) of att (rows = B * NH * T). On entry the row holds S for
// t2 <= t (the rest is not read); on exit the probabilities, 0 where not allowed.
__global__ void __launch_bounds__(kRowThreads)
    softmax_forward_kernel(float* att,               // (B, NH, T, T)
                           const int32_t* segments,  // (B, T) or null
                           int rows, int NH, int T) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (kRowThreads / 32) + (threadIdx.x >> 5);
    if (row >= rows) {
        return;  // the whole warp
    }
    const int t = row % T;
    const int b = row / T / NH;
    float* p = att + static_cast<int64_t>(row) * T;
    const int32_t* seg = segments != nullptr ? segments + static_cast<int64_t>(b) * T : nullptr;
    const int32_t own = seg != nullptr ? seg[t] : 0;

    float mx = -INFINITY;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        if (seg == nullptr || seg[t2] == own) {
            mx = fmaxf(mx, p[t2]);
        }
    }
    mx = warp_max(mx);  // finite: t2 = t is always allowed
    float sum = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        if (seg == nullptr || seg[t2] == own) {
            sum += expf(p[t2] - mx);
        }
    }
    const float inv_sum = 1.0f / warp_sum(sum);  // sum >= 1 (the max's own term)
    for (int t2 = lane; t2 < T; t2 += 32) {
        const bool allowed = t2 <= t && (seg == nullptr || seg[t2] == own);
        p[t2] = allowed ? expf(p[t2] - mx) * inv_sum : 0.0f;
    }
}

// One warp per row (z, t). On entry ds holds dP for t2 <= t (the rest is not read); on exit
// dS = scale * att * (dP - sum_t3 att dP) for t2 <= t and 0 above the diagonal.
__global__ void __launch_bounds__(kRowThreads)
    softmax_backward_kernel(float* ds,         // (rows, T) dP in, dS out
                            const float* att,  // (rows, T)
                            int rows, int T, float scale) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (kRowThreads / 32) + (threadIdx.x >> 5);
    if (row >= rows) {
        return;
    }
    const int t = row % T;
    const int64_t offset = static_cast<int64_t>(row) * T;
    const float* p = att + offset;
    float* d = ds + offset;
    float dot = 0.0f;
    for (int t2 = lane; t2 <= t; t2 += 32) {
        dot += p[t2] * d[t2];
    }
    dot = warp_sum(dot);
    for (int t2 = lane; t2 < T; t2 += 32) {
        d[t2] = t2 <= t ? scale * p[t2] * (d[t2] - dot) : 0.0f;
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <bool A_KCONTIG, bool B_KCONTIG, Causal CAUSAL>
void launch_gemm(const GemmArgs& g, int batches) {
    const int64_t tiles = static_cast<int64_t>(ceil_div(g.M, kTile)) * ceil_div(g.N, kTile);
    const int64_t z = static_cast<int64_t>(batches) * g.NH;
    PLW_CHECK(tiles <= INT32_MAX && z <= 65535,
              "attention: too many tiles or heads (T=" << g.M << ", B*NH=" << z << ")");
    attention_gemm_kernel<A_KCONTIG, B_KCONTIG, CAUSAL>
        <<<dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(z)), kGemmThreads>>>(g);
    PLW_CUDA_CHECK_LAUNCH("attention_gemm_kernel");
}

int row_blocks(int64_t rows) {
    return static_cast<int>(ceil_div<int64_t>(rows, kRowThreads / 32));
}

void check_shape(const char* what, int B, int T, int C, int NH) {
    PLW_CHECK(B >= 0 && T > 0 && C > 0 && NH > 0 && C % NH == 0,
              what << ": bad shape B=" << B << " T=" << T << " C=" << C << " NH=" << NH
                   << " (C must be a multiple of NH)");
    PLW_CHECK(static_cast<int64_t>(B) * NH * T <= INT32_MAX,
              what << ": shape too large B=" << B << " T=" << T << " NH=" << NH
                   << " (B * NH * T rows of att must fit in 32 bits)");
}

}  // namespace

// ----------------------------------------------------------------------------
// attention.h

void attention_forward(float* out, float* att, const float* qkv, const int32_t* segments, int B,
                       int T, int C, int NH) {
    check_shape("attention_forward", B, T, C, NH);
    if (B == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && att != nullptr && qkv != nullptr,
              "attention_forward: null device pointer");
    const int hs = C / NH;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
    const int64_t TT = static_cast<int64_t>(T) * T;
    const int64_t C3 = 3 * static_cast<int64_t>(C);

    // S = scale * q . k^T into att (tiles on or below the diagonal)
    //   A(t, d) = q[b, t, h*hs + d], B(d, t2) = k[b, t2, h*hs + d], C(t, t2) = att[z, t, t2]
    GemmArgs s{};
    s.c = att;
    s.c_batch = NH * TT;
    s.c_head = TT;
    s.ldc = T;
    s.a = qkv;
    s.a_batch = T * C3;
    s.a_head = hs;
    s.lda = C3;
    s.b = qkv + C;
    s.b_batch = T * C3;
    s.b_head = hs;
    s.ldb = C3;
    s.M = T;
    s.N = T;
    s.K = hs;
    s.NH = NH;
    s.alpha = scale;
    s.accumulate = false;
    launch_gemm<true, true, Causal::kOutputLower>(s, B);

    const int rows = B * NH * T;
    softmax_forward_kernel<<<row_blocks(rows), kRowThreads>>>(att, segments, rows, NH, T);
    PLW_CUDA_CHECK_LAUNCH("softmax_forward_kernel");

    // out = att . v
    //   A(t, t2) = att[z, t, t2], B(t2, d) = v[b, t2, h*hs + d], C(t, d) = out[b, t, h*hs + d]
    GemmArgs o{};
    o.c = out;
    o.c_batch = T * static_cast<int64_t>(C);
    o.c_head = hs;
    o.ldc = C;
    o.a = att;
    o.a_batch = NH * TT;
    o.a_head = TT;
    o.lda = T;
    o.b = qkv + 2 * static_cast<int64_t>(C);
    o.b_batch = T * C3;
    o.b_head = hs;
    o.ldb = C3;
    o.M = T;
    o.N = hs;
    o.K = T;
    o.NH = NH;
    o.alpha = 1.0f;
    o.accumulate = false;
    launch_gemm<true, false, Causal::kKUpToRow>(o, B);
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                        const int32_t* segments, int B, int T, int C, int NH) {
    (void)segments;  // the mask is att's zeros (see the file comment)
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

    // dP/dS scratch for a group of batch rows: (group, NH, T, T)
    const size_t per_batch = sizeof(float) * static_cast<size_t>(NH) * static_cast<size_t>(TT);
    const size_t fit = std::max<size_t>(1, kMaxScratchBytes / per_batch);
    const int group = static_cast<int>(std::min<size_t>(static_cast<size_t>(B), fit));
    ScratchBuffer scratch(per_batch * static_cast<size_t>(group));
    float* ds = static_cast<float*>(scratch.data());

    for (int b0 = 0; b0 < B; b0 += group) {
        const int nb = std::min(group, B - b0);
        const float* qkv_b = qkv + b0 * T * C3;
        const float* dout_b = dout + b0 * T * C1;
        const float* att_b = att + b0 * NH * TT;
        float* dqkv_b = dqkv + b0 * T * C3;

        // dP = dout . v^T (tiles on or below the diagonal)
        //   A(t, d) = dout[b, t, h*hs + d], B(d, t2) = v[b, t2, h*hs + d], C = ds[z, t, t2]
        GemmArgs dp{};
        dp.c = ds;
        dp.c_batch = NH * TT;
        dp.c_head = TT;
        dp.ldc = T;
        dp.a = dout_b;
        dp.a_batch = T * C1;
        dp.a_head = hs;
        dp.lda = C1;
        dp.b = qkv_b + 2 * C1;
        dp.b_batch = T * C3;
        dp.b_head = hs;
        dp.ldb = C3;
        dp.M = T;
        dp.N = T;
        dp.K = hs;
        dp.NH = NH;
        dp.alpha = 1.0f;
        dp.accumulate = false;
        launch_gemm<true, true, Causal::kOutputLower>(dp, nb);

        const int rows = nb * NH * T;
        softmax_backward_kernel<<<row_blocks(rows), kRowThreads>>>(ds, att_b, rows, T, scale);
        PLW_CUDA_CHECK_LAUNCH("softmax_backward_kernel");

        // dq += dS . k
        //   A(t, t2) = ds[z, t, t2], B(t2, d) = k[b, t2, h*hs + d], C(t, d) = dq[b, t, h*hs + d]
        GemmArgs dq{};
        dq.c = dqkv_b;
        dq.c_batch = T * C3;
        dq.c_head = hs;
        dq.ldc = C3;
        dq.a = ds;
        dq.a_batch = NH * TT;
        dq.a_head = TT;
        dq.lda = T;
        dq.b = qkv_b + C1;
        dq.b_batch = T * C3;
        dq.b_head = hs;
        dq.ldb = C3;
        dq.M = T;
        dq.N = hs;
        dq.K = T;
        dq.NH = NH;
        dq.alpha = 1.0f;
        dq.accumulate = true;
        launch_gemm<true, false, Causal::kKUpToRow>(dq, nb);

        // dk += dS^T . q
        //   A(t2, t) = ds[z, t, t2], B(t, d) = q[b, t, h*hs + d], C(t2, d) = dk[b, t2, h*hs + d]
        GemmArgs dk = dq;
        dk.c = dqkv_b + C1;
        dk.b = qkv_b;
        launch_gemm<false, false, Causal::kKFromRow>(dk, nb);

        // dv += att^T . dout
        //   A(t2, t) = att[z, t, t2], B(t, d) = dout[b, t, h*hs + d], C(t2, d) = dv[b, t2, ..]
        GemmArgs dv = dq;
        dv.c = dqkv_b + 2 * C1;
        dv.a = att_b;
        dv.b = dout_b;
        dv.b_batch = T * C1;
        dv.ldb = C1;
        launch_gemm<false, false, Causal::kKFromRow>(dv, nb);
    }
}

}  // namespace plw::cuda
