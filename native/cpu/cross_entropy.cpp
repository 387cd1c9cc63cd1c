// CPU reference: weighted cross-entropy (see cross_entropy.h for the math and shapes).
// This file is the reference the CUDA twin (native/cuda/cross_entropy.cu) is tested against.
//
// Each row is independent: rows are split across OpenMP threads (static schedule, so the
// result does not depend on timing), and each row is three vectorized sweeps over V:
// max, sum of exp(x - max), then (backward only) the gradient written in place. The row
// (200 KB in f32 at V = 50k) stays in L2 across the sweeps; only the max sweep reads DRAM,
// and the exp sweep prefetches the next row into L2 so that its DRAM read overlaps the exps
// (2.5x faster in all on a 2-thread Zen 5, bench/RESULTS.md).
#include "cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "vec_math.h"

namespace plw::cpu {

namespace {

// bf16 is handled as raw uint16_t bits with branch-free conversions, so that GCC
// vectorizes the loops for both element types (a struct load or a branch stops it).
inline float to_f32(float x) { return x; }
inline float to_f32(uint16_t b) {
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline void store(float* p, float x) { *p = x; }
inline void store(uint16_t* p, float x) {  // round to nearest even; NaN stays a quiet NaN
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    *p = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : rounded);
}
inline const uint16_t* raw(const bf16* p) { return reinterpret_cast<const uint16_t*>(p); }
inline uint16_t* raw(bf16* p) { return reinterpret_cast<uint16_t*>(p); }
inline const float* raw(const float* p) { return p; }
inline float* raw(float* p) { return p; }

// Sums of exp are taken in f32 over blocks of this many columns (16 per SIMD lane), and the
// block sums in double: an f32 sum over a whole 50k row would cost ~1e-5 relative on every
// probability; this keeps the error at a few ulp and the inner loop in f32 vectors.
constexpr int kSumBlock = 256;

struct RowStats {
    float max;
    float sum;  // sum of exp(x - max) over the row
};

template <typename T>
float row_max(const T* x, int V) {
    float m = -std::numeric_limits<float>::infinity();
    int nan = 0;  // an int with |, not a bool with ||: GCC 12 leaves the || loop scalar (4x slower)
#pragma omp simd reduction(max : m) reduction(| : nan)
    for (int v = 0; v < V; v++) {
        const float xv = to_f32(x[v]);
        m = xv > m ? xv : m;
        nan |= (xv != xv);
    }
    return nan ? std::numeric_limits<float>::quiet_NaN() : m;  // a NaN row must give a NaN loss
}

// sum of exp(x - m); with `out`, each exp is also stored there (the backward reuses it).
// With `next_row`, the row after this one is prefetched into L2 (one line per 64 bytes).
template <typename T>
float row_sum_exp(const T* x, float m, int V, float* out, const T* next_row = nullptr) {
    double s = 0.0;
    for (int v0 = 0; v0 < V; v0 += kSumBlock) {
        const int v1 = std::min(V, v0 + kSumBlock);
        if (next_row) {
            constexpr int kLine = 64 / sizeof(T);
            for (int v = v0; v < v1; v += kLine) __builtin_prefetch(next_row + v, 0, 2);
        }
        float b = 0.0f;
        if (out) {
#pragma omp simd reduction(+ : b)
            for (int v = v0; v < v1; v++) {
                const float e = exp_nonpositive(to_f32(x[v]) - m);
                out[v] = e;
                b += e;
            }
        } else {
#pragma omp simd reduction(+ : b)
            for (int v = v0; v < v1; v++) b += exp_nonpositive(to_f32(x[v]) - m);
        }
        s += b;
    }
    return static_cast<float>(s);
}

template <typename T>
void forward_impl(float* losses, const T* logits, const int32_t* targets, const float* weights,
                  int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (weights[n] == 0.0f) {
            losses[n] = 0.0f;
            continue;
        }
        const T* x = logits + static_cast<size_t>(n) * Vp;
        const float m = row_max(x, V);
        const T* next = n + 1 < N ? x + Vp : nullptr;  // its DRAM read overlaps these exps
        losses[n] = std::log(row_sum_exp(x, m, V, nullptr, next)) + m - to_f32(x[targets[n]]);
    }
}

// T is float or uint16_t (bf16 bits). The exps are computed once, while summing, into an
// f32 row (dx itself for f32, a per-thread row of V floats for bf16: 200 KB at V = 50k, in
// L2) and then scaled (and, for bf16, rounded once) into dx.
template <typename T>
void backward_impl(T* dlogits, float* losses, const T* logits, const int32_t* targets,
                   const float* weights, float grad_scale, int N, int V, int Vp) {
    constexpr bool kF32 = std::is_same_v<T, float>;
#pragma omp parallel
    {
        std::vector<float> bf16_exps(kF32 ? 0 : V);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const T* x = logits + static_cast<size_t>(n) * Vp;
            T* dx = dlogits + static_cast<size_t>(n) * Vp;
            const float w = weights[n];
            if (w == 0.0f) {
                if (losses) losses[n] = 0.0f;
                for (int v = 0; v < Vp; v++) store(dx + v, 0.0f);
                continue;
            }
            const int32_t t = targets[n];
            const float x_target = to_f32(x[t]);  // read before the row is overwritten in place
            const float m = row_max(x, V);
            float* exps;
            if constexpr (kF32) {
                exps = dx;  // in place is fine: x[v] is read before dx[v] is written
            } else {
                exps = bf16_exps.data();
            }
            const T* next = n + 1 < N ? x + Vp : nullptr;  // its DRAM read overlaps these exps
            const float sum = row_sum_exp(x, m, V, exps, next);
            if (losses) losses[n] = std::log(sum) + m - x_target;
            const float wg = w * grad_scale;
            const float p_scale = wg / sum;
#pragma omp simd
            for (int v = 0; v < V; v++) store(dx + v, exps[v] * p_scale);
            // softmax - onehot at the target, from the softmax value in f32
            store(dx + t, exp_nonpositive(x_target - m) * p_scale - wg);
            for (int v = V; v < Vp; v++) store(dx + v, 0.0f);
        }
    }
}

}  // namespace

void weighted_cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    forward_impl(losses, logits, targets, weights, N, V, Vp);
}
void weighted_cross_entropy_forward(float* losses, const bf16* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    forward_impl(losses, raw(logits), targets, weights, N, V, Vp);
}

void weighted_cross_entropy_backward(float* dlogits, float* losses, const float* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    backward_impl(dlogits, losses, logits, targets, weights, grad_scale, N, V, Vp);
}
void weighted_cross_entropy_backward(bf16* dlogits, float* losses, const bf16* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    backward_impl(raw(dlogits), losses, raw(logits), targets, weights, grad_scale, N, V, Vp);
}

void weighted_loss_sum(double* loss_sum, double* weight_sum, const float* losses,
                       const float* weights, int N) {
    // Sequential on purpose: N is the number of tokens (thousands), and a fixed order keeps
    // the sum bitwise reproducible.
    double l = 0.0, w = 0.0;
    for (int n = 0; n < N; n++) {
        if (weights[n] == 0.0f) continue;  // a zero-weight row may hold anything
        l += static_cast<double>(weights[n]) * losses[n];
        w += weights[n];
    }
    *loss_sum = l;
    *weight_sum = w;
}

int64_t find_invalid_target(const int32_t* targets, const float* weights, int N, int V) {
    for (int n = 0; n < N; n++) {
        if (weights[n] != 0.0f && (targets[n] < 0 || targets[n] >= V)) return n;
    }
    return -1;
}

}  // namespace plw::cpu
