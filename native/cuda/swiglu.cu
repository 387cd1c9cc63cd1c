// SwiGLU, out = silu(gate) * up, the CUDA twin of native/cpu/swiglu.h (the reference: same
// names, arguments and math, op for op).
//
// As in the reference, the sigmoid is formed from e = exp(-|g|) (never overflows; the
// argument clamped at -87.3 like the reference's exp_nonpositive):
//   s = sigmoid(g) = 1 / (1 + e) for g >= 0,  e / (1 + e) for g < 0;  q = 1 - s likewise
// which keeps full relative accuracy on both tails and stays finite for any finite g
// (g = +-100: silu = 100 and ~-1e-36, silu' = 1 and ~0).
//   forward:  out = (g * s) * up
//   backward: dgate += dout * up * (s * (1 + g * q));  dup += dout * (g * s)
// expf is within 2 ulp, so results match the reference to a few ulp (~1e-6 relative).
//
// Values are f32 or bf16 (mixed precision), one templated kernel per pass: bf16 inputs are
// widened exactly, the math is the f32 math above, and each bf16 result is rounded once (to
// nearest even) when stored; the backward's += reads the bf16, adds in f32, rounds once.
//
// Elementwise, grid-stride over 16-byte packs (4 floats or 8 bf16) when every pointer is
// 16-byte aligned (the n % 4 or n % 8 tail elements go to the first threads of the grid),
// else one element per thread. out may alias gate or up (each element is read before it is
// written by the same thread). Memory-bound: forward 12 bytes per element in f32 (6 in bf16),
// backward 28 (14): dout, gate, up read, dgate and dup read-modify-write; one expf and one
// division per element: ~90% of bandwidth expected.
#include "swiglu.h"

#include <cuda_runtime.h>

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

// exp(-|g|), clamped at -87.3 as the reference's exp_nonpositive is (below it the result
// would be subnormal); the comparison form keeps a NaN a NaN.
__device__ __forceinline__ float exp_neg_abs(float g) {
    const float x = g >= 0.0f ? -g : g;
    return expf(x < -87.3f ? -87.3f : x);
}

__device__ __forceinline__ float swiglu(float g, float u) {
    const float e = exp_neg_abs(g);
    const float s = (g >= 0.0f ? 1.0f : e) / (1.0f + e);
    return g * s * u;
}

// dgate and dup increments for one element
__device__ __forceinline__ void swiglu_grad(float d, float g, float u, float* dg, float* du) {
    const float e = exp_neg_abs(g);
    const float inv = 1.0f / (1.0f + e);
    const float s = (g >= 0.0f ? 1.0f : e) * inv;
    const float q = (g >= 0.0f ? e : 1.0f) * inv;
    *dg = d * u * (s * (1.0f + g * q));
    *du = d * (g * s);
}

// ----------------------------------------------------------------------------
// CUDA kernels

// grid-stride over n / VEC packs, then the n % VEC tail elements (VEC * sizeof(T) == 16
// needs 16-byte aligned pointers). T: float or raw bf16 bits (uint16_t).
template <typename T, int VEC>
__global__ void swiglu_forward_kernel(T* out, const T* gate, const T* up, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P g = reinterpret_cast<const P*>(gate)[i];
        const P u = reinterpret_cast<const P*>(up)[i];
        P o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            o.v[j] = from_float<T>(swiglu(to_float(g.v[j]), to_float(u.v[j])));
        }
        reinterpret_cast<P*>(out)[i] = o;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        out[tail] = from_float<T>(swiglu(to_float(gate[tail]), to_float(up[tail])));
    }
}

template <typename T, int VEC>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate,
                                       const T* up, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P d = reinterpret_cast<const P*>(dout)[i];
        const P g = reinterpret_cast<const P*>(gate)[i];
        const P u = reinterpret_cast<const P*>(up)[i];
        P dg = reinterpret_cast<const P*>(dgate)[i];
        P du = reinterpret_cast<const P*>(dup)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            float ig;
            float iu;
            swiglu_grad(to_float(d.v[j]), to_float(g.v[j]), to_float(u.v[j]), &ig, &iu);
            dg.v[j] = from_float<T>(to_float(dg.v[j]) + ig);
            du.v[j] = from_float<T>(to_float(du.v[j]) + iu);
        }
        reinterpret_cast<P*>(dgate)[i] = dg;
        reinterpret_cast<P*>(dup)[i] = du;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        float ig;
        float iu;
        swiglu_grad(to_float(dout[tail]), to_float(gate[tail]), to_float(up[tail]), &ig, &iu);
        dgate[tail] = from_float<T>(to_float(dgate[tail]) + ig);
        dup[tail] = from_float<T>(to_float(dup[tail]) + iu);
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

int grid_for(int64_t packs) { return detail::grid_for(packs, kThreads, kMaxBlocks); }

template <typename T>
void forward(T* out, const T* gate, const T* up, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && gate != nullptr && up != nullptr,
              "swiglu_forward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // 4 floats or 8 bf16
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(out, 16) && is_aligned(gate, 16) && is_aligned(up, 16)) {
        swiglu_forward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(out, gate, up, count);
    } else {
        swiglu_forward_kernel<T, 1><<<grid_for(count), kThreads>>>(out, gate, up, count);
    }
    PLW_CUDA_CHECK_LAUNCH("swiglu_forward_kernel");
}

template <typename T>
void backward(T* dgate, T* dup, const T* dout, const T* gate, const T* up, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(dgate != nullptr && dup != nullptr && dout != nullptr && gate != nullptr &&
                  up != nullptr,
              "swiglu_backward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(dgate, 16) && is_aligned(dup, 16) && is_aligned(dout, 16) &&
        is_aligned(gate, 16) && is_aligned(up, 16)) {
        swiglu_backward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(dgate, dup, dout,
                                                                              gate, up, count);
    } else {
        swiglu_backward_kernel<T, 1><<<grid_for(count), kThreads>>>(dgate, dup, dout, gate, up,
                                                                   count);
    }
    PLW_CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// swiglu.h

void swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
    forward(out, gate, up, n);
}

void swiglu_forward(bf16* out, const bf16* gate, const bf16* up, size_t n) {
    forward(raw(out), raw(gate), raw(up), n);
}

void swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                     const float* up, size_t n) {
    backward(dgate, dup, dout, gate, up, n);
}

void swiglu_backward(bf16* dgate, bf16* dup, const bf16* dout, const bf16* gate, const bf16* up,
                     size_t n) {
    backward(raw(dgate), raw(dup), raw(dout), raw(gate), raw(up), n);
}

}  // namespace plw::cuda
