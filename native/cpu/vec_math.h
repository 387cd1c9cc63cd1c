// Scalar math written so that GCC vectorizes the loops that call it (no libm calls,
// no branches). Shared by the CPU kernels; the CUDA kernels use expf/logf instead.
#pragma once
#include <cstdint>

namespace plw::cpu {

// exp(x) for x <= 0 (the softmax case: x = logit - row max), within 2 ulp of expf.
// exp(x) = 2^k * exp(r), k = round(x / ln2), r = x - k*ln2 split in two constants (Cody-Waite)
// so r is exact to float precision, |r| <= ln2/2 (a little more if t was contracted into
// an FMA, still well inside the series' range); exp(r) by its Taylor series to r^7
// (truncation error r^8/8! < 5e-9, below half an ulp). Below -87.3 the result would be
// subnormal: it is clamped there (exp(-87.3) ~ 1.2e-38, negligible next to a sum >= 1).
// NaN propagates (the clamp compares, it does not fmax).
inline float exp_nonpositive(float x) {
    x = x < -87.3f ? -87.3f : x;
    // k = round(x / ln2) by adding and subtracting 1.5 * 2^23 (exact for |t| < 2^22), not
    // std::floor: GCC 12 does not vectorize a loop that calls floor, and this is 9x faster.
    const float t = x * 1.44269504088896341f;
    const float k = (t + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693145751953125f) - k * 1.42860682030941723e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
    // 2^k from its bits (a register-level pun).
    return p * __builtin_bit_cast(float, bits);
}

}  // namespace plw::cpu
