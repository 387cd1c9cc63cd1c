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

#include "../common/bf16.h"

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

// Blocks of `threads` for a grid-stride loop over work_items: one item per thread, capped
// at max_blocks (the loop strides beyond), at least one block.
inline int grid_for(int64_t work_items, int threads, int64_t max_blocks) {
    const int64_t blocks = (work_items + threads - 1) / threads;
    return static_cast<int>(blocks < 1 ? 1 : blocks > max_blocks ? max_blocks : blocks);
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

// The kernels' view of an element type: float stays float, plw::bf16 travels as its raw bits.
// raw() converts the public functions' pointers for the kernel templates.
template <typename T>
struct RawType {
    using type = T;
};
template <>
struct RawType<plw::bf16> {
    using type = uint16_t;
};
template <typename T>
using Raw = typename RawType<T>::type;

template <typename T>
Raw<T>* raw(T* p) {
    return reinterpret_cast<Raw<T>*>(p);
}
template <typename T>
const Raw<T>* raw(const T* p) {
    return reinterpret_cast<const Raw<T>*>(p);
}

// VEC consecutive elements, aligned so that one load/store moves all of them (16 bytes
// when sizeof(T) * VEC == 16).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Pack {
    T v[VEC];
};

// 16-byte packs held as four 32-bit words (uint4): 4 floats, or 8 bf16 (element 2i in the low
// half of word i, 2i+1 in the high half). j is a compile-time constant after unrolling.

__device__ __forceinline__ uint32_t pack_word(const uint4& p, int i) {
    return i == 0 ? p.x : i == 1 ? p.y : i == 2 ? p.z : p.w;
}
__device__ __forceinline__ void set_pack_word(uint4& p, int i, uint32_t w) {
    if (i == 0) {
        p.x = w;
    } else if (i == 1) {
        p.y = w;
    } else if (i == 2) {
        p.z = w;
    } else {
        p.w = w;
    }
}

// The bf16 -> f32 unpack is one instruction; it is written as volatile asm so that the
// compiler redoes it in each pass over a register-resident row instead of keeping every
// unpacked float alive between passes (which doubles the registers and spills).
__device__ __forceinline__ float bf16_low_to_float(uint32_t w) {
    uint32_t r;
    asm volatile("shl.b32 %0, %1, 16;" : "=r"(r) : "r"(w));
    return __uint_as_float(r);
}
__device__ __forceinline__ float bf16_high_to_float(uint32_t w) {
    uint32_t r;
    asm volatile("and.b32 %0, %1, 0xffff0000;" : "=r"(r) : "r"(w));
    return __uint_as_float(r);
}

template <typename T>
struct Pack16;  // element access of a 16-byte pack of T

template <>
struct Pack16<float> {
    static constexpr int kElems = 4;
    __device__ static float get(const uint4& p, int j) { return __uint_as_float(pack_word(p, j)); }
    __device__ static void set_neg_inf(uint4& p, int j) { set_pack_word(p, j, 0xff800000u); }
    __device__ static uint4 from_floats(const float (&g)[kElems]) {
        return make_uint4(__float_as_uint(g[0]), __float_as_uint(g[1]), __float_as_uint(g[2]),
                          __float_as_uint(g[3]));
    }
};

template <>
struct Pack16<uint16_t> {
    static constexpr int kElems = 8;
    __device__ static float get(const uint4& p, int j) {
        const uint32_t w = pack_word(p, j >> 1);
        return (j & 1) ? bf16_high_to_float(w) : bf16_low_to_float(w);
    }
    __device__ static void set_neg_inf(uint4& p, int j) {
        const uint32_t w = pack_word(p, j >> 1);
        set_pack_word(p, j >> 1, (j & 1) ? ((w & 0x0000ffffu) | 0xff800000u)
                                         : ((w & 0xffff0000u) | 0x0000ff80u));
    }
    __device__ static uint32_t pair(float lo, float hi) {  // round to nearest even
        return static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(lo))) |
               (static_cast<uint32_t>(__bfloat16_as_ushort(__float2bfloat16_rn(hi))) << 16);
    }
    __device__ static uint4 from_floats(const float (&g)[kElems]) {
        return make_uint4(pair(g[0], g[1]), pair(g[2], g[3]), pair(g[4], g[5]), pair(g[6], g[7]));
    }
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
