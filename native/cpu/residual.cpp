// CPU reference: residual connection (see residual.h). Elementwise, so the split across
// threads cannot change a result; the loops are memory-bound single sweeps.
#include "residual.h"

#include <cstddef>

namespace plw::cpu {

void residual_forward(float* out, const float* a, const float* b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void residual_backward(float* da, float* db, const float* dout, size_t n) {
    // One sweep for both. Not `omp simd`: that would license reordering the load of db[i]
    // before the store of da[i]; the auto-vectorizer keeps da == db (one tensor used as both
    // inputs) correct with a run-time overlap check.
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float d = dout[i];
        da[i] += d;
        db[i] += d;
    }
}

}  // namespace plw::cpu
