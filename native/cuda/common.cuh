// Small device helpers shared by the CUDA kernels: deterministic warp/block reductions,
// bf16 <-> f32 on raw bits, aligned vector packs, size arithmetic.
//
// Reductions are deterministic: each thread's partial is combined in a fixed tree (xor
// butterfly inside a warp, then the warp partials in lane order), so the same launch
// configuration gives bitwise identical results run after run. After a block reduction
// every thread holds the same value.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace plw::cuda::detail {

// ----------------------------------------------------------------------------
// host helpers

template <typename I>
constexpr I ceil_div(I a, I b) {
    return (a + b - 1) / b;
}

inline bool is_aligned(const void* ptr, size_t bytes) {
    return reinterpret_cast<uintptr_t>(ptr) % bytes == 0;
}

// ----------------------------------------------------------------------------
// element types: f32 stays float; bf16 travels as its raw 16 bits (uint16_t), the same bits
// as plw::bf16 (../common/bf16.h) and __nv_bfloat16.

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(uint16_t bits) {
    return __uint_as_float(static_cast<uint32_t>(bits) << 16);  // exact
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
    return x;
}
template <>
__device__ __forceinline__ uint16_t from_float<uint16_t>(float x) {
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));  // round to nearest even, as f32_to_bf16
}

// VEC consecutive elements, aligned so that one load/store moves all of them (16 bytes
// when sizeof(T) * VEC == 16).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

// ----------------------------------------------------------------------------
// reductions (blockDim.x must be a multiple of 32, at most 1024)

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    }
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    }
    return v;
}

// scratch: __shared__ T[32]; it may be reused right after the call returns.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = warp_sum(v);
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    v = lane < warps ? scratch[lane] : T(0);
    v = warp_sum(v);
    __syncthreads();
    return v;
}

__device__ inline float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = warp_max(v);
    if (lane == 0) {
        scratch[warp] = v;
    }
    __syncthreads();
    v = lane < warps ? scratch[lane] : -__int_as_float(0x7f800000);  // -inf
    v = warp_max(v);
    __syncthreads();
    return v;
}

}  // namespace plw::cuda::detail
