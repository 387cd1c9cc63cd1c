// CPU reference: the decode-step ops of generation (see decode.h).
#include "decode.h"

#include <cmath>
#include <vector>

#include "matmul.h"
#include "vec_math.h"

namespace plw::cpu {

void attention_decode_forward(float* out, const float* q, const float* kcache, const float* vcache, int T,
                              int NH, int NKV, int hs) {
    const int n_rep = NH / NKV;
    const size_t row = static_cast<size_t>(NKV) * hs;  // a cache row
    const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
#pragma omp parallel for schedule(static)
    for (int h = 0; h < NH; h++) {
        std::vector<float> score(T);
        const float* qh = q + h * hs;
        const int j = h / n_rep;  // its KV head
        float m = -INFINITY;
        for (int t = 0; t < T; t++) {
            const float* k = kcache + t * row + j * hs;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < hs; i++) s += qh[i] * k[i];
            score[t] = s * scale;
            m = score[t] > m ? score[t] : m;
        }
        float z = 0.0f;
        for (int t = 0; t < T; t++) {
            score[t] = exp_nonpositive(score[t] - m);
            z += score[t];
        }
        float* o = out + h * hs;
        for (int i = 0; i < hs; i++) o[i] = 0.0f;
        for (int t = 0; t < T; t++) {
            const float p = score[t] / z;
            const float* v = vcache + t * row + j * hs;
#pragma omp simd
            for (int i = 0; i < hs; i++) o[i] += p * v[i];
        }
    }
}

void head_logits_forward(float* out, const float* x, const float* wte, int C, int V) {
    sgemm(false, true, 1, V, C, 1.0f, x, C, wte, C, 0.0f, out, V);
}

}  // namespace plw::cpu
