// CPU reference: AdamW with torch.optim.AdamW semantics (see adamw.h for the update).
#include "adamw.h"

#include <algorithm>
#include <cmath>

namespace plw::cpu {

AdamWFactors adamw_factors(const AdamWParams& hp) {
    AdamWFactors f;
    f.decay = static_cast<float>(1.0 - hp.lr * hp.weight_decay);
    f.one_minus_beta1 = static_cast<float>(1.0 - hp.beta1);
    f.beta2 = static_cast<float>(hp.beta2);
    f.one_minus_beta2 = static_cast<float>(1.0 - hp.beta2);
    f.step_size = static_cast<float>(hp.lr / (1.0 - std::pow(hp.beta1, hp.step)));
    f.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(hp.beta2, hp.step)));
    f.eps = static_cast<float>(hp.eps);
    f.grad_scale = hp.grad_scale;
    return f;
}

void adamw_update(float* params, float* m, float* v, const float* grads, size_t n,
                  const AdamWParams& hp) {
    const AdamWFactors f = adamw_factors(hp);
    const long long count = static_cast<long long>(n);
#pragma omp parallel for simd schedule(static)
    for (long long i = 0; i < count; i++) {
        const float g = grads[i] * f.grad_scale;
        const float p = params[i] * f.decay;
        const float mi = m[i] + f.one_minus_beta1 * (g - m[i]);  // torch's lerp
        const float vi = f.beta2 * v[i] + f.one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - f.step_size * (mi / (std::sqrt(vi) / f.bc2_sqrt + f.eps));
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
        // Eight running sums, combined in a fixed order: one sum would wait on each add
        // (latency-bound, ~8 GB/s); eight keep the loop at memory speed and stay deterministic.
        double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        long long i = lo;
        for (; i + 8 <= hi; i += 8) {
            for (int k = 0; k < 8; k++) s[k] += static_cast<double>(grads[i + k]) * grads[i + k];
        }
        for (; i < hi; i++) s[0] += static_cast<double>(grads[i]) * grads[i];
        partial[b] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
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
