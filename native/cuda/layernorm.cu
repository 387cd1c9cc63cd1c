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
// Activations (out, inp, dinp, dout) are f32 or bf16 (mixed precision), one templated kernel
// per pass; weight, bias, mean, rstd, dweight and dbias are always f32. bf16 values are
// widened exactly, all math is f32 as above, and each bf16 result is rounded once (to
// nearest even) when stored; dinp += reads the bf16, adds in f32 and rounds once.
//
// Forward: one warp per row, 8 rows per block; 16-byte accesses (4 floats or 8 bf16) when C
// is a multiple of that and the pointers are 16-byte aligned, else one element at a time.
// The row is read three times (sum, squared deviations, output); the second and third
// reads hit L1/L2, so DRAM sees one read and one write of the row (4 + 4 bytes per element
// in f32, 2 + 2 in bf16) plus the small weight/bias: memory-bound, ~80% of bandwidth
// expected.
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
//   Traffic: read dout and inp, read-modify-write dinp (16 bytes per element in f32, 8 in
//   bf16) plus the partials (8 * C bytes per 32 rows, written and read once): memory-bound,
//   ~70-80% of bandwidth expected (one block barrier per row, hidden by several resident
//   blocks per SM). A bf16 row's packs stay in registers as raw 16-byte words, unpacked on
//   each use (Pack16): half the registers of an f32 row. The largest
//   variants (C > 8192: 8 float4 or 4 bf16x8 packs per thread) spill registers: correct,
//   slower. C is at most 16384 (4096 when C is not a multiple of 4 in f32 or 8 in bf16, or
//   a pointer is unaligned).
#include "layernorm.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "column_sum.cuh"
#include "common.cuh"
#include "row_pack.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::from_float;
using detail::is_aligned;
using detail::Pack;
using detail::Pack16;
using detail::load_f32;
using detail::RowPack;
using detail::store_f32;
using detail::to_float;
using detail::warp_sum;

constexpr float kEps = 1e-5f;
constexpr int kForwardThreads = 256;       // 8 warps: 8 rows per block
constexpr int kBackwardChunkRows = 32;     // rows per block in the backward
constexpr int kBackwardMaxThreads = 512;
constexpr int kBackwardMaxC = 16384;       // with 16-byte packs
constexpr int kBackwardMaxCScalar = 4096;  // one element per pack

// elements in a 16-byte pack of T: 4 floats or 8 bf16
template <typename T>
constexpr int kWide = 16 / static_cast<int>(sizeof(T));

// packs per thread at the largest C: 8 (f32 float4, scalar), 4 (bf16 x 8)
template <int VEC>
constexpr int kBackwardMaxItems =
    (VEC == 1 ? kBackwardMaxCScalar : kBackwardMaxC) / (kBackwardMaxThreads * VEC);


// ----------------------------------------------------------------------------
// CUDA kernels

// grid: ceil(N / 8) blocks of 8 warps, one row per warp. VEC = kWide<T> needs C % VEC == 0
// and 16-byte aligned pointers. mean and rstd may be null (then not written).
template <typename T, int VEC>
__global__ void __launch_bounds__(kForwardThreads)
    layernorm_forward_kernel(T* out,               // (N, C)
                             float* mean,          // (N) or null
                             float* rstd,          // (N) or null
                             const T* inp,         // (N, C)
                             const float* weight,  // (C)
                             const float* bias,    // (C)
                             int N, int C) {
    using P = Pack<T, VEC>;
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
            sum += to_float(v.v[j]);
        }
    }
    const float m = warp_sum(sum) / static_cast<float>(C);

    float sq = 0.0f;
    for (int i = lane; i < packs; i += 32) {
        const P v = x[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float d = to_float(v.v[j]) - m;
            sq += d * d;
        }
    }
    const float s = 1.0f / sqrtf(warp_sum(sq) / static_cast<float>(C) + kEps);

    P* o = reinterpret_cast<P*>(out + static_cast<int64_t>(row) * C);
    for (int i = lane; i < packs; i += 32) {
        const P v = x[i];
        float wv[VEC];
        float bv[VEC];
        load_f32<VEC>(wv, weight, i);
        load_f32<VEC>(bv, bias, i);
        P r;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r.v[j] = from_float<T>((to_float(v.v[j]) - m) * s * wv[j] + bv[j]);
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
template <typename T, int VEC, int ITEMS>
__global__ void __launch_bounds__(kBackwardMaxThreads)
    layernorm_backward_kernel(T* dinp,                // (N, C), +=
                              float* partials,        // (chunks, 2C)
                              const T* dout,          // (N, C)
                              const T* inp,           // (N, C)
                              const float* weight,    // (C)
                              const float* mean,      // (N)
                              const float* rstd,      // (N)
                              int N, int C) {
    using R = RowPack<T, VEC>;
    __shared__ float2 row_sums[2][32];  // double-buffered: one barrier per row
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    const int packs = C / VEC;
    const float inv_c = 1.0f / static_cast<float>(C);
    const int r0 = blockIdx.x * kBackwardChunkRows;
    const int r1 = min(N, r0 + kBackwardChunkRows);

    float w[ITEMS][VEC];
    float dw[ITEMS][VEC];
    float db[ITEMS][VEC];
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < packs) {
            load_f32<VEC>(w[k], weight, i);
        } else {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                w[k][j] = 0.0f;
            }
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            dw[k][j] = 0.0f;
            db[k][j] = 0.0f;
        }
    }

    for (int r = r0; r < r1; ++r) {
        const float m = mean[r];
        const float s = rstd[r];
        const int64_t offset = static_cast<int64_t>(r) * C;
        const T* g_row = dout + offset;
        const T* x_row = inp + offset;
        T* d_row = dinp + offset;
        R g[ITEMS];
        R x[ITEMS];
        R d[ITEMS];
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < packs) {
                g[k].load(g_row, i);
                x[k].load(x_row, i);
                d[k].load(d_row, i);
            } else {
                g[k].zero();
                x[k].zero();
                d[k].zero();
            }
        }
        // Out-of-range packs have g = 0 and w = 0: they add exact zeros below.
        float sum_dxhat = 0.0f;
        float sum_dxhat_xhat = 0.0f;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float xhat = (x[k].get(j) - m) * s;
                const float dxhat = w[k][j] * g[k].get(j);
                sum_dxhat += dxhat;
                sum_dxhat_xhat += dxhat * xhat;
                dw[k][j] += g[k].get(j) * xhat;
                db[k][j] += g[k].get(j);
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
                float nd[VEC];
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    const float xhat = (x[k].get(j) - m) * s;
                    const float dxhat = w[k][j] * g[k].get(j);
                    nd[j] = d[k].get(j) + (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * s;
                }
                R::store(d_row, i, nd);
            }
        }
    }

    float* dw_out = partials + static_cast<int64_t>(blockIdx.x) * 2 * C;
    float* db_out = dw_out + C;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < packs) {
            store_f32<VEC>(dw_out, i, dw[k]);
            store_f32<VEC>(db_out, i, db[k]);
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename T, int VEC>
void launch_forward(T* out, float* mean, float* rstd, const T* inp, const float* weight,
                    const float* bias, int N, int C) {
    const int rows_per_block = kForwardThreads / 32;
    const int blocks = ceil_div(N, rows_per_block);
    layernorm_forward_kernel<T, VEC><<<blocks, kForwardThreads>>>(out, mean, rstd, inp, weight,
                                                                  bias, N, C);
    PLW_CUDA_CHECK_LAUNCH("layernorm_forward_kernel");
}

template <typename T>
void forward(T* out, float* mean, float* rstd, const T* inp, const float* weight,
             const float* bias, int N, int C) {
    PLW_CHECK(N >= 0 && C > 0, "layernorm_forward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && inp != nullptr && weight != nullptr && bias != nullptr,
              "layernorm_forward: null device pointer");
    constexpr int kVec = kWide<T>;
    const bool wide = C % kVec == 0 && is_aligned(out, 16) && is_aligned(inp, 16) &&
                      is_aligned(weight, 16) && is_aligned(bias, 16);
    if (wide) {
        launch_forward<T, kVec>(out, mean, rstd, inp, weight, bias, N, C);
    } else {
        launch_forward<T, 1>(out, mean, rstd, inp, weight, bias, N, C);
    }
}

template <typename T, int VEC>
void launch_backward(T* dinp, float* partials, const T* dout, const T* inp, const float* weight,
                     const float* mean, const float* rstd, int N, int C) {
    const int packs = C / VEC;
    const int threads = std::min(kBackwardMaxThreads, ceil_div(packs, 32) * 32);
    const int items = ceil_div(packs, threads);
    const int blocks = ceil_div(N, kBackwardChunkRows);
    if (items <= 1) {
        layernorm_backward_kernel<T, VEC, 1><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                  weight, mean, rstd, N, C);
    } else if (items <= 2) {
        layernorm_backward_kernel<T, VEC, 2><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                  weight, mean, rstd, N, C);
    } else if (items <= 4) {
        layernorm_backward_kernel<T, VEC, 4><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                  weight, mean, rstd, N, C);
    } else if constexpr (kBackwardMaxItems<VEC> >= 8) {  // else C is too large (checked)
        layernorm_backward_kernel<T, VEC, 8><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                  weight, mean, rstd, N, C);
    }
    PLW_CUDA_CHECK_LAUNCH("layernorm_backward_kernel");
}

template <typename T>
void backward(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
              const float* weight, const float* mean, const float* rstd, int N, int C) {
    PLW_CHECK(N >= 0 && C > 0, "layernorm_backward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dweight != nullptr && dbias != nullptr && dout != nullptr &&
                  inp != nullptr && weight != nullptr && mean != nullptr && rstd != nullptr,
              "layernorm_backward: null device pointer");
    constexpr int kVec = kWide<T>;
    const bool wide = C % kVec == 0 && is_aligned(dinp, 16) && is_aligned(dout, 16) &&
                      is_aligned(inp, 16) && is_aligned(weight, 16);
    const int max_c = wide ? kBackwardMaxC : kBackwardMaxCScalar;
    const char* why = kVec == 4 ? " when C % 4 != 0 or unaligned" : " when C % 8 != 0 or unaligned";
    PLW_CHECK(C <= max_c, "layernorm_backward: C=" << C << " is too large (at most " << max_c
                                                   << (wide ? "" : why) << ")");

    const int chunks = ceil_div(N, kBackwardChunkRows);
    ScratchBuffer scratch(sizeof(float) * 2 * static_cast<size_t>(C) *
                          static_cast<size_t>(chunks));
    float* partials = static_cast<float*>(scratch.data());
    if (wide) {
        launch_backward<T, kVec>(dinp, partials, dout, inp, weight, mean, rstd, N, C);
    } else {
        launch_backward<T, 1>(dinp, partials, dout, inp, weight, mean, rstd, N, C);
    }
    // partials is (chunks, 2C): dweight's half, then dbias's half, of every row
    detail::column_sum_accumulate(dweight, partials, chunks, C, 2 * static_cast<int64_t>(C));
    detail::column_sum_accumulate(dbias, partials + C, chunks, C, 2 * static_cast<int64_t>(C));
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// layernorm.h

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                       const float* weight, const float* bias, int N, int C) {
    forward(out, mean, rstd, inp, weight, bias, N, C);
}

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const float* weight,
                       const float* bias, int N, int C) {
    forward(raw(out), mean, rstd, raw(inp), weight, bias, N, C);
}

void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
    backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void layernorm_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout,
                        const bf16* inp, const float* weight, const float* mean,
                        const float* rstd, int N, int C) {
    backward(raw(dinp), dweight, dbias, raw(dout), raw(inp), weight, mean, rstd, N, C);
}

}  // namespace plw::cuda
