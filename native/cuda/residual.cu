// Residual connection, the CUDA twin of native/cpu/residual.h (the reference: same names,
// arguments and math).
//   forward:  out = a + b
//   backward: da += dout; db += dout
// Elementwise, grid-stride over packs of 4 floats when every pointer is 16-byte aligned (the
// n % 4 tail elements go to the first threads of the grid), else one float per thread.
// No __restrict__: out may alias a or b (in-place residual), and da may even be db (each
// thread then adds dout to it twice, in order; dout is read once, so it must not alias
// da or db). Memory-bound:
// forward 12 bytes per element, backward 20 (dout once, da and db read-modify-write);
// ~90% of bandwidth expected.
#include "residual.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::is_aligned;
using detail::Pack;

// ----------------------------------------------------------------------------
// CUDA kernels

template <int VEC>
__global__ void residual_forward_kernel(float* out, const float* a, const float* b, int64_t n) {
    using P = Pack<float, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P x = reinterpret_cast<const P*>(a)[i];
        const P y = reinterpret_cast<const P*>(b)[i];
        P r;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r.v[j] = x.v[j] + y.v[j];
        }
        reinterpret_cast<P*>(out)[i] = r;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        out[tail] = a[tail] + b[tail];
    }
}

template <int VEC>
__global__ void residual_backward_kernel(float* da, float* db, const float* dout, int64_t n) {
    using P = Pack<float, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P g = reinterpret_cast<const P*>(dout)[i];
        P x = reinterpret_cast<const P*>(da)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            x.v[j] += g.v[j];
        }
        reinterpret_cast<P*>(da)[i] = x;
        P y = reinterpret_cast<const P*>(db)[i];  // after da's store: da may be db
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            y.v[j] += g.v[j];
        }
        reinterpret_cast<P*>(db)[i] = y;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        const float g = dout[tail];
        da[tail] += g;
        db[tail] += g;
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

int grid_for(int64_t packs) {
    return static_cast<int>(
        std::max<int64_t>(1, std::min(ceil_div<int64_t>(packs, kThreads), kMaxBlocks)));
}

}  // namespace

// ----------------------------------------------------------------------------
// residual.h

void residual_forward(float* out, const float* a, const float* b, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && a != nullptr && b != nullptr,
              "residual_forward: null device pointer");
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(out, 16) && is_aligned(a, 16) && is_aligned(b, 16)) {
        residual_forward_kernel<4><<<grid_for(count / 4), kThreads>>>(out, a, b, count);
    } else {
        residual_forward_kernel<1><<<grid_for(count), kThreads>>>(out, a, b, count);
    }
    PLW_CUDA_CHECK_LAUNCH("residual_forward_kernel");
}

void residual_backward(float* da, float* db, const float* dout, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(da != nullptr && db != nullptr && dout != nullptr,
              "residual_backward: null device pointer");
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(da, 16) && is_aligned(db, 16) && is_aligned(dout, 16)) {
        residual_backward_kernel<4><<<grid_for(count / 4), kThreads>>>(da, db, dout, count);
    } else {
        residual_backward_kernel<1><<<grid_for(count), kThreads>>>(da, db, dout, count);
    }
    PLW_CUDA_CHECK_LAUNCH("residual_backward_kernel");
}

}  // namespace plw::cuda
