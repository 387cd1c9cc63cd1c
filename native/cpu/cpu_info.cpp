// Compiled with the CPU kernels' flags (-march), so it reports what they use.
#include "cpu_info.h"

#include <omp.h>

namespace plw::cpu {

const char* simd_level() {
#if defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2+fma";
#elif defined(__AVX__)
    return "avx";
#elif defined(__SSE2__)
    return "sse2";
#else
    return "generic";
#endif
}

int max_threads() { return omp_get_max_threads(); }

}  // namespace plw::cpu
