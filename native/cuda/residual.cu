// Residual connection, the CUDA twin of native/cpu/residual.h (the reference: same names,
// arguments and math).
//   forward:  out = a + b
//   backward: da += dout; db += dout
// Values are f32 or bf16 (mixed precision), one templated kernel per pass: bf16 values are
// widened exactly, added in f32 and rounded once (to nearest even) when stored; each +=
// into a bf16 gradient reads it, adds in f32 and rounds once.
// Elementwise, grid-stride over 16-byte packs (4 floats or 8 bf16) when every pointer is
// 16-byte aligned (the n % 4 or n % 8 tail elements go to the first threads of the grid),
// else one element per thread.
// No __restrict__: out may alias a or b (in-place residual), and da may even be db (each
// thread then adds dout to it twice, in order, rounding after each add in bf16; dout is
// read once, so it must not alias da or db). Memory-bound: forward 12 bytes per element in
// f32 (6 in bf16), backward 20 (10) (dout once, da and db read-modify-write); ~90% of
// bandwidth expected.
#include "residual.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"

namespace plw::cuda {

namespace {

using detail::from_float;
using detail::is_aligned;
using detail::Pack;
using detail::to_float;

// ----------------------------------------------------------------------------
// CUDA kernels

// T: float or raw bf16 bits (uint16_t); VEC * sizeof(T) == 16 needs 16-byte aligned pointers.
template <typename T, int VEC>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P x = reinterpret_cast<const P*>(a)[i];
        const P y = reinterpret_cast<const P*>(b)[i];
        P r;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r.v[j] = from_float<T>(to_float(x.v[j]) + to_float(y.v[j]));
        }
        reinterpret_cast<P*>(out)[i] = r;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        out[tail] = from_float<T>(to_float(a[tail]) + to_float(b[tail]));
    }
}

template <typename T, int VEC>
__global__ void residual_backward_kernel(T* da, T* db, const T* dout, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P g = reinterpret_cast<const P*>(dout)[i];
        P x = reinterpret_cast<const P*>(da)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            x.v[j] = from_float<T>(to_float(x.v[j]) + to_float(g.v[j]));
        }
        reinterpret_cast<P*>(da)[i] = x;
        P y = reinterpret_cast<const P*>(db)[i];  // after da's store: da may be db
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            y.v[j] = from_float<T>(to_float(y.v[j]) + to_float(g.v[j]));
        }
        reinterpret_cast<P*>(db)[i] = y;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        const float g = to_float(dout[tail]);
        da[tail] = from_float<T>(to_float(da[tail]) + g);
        db[tail] = from_float<T>(to_float(db[tail]) + g);
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

int grid_for(int64_t packs) { return detail::grid_for(packs, kThreads, kMaxBlocks); }

template <typename T>
void forward(T* out, const T* a, const T* b, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && a != nullptr && b != nullptr,
              "residual_forward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // 4 floats or 8 bf16
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(out, 16) && is_aligned(a, 16) && is_aligned(b, 16)) {
        residual_forward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(out, a, b, count);
    } else {
        residual_forward_kernel<T, 1><<<grid_for(count), kThreads>>>(out, a, b, count);
    }
    PLW_CUDA_CHECK_LAUNCH("residual_forward_kernel");
}

template <typename T>
void backward(T* da, T* db, const T* dout, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(da != nullptr && db != nullptr && dout != nullptr,
              "residual_backward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(da, 16) && is_aligned(db, 16) && is_aligned(dout, 16)) {
        residual_backward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(da, db, dout,
                                                                               count);
    } else {
        residual_backward_kernel<T, 1><<<grid_for(count), kThreads>>>(da, db, dout, count);
    }
    PLW_CUDA_CHECK_LAUNCH("residual_backward_kernel");
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// residual.h

void residual_forward(float* out, const float* a, const float* b, size_t n) {
    forward(out, a, b, n);
}

void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n) {
    forward(raw(out), raw(a), raw(b), n);
}

void residual_backward(float* da, float* db, const float* dout, size_t n) {
    backward(da, db, dout, n);
}

void residual_backward(bf16* da, bf16* db, const bf16* dout, size_t n) {
    backward(raw(da), raw(db), raw(dout), n);
}

}  // namespace plw::cuda
