// Weighted cross-entropy, the CUDA twin of native/cpu/cross_entropy.h (the reference: same
// names, arguments and math, op for op).
//
// Shapes: N = rows, V = real vocabulary, Vp = row stride (>= V); columns [V, Vp) are padding.
//   CE_n    = logsumexp(logits[n, :V]) - logits[n, targets[n]]
//   dlogits = weights[n] * grad_scale * (softmax(logits[n, :V]) - onehot(targets[n]))
// Softmax statistics in f32: m = max, s = sum exp(x - m) (per-thread partial sums in f32,
// summed across the block in double, as the CPU sums in double), CE = (log(s) + m) - x[target],
// dlogits = exp(x - m) * (w * grad_scale / s), minus w * grad_scale at the target.
// Rows with weight 0: loss 0, gradient 0, target not read. Padding columns get gradient 0.
// dlogits may alias logits (in place).
//
// Kernel design: one block per row.
// - ce_registers_kernel: the row lives in registers, ITEMS 16-byte packs per thread (up to
//   8 x 1024 x 16 B = 128 KiB per row: V <= 65536 in bf16, 32768 in f32). The backward reads
//   each logit once and writes each gradient once: 2 * N * Vp * sizeof(T) bytes, the traffic
//   of a copy; exp is evaluated twice per element (sum pass, gradient pass) from registers.
// - ce_streaming_kernel: any V, any alignment. Pass 1 keeps a per-thread online (max, sum);
//   the backward re-reads the row in pass 2: 3 * N * Vp * sizeof(T) bytes.
// Both reduce in a fixed order, so results are deterministic.
//
// A target outside [0, V) on a row with a non-zero weight is the caller's error
// (find_invalid_target); the kernels never read out of bounds for it and give that row a NaN
// loss and NaN gradients instead, so the mistake cannot go unnoticed.
#include "cross_entropy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.cuh"
#include "common.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

using detail::block_max;
using detail::block_sum;
using detail::ceil_div;
using detail::from_float;
using detail::Pack;
using detail::Pack16;
using detail::to_float;

constexpr int kMaxThreads = 1024;  // per block (one block per row)
constexpr int kMaxItems = 8;       // 16-byte packs per thread in the register kernel

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }
__device__ __forceinline__ float quiet_nan() { return __int_as_float(0x7fffffff); }

// exp(x - m) for a row whose max is m; m_log2e = m * log2(e).
// - f32 logits: expf(x - m) (max 2 ulp), the CPU's formula.
// - bf16 logits: exp2f(x * log2(e) - m * log2(e)), one FFMA and one MUFU.EX2 instead of the
//   ~10 instructions of expf. This keeps the bf16 kernel memory-bound: at 85% of an H200's
//   4.8 TB/s a bf16 backward streams ~1e12 elements/s, leaving ~33 instructions per element
//   for everything, and expf twice per element would take two thirds of them.
//   Error: exp2f is within 2 ulp; rounding the argument adds a relative error of at most
//   |x - m| * 2^-24 * ln 2 (~4e-8 per unit of |x - m|), and the rounding of m * log2(e) is
//   common to the whole row, so it cancels in softmax and moves the loss by ~|m| * 6e-8
//   absolute. The elements that carry the softmax mass have small |x - m|, so the f32
//   loss matches expf to ~1e-7 relative; the gradient is rounded to bf16 (4e-3) anyway.
constexpr float kLog2e = 1.4426950408889634f;

template <typename T>
__device__ __forceinline__ float row_exp(float x, float m, float m_log2e) {
    if constexpr (sizeof(T) == sizeof(float)) {
        (void)m_log2e;
        return expf(x - m);
    } else {
        (void)m;
        return exp2f(fmaf(x, kLog2e, -m_log2e));
    }
}

// ----------------------------------------------------------------------------
// CUDA kernels

// Writes the loss of a zero-weight row (0) and, in the backward, its zero gradient.
template <typename T, int VEC, bool BACKWARD>
__device__ __forceinline__ void zero_weight_row(T* dlogits, int64_t row_offset, float* losses,
                                                int nvec) {
    if (threadIdx.x == 0 && losses != nullptr) {
        losses[blockIdx.x] = 0.0f;
    }
    if constexpr (BACKWARD) {
        Pack<T, VEC>* dx = reinterpret_cast<Pack<T, VEC>*>(dlogits + row_offset);
        const Pack<T, VEC> zero{};
        for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
            dx[i] = zero;
        }
    }
}

// grid: N blocks; block: a multiple of 32 threads with ITEMS * blockDim.x * VEC >= Vp.
// Requires Vp % VEC == 0 and 16-byte aligned logits/dlogits.
//
// Columns >= V (padding, and packs past the row) are set to -inf once after the load, so the
// max and sum passes need no masks, and their gradient comes out as exp(-inf) * coef = 0.
// The target's "- onehot" is applied by the one thread that owns the target's pack: it
// rewrites that element after its pack stores (same thread, program order), which keeps the
// per-element gradient loop free of compares.
template <typename T, int ITEMS, bool BACKWARD>
__global__ void __launch_bounds__(kMaxThreads)
    ce_registers_kernel(T* dlogits,             // (N, Vp), may alias logits; BACKWARD only
                        float* losses,          // (N), nullable
                        const T* logits,        // (N, Vp)
                        const int32_t* targets, // (N)
                        const float* weights,   // (N)
                        float grad_scale, int V, int Vp) {
    using E = Pack16<T>;
    constexpr int VEC = E::kElems;
    __shared__ float scratch[32];
    __shared__ double scratch_sum[32];
    const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * Vp;
    const int nvec = Vp / VEC;
    const float weight = weights[blockIdx.x];
    if (weight == 0.0f) {  // uniform across the block
        zero_weight_row<T, VEC, BACKWARD>(dlogits, row_offset, losses, nvec);
        return;
    }
    const int target = targets[blockIdx.x];
    const bool target_ok = 0 <= target && target < V;
    // The owner of the target reads its logit before any thread writes the row (in place):
    // every write comes after the barriers of the two block reductions below. With an
    // invalid target, thread 0 reports the row (NaN loss).
    const bool owner = target_ok ? (target / VEC) % static_cast<int>(blockDim.x) ==
                                       static_cast<int>(threadIdx.x)
                                 : threadIdx.x == 0;
    float target_logit = quiet_nan();
    if (owner && target_ok) {
        target_logit = to_float(logits[row_offset + target]);
    }

    // Load the whole row: ITEMS independent 16-byte loads in flight per thread.
    const uint4* x = reinterpret_cast<const uint4*>(logits + row_offset);
    uint4 vals[ITEMS];
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        vals[k] = i < nvec ? x[i] : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
        const int i = threadIdx.x + k * blockDim.x;
        if ((i + 1) * VEC > V) {  // pack holds columns >= V (rare: the row's tail)
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                if (i * VEC + j >= V) {
                    E::set_neg_inf(vals[k], j);
                }
            }
        }
    }

    float m = neg_inf();
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            m = fmaxf(m, E::get(vals[k], j));
        }
    }
    m = block_max(m, scratch);

    const float m_log2e = m * kLog2e;
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            s += row_exp<T>(E::get(vals[k], j), m, m_log2e);
        }
    }
    // Cross-thread sum in double, as the CPU accumulates its row sum in double.
    s = static_cast<float>(block_sum(static_cast<double>(s), scratch_sum));

    if (owner && losses != nullptr) {
        losses[blockIdx.x] = logf(s) + m - target_logit;
    }
    if constexpr (BACKWARD) {
        // As the CPU: g = exp(x - m) * (wg / s), wg = weight * grad_scale, and at the target
        // g = exp(x_t - m) * (wg / s) - wg, applied by the owner below.
        const float wg = target_ok ? weight * grad_scale : quiet_nan();
        const float coef = wg / s;
        uint4* dx = reinterpret_cast<uint4*>(dlogits + row_offset);
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const int i = threadIdx.x + k * blockDim.x;
            if (i < nvec) {
                float g[VEC];
#pragma unroll
                for (int j = 0; j < VEC; ++j) {
                    g[j] = row_exp<T>(E::get(vals[k], j), m, m_log2e) * coef;
                }
                dx[i] = E::from_floats(g);
            }
        }
        if (owner && target_ok) {
            const float p_target = row_exp<T>(target_logit, m, m_log2e) * coef;
            dlogits[row_offset + target] = from_float<T>(p_target - wg);
        }
    }
}

// (m, s) <- the statistics of the union of two sets, s being sum exp(x - m). An empty set is
// (-inf, 0). Written without FMA contraction so that combine(a, b) == combine(b, a) bitwise.
__device__ __forceinline__ void softmax_combine(float& m, float& s, float m2, float s2) {
    const float mx = fmaxf(m, m2);
    if (mx == neg_inf()) {
        s = 0.0f;  // both empty (or all -inf)
    } else {
        s = __fadd_rn(__fmul_rn(s, expf(m - mx)), __fmul_rn(s2, expf(m2 - mx)));
    }
    m = mx;
}

// grid: N blocks; block: a multiple of 32 threads (<= 1024). Any V, Vp; VEC = 1 needs no
// alignment, VEC > 1 needs Vp % VEC == 0 and 16-byte aligned logits/dlogits.
template <typename T, int VEC, bool BACKWARD>
__global__ void __launch_bounds__(kMaxThreads)
    ce_streaming_kernel(T* dlogits,             // (N, Vp), may alias logits; BACKWARD only
                        float* losses,          // (N), nullable
                        const T* logits,        // (N, Vp)
                        const int32_t* targets, // (N)
                        const float* weights,   // (N)
                        float grad_scale, int V, int Vp) {
    using P = Pack<T, VEC>;
    __shared__ float scratch_m[32];
    __shared__ float scratch_s[32];
    const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * Vp;
    const int nvec = Vp / VEC;
    const float weight = weights[blockIdx.x];
    if (weight == 0.0f) {
        zero_weight_row<T, VEC, BACKWARD>(dlogits, row_offset, losses, nvec);
        return;
    }
    const int target = targets[blockIdx.x];
    const bool target_ok = 0 <= target && target < V;
    float target_logit = quiet_nan();  // read before the barriers below, as above
    if (threadIdx.x == 0 && target_ok) {
        target_logit = to_float(logits[row_offset + target]);
    }

    // Pass 1: per-thread online max and sum of exp.
    const P* x = reinterpret_cast<const P*>(logits + row_offset);
    float m = neg_inf();
    float s = 0.0f;
    for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
        const P p = x[i];
        float pack_max = neg_inf();
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            if (i * VEC + j < V) {
                pack_max = fmaxf(pack_max, to_float(p.v[j]));
            }
        }
        if (pack_max > m) {
            s *= expf(m - pack_max);  // m = -inf gives 0 * 0
            m = pack_max;
        }
        if (m != neg_inf()) {
            const float m_log2e = m * kLog2e;
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                if (i * VEC + j < V) {
                    s += row_exp<T>(to_float(p.v[j]), m, m_log2e);
                }
            }
        }
    }

    // Block combine of (m, s): xor butterfly in the warp, then the warp partials.
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        softmax_combine(m, s, m2, s2);
    }
    if (lane == 0) {
        scratch_m[warp] = m;
        scratch_s[warp] = s;
    }
    __syncthreads();
    const int warps = blockDim.x >> 5;
    m = lane < warps ? scratch_m[lane] : neg_inf();
    s = lane < warps ? scratch_s[lane] : 0.0f;
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, offset);
        const float s2 = __shfl_xor_sync(0xffffffffu, s, offset);
        softmax_combine(m, s, m2, s2);
    }

    if (threadIdx.x == 0 && losses != nullptr) {
        losses[blockIdx.x] = logf(s) + m - target_logit;
    }
    if constexpr (BACKWARD) {
        // Pass 2: each thread re-reads and overwrites only its own packs.
        // Same arithmetic as the register kernel (and the CPU).
        const float wg = target_ok ? weight * grad_scale : quiet_nan();
        const float coef = wg / s;
        const float m_log2e = m * kLog2e;
        P* dx = reinterpret_cast<P*>(dlogits + row_offset);
        for (int i = threadIdx.x; i < nvec; i += blockDim.x) {
            const P p = x[i];
            P out;
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const int col = i * VEC + j;
                float g = 0.0f;
                if (col == target) {
                    g = row_exp<T>(to_float(p.v[j]), m, m_log2e) * coef - wg;
                } else if (col < V) {
                    g = row_exp<T>(to_float(p.v[j]), m, m_log2e) * coef;
                }
                out.v[j] = from_float<T>(g);
            }
            dx[i] = out;
        }
    }
}

// One block: out[0] = sum_n weights[n] * losses[n], out[1] = sum_n weights[n], in double.
constexpr int kLossSumThreads = 1024;

__global__ void __launch_bounds__(kLossSumThreads)
    weighted_loss_sum_kernel(double* out,           // (2)
                             const float* losses,   // (N)
                             const float* weights,  // (N)
                             int N) {
    __shared__ double scratch[32];
    double loss_sum = 0.0;
    double weight_sum = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        const float w = weights[i];
        if (w != 0.0f) {  // a zero-weight row may hold anything, as on the CPU
            loss_sum += static_cast<double>(w) * static_cast<double>(losses[i]);
            weight_sum += static_cast<double>(w);
        }
    }
    loss_sum = block_sum(loss_sum, scratch);
    weight_sum = block_sum(weight_sum, scratch);
    if (threadIdx.x == 0) {
        out[0] = loss_sum;
        out[1] = weight_sum;
    }
}

// *first = min(*first, n) over rows n with a non-zero weight and a target outside [0, V).
__global__ void find_invalid_target_kernel(unsigned long long* first, const int32_t* targets,
                                           const float* weights, int N, int V) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; n < N;
         n += stride) {
        if (weights[n] != 0.0f) {
            const int32_t t = targets[n];
            if (t < 0 || t >= V) {
                atomicMin(first, static_cast<unsigned long long>(n));
            }
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void check_args(const void* logits, const int32_t* targets, const float* weights, int N, int V,
                int Vp) {
    PLW_CHECK(N >= 0, "weighted_cross_entropy: N must be >= 0, got " << N);
    PLW_CHECK(V > 0 && Vp >= V,
              "weighted_cross_entropy: need 0 < V <= Vp, got V=" << V << " Vp=" << Vp);
    PLW_CHECK(N == 0 || (logits != nullptr && targets != nullptr && weights != nullptr),
              "weighted_cross_entropy: null device pointer");
}

int round_up_warp(int threads) { return ceil_div(threads, 32) * 32; }

// T is float or uint16_t (bf16 bits). dlogits is used only when BACKWARD.
template <typename T, bool BACKWARD>
void launch_cross_entropy(T* dlogits, float* losses, const T* logits, const int32_t* targets,
                          const float* weights, float grad_scale, int N, int V, int Vp) {
    if (N == 0) {
        return;
    }
    constexpr int VEC = 16 / sizeof(T);
    const bool vectorized = Vp % VEC == 0 && detail::is_aligned(logits, 16) &&
                            (!BACKWARD || detail::is_aligned(dlogits, 16));
    const dim3 grid(static_cast<unsigned>(N));
    if (vectorized) {
        const int nvec = Vp / VEC;
        const int items_needed = ceil_div(nvec, kMaxThreads);
        if (items_needed <= kMaxItems) {
            const int items = items_needed <= 1   ? 1
                              : items_needed <= 2 ? 2
                              : items_needed <= 4 ? 4
                                                  : kMaxItems;
            const int threads = round_up_warp(ceil_div(nvec, items));
            switch (items) {
                case 1:
                    ce_registers_kernel<T, 1, BACKWARD><<<grid, threads>>>(
                        dlogits, losses, logits, targets, weights, grad_scale, V, Vp);
                    break;
                case 2:
                    ce_registers_kernel<T, 2, BACKWARD><<<grid, threads>>>(
                        dlogits, losses, logits, targets, weights, grad_scale, V, Vp);
                    break;
                case 4:
                    ce_registers_kernel<T, 4, BACKWARD><<<grid, threads>>>(
                        dlogits, losses, logits, targets, weights, grad_scale, V, Vp);
                    break;
                default:
                    ce_registers_kernel<T, kMaxItems, BACKWARD><<<grid, threads>>>(
                        dlogits, losses, logits, targets, weights, grad_scale, V, Vp);
                    break;
            }
            PLW_CUDA_CHECK_LAUNCH("ce_registers_kernel");
            return;
        }
        ce_streaming_kernel<T, VEC, BACKWARD><<<grid, kMaxThreads>>>(
            dlogits, losses, logits, targets, weights, grad_scale, V, Vp);
        PLW_CUDA_CHECK_LAUNCH("ce_streaming_kernel");
        return;
    }
    const int threads = Vp >= kMaxThreads ? kMaxThreads : round_up_warp(Vp);
    ce_streaming_kernel<T, 1, BACKWARD><<<grid, threads>>>(dlogits, losses, logits, targets,
                                                           weights, grad_scale, V, Vp);
    PLW_CUDA_CHECK_LAUNCH("ce_streaming_kernel");
}

using detail::raw;

}  // namespace

// ----------------------------------------------------------------------------
// cross_entropy.h

void weighted_cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    check_args(logits, targets, weights, N, V, Vp);
    PLW_CHECK(N == 0 || losses != nullptr, "weighted_cross_entropy_forward: losses is null");
    launch_cross_entropy<float, false>(nullptr, losses, logits, targets, weights, 1.0f, N, V, Vp);
}

void weighted_cross_entropy_forward(float* losses, const bf16* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    check_args(logits, targets, weights, N, V, Vp);
    PLW_CHECK(N == 0 || losses != nullptr, "weighted_cross_entropy_forward: losses is null");
    launch_cross_entropy<uint16_t, false>(nullptr, losses, raw(logits), targets, weights, 1.0f,
                                          N, V, Vp);
}

void weighted_cross_entropy_backward(float* dlogits, float* losses, const float* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    check_args(logits, targets, weights, N, V, Vp);
    PLW_CHECK(N == 0 || dlogits != nullptr, "weighted_cross_entropy_backward: dlogits is null");
    launch_cross_entropy<float, true>(dlogits, losses, logits, targets, weights, grad_scale, N, V,
                                      Vp);
}

void weighted_cross_entropy_backward(bf16* dlogits, float* losses, const bf16* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    check_args(logits, targets, weights, N, V, Vp);
    PLW_CHECK(N == 0 || dlogits != nullptr, "weighted_cross_entropy_backward: dlogits is null");
    launch_cross_entropy<uint16_t, true>(raw(dlogits), losses, raw(logits), targets, weights,
                                         grad_scale, N, V, Vp);
}

void weighted_loss_sum(double* loss_sum, double* weight_sum, const float* losses,
                       const float* weights, int N) {
    PLW_CHECK(loss_sum != nullptr && weight_sum != nullptr, "weighted_loss_sum: null result");
    PLW_CHECK(N >= 0, "weighted_loss_sum: N must be >= 0, got " << N);
    if (N == 0) {
        *loss_sum = 0.0;
        *weight_sum = 0.0;
        return;
    }
    PLW_CHECK(losses != nullptr && weights != nullptr, "weighted_loss_sum: null device pointer");
    ScratchBuffer out(2 * sizeof(double));
    double* out_d = static_cast<double*>(out.data());
    weighted_loss_sum_kernel<<<1, kLossSumThreads>>>(out_d, losses, weights, N);
    PLW_CUDA_CHECK_LAUNCH("weighted_loss_sum_kernel");
    double host[2] = {0.0, 0.0};
    PLW_CUDA_CHECK(cudaMemcpy(host, out_d, sizeof host, cudaMemcpyDeviceToHost));
    *loss_sum = host[0];
    *weight_sum = host[1];
}

int64_t find_invalid_target(const int32_t* targets, const float* weights, int N, int V) {
    PLW_CHECK(N >= 0, "find_invalid_target: N must be >= 0, got " << N);
    if (N == 0) {
        return -1;
    }
    PLW_CHECK(targets != nullptr && weights != nullptr, "find_invalid_target: null device pointer");
    ScratchBuffer first(sizeof(unsigned long long));
    auto* first_d = static_cast<unsigned long long*>(first.data());
    PLW_CUDA_CHECK(cudaMemset(first_d, 0xff, sizeof(unsigned long long)));  // ULLONG_MAX: none
    const int threads = 256;
    const int blocks = static_cast<int>(std::min<int64_t>(ceil_div<int64_t>(N, threads), 4096));
    find_invalid_target_kernel<<<blocks, threads>>>(first_d, targets, weights, N, V);
    PLW_CUDA_CHECK_LAUNCH("find_invalid_target_kernel");
    unsigned long long host = 0;
    PLW_CUDA_CHECK(cudaMemcpy(&host, first_d, sizeof host, cudaMemcpyDeviceToHost));
    return host == ~0ull ? -1 : static_cast<int64_t>(host);
}

}  // namespace plw::cuda
