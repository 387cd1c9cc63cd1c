// Rotary position embedding (rotate-half layout), the CUDA twin of native/cpu/rope.h (the
// reference: same names, arguments and math).
//
// Shapes: N = rows (tokens), H = heads, hs = head size (even), h = hs / 2.
//   a = float(positions[n]) * inv_freq[i];  c = cosf(a), s = sinf(a)   (one f32 product, as HF)
//   forward:  x'[i] = x[i] c - x[i + h] s;   x'[i + h] = x[i + h] c + x[i] s
//   backward: the same with s -> -s (the transposed rotation), in place on dx
// cosf/sinf are CUDA's accurate versions (full argument reduction, within 2 ulp, no fast-math
// intrinsics), so large positions (8000, 131071) lose nothing beyond the f32 rounding of the
// angle, which HF and the reference share; against the reference's libm the cos/sin differ by
// an ulp or two.
//
// x is f32 or bf16 (mixed precision), one templated kernel: bf16 values are widened exactly,
// rotated in f32 with f32 cos/sin, and each result is rounded once (to nearest even). (HF
// rounds cos/sin to bf16 and rotates in bf16 arithmetic in a bf16 model; this is closer to the
// exact rotation.)
//
// One thread per (row n, run of kHeadsPerThread heads, pack of VEC consecutive pairs i): it
// computes its VEC angles' cos and sin once and rotates the pairs of its heads. 16-byte packs
// (4 floats or 8 bf16) from each half of a head when h is a multiple of VEC and x is 16-byte
// aligned, else one pair per thread. Grid-stride over the items. Memory-bound: one read and
// one write of x (8 bytes per element in f32, 4 in bf16); the sincosf (~40 instructions)
// costs ~1/8 of one per element: ~80% of bandwidth expected.
#include "rope.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"

namespace plw::cuda {

namespace {

using detail::ceil_div;
using detail::from_float;
using detail::is_aligned;
using detail::Pack;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this
constexpr int kHeadsPerThread = 4;

// ----------------------------------------------------------------------------
// CUDA kernels

// sign = 1: forward; -1: backward. VEC * sizeof(T) == 16 needs h % VEC == 0 and x 16-byte
// aligned. T: float or raw bf16 bits (uint16_t).
template <typename T, int VEC>
__global__ void rope_kernel(T* x,                      // (N, H, hs), in place
                            const int32_t* positions,  // (N)
                            const float* inv_freq,     // (hs / 2)
                            int N, int H, int hs, float sign) {
    using P = Pack<T, VEC>;
    const int h = hs / 2;
    const int packs = h / VEC;                        // packs per half head
    const int head_runs = ceil_div(H, kHeadsPerThread);
    const int64_t items = static_cast<int64_t>(N) * head_runs * packs;
    const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t item = first; item < items; item += stride) {
        const int ip = static_cast<int>(item % packs);
        const int64_t rest = item / packs;
        const int run = static_cast<int>(rest % head_runs);
        const int n = static_cast<int>(rest / head_runs);
        const float p = static_cast<float>(positions[n]);
        float c[VEC];
        float s[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float a = p * inv_freq[ip * VEC + j];
            c[j] = cosf(a);
            s[j] = sign * sinf(a);
        }
        const int head1 = min(H, (run + 1) * kHeadsPerThread);
        for (int head = run * kHeadsPerThread; head < head1; ++head) {
            T* lo = x + (static_cast<int64_t>(n) * H + head) * hs;
            P* lo_p = reinterpret_cast<P*>(lo) + ip;
            P* hi_p = reinterpret_cast<P*>(lo + h) + ip;
            const P x0 = *lo_p;
            const P x1 = *hi_p;
            P y0;
            P y1;
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float a0 = to_float(x0.v[j]);
                const float a1 = to_float(x1.v[j]);
                y0.v[j] = from_float<T>(a0 * c[j] - a1 * s[j]);
                y1.v[j] = from_float<T>(a1 * c[j] + a0 * s[j]);
            }
            *lo_p = y0;
            *hi_p = y1;
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

template <typename T>
void rotate(T* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs,
            float sign, const char* what) {
    PLW_CHECK(N >= 0 && H >= 0 && hs > 0 && hs % 2 == 0,
              what << ": bad shape N=" << N << " H=" << H << " hs=" << hs << " (hs must be even)");
    if (N == 0 || H == 0) {
        return;
    }
    PLW_CHECK(x != nullptr && positions != nullptr && inv_freq != nullptr,
              what << ": null device pointer");
    constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // 4 floats or 8 bf16
    const int h = hs / 2;
    const bool wide = h % kVec == 0 && is_aligned(x, 16);
    const int vec = wide ? kVec : 1;
    const int64_t items =
        static_cast<int64_t>(N) * ceil_div(H, kHeadsPerThread) * (h / vec);
    const int blocks = detail::grid_for(items, kThreads, kMaxBlocks);
    if (wide) {
        rope_kernel<T, kVec><<<blocks, kThreads>>>(x, positions, inv_freq, N, H, hs, sign);
    } else {
        rope_kernel<T, 1><<<blocks, kThreads>>>(x, positions, inv_freq, N, H, hs, sign);
    }
    PLW_CUDA_CHECK_LAUNCH("rope_kernel");
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// rope.h

void rope_forward(float* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs) {
    rotate(x, positions, inv_freq, N, H, hs, 1.0f, "rope_forward");
}

void rope_forward(bf16* x, const int32_t* positions, const float* inv_freq, int N, int H, int hs) {
    rotate(raw(x), positions, inv_freq, N, H, hs, 1.0f, "rope_forward");
}

void rope_backward(float* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs) {
    rotate(dx, positions, inv_freq, N, H, hs, -1.0f, "rope_backward");
}

void rope_backward(bf16* dx, const int32_t* positions, const float* inv_freq, int N, int H,
                   int hs) {
    rotate(raw(dx), positions, inv_freq, N, H, hs, -1.0f, "rope_backward");
}

}  // namespace plw::cuda
