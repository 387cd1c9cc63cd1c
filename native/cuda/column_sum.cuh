// Deterministic column sums of a row-major (rows, cols) matrix of f32 or bf16 (raw uint16_t
// bits), added into an f32 vector:
//   dst[c] += sum over r of src[r * ld + c]          (summed in f32)
// Used for bias gradients (linear.cu, f32 or bf16 dout) and for the per-chunk partials of
// LayerNorm's dweight/dbias (layernorm.cu). No float atomics: the rows are cut into fixed
// chunks of kColumnSumChunkRows (a function of `rows` only, never of the device), each chunk
// is summed by one block in a fixed order into a partial row of a scratch buffer, and a
// second launch sums the partials of each column in chunk order and adds the total into
// dst. Same inputs, same bits, on any GPU.
//
// column_sum_kernel, grid (ceil(cols / 32), chunks), block 256 = 8 warps: lane = column
// within a 32-column tile (a warp reads 32 contiguous elements of a row: 128 bytes of f32,
// 64 of bf16), warp w sums the rows w, w + 8, ... of the chunk in increasing order; the 8
// warp sums are then added in warp order. Memory-bound: one read of src (4 or 2 bytes per
// element) plus the f32 partials, 4 * cols * rows / kColumnSumChunkRows bytes written and
// read again (1/128 of an f32 src).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda::detail {

constexpr int kColumnSumThreads = 256;  // 8 warps
constexpr int kColumnSumChunkRows = 128;

// ACCUMULATE: dst[c] += the sum over all rows (gridDim.y must be 1);
// else: dst[blockIdx.y * cols + c] = the sum over chunk blockIdx.y.
// T: float, or uint16_t (raw bf16 bits, widened exactly to f32 before the add).
template <bool ACCUMULATE, typename T>
__global__ void __launch_bounds__(kColumnSumThreads)
    column_sum_kernel(float* dst,    // (cols) or (chunks, cols)
                      const T* src,  // (rows, ld)
                      int rows, int cols, int64_t ld, int chunk_rows) {
    constexpr int kWarps = kColumnSumThreads / 32;
    __shared__ float warp_sums[kWarps][32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int c = blockIdx.x * 32 + lane;
    const int r0 = blockIdx.y * chunk_rows;
    const int r1 = min(rows, r0 + chunk_rows);
    float acc = 0.0f;
    if (c < cols) {
#pragma unroll 4
        for (int r = r0 + warp; r < r1; r += kWarps) {
            acc += to_float(src[static_cast<int64_t>(r) * ld + c]);
        }
    }
    warp_sums[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && c < cols) {
        float sum = warp_sums[0][lane];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) {
            sum += warp_sums[w][lane];
        }
        if constexpr (ACCUMULATE) {
            dst[c] += sum;
        } else {
            dst[static_cast<int64_t>(blockIdx.y) * cols + c] = sum;
        }
    }
}

// dst (cols) += column sums of src (rows, ld), deterministically; one or two launches on the
// default stream. rows >= 0, cols >= 1, ld >= cols. T: float or uint16_t (raw bf16); the
// partials of the two-launch case are f32 whatever T is.
template <typename T>
void column_sum_accumulate(float* dst, const T* src, int rows, int cols, int64_t ld) {
    if (rows == 0) {
        return;
    }
    const int chunks = ceil_div(rows, kColumnSumChunkRows);
    const unsigned col_tiles = static_cast<unsigned>(ceil_div(cols, 32));
    if (chunks == 1) {
        column_sum_kernel<true, T><<<dim3(col_tiles, 1), kColumnSumThreads>>>(
            dst, src, rows, cols, ld, kColumnSumChunkRows);
        PLW_CUDA_CHECK_LAUNCH("column_sum_kernel");
        return;
    }
    PLW_CHECK(chunks <= 65535, "column sums: " << rows << " rows is too many");
    ScratchBuffer scratch(sizeof(float) * static_cast<size_t>(chunks) * static_cast<size_t>(cols));
    float* partials = static_cast<float*>(scratch.data());
    column_sum_kernel<false, T><<<dim3(col_tiles, static_cast<unsigned>(chunks)),
                                  kColumnSumThreads>>>(partials, src, rows, cols, ld,
                                                       kColumnSumChunkRows);
    PLW_CUDA_CHECK_LAUNCH("column_sum_kernel");
    column_sum_kernel<true, float><<<dim3(col_tiles, 1), kColumnSumThreads>>>(
        dst, partials, chunks, cols, cols, chunks);
    PLW_CUDA_CHECK_LAUNCH("column_sum_kernel");
}

}  // namespace plw::cuda::detail
