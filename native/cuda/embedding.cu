// Token + position embedding, the CUDA twin of native/cpu/embedding.h (the reference).
//
// Shapes: N = rows (B*T flattened), C = channels.
//   out[n, :] = wte[tokens[n], :] + wpe[positions[n], :]
//   or, without a position table (wpe == nullptr, Llama family), out[n, :] = wte[tokens[n], :]
//   (positions may then be nullptr; in the backward dwpe == nullptr skips the positions).
// Ids are validated by the caller first (find_out_of_range).
//
// out (and dout in the backward) is f32 or bf16 (mixed precision); the tables wte, wpe and
// their gradients are f32 master copies in both. bf16 out: the sum is f32, rounded once (to
// nearest even); bf16 dout is widened exactly and summed in f32 as below.
//
// Forward: one thread per 16 bytes of out (4 floats, or 8 bf16 from two float4 of each
// table) when C is a multiple of that and the pointers are 16-byte aligned, else one per
// channel: reads 2 * N * C floats (N * C without a position table), writes N * C values;
// memory-bound, ~90% of bandwidth expected (random rows of wte are whole 16-byte-aligned
// lines).
//
// Backward, deterministic (no float atomics), for ids = tokens into dwte and then (with a
// position table) ids = positions into dwpe:
//   1. CUB radix sort of the pairs (id, row), stable: equal ids keep increasing row order.
//   2. One block per sorted position; the block that starts a run of equal ids owns that id
//      and, for each channel, computes dw[id, c] = ((dw[id, c] + dout[r0, c]) + dout[r1, c]) + ...
//      over the run's rows in increasing order: the CPU's order of additions, so results
//      match the CPU reference bit for bit (bf16 dout: the CPU's sums of the widened
//      values). Traffic: one read of dout and one read-modify-write of the touched rows
//      of dw; the sort is small (N keys).
//   A run of many equal ids (a pad token, or one position across the batch) is summed by
//   its block serially: up to N dependent adds per channel, still microseconds at N = 16k.
#include "embedding.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cub/device/device_radix_sort.cuh>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::from_float;
using detail::is_aligned;
using detail::to_float;

// ----------------------------------------------------------------------------
// CUDA kernels

// grid-stride over N * C / VEC packs of VEC channels. T: float or raw bf16 bits (uint16_t);
// VEC * sizeof(T) == 16 needs C % VEC == 0 and 16-byte aligned out, wte and wpe.
// POS: add wpe[positions[n]] (false: no position table, wpe and positions are not read).
template <typename T, int VEC, bool POS>
__global__ void embedding_forward_kernel(T* out,                     // (N, C)
                                         const int32_t* tokens,      // (N)
                                         const int32_t* positions,   // (N) or null (!POS)
                                         const float* wte,           // (V, C)
                                         const float* wpe,           // (maxT, C) or null (!POS)
                                         int N, int C) {
    using P = detail::Pack<T, VEC>;
    constexpr int kLoad = VEC < 4 ? VEC : 4;  // table loads of at most 16 bytes
    using F = detail::Pack<float, kLoad>;
    const int64_t packs_per_row = C / VEC;
    const int64_t total = static_cast<int64_t>(N) * packs_per_row;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += stride) {
        const int64_t n = idx / packs_per_row;
        const int64_t c = (idx - n * packs_per_row) * VEC;
        const F* t = reinterpret_cast<const F*>(wte + static_cast<int64_t>(tokens[n]) * C + c);
        F tv[VEC / kLoad];
#pragma unroll
        for (int k = 0; k < VEC / kLoad; ++k) {
            tv[k] = t[k];
        }
        P o;
        if constexpr (POS) {
            const F* p =
                reinterpret_cast<const F*>(wpe + static_cast<int64_t>(positions[n]) * C + c);
            F pv[VEC / kLoad];
#pragma unroll
            for (int k = 0; k < VEC / kLoad; ++k) {
                pv[k] = p[k];
            }
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                o.v[j] = from_float<T>(tv[j / kLoad].v[j % kLoad] + pv[j / kLoad].v[j % kLoad]);
            }
        } else {
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                o.v[j] = from_float<T>(tv[j / kLoad].v[j % kLoad]);
            }
        }
        *reinterpret_cast<P*>(out + n * C + c) = o;
    }
}

__global__ void iota_kernel(int32_t* out, int N) {
    const int stride = gridDim.x * blockDim.x;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < N; i += stride) {
        out[i] = i;
    }
}

// grid: N blocks, one per sorted position. The block at the start of a run of equal ids
// adds the run's rows of dout, in increasing row order, into dw[id].
template <typename T>
__global__ void accumulate_sorted_rows_kernel(float* dw,              // (rows of ids, C)
                                              const T* dout,          // (N, C)
                                              const int32_t* ids,     // (N) sorted
                                              const int32_t* rows,    // (N) row of each id
                                              int N, int C) {
    const int start = blockIdx.x;
    const int32_t id = ids[start];
    if ((start > 0 && ids[start - 1] == id) || id < 0) {
        return;  // not the start of a run (uniform across the block); id < 0: invalid
    }
    // End of the run: the first position with a larger id (ids are sorted).
    int lo = start + 1;
    int hi = N;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (ids[mid] <= id) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    const int end = lo;
    float* dw_row = dw + static_cast<int64_t>(id) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float acc = dw_row[c];
#pragma unroll 4
        for (int j = start; j < end; ++j) {
            acc += to_float(dout[static_cast<int64_t>(rows[j]) * C + c]);
        }
        dw_row[c] = acc;
    }
}

// *first = min(*first, i) over i with ids[i] outside [0, limit).
__global__ void find_out_of_range_kernel(unsigned long long* first, const int32_t* ids, int64_t n,
                                         int32_t limit) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const int32_t id = ids[i];
        if (id < 0 || id >= limit) {
            atomicMin(first, static_cast<unsigned long long>(i));
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

int grid_for(int64_t work_items) { return detail::grid_for(work_items, kThreads, kMaxBlocks); }

size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

// dw[ids[n], :] += dout[n, :] for every n, deterministically (see the file comment).
template <typename T>
void accumulate_rows_by_id(float* dw, const T* dout, const int32_t* ids, int N, int C) {
    size_t sort_bytes = 0;
    PLW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, ids,
                                                   static_cast<int32_t*>(nullptr),
                                                   static_cast<const int32_t*>(nullptr),
                                                   static_cast<int32_t*>(nullptr), N));
    const size_t ids_bytes = align256(static_cast<size_t>(N) * sizeof(int32_t));
    ScratchBuffer scratch(3 * ids_bytes + align256(sort_bytes));
    char* base = static_cast<char*>(scratch.data());
    int32_t* sorted_ids = reinterpret_cast<int32_t*>(base);
    int32_t* rows = reinterpret_cast<int32_t*>(base + ids_bytes);
    int32_t* sorted_rows = reinterpret_cast<int32_t*>(base + 2 * ids_bytes);
    void* sort_temp = base + 3 * ids_bytes;

    iota_kernel<<<grid_for(N), kThreads>>>(rows, N);
    PLW_CUDA_CHECK_LAUNCH("iota_kernel");
    PLW_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, ids, sorted_ids, rows,
                                                   sorted_rows, N));
    const int threads = std::min(kThreads, ceil_div(C, 32) * 32);
    accumulate_sorted_rows_kernel<T><<<N, threads>>>(dw, dout, sorted_ids, sorted_rows, N, C);
    PLW_CUDA_CHECK_LAUNCH("accumulate_sorted_rows_kernel");
}

template <typename T>
void forward(T* out, const int32_t* tokens, const int32_t* positions, const float* wte,
             const float* wpe, int N, int C) {
    PLW_CHECK(N >= 0 && C >= 0, "embedding_forward: bad shape N=" << N << " C=" << C);
    if (N == 0 || C == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && tokens != nullptr && wte != nullptr &&
                  (wpe == nullptr || positions != nullptr),
              "embedding_forward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // 4 floats or 8 bf16 of out
    const bool wide = C % kVec == 0 && is_aligned(out, 16) && is_aligned(wte, 16) &&
                      (wpe == nullptr || is_aligned(wpe, 16));
    const int64_t total = static_cast<int64_t>(N) * C;
    if (wpe != nullptr && wide) {
        embedding_forward_kernel<T, kVec, true><<<grid_for(total / kVec), kThreads>>>(
            out, tokens, positions, wte, wpe, N, C);
    } else if (wpe != nullptr) {
        embedding_forward_kernel<T, 1, true><<<grid_for(total), kThreads>>>(
            out, tokens, positions, wte, wpe, N, C);
    } else if (wide) {
        embedding_forward_kernel<T, kVec, false><<<grid_for(total / kVec), kThreads>>>(
            out, tokens, positions, wte, wpe, N, C);
    } else {
        embedding_forward_kernel<T, 1, false><<<grid_for(total), kThreads>>>(
            out, tokens, positions, wte, wpe, N, C);
    }
    PLW_CUDA_CHECK_LAUNCH("embedding_forward_kernel");
}

template <typename T>
void backward(float* dwte, float* dwpe, const T* dout, const int32_t* tokens,
              const int32_t* positions, int N, int C) {
    PLW_CHECK(N >= 0 && C >= 0, "embedding_backward: bad shape N=" << N << " C=" << C);
    if (N == 0 || C == 0) {
        return;
    }
    PLW_CHECK(dwte != nullptr && dout != nullptr && tokens != nullptr &&
                  (dwpe == nullptr || positions != nullptr),
              "embedding_backward: null device pointer");
    accumulate_rows_by_id(dwte, dout, tokens, N, C);
    if (dwpe != nullptr) {
        accumulate_rows_by_id(dwpe, dout, positions, N, C);
    }
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// embedding.h

void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C) {
    forward(out, tokens, positions, wte, wpe, N, C);
}

void embedding_forward(bf16* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C) {
    forward(raw(out), tokens, positions, wte, wpe, N, C);
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C) {
    backward(dwte, dwpe, dout, tokens, positions, N, C);
}

void embedding_backward(float* dwte, float* dwpe, const bf16* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C) {
    backward(dwte, dwpe, raw(dout), tokens, positions, N, C);
}

int64_t find_out_of_range(const int32_t* ids, int64_t n, int32_t limit) {
    PLW_CHECK(n >= 0, "find_out_of_range: n must be >= 0, got " << n);
    if (n == 0) {
        return -1;
    }
    PLW_CHECK(ids != nullptr, "find_out_of_range: null device pointer");
    ScratchBuffer first(sizeof(unsigned long long));
    auto* first_d = static_cast<unsigned long long*>(first.data());
    PLW_CUDA_CHECK(cudaMemset(first_d, 0xff, sizeof(unsigned long long)));  // ULLONG_MAX: none
    find_out_of_range_kernel<<<grid_for(n), kThreads>>>(first_d, ids, n, limit);
    PLW_CUDA_CHECK_LAUNCH("find_out_of_range_kernel");
    unsigned long long host = 0;
    PLW_CUDA_CHECK(cudaMemcpy(&host, first_d, sizeof host, cudaMemcpyDeviceToHost));
    return host == ~0ull ? -1 : static_cast<int64_t>(host);
}

}  // namespace plw::cuda
