// GELU (tanh approximation, GPT-2's "gelu_new"), the CUDA twin of native/cpu/gelu.h (the
// reference: same names, arguments and math, op for op).
//
//   u = sqrt(2/pi) * (x + 0.044715 x^3),  gelu(x) = 0.5 x (1 + tanh(u)) = x * sigmoid(2u)
// As in the reference, the sigmoid is formed from e = exp(-|2u|) (never overflows; the
// argument clamped at -87.3 like the reference's exp_nonpositive):
//   p = sigmoid(2u) = 1 / (1 + e) for u >= 0,  e / (1 + e) for u < 0;  q = 1 - p likewise
// which keeps full relative accuracy on both tails, where 0.5 (1 + tanhf(u)) loses every
// digit as tanh -> -1 (x < -3). The derivative is the exact one of this formula:
//   gelu'(x) = p + x p q 2 u'(x),  u'(x) = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
//   backward: dinp += gelu'(inp) * dout
// expf is within 2 ulp, so results match the reference to a few ulp of the exponential's
// argument (~1e-6 relative; the argument's own rounding, magnified by |2u| on the negative
// tail, is common to both).
//
// Values are f32 or bf16 (mixed precision), one templated kernel per pass: bf16 inputs are
// widened exactly, the math is the f32 math above, and each bf16 result is rounded once (to
// nearest even) when stored; the backward's dinp += reads the bf16, adds in f32, rounds once.
//
// Elementwise, grid-stride over 16-byte packs (4 floats or 8 bf16) when every pointer is
// 16-byte aligned (the n % 4 or n % 8 tail elements go to the first threads of the grid),
// else one element per thread. out may alias inp, and dinp may alias dout (each element is
// read before it is written by the same thread). Memory-bound: forward 8 bytes per element
// in f32 (4 in bf16), backward 16 (8) (inp, dout, dinp read-modify-write); one expf and one
// division per element leave f32 well under the FP32 throughput of an H100, ~90% of
// bandwidth expected. bf16 moves half the bytes for the same ~30 instructions per element,
// close to an H100's FP32 budget at that bandwidth (~40): near the knee, ~70-90% expected.
#include "gelu.h"

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

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kCubic = 0.044715f;

// exp(-|z|), clamped at -87.3 as the reference's exp_nonpositive is (below it the result
// would be subnormal); the comparison form keeps a NaN a NaN.
__device__ __forceinline__ float exp_neg_abs(float z) {
    const float x = z >= 0.0f ? -z : z;
    return expf(x < -87.3f ? -87.3f : x);
}

__device__ __forceinline__ float gelu(float x) {
    const float z = 2.0f * kSqrt2OverPi * (x + kCubic * x * x * x);
    const float e = exp_neg_abs(z);
    const float p = (z >= 0.0f ? 1.0f : e) / (1.0f + e);
    return x * p;
}

__device__ __forceinline__ float gelu_grad(float x) {
    const float x2 = x * x;
    const float z = 2.0f * kSqrt2OverPi * (x + kCubic * x2 * x);
    const float e = exp_neg_abs(z);
    const float inv = 1.0f / (1.0f + e);
    const float p = (z >= 0.0f ? 1.0f : e) * inv;
    const float q = (z >= 0.0f ? e : 1.0f) * inv;
    const float dz = 2.0f * kSqrt2OverPi * (1.0f + 3.0f * kCubic * x2);
    return p + x * p * q * dz;
}

// ----------------------------------------------------------------------------
// CUDA kernels

// grid-stride over n / VEC packs, then the n % VEC tail elements (VEC * sizeof(T) == 16
// needs 16-byte aligned pointers). T: float or raw bf16 bits (uint16_t).
template <typename T, int VEC>
__global__ void gelu_forward_kernel(T* out, const T* inp, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        P v = reinterpret_cast<const P*>(inp)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            v.v[j] = from_float<T>(gelu(to_float(v.v[j])));
        }
        reinterpret_cast<P*>(out)[i] = v;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        out[tail] = from_float<T>(gelu(to_float(inp[tail])));
    }
}

template <typename T, int VEC>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, int64_t n) {
    using P = Pack<T, VEC>;
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        const P x = reinterpret_cast<const P*>(inp)[i];
        const P g = reinterpret_cast<const P*>(dout)[i];
        P d = reinterpret_cast<const P*>(dinp)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            d.v[j] = from_float<T>(to_float(d.v[j]) +
                                   gelu_grad(to_float(x.v[j])) * to_float(g.v[j]));
        }
        reinterpret_cast<P*>(dinp)[i] = d;
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        dinp[tail] = from_float<T>(to_float(dinp[tail]) +
                                   gelu_grad(to_float(inp[tail])) * to_float(dout[tail]));
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

int grid_for(int64_t packs) { return detail::grid_for(packs, kThreads, kMaxBlocks); }

template <typename T>
void forward(T* out, const T* inp, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && inp != nullptr, "gelu_forward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // 4 floats or 8 bf16
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(out, 16) && is_aligned(inp, 16)) {
        gelu_forward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(out, inp, count);
    } else {
        gelu_forward_kernel<T, 1><<<grid_for(count), kThreads>>>(out, inp, count);
    }
    PLW_CUDA_CHECK_LAUNCH("gelu_forward_kernel");
}

template <typename T>
void backward(T* dinp, const T* inp, const T* dout, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && inp != nullptr && dout != nullptr,
              "gelu_backward: null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(dinp, 16) && is_aligned(inp, 16) && is_aligned(dout, 16)) {
        gelu_backward_kernel<T, kVec><<<grid_for(count / kVec), kThreads>>>(dinp, inp, dout,
                                                                           count);
    } else {
        gelu_backward_kernel<T, 1><<<grid_for(count), kThreads>>>(dinp, inp, dout, count);
    }
    PLW_CUDA_CHECK_LAUNCH("gelu_backward_kernel");
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// gelu.h

void gelu_forward(float* out, const float* inp, size_t n) { forward(out, inp, n); }

void gelu_forward(bf16* out, const bf16* inp, size_t n) { forward(raw(out), raw(inp), n); }

void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    backward(dinp, inp, dout, n);
}

void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n) {
    backward(raw(dinp), raw(inp), raw(dout), n);
}

}  // namespace plw::cuda
