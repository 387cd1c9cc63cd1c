// What the CPU backend was compiled for, for backendInfo() and benchmark reports.
#pragma once

namespace plw::cpu {

const char* simd_level();  // "avx512", "avx2+fma", "avx", "sse2" or "generic"
int max_threads();         // OpenMP threads the kernels use

}  // namespace plw::cpu
