#include "convert.h"

#include <cstdint>

namespace plw::cpu {

void convert(bf16* dst, const float* src, size_t n) {
#pragma omp parallel for schedule(static) if (n > (size_t(1) << 16))
    for (int64_t i = 0; i < static_cast<int64_t>(n); i++) dst[i] = f32_to_bf16(src[i]);
}

void convert(float* dst, const bf16* src, size_t n) {
#pragma omp parallel for schedule(static) if (n > (size_t(1) << 16))
    for (int64_t i = 0; i < static_cast<int64_t>(n); i++) dst[i] = bf16_to_f32(src[i]);
}

}  // namespace plw::cpu
