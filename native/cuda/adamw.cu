// AdamW and the gradient norm, the CUDA twin of native/cpu/adamw.h (the reference: the same
// update, element for element).
//
// The per-element factors are formed on the host in double by plw::cpu::adamw_factors (the
// same function for both backends, as torch forms them from Python floats) and applied in
// float, in the CPU reference's order of operations:
//   g = grad * grad_scale
//   p = p * decay
//   m = m + (1 - beta1) * (g - m)
//   v = beta2 * v + ((1 - beta2) * g) * g
//   p = p - step_size * (m / (sqrt(v) / bc2_sqrt + eps))
// written with the _rn intrinsics so that nvcc cannot contract a multiply and an add into an
// FMA: every step is one IEEE-rounded float operation. The CPU build matches this bit for bit
// only when GCC does not contract either (-ffp-contract=off); otherwise expect ~1 ulp.
//
// adamw_update: elementwise, 16 bytes read and 12 written per element (p, m, v, grad), plus
// 2 more written with the bf16 copy of the parameters (params_bf16: the new p rounded to
// nearest even, as plw::f32_to_bf16); memory-bound: ~90% of bandwidth expected with float4
// accesses (and 8-byte stores of 4 bf16).
// grad_sum_squares: two-stage deterministic reduction in double (fixed grid, per-block
// partials in a fixed order, one block sums them); reads 4 bytes per element.
#include "adamw.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::block_sum;
using detail::is_aligned;

using plw::cpu::AdamWFactors;  // plain host code shared with the CPU backend (adamw.cpp)

// ----------------------------------------------------------------------------
// CUDA kernels

__device__ __forceinline__ void adamw_element(float& p, float& m, float& v, float grad,
                                              const AdamWFactors& f) {
    const float g = __fmul_rn(grad, f.grad_scale);
    p = __fmul_rn(p, f.decay);
    m = __fadd_rn(m, __fmul_rn(f.one_minus_beta1, __fsub_rn(g, m)));
    v = __fadd_rn(__fmul_rn(f.beta2, v), __fmul_rn(__fmul_rn(f.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), f.bc2_sqrt), f.eps);
    p = __fsub_rn(p, __fmul_rn(f.step_size, __fdiv_rn(m, denom)));
}

// grid-stride over n / VEC packs; VEC = 4 needs 16-byte aligned f32 pointers, an 8-byte
// aligned params_bf16 and n % 4 == 0. BF16: also store the new params rounded to bf16.
template <int VEC, bool BF16>
__global__ void adamw_kernel(float* __restrict__ params,         // (n)
                             float* __restrict__ m,              // (n) first moment
                             float* __restrict__ v,              // (n) second moment
                             const float* __restrict__ grads,    // (n)
                             uint16_t* __restrict__ params_bf16, // (n) raw bf16; only if BF16
                             int64_t n, AdamWFactors f) {
    using P = detail::Pack<float, VEC>;
    using PB = detail::Pack<uint16_t, VEC>;
    const int64_t packs = n / VEC;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
         i += stride) {
        P p = reinterpret_cast<const P*>(params)[i];
        P mm = reinterpret_cast<const P*>(m)[i];
        P vv = reinterpret_cast<const P*>(v)[i];
        const P g = reinterpret_cast<const P*>(grads)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            adamw_element(p.v[j], mm.v[j], vv.v[j], g.v[j], f);
        }
        reinterpret_cast<P*>(params)[i] = p;
        reinterpret_cast<P*>(m)[i] = mm;
        reinterpret_cast<P*>(v)[i] = vv;
        if constexpr (BF16) {
            PB pb;
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                pb.v[j] = detail::from_float<uint16_t>(p.v[j]);
            }
            reinterpret_cast<PB*>(params_bf16)[i] = pb;
        }
    }
}

constexpr int kSumThreads = 256;
constexpr int kSumMaxBlocks = 1024;  // stage-1 partials; stage 2 is one block of 1024
constexpr int kSumFinalThreads = 1024;
static_assert(kSumMaxBlocks <= kSumFinalThreads, "stage 2 takes one partial per thread");

// Stage 1: partials[blockIdx.x] = sum of grads[i]^2 over the block's grid-stride share.
// (double)x * (double)x is exact, so FMA contraction cannot change the result.
template <int VEC>
__global__ void __launch_bounds__(kSumThreads)
    sum_squares_partial_kernel(double* partials, const float* grads, int64_t n) {
    using P = detail::Pack<float, VEC>;
    __shared__ double scratch[32];
    const int64_t packs = n / VEC;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    double acc = 0.0;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < packs;
         i += stride) {
        const P g = reinterpret_cast<const P*>(grads)[i];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const double x = g.v[j];
            acc += x * x;
        }
    }
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        partials[blockIdx.x] = acc;
    }
}

// Stage 2: one block; *out = sum of the `count` partials in a fixed order.
__global__ void __launch_bounds__(kSumFinalThreads)
    sum_partials_kernel(double* out, const double* partials, int count) {
    __shared__ double scratch[32];
    double acc = static_cast<int>(threadIdx.x) < count ? partials[threadIdx.x] : 0.0;
    acc = block_sum(acc, scratch);
    if (threadIdx.x == 0) {
        *out = acc;
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;

using detail::grid_for;

template <bool BF16>
void launch_adamw(float* params, float* m, float* v, const float* grads, uint16_t* params_bf16,
                  int64_t count, const AdamWFactors& f) {
    const bool vec4 = count % 4 == 0 && is_aligned(params, 16) && is_aligned(m, 16) &&
                      is_aligned(v, 16) && is_aligned(grads, 16) &&
                      (!BF16 || is_aligned(params_bf16, 8));
    if (vec4) {
        adamw_kernel<4, BF16><<<grid_for(count / 4, kThreads, kMaxBlocks), kThreads>>>(
            params, m, v, grads, params_bf16, count, f);
    } else {
        adamw_kernel<1, BF16><<<grid_for(count, kThreads, kMaxBlocks), kThreads>>>(
            params, m, v, grads, params_bf16, count, f);
    }
    PLW_CUDA_CHECK_LAUNCH("adamw_kernel");
}

}  // namespace

// ----------------------------------------------------------------------------
// adamw.h

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp) {
    adamw_update(params, m, v, grads, n, hp, nullptr);
}

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp, bf16* params_bf16) {
    PLW_CHECK(hp.step >= 1, "adamw_update: step must be >= 1 (torch counts from 1), got "
                                << hp.step);
    if (n == 0) {
        return;
    }
    PLW_CHECK(params != nullptr && m != nullptr && v != nullptr && grads != nullptr,
              "adamw_update: null device pointer");
    const AdamWFactors f = plw::cpu::adamw_factors(hp);
    const int64_t count = static_cast<int64_t>(n);
    if (params_bf16 != nullptr) {
        launch_adamw<true>(params, m, v, grads, detail::raw(params_bf16), count,
                           f);
    } else {
        launch_adamw<false>(params, m, v, grads, nullptr, count, f);
    }
}

double grad_sum_squares(const float* grads, size_t n) {
    if (n == 0) {
        return 0.0;
    }
    PLW_CHECK(grads != nullptr, "grad_sum_squares: null device pointer");
    const int64_t count = static_cast<int64_t>(n);
    const bool vec4 = count % 4 == 0 && is_aligned(grads, 16);
    const int64_t packs = vec4 ? count / 4 : count;
    const int blocks = grid_for(packs, kSumThreads, kSumMaxBlocks);  // a function of n only

    ScratchBuffer scratch((kSumMaxBlocks + 1) * sizeof(double));
    double* partials = static_cast<double*>(scratch.data());
    double* total = partials + kSumMaxBlocks;
    if (vec4) {
        sum_squares_partial_kernel<4><<<blocks, kSumThreads>>>(partials, grads, count);
    } else {
        sum_squares_partial_kernel<1><<<blocks, kSumThreads>>>(partials, grads, count);
    }
    PLW_CUDA_CHECK_LAUNCH("sum_squares_partial_kernel");
    sum_partials_kernel<<<1, kSumFinalThreads>>>(total, partials, blocks);
    PLW_CUDA_CHECK_LAUNCH("sum_partials_kernel");
    double host = 0.0;
    PLW_CUDA_CHECK(cudaMemcpy(&host, total, sizeof host, cudaMemcpyDeviceToHost));
    return host;
}

}  // namespace plw::cuda
