// LayerNorm, the CUDA twin of native/cpu/layernorm.h (the reference: same names, arguments
// and math).
//
// Shapes: N = rows (B*T), C = channels.
//   mean[n] = sum_c x[n,c] / C;  rstd[n] = 1 / sqrt(sum_c (x[n,c] - mean[n])^2 / C + 1e-5)
//   out[n,c] = (x[n,c] - mean[n]) * rstd[n] * weight[c] + bias[c]
// Backward, with xhat = (x - mean) * rstd and dxhat = weight * dout:
//   dinp[n,c]  += (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat)) * rstd
//   dweight[c] += sum_n dout[n,c] * xhat[n,c];   dbias[c] += sum_n dout[n,c]
// All statistics in f32; the variance is two-pass (the mean first, then the squared
// deviations from it). mean and rstd may be null in the forward (inference): not written.
//
// Forward: one warp per row, 8 rows per block; float4 accesses when C % 4 == 0 and the
// pointers are 16-byte aligned. The row is read three times (sum, squared deviations,
// output); the second and third reads hit L1/L2, so DRAM sees 4 bytes read and 4 written
// per element plus the small weight/bias: memory-bound, ~80% of bandwidth expected.
//
// Backward, deterministic (no float atomics):
//   1. layernorm_backward_kernel: one block per chunk of kBackwardChunkRows rows; each thread
//      owns the same channels in every row (ITEMS packs of VEC), so it accumulates its
//      channels' dweight/dbias in registers over the chunk's rows in increasing order. The
//      two row sums of dinp's formula are one block reduction per row (warp butterflies,
//      then the warp totals added in warp order by every thread). dinp is updated in the
//      same pass. Each block writes its partial dweight/dbias to a scratch row.
//   2. column_sum_accumulate (column_sum.cuh) sums the partial rows in chunk order and adds
//      the totals into dweight and dbias.
//   Traffic: read dout and inp, read-modify-write dinp (16 bytes per element) plus the
//   partials (8 * C bytes per 32 rows, written and read once: 1/32 of that): memory-bound,
//   ~70-80% of bandwidth expected (one block barrier per row, hidden by several resident
//   blocks per SM). Its largest variant (C > 8192: 8 float4 packs per thread) spills
//   registers: correct, slower. C is at most 16384 (4096 when C % 4 != 0 or unaligned).
#include "layernorm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "column_sum.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::is_aligned;
using detail::Pack;
using detail::warp_sum;

constexpr float kEps = 1e-5f;
constexpr int kForwardThreads = 256;       // 8 warps: 8 rows per block
constexpr int kBackwardChunkRows = 32;     // rows per block in the backward
constexpr int kBackwardMaxThreads = 512;
constexpr int kBackwardMaxItems = 8;

// ----------------------------------------------------------------------------
// CUDA kernels

// grid: ceil(N / 8) blocks of 8 warps, one row per warp. VEC = 4 needs C % 4 == 0 and
// 16-byte aligned pointers. mean and rstd may be null (then not written).
template <int VEC>
__global__ void __launch_bounds__(kForwardThreads)
    layernorm_forward_kernel(float* out,           // (N, C)
                             float* mean,          // (N) or null
                             float* rstd,          // (N) or null
                             const float* inp,     // (N, C)
                             const float* weight,  // (C)
                             const float* bias,    // (C)
                             int N, int C) {
    using P = Pack<float, VEC>;
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (kForwardThreads / 32) + (threadIdx.x >> 5);
    if (row >= N) {
        return;  // the whole warp
    }
    const int packs = C / VEC;
    const P* x = reinterpret_cast<const P*>(inp + static_cast<int64_t>(row) * C);

    float sum = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const P v = x[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            sum += v.v[j];
        }
    }
    const float m = warp_sum(sum) / static_cast<float>(C);

    float sq = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const P v = x[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float d = v.v[j] - m;
            sq += d * d;
        }
    }
    const float s = 1.0f / sqrtf(warp_sum(sq) / static_cast<float>(C) + kEps);

    const P* w = reinterpret_cast<const P*>(weight);
    const P* b = reinterpret_cast<const P*>(bias);
    P* o = reinterpret_cast<P*>(out + static_cast<int64_t>(row) * C);
    for (int i = lane; i < packs; i += 32) {
        const P v = x[i];
        const P wv = w[i];
        const P bv = b[i];
        P r;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r.v[j] = (v.v[j] - m) * s * wv.v[j] + bv.v[j];
        }
        o[i] = r;
    }
    if (lane == 0) {
        if (mean != nullptr) {
            mean[row] = m;
        }
        if (rstd != nullptr) {
            rstd[row] = s;
        }
    }
}

// grid: ceil(N / kBackwardChunkRows) blocks; block: a multiple of 32 threads (<= 512) with
// ITEMS * blockDim.x * VEC >= C. Thread t owns packs t, t + blockDim.x, ... of every row.
// partials (chunks, 2C): row b = [dweight partial (C) | dbias partial (C)] of block b.
template <int VEC, int ITEMS>
__global__ void __launch_bounds__(kBackwardMaxThreads)
    layernorm_backward_kernel(float* dinp,            // (N, C), +=
                              float* partials,        // (chunks, 2C)
                              const float* dout,      // (N, C)
                              const float* inp,       // (N, C)
                              const float* weight,    // (C)
                              const float* mean,      // (N)
                              const float* rstd,      // (N)
                              int N, int C) {
    using P = Pack<float, VEC>;
    __shared__ float2 row_sums[2][32];  // double-buffered: one barrier per row
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int packs = C / VEC;
    const float inv_c = 1.0f / static_cast<float>(C);
    const int r0 = blockIdx.x * kBackwardChunkRows;
    const int r1 = min(N, r0 + kBackwardChunkRows);

    P w[ITEMS];
    P dw[ITEMS];
    P db[ITEMS];
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        w[k] = i < packs ? reinterpret_cast<const P*>(weight)[i] : P{};
        dw[k] = P{};
        db[k] = P{};
    }

    for (int r = r0; r < r1; ++r) {
        const float m = mean[r];
        const float s = rstd[r];
        const int64_t offset = static_cast<int64_t>(r) * C;
        const P* g_row = reinterpret_cast<const P*>(dout + offset);
        const P* x_row = reinterpret_cast<const P*>(inp + offset);
        P* d_row = reinterpret_cast<P*>(dinp + offset);
        P g[ITEMS];
        P x[ITEMS];
        P d[ITEMS];
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < packs) {
                g[k] = g_row[i];
                x[k] = x_row[i];
                d[k] = d_row[i];
            } else {
                g[k] = P{};
                x[k] = P{};
                d[k] = P{};
            }
        }
        // Out-of-range packs have g = 0 and w = 0: they add exact zeros below.
        float sum_dxhat = 0.0f;
        float sum_dxhat_xhat = 0.0f;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float xhat = (x[k].v[j] - m) * s;
                const float dxhat = w[k].v[j] * g[k].v[j];
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * xhat;
                dw[k].v[j] += g[k].v[j] * xhat;
                db[k].v[j] += g[k].v[j];
            }
        }
        sum_dxhat = warp_sum(sum_dxhat);
        sum_dxhat_xhat = warp_sum(sum_dxhat_xhat);
        float2* sums = row_sums[r & 1];
        if (lane == 0) {
            sums[warp] = make_float2(sum_dxhat, sum_dxhat_xhat);
        }
        __syncthreads();
        float total_dxhat = 0.0f;
        float total_dxhat_xhat = 0.0f;
        for (int v = 0; v < warps; ++v) {  // same order in every thread
            const float2 t = sums[v];
            total_dxhat += t.x;
            total_dxhat_xhat += t.y;
        }
        const float mean_dxhat = total_dxhat * inv_c;
        const float mean_dxhat_xhat = total_dxhat_xhat * inv_c;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < packs) {
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    const float xhat = (x[k].v[j] - m) * s;
                    const float dxhat = w[k].v[j] * g[k].v[j];
                    d[k].v[j] += (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * s;
                }
                d_row[i] = d[k];
            }
        }
    }

    P* dw_out = reinterpret_cast<P*>(partials + static_cast<int64_t>(blockIdx.x) * 2 * C);
    P* db_out = reinterpret_cast<P*>(partials + static_cast<int64_t>(blockIdx.x) * 2 * C + C);
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < packs) {
            dw_out[i] = dw[k];
            db_out[i] = db[k];
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <int VEC>
void launch_backward(float* dinp, float* partials, const float* dout, const float* inp,
                     const float* weight, const float* mean, const float* rstd, int N, int C) {
    const int packs = C / VEC;
    const int threads = std::min(kBackwardMaxThreads, ceil_div(packs, 32) * 32);
    const int items = ceil_div(packs, threads);
    const int blocks = ceil_div(N, kBackwardChunkRows);
    if (items <= 1) {
        layernorm_backward_kernel<VEC, 1><<<blocks, threads>>>(dinp, partials, dout, inp, weight,
                                                               mean, rstd, N, C);
    } else if (items <= 2) {
        layernorm_backward_kernel<VEC, 2><<<blocks, threads>>>(dinp, partials, dout, inp, weight,
                                                               mean, rstd, N, C);
    } else if (items <= 4) {
        layernorm_backward_kernel<VEC, 4><<<blocks, threads>>>(dinp, partials, dout, inp, weight,
                                                               mean, rstd, N, C);
    } else {
        layernorm_backward_kernel<VEC, 8><<<blocks, threads>>>(dinp, partials, dout, inp, weight,
                                                               mean, rstd, N, C);
    }
    PLW_CUDA_CHECK_LAUNCH("layernorm_backward_kernel");
}

}  // namespace

// ----------------------------------------------------------------------------
// layernorm.h

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
    PLW_CHECK(N >= 0 && C > 0, "layernorm_forward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && inp != nullptr && weight != nullptr && bias != nullptr,
              "layernorm_forward: null device pointer");
    const bool vec4 = C % 4 == 0 && is_aligned(out, 16) && is_aligned(inp, 16) &&
                      is_aligned(weight, 16) && is_aligned(bias, 16);
    const int rows_per_block = kForwardThreads / 32;
    const int blocks = ceil_div(N, rows_per_block);
    if (vec4) {
        layernorm_forward_kernel<4><<<blocks, kForwardThreads>>>(out, mean, rstd, inp, weight,
                                                                 bias, N, C);
    } else {
        layernorm_forward_kernel<1><<<blocks, kForwardThreads>>>(out, mean, rstd, inp, weight,
                                                                 bias, N, C);
    }
    PLW_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
    PLW_CHECK(N >= 0 && C > 0, "layernorm_backward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dweight != nullptr && dbias != nullptr && dout != nullptr &&
                  inp != nullptr && weight != nullptr && mean != nullptr && rstd != nullptr,
              "layernorm_backward: null device pointer");
    const bool vec4 = C % 4 == 0 && is_aligned(dinp, 16) && is_aligned(dout, 16) &&
                      is_aligned(inp, 16) && is_aligned(weight, 16);
    const int vec = vec4 ? 4 : 1;
    PLW_CHECK(C <= kBackwardMaxItems * kBackwardMaxThreads * vec,
              "layernorm_backward: C=" << C << " is too large (at most "
                                       << kBackwardMaxItems * kBackwardMaxThreads * vec
                                       << (vec4 ? "" : " when C % 4 != 0 or unaligned") << ")");

    const int chunks = ceil_div(N, kBackwardChunkRows);
    ScratchBuffer scratch(sizeof(float) * 2 * static_cast<size_t>(C) *
                          static_cast<size_t>(chunks));
    float* partials = static_cast<float*>(scratch.data());
    if (vec4) {
        launch_backward<4>(dinp, partials, dout, inp, weight, mean, rstd, N, C);
    } else {
        launch_backward<1>(dinp, partials, dout, inp, weight, mean, rstd, N, C);
    }
    // partials is (chunks, 2C): dweight's half, then dbias's half, of every row
    detail::column_sum_accumulate(dweight, partials, chunks, C, 2 * static_cast<int64_t>(C));
    detail::column_sum_accumulate(dbias, partials + C, chunks, C, 2 * static_cast<int64_t>(C));
}

}  // namespace plw::cuda
