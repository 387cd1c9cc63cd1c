// CPU reference: AdamW with torch.optim.AdamW semantics (see adamw.h for the update).
#include "adamw.h"

#include <algorithm>
#include <cmath>

namespace plw::cpu {

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp) {
    // Scalars in double, as torch computes them from Python floats, then rounded once.
    const double bias_correction1 = 1.0 - std::pow(static_cast<double>(hp.beta1), hp.step);
    const double bias_correction2 = 1.0 - std::pow(static_cast<double>(hp.beta2), hp.step);
    const float step_size = static_cast<float>(static_cast<double>(hp.lr) / bias_correction1);
    const float bc2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
    const float decay = static_cast<float>(1.0 - static_cast<double>(hp.lr) * hp.weight_decay);
    const float one_minus_beta1 = static_cast<float>(1.0 - static_cast<double>(hp.beta1));
    const float one_minus_beta2 = static_cast<float>(1.0 - static_cast<double>(hp.beta2));
    const float beta2 = hp.beta2, eps = hp.eps, gs = hp.grad_scale;
    const long long count = static_cast<long long>(n);
#pragma omp parallel for simd schedule(static)
    for (long long i = 0; i < count; i++) {
        const float g = grads[i] * gs;
        const float p = params[i] * decay;
        const float mi = m[i] + one_minus_beta1 * (g - m[i]);
        const float vi = beta2 * v[i] + one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / (std::sqrt(vi) / bc2_sqrt + eps));
    }
}

double grad_sum_squares(const float* grads, size_t n) {
    // Fixed blocks summed in a fixed order: bitwise the same for any thread count.
    constexpr long long kBlocks = 64;
    double partial[kBlocks];
    const long long count = static_cast<long long>(n);
    const long long per = (count + kBlocks - 1) / kBlocks;
#pragma omp parallel for schedule(static)
    for (long long b = 0; b < kBlocks; b++) {
        const long long lo = std::min(count, b * per), hi = std::min(count, lo + per);
        double s = 0.0;
        for (long long i = lo; i < hi; i++) s += static_cast<double>(grads[i]) * grads[i];
        partial[b] = s;
    }
    double total = 0.0;
    for (long long b = 0; b < kBlocks; b++) total += partial[b];
    return total;
}

float clip_coefficient(double total_norm, float max_norm) {
    if (!(max_norm > 0.0f)) return 1.0f;
    const double coef = static_cast<double>(max_norm) / (total_norm + 1e-6);
    return static_cast<float>(std::min(coef, 1.0));
}

}  // namespace plw::cpu
