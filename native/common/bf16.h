// bfloat16 storage type shared by the CPU and CUDA backends.
// Host code sees bf16 as 16 raw bits; the CUDA kernels reinterpret the same bits as
// __nv_bfloat16. Conversion from f32 rounds to nearest even (as PyTorch and CUDA do);
// NaN stays NaN.
#pragma once
#include <cstdint>
#include <cstring>

namespace plw {

struct bf16 {
    uint16_t bits;
};
static_assert(sizeof(bf16) == 2, "bf16 must be 2 bytes");

inline float bf16_to_f32(bf16 x) {
    uint32_t u = static_cast<uint32_t>(x.bits) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

inline bf16 f32_to_bf16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
        return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};  // quiet NaN, keep sign
    }
    uint32_t rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    return bf16{static_cast<uint16_t>((u + rounding_bias) >> 16)};
}

}  // namespace plw
