// Scalar math written so that GCC vectorizes the loops that call it (no libm calls,
// no branches). Shared by the CPU kernels; the CUDA kernels use expf/logf instead.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace plw::cpu {

// exp(x) for x <= 0 (the softmax case: x = logit - row max), within 2 ulp of expf.
// exp(x) = 2^k * exp(r), k = round(x / ln2), r = x - k*ln2 split in two constants (Cody-Waite)
// so r is exact to float precision, |r| <= ln2/2; exp(r) by its Taylor series to r^7
// (truncation error r^8/8! < 5e-9, below half an ulp). Below -87.3 the result would be
// subnormal: it is clamped there (exp(-87.3) ~ 1.2e-38, negligible next to a sum >= 1).
// NaN propagates (the clamp compares, it does not fmax).
inline float exp_nonpositive(float x) {
    x = x < -87.3f ? -87.3f : x;
    const float k = std::floor(x * 1.44269504088896341f + 0.5f);
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
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

}  // namespace plw::cpu
