// CPU reference: weighted cross-entropy (see cross_entropy.h for the math and shapes).
// This file is the reference the CUDA twin (native/cuda/cross_entropy.cu) is tested against.
//
// Each row is independent: rows are split across OpenMP threads (static schedule, so the
// result does not depend on timing), and each row is three vectorized sweeps over V:
// max, sum of exp(x - max), then (backward only) the gradient written in place.
#include "cross_entropy.h"

#include <cmath>
#include <limits>

#include "vec_math.h"

namespace plw::cpu {

namespace {

inline float to_f32(float x) { return x; }
inline float to_f32(bf16 x) { return bf16_to_f32(x); }
inline void store(float* p, float x) { *p = x; }
inline void store(bf16* p, float x) { *p = f32_to_bf16(x); }

struct RowStats {
    float max;
    float sum;  // sum of exp(x - max) over the row
};

template <typename T>
RowStats row_stats(const T* x, int V) {
    float m = -std::numeric_limits<float>::infinity();
    bool nan = false;
#pragma omp simd reduction(max : m) reduction(|| : nan)
    for (int v = 0; v < V; v++) {
        const float xv = to_f32(x[v]);
        m = xv > m ? xv : m;
        nan = nan || (xv != xv);
    }
    if (nan) m = std::numeric_limits<float>::quiet_NaN();  // the loss must come out NaN
    // The sum runs over up to ~250k terms: accumulated in double, an f32 sum would cost
    // ~1e-5 relative on every probability of a 50k vocabulary.
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int v = 0; v < V; v++) s += exp_nonpositive(to_f32(x[v]) - m);
    return {m, static_cast<float>(s)};
}

template <typename T>
float row_loss(const T* x, const RowStats& st, int32_t target) {
    return std::log(st.sum) + st.max - to_f32(x[target]);
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
        losses[n] = row_loss(x, row_stats(x, V), targets[n]);
    }
}

template <typename T>
void backward_impl(T* dlogits, float* losses, const T* logits, const int32_t* targets,
                   const float* weights, float grad_scale, int N, int V, int Vp) {
#pragma omp parallel for schedule(static)
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
        const RowStats st = row_stats(x, V);
        const float x_target = to_f32(x[t]);  // read before the row is overwritten in place
        if (losses) losses[n] = std::log(st.sum) + st.max - x_target;
        const float wg = w * grad_scale;
        const float p_scale = wg / st.sum;
        const float m = st.max;
#pragma omp simd
        for (int v = 0; v < V; v++) store(dx + v, exp_nonpositive(to_f32(x[v]) - m) * p_scale);
        // softmax - onehot at the target, from the softmax value just computed (in f32)
        const float p_target = exp_nonpositive(x_target - m) * p_scale;
        store(dx + t, p_target - wg);
        for (int v = V; v < Vp; v++) store(dx + v, 0.0f);
    }
}

}  // namespace

void weighted_cross_entropy_forward(float* losses, const float* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    forward_impl(losses, logits, targets, weights, N, V, Vp);
}
void weighted_cross_entropy_forward(float* losses, const bf16* logits, const int32_t* targets,
                                    const float* weights, int N, int V, int Vp) {
    forward_impl(losses, logits, targets, weights, N, V, Vp);
}

void weighted_cross_entropy_backward(float* dlogits, float* losses, const float* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    backward_impl(dlogits, losses, logits, targets, weights, grad_scale, N, V, Vp);
}
void weighted_cross_entropy_backward(bf16* dlogits, float* losses, const bf16* logits,
                                     const int32_t* targets, const float* weights, float grad_scale,
                                     int N, int V, int Vp) {
    backward_impl(dlogits, losses, logits, targets, weights, grad_scale, N, V, Vp);
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
