// CPU reference: token + position embedding, the position table optional (see embedding.h).
#include "embedding.h"

#include <algorithm>
#include <cstddef>

#include <omp.h>

namespace plw::cpu {

void embedding_forward(float* out, const int32_t* tokens, const int32_t* positions,
                       const float* wte, const float* wpe, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float* te = wte + static_cast<size_t>(tokens[n]) * C;
        float* o = out + static_cast<size_t>(n) * C;
        if (wpe) {
            const float* pe = wpe + static_cast<size_t>(positions[n]) * C;
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) o[c] = te[c];
        }
    }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                        const int32_t* positions, int N, int C) {
    // Rows with the same token add into the same gradient row, so rows cannot be split
    // across threads without races or atomics. Channels can: each thread owns a slice of
    // channels and walks all rows in order, so every sum has one fixed order.
#pragma omp parallel
    {
        const int nt = omp_get_num_threads();
        const int tid = omp_get_thread_num();
        const int per = (C + nt - 1) / nt;
        const int c0 = std::min(C, tid * per);
        const int c1 = std::min(C, c0 + per);
        for (int n = 0; n < N; n++) {
            const float* d = dout + static_cast<size_t>(n) * C;
            float* gte = dwte + static_cast<size_t>(tokens[n]) * C;
            if (dwpe) {
                float* gpe = dwpe + static_cast<size_t>(positions[n]) * C;
#pragma omp simd
                for (int c = c0; c < c1; c++) {
                    gte[c] += d[c];
                    gpe[c] += d[c];
                }
            } else {
#pragma omp simd
                for (int c = c0; c < c1; c++) gte[c] += d[c];
            }
        }
    }
}

int64_t find_out_of_range(const int32_t* ids, int64_t n, int32_t limit) {
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= limit) return i;
    }
    return -1;
}

}  // namespace plw::cpu
