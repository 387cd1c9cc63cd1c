// RMSNorm, the CUDA twin of native/cpu/rmsnorm.h (the reference: same names, arguments and
// math).
//
// Shapes: N = rows, C = channels.
//   rstd[n] = 1 / sqrt(sum_c x[n,c]^2 / C + eps);   out[n,c] = (x[n,c] * rstd[n]) * weight[c]
// Backward, with xhat = x * rstd and dxhat = dout * weight:
//   dinp[n,c]  += (dxhat - xhat * sum_c(dxhat * xhat) / C) * rstd
//   dweight[c] += sum_n dout[n,c] * xhat[n,c]
// All in f32 as the reference (and HF). rstd may be null in the forward (inference).
//
// Activations (out, inp, dinp, dout) are f32 or bf16 (mixed precision), one templated kernel
// per pass; weight, rstd and dweight are always f32. bf16 values are widened exactly, all
// math is f32 as above, and each bf16 result is rounded once (to nearest even) when stored;
// dinp += reads the bf16, adds in f32 and rounds once.
//
// Rows are read in 16-byte packs (4 floats or 8 bf16) when C is a multiple of that and the
// pointers are 16-byte aligned, else one element at a time. A row is handled by a group of
// LANES lanes of a warp (4, 8, 16 or 32: the smallest that covers the row's packs, at most a
// warp), so short rows such as Qwen3's per-head q/k norm (C = head_dim = 64 or 128, N = tokens
// * heads) keep every lane busy: 128 bf16 channels are 16 packs, one per lane of a 16-lane
// group, two rows per warp. The row sums are xor butterflies inside the group (a fixed tree).
//
// Forward: groups of LANES lanes, 256 threads per block, one row per group; the row is read
// twice (sum of squares, then the output; the second read hits L1/L2), so DRAM sees one read
// and one write of it (4 + 4 bytes per element in f32, 2 + 2 in bf16) plus the small weight:
// memory-bound, ~80% of bandwidth expected.
//
// Backward, deterministic (no float atomics), in two modes chosen from C alone:
//   group mode (at most 32 packs per row: C <= 128 f32 or 256 bf16 wide, 32 scalar): a block
//     of 256 threads is G = 256 / LANES groups and takes a chunk of kGroupChunkRows rows;
//     group g takes rows g, g + G, ... of the chunk in increasing order, each lane one pack of
//     every row, accumulating its channels' dweight in registers. The row's sum is one
//     in-group butterfly (no barrier). At the end the groups' dweight rows meet in shared
//     memory and are added in group order into the block's partial row.
//   block mode (longer rows): layernorm_backward's scheme. One block per chunk of
//     kBlockChunkRows rows, a multiple of 32 threads (<= 512) on each row, thread t owning the
//     same packs (ITEMS of them) in every row; the row sum is a block reduction (warp
//     butterflies, then the warp totals in warp order); rows in increasing order. Each block
//     writes its dweight partial row.
//   Then column_sum_accumulate (column_sum.cuh) adds the partial rows in chunk order into
//   dweight. Traffic: read dout and inp, read-modify-write dinp (16 bytes per element in f32,
//   8 in bf16) plus 4 * C bytes of partials per chunk, written and read once (at most 1/32 of
//   the rows' bytes: bf16 in block mode): memory-bound, ~70-80% of bandwidth expected. Block
//   mode takes 16 rows per block (layernorm: 32) so that 4096 rows still fill 256 blocks. C is at most 16384 (4096 when C is
//   not a multiple of 4 in f32 or 8 in bf16, or a pointer is unaligned); the largest
//   block-mode variants (C > 8192) spill registers: correct, slower.
// The chunking and the groups depend on N, C and the alignment only, never on the device:
// the same inputs give the same bits on any GPU.
//
// The register helpers load_f32/store_f32/RowPack are shared with layernorm.cu (row_pack.cuh).
#include "rmsnorm.h"

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

constexpr int kForwardThreads = 256;
constexpr int kGroupThreads = 256;         // backward, group mode
constexpr int kGroupChunkRows = 64;        // rows per block, group mode (a multiple of 256 / 4)
constexpr int kGroupMaxPacks = 32;         // group mode up to one pack per lane of a warp
constexpr int kBlockChunkRows = 16;        // rows per block, block mode
constexpr int kBackwardMaxThreads = 512;   // block mode
constexpr int kBackwardMaxC = 16384;       // with 16-byte packs
constexpr int kBackwardMaxCScalar = 4096;  // one element per pack

// elements in a 16-byte pack of T: 4 floats or 8 bf16
template <typename T>
constexpr int kWide = 16 / static_cast<int>(sizeof(T));

// packs per thread at the largest C in block mode: 8 (f32 float4, scalar), 4 (bf16 x 8)
template <int VEC>
constexpr int kBackwardMaxItems =
    (VEC == 1 ? kBackwardMaxCScalar : kBackwardMaxC) / (kBackwardMaxThreads * VEC);

// Lanes per row: the smallest of 4, 8, 16, 32 that covers the row's packs (32 beyond).
int lanes_for(int packs) { return packs <= 4 ? 4 : packs <= 8 ? 8 : packs <= 16 ? 16 : 32; }


// The sum over an aligned group of LANES lanes of a warp (LANES a power of 2, <= 32): xor
// butterfly, every lane of the group gets the same total. Every lane of the warp must call
// it (full-mask shuffles), whether or not its group has a row.
template <int LANES>
__device__ __forceinline__ float group_sum(float v) {
#pragma unroll
    for (int offset = LANES / 2; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

// ----------------------------------------------------------------------------
// CUDA kernels

// grid: ceil(N / (256 / LANES)) blocks of 256 threads, one row per group of LANES lanes.
// VEC = kWide<T> needs C % VEC == 0 and 16-byte aligned pointers. rstd may be null.
template <typename T, int VEC, int LANES>
__global__ void __launch_bounds__(kForwardThreads)
    rmsnorm_forward_kernel(T* out,               // (N, C)
                           float* rstd,          // (N) or null
                           const T* inp,         // (N, C)
                           const float* weight,  // (C)
                           int N, int C, float eps) {
    using P = Pack<T, VEC>;
    const int lane = threadIdx.x % LANES;
    const int row = blockIdx.x * (kForwardThreads / LANES) + threadIdx.x / LANES;
    const bool valid = row < N;  // groups past the end still take part in the shuffles
    const int packs = C / VEC;
    const P* x = reinterpret_cast<const P*>(inp + static_cast<int64_t>(valid ? row : 0) * C);

    float ss = 0.0f;
    if (valid) {
        for (int i = lane; i < packs; i += LANES) {
            const P v = x[i];
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float f = to_float(v.v[j]);
                ss += f * f;
            }
        }
    }
    const float s = 1.0f / sqrtf(group_sum<LANES>(ss) / static_cast<float>(C) + eps);
    if (!valid) {
        return;  // after the last shuffle
    }

    P* o = reinterpret_cast<P*>(out + static_cast<int64_t>(row) * C);
    for (int i = lane; i < packs; i += LANES) {
        const P v = x[i];
        float wv[VEC];
        load_f32<VEC>(wv, weight, i);
        P r;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r.v[j] = from_float<T>((to_float(v.v[j]) * s) * wv[j]);
        }
        o[i] = r;
    }
    if (lane == 0 && rstd != nullptr) {
        rstd[row] = s;
    }
}

// LANES > 0 (group mode): grid ceil(N / chunk_rows) blocks of kGroupThreads threads, ITEMS 1,
//   LANES * VEC >= C; group g of LANES lanes takes rows g, g + G, ... of the block's chunk.
// LANES == 0 (block mode): grid ceil(N / chunk_rows) blocks; block: a multiple of 32 threads
//   (<= 512) with ITEMS * blockDim.x * VEC >= C, all of them on each row of the chunk in turn.
// Thread t owns packs lane, lane + span, ... of every row it sees (span = LANES or blockDim.x).
// partials (chunks, C): row b = the dweight partial of block b.
template <typename T, int VEC, int ITEMS, int LANES>
__global__ void __launch_bounds__(kBackwardMaxThreads)
    rmsnorm_backward_kernel(T* dinp,              // (N, C), +=
                            float* partials,      // (chunks, C)
                            const T* dout,        // (N, C)
                            const T* inp,         // (N, C)
                            const float* weight,  // (C)
                            const float* rstd,    // (N)
                            int N, int C, int chunk_rows) {
    using R = RowPack<T, VEC>;
    constexpr bool kGroups = LANES > 0;
    static_assert(!kGroups || ITEMS == 1, "group mode: one pack per lane");
    const int span = kGroups ? LANES : static_cast<int>(blockDim.x);  // threads per row
    const int lane = kGroups ? static_cast<int>(threadIdx.x) % span : static_cast<int>(threadIdx.x);
    const int group = kGroups ? static_cast<int>(threadIdx.x) / span : 0;
    const int groups = kGroups ? static_cast<int>(blockDim.x) / span : 1;
    const int packs = C / VEC;
    const int r0 = blockIdx.x * chunk_rows;
    // group mode: every group makes the same number of trips (full-warp shuffles), rows past N
    // masked; block mode: the trips end at N for the whole block.
    const int r_end = kGroups ? r0 + chunk_rows : min(N, r0 + chunk_rows);

    float w[ITEMS][VEC];
    float dw[ITEMS][VEC];
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = lane + k * span;
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
        }
    }

    int trip = 0;
    for (int r = r0 + group; r < r_end; r += groups, ++trip) {
        const bool valid = r < N;
        const float s = valid ? rstd[r] : 0.0f;
        const int64_t offset = static_cast<int64_t>(valid ? r : 0) * C;
        const T* g_row = dout + offset;
        const T* x_row = inp + offset;
        T* d_row = dinp + offset;
        R g[ITEMS];
        R x[ITEMS];
        R d[ITEMS];
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = lane + k * span;
            if (valid && i < packs) {
                g[k].load(g_row, i);
                x[k].load(x_row, i);
                d[k].load(d_row, i);
            } else {
                g[k].zero();
                x[k].zero();
                d[k].zero();
            }
        }
        // Out-of-range packs and masked rows have g = 0 and x = 0: they add exact zeros.
        float sum = 0.0f;
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float xhat = x[k].get(j) * s;
                sum += (g[k].get(j) * w[k][j]) * xhat;
                dw[k][j] += g[k].get(j) * xhat;
            }
        }
        float total;
        if constexpr (kGroups) {
            total = group_sum<LANES>(sum);
        } else {
            __shared__ float row_sums[2][32];  // double-buffered: one barrier per row
            const int warp = threadIdx.x >> 5;
            sum = warp_sum(sum);
            float* sums = row_sums[trip & 1];
            if ((threadIdx.x & 31) == 0) {
                sums[warp] = sum;
            }
            __syncthreads();
            total = 0.0f;
            const int warps = static_cast<int>(blockDim.x >> 5);
            for (int v = 0; v < warps; ++v) {  // same order in every thread
                total += sums[v];
            }
        }
        const float mean = total / static_cast<float>(C);
        if (valid) {
#pragma unroll
            for (int k = 0; k < ITEMS; ++k) {
                const int i = lane + k * span;
                if (i < packs) {
                    float nd[VEC];
#pragma unroll
                    for (int j = 0; j < VEC; ++j) {
                        const float xhat = x[k].get(j) * s;
                        nd[j] = d[k].get(j) + (g[k].get(j) * w[k][j] - xhat * mean) * s;
                    }
                    R::store(d_row, i, nd);
                }
            }
        }
    }

    float* part = partials + static_cast<int64_t>(blockIdx.x) * C;
    if constexpr (kGroups) {
        // (groups, C) with groups * C <= kGroupThreads * VEC: the groups' rows, then their sum
        // in group order.
        __shared__ float group_dw[kGroupThreads * 8];
        if (lane < packs) {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                group_dw[group * C + lane * VEC + j] = dw[0][j];
            }
        }
        __syncthreads();
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            float total = 0.0f;
            for (int q = 0; q < groups; ++q) {
                total += group_dw[q * C + c];
            }
            part[c] = total;
        }
    } else {
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = lane + k * span;
            if (i < packs) {
                store_f32<VEC>(part, i, dw[k]);
            }
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename T, int VEC>
void launch_forward(T* out, float* rstd, const T* inp, const float* weight, int N, int C,
                    float eps) {
    const int lanes = lanes_for(C / VEC);
    const int blocks = ceil_div(N, kForwardThreads / lanes);
    if (lanes == 4) {
        rmsnorm_forward_kernel<T, VEC, 4><<<blocks, kForwardThreads>>>(out, rstd, inp, weight, N,
                                                                       C, eps);
    } else if (lanes == 8) {
        rmsnorm_forward_kernel<T, VEC, 8><<<blocks, kForwardThreads>>>(out, rstd, inp, weight, N,
                                                                       C, eps);
    } else if (lanes == 16) {
        rmsnorm_forward_kernel<T, VEC, 16><<<blocks, kForwardThreads>>>(out, rstd, inp, weight, N,
                                                                        C, eps);
    } else {
        rmsnorm_forward_kernel<T, VEC, 32><<<blocks, kForwardThreads>>>(out, rstd, inp, weight, N,
                                                                        C, eps);
    }
    PLW_CUDA_CHECK_LAUNCH("rmsnorm_forward_kernel");
}

template <typename T>
void forward(T* out, float* rstd, const T* inp, const float* weight, int N, int C, float eps) {
    PLW_CHECK(N >= 0 && C > 0, "rmsnorm_forward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && inp != nullptr && weight != nullptr,
              "rmsnorm_forward: null device pointer");
    constexpr int kVec = kWide<T>;
    const bool wide =
        C % kVec == 0 && is_aligned(out, 16) && is_aligned(inp, 16) && is_aligned(weight, 16);
    if (wide) {
        launch_forward<T, kVec>(out, rstd, inp, weight, N, C, eps);
    } else {
        launch_forward<T, 1>(out, rstd, inp, weight, N, C, eps);
    }
}

// Rows per block of the backward: group mode for rows of at most kGroupMaxPacks packs.
int backward_chunk_rows(int packs) {
    return packs <= kGroupMaxPacks ? kGroupChunkRows : kBlockChunkRows;
}

template <typename T, int VEC>
void launch_backward(T* dinp, float* partials, const T* dout, const T* inp, const float* weight,
                     const float* rstd, int N, int C) {
    const int packs = C / VEC;
    const int chunk_rows = backward_chunk_rows(packs);
    const int blocks = ceil_div(N, chunk_rows);
    if (packs <= kGroupMaxPacks) {
        const int lanes = lanes_for(packs);
        if (lanes == 4) {
            rmsnorm_backward_kernel<T, VEC, 1, 4><<<blocks, kGroupThreads>>>(
                dinp, partials, dout, inp, weight, rstd, N, C, chunk_rows);
        } else if (lanes == 8) {
            rmsnorm_backward_kernel<T, VEC, 1, 8><<<blocks, kGroupThreads>>>(
                dinp, partials, dout, inp, weight, rstd, N, C, chunk_rows);
        } else if (lanes == 16) {
            rmsnorm_backward_kernel<T, VEC, 1, 16><<<blocks, kGroupThreads>>>(
                dinp, partials, dout, inp, weight, rstd, N, C, chunk_rows);
        } else {
            rmsnorm_backward_kernel<T, VEC, 1, 32><<<blocks, kGroupThreads>>>(
                dinp, partials, dout, inp, weight, rstd, N, C, chunk_rows);
        }
        PLW_CUDA_CHECK_LAUNCH("rmsnorm_backward_kernel");
        return;
    }
    const int threads = std::min(kBackwardMaxThreads, ceil_div(packs, 32) * 32);
    const int items = ceil_div(packs, threads);
    if (items <= 1) {
        rmsnorm_backward_kernel<T, VEC, 1, 0><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                   weight, rstd, N, C, chunk_rows);
    } else if (items <= 2) {
        rmsnorm_backward_kernel<T, VEC, 2, 0><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                   weight, rstd, N, C, chunk_rows);
    } else if (items <= 4) {
        rmsnorm_backward_kernel<T, VEC, 4, 0><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                   weight, rstd, N, C, chunk_rows);
    } else if constexpr (kBackwardMaxItems<VEC> >= 8) {  // else C is too large (checked)
        rmsnorm_backward_kernel<T, VEC, 8, 0><<<blocks, threads>>>(dinp, partials, dout, inp,
                                                                   weight, rstd, N, C, chunk_rows);
    }
    PLW_CUDA_CHECK_LAUNCH("rmsnorm_backward_kernel");
}

template <typename T>
void backward(T* dinp, float* dweight, const T* dout, const T* inp, const float* weight,
              const float* rstd, int N, int C) {
    PLW_CHECK(N >= 0 && C > 0, "rmsnorm_backward: bad shape N=" << N << " C=" << C);
    if (N == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dweight != nullptr && dout != nullptr && inp != nullptr &&
                  weight != nullptr && rstd != nullptr,
              "rmsnorm_backward: null device pointer");
    constexpr int kVec = kWide<T>;
    const bool wide = C % kVec == 0 && is_aligned(dinp, 16) && is_aligned(dout, 16) &&
                      is_aligned(inp, 16) && is_aligned(weight, 16);
    const int max_c = wide ? kBackwardMaxC : kBackwardMaxCScalar;
    const char* why = kVec == 4 ? " when C % 4 != 0 or unaligned" : " when C % 8 != 0 or unaligned";
    PLW_CHECK(C <= max_c, "rmsnorm_backward: C=" << C << " is too large (at most " << max_c
                                                 << (wide ? "" : why) << ")");

    const int chunks = ceil_div(N, backward_chunk_rows(C / (wide ? kVec : 1)));
    ScratchBuffer scratch(sizeof(float) * static_cast<size_t>(C) * static_cast<size_t>(chunks));
    float* partials = static_cast<float*>(scratch.data());
    if (wide) {
        launch_backward<T, kVec>(dinp, partials, dout, inp, weight, rstd, N, C);
    } else {
        launch_backward<T, 1>(dinp, partials, dout, inp, weight, rstd, N, C);
    }
    detail::column_sum_accumulate(dweight, partials, chunks, C, static_cast<int64_t>(C));
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// rmsnorm.h

void rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N, int C,
                     float eps) {
    forward(out, rstd, inp, weight, N, C, eps);
}

void rmsnorm_forward(bf16* out, float* rstd, const bf16* inp, const float* weight, int N, int C,
                     float eps) {
    forward(raw(out), rstd, raw(inp), weight, N, C, eps);
}

void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                      const float* weight, const float* rstd, int N, int C) {
    backward(dinp, dweight, dout, inp, weight, rstd, N, C);
}

void rmsnorm_backward(bf16* dinp, float* dweight, const bf16* dout, const bf16* inp,
                      const float* weight, const float* rstd, int N, int C) {
    backward(raw(dinp), dweight, raw(dout), raw(inp), weight, rstd, N, C);
}

}  // namespace plw::cuda
