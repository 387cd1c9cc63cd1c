// f32 <-> bf16 conversion, the CUDA twin of plw::f32_to_bf16 / plw::bf16_to_f32
// (../common/bf16.h, the reference): same bits for every input.
//   f32 -> bf16: round to nearest even on the raw bits, (u + 0x7fff + lsb) >> 16; a NaN is
//                (u >> 16) | 0x0040 (quiet, sign and top payload kept). This is the CPU's
//                formula rather than __float2bfloat16_rn, whose NaN is always 0x7fff.
//   bf16 -> f32: the 16 bits shifted into the high half, exact.
//
// Elementwise, grid-stride over packs of 8 values (two float4 and one 16-byte pack of bf16)
// when both pointers are 16-byte aligned (the n % 8 tail elements go to the first threads
// of the grid), else one value per thread. Memory-bound: 6 bytes per element (4 + 2),
// ~90% of bandwidth expected.
#include "convert.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"

namespace plw::cuda {

namespace {

using detail::is_aligned;
using detail::Pack;
using detail::to_float;

// plw::f32_to_bf16 on raw bits
__device__ __forceinline__ uint16_t f32_to_bf16_bits(float f) {
    const uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u) {
        return static_cast<uint16_t>((u >> 16) | 0x0040u);
    }
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__device__ __forceinline__ float convert_one(float /*tag*/, uint16_t x) { return to_float(x); }
__device__ __forceinline__ uint16_t convert_one(uint16_t /*tag*/, float x) {
    return f32_to_bf16_bits(x);
}

// ----------------------------------------------------------------------------
// CUDA kernels

// Dst, Src: float and uint16_t (raw bf16), either way round. VEC = 8 needs both pointers
// 16-byte aligned; the f32 side then moves as two 16-byte packs.
template <typename Dst, typename Src, int VEC>
__global__ void convert_kernel(Dst* dst, const Src* src, int64_t n) {
    using PS = Pack<Src, VEC>;
    using PD = Pack<Dst, VEC>;
    constexpr int kS = VEC * sizeof(Src) > 16 ? 16 / static_cast<int>(sizeof(Src)) : VEC;
    constexpr int kD = VEC * sizeof(Dst) > 16 ? 16 / static_cast<int>(sizeof(Dst)) : VEC;
    using LS = Pack<Src, kS>;  // loads and stores of at most 16 bytes
    using LD = Pack<Dst, kD>;
    static_assert(sizeof(PS) % sizeof(LS) == 0 && sizeof(PD) % sizeof(LD) == 0, "pack split");
    const int64_t packs = n / VEC;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = first; i < packs; i += stride) {
        LS s[VEC / kS];
#pragma unroll
        for (int k = 0; k < VEC / kS; ++k) {
            s[k] = reinterpret_cast<const LS*>(src + i * VEC)[k];
        }
        LD d[VEC / kD];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            d[j / kD].v[j % kD] = convert_one(Dst{}, s[j / kS].v[j % kS]);
        }
#pragma unroll
        for (int k = 0; k < VEC / kD; ++k) {
            reinterpret_cast<LD*>(dst + i * VEC)[k] = d[k];
        }
    }
    const int64_t tail = packs * VEC + first;
    if (tail < n) {
        dst[tail] = convert_one(Dst{}, src[tail]);
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this
constexpr int kVec = 8;                // 8 bf16 = 16 bytes, 8 floats = 32 bytes

int grid_for(int64_t packs) { return detail::grid_for(packs, kThreads, kMaxBlocks); }

template <typename Dst, typename Src>
void launch_convert(Dst* dst, const Src* src, size_t n) {
    if (n == 0) {
        return;
    }
    PLW_CHECK(dst != nullptr && src != nullptr, "convert: null device pointer");
    const int64_t count = static_cast<int64_t>(n);
    if (is_aligned(dst, 16) && is_aligned(src, 16)) {
        convert_kernel<Dst, Src, kVec><<<grid_for(count / kVec), kThreads>>>(dst, src, count);
    } else {
        convert_kernel<Dst, Src, 1><<<grid_for(count), kThreads>>>(dst, src, count);
    }
    PLW_CUDA_CHECK_LAUNCH("convert_kernel");
}

}  // namespace

// ----------------------------------------------------------------------------
// convert.h

void convert(bf16* dst, const float* src, size_t n) {
    launch_convert(detail::raw(dst), src, n);
}

void convert(float* dst, const bf16* src, size_t n) {
    launch_convert(dst, detail::raw(src), n);
}

}  // namespace plw::cuda
