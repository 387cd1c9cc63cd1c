// CPU reference: linear layer y = x . W + b, weight stored (IC, OC) (InOut, Conv1D) or
// (OC, IC) (OutIn, nn.Linear) (see linear.h). Shapes: N = rows (B*T), IC = in channels,
// OC = out channels.
//
// The three products go through sgemm (matmul.h), which reduces each output element on one
// thread in a fixed order, so they are bitwise independent of the thread count. The layout
// only changes which operand sgemm reads transposed:
//                                                         InOut (IC,OC)   OutIn (OC,IC)
//   forward   out = bias (broadcast), then out += inp . W    sgemm NN        sgemm NT
//   backward  dinp += dout . W^T                             sgemm NT        sgemm NN
//             dweight += (InOut) inp^T . dout                sgemm TN
//                        (OutIn) dout^T . inp                                sgemm TN
// all with beta = 1 (beta = 0 for a forward without bias).
// dbias sums dout over rows: each thread owns a slice of columns and adds the rows in order
// (no split reduction), as embedding_backward does.
#include "linear.h"

#include <algorithm>
#include <cstddef>

#include <omp.h>

#include "matmul.h"

namespace plw::cpu {

namespace {

// The slice [c0, c1) of C columns owned by the calling thread of a parallel region: equal
// parts rounded up to 16 floats (one cache line), so no two threads write the same line.
void column_slice(int C, int* c0, int* c1) {
    const int nt = omp_get_num_threads();
    const int tid = omp_get_thread_num();
    const int per = ((C + nt - 1) / nt + 15) / 16 * 16;
    *c0 = std::min(C, tid * per);
    *c1 = std::min(C, *c0 + per);
}

}  // namespace

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout) {
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float* o = out + static_cast<size_t>(n) * OC;
#pragma omp simd
            for (int j = 0; j < OC; j++) o[j] = bias[j];
        }
    }
    const float beta = bias ? 1.0f : 0.0f;  // out holds the bias, or is written unread
    if (layout == WeightLayout::InOut) {
        // out (N,OC) = inp (N,IC) . weight (IC,OC)
        sgemm(false, false, N, OC, IC, 1.0f, inp, IC, weight, OC, beta, out, OC);
    } else {
        // out (N,OC) = inp (N,IC) . weight^T, weight stored (OC,IC) = (N_gemm, K_gemm)
        sgemm(false, true, N, OC, IC, 1.0f, inp, IC, weight, IC, beta, out, OC);
    }
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout) {
    if (layout == WeightLayout::InOut) {
        // dinp (N,IC) += dout (N,OC) . weight^T, weight stored (IC,OC) = (N_gemm, K_gemm)
        sgemm(false, true, N, IC, OC, 1.0f, dout, OC, weight, OC, 1.0f, dinp, IC);
        // dweight (IC,OC) += inp^T . dout, inp stored (N,IC) = (K_gemm, M_gemm)
        if (dweight) sgemm(true, false, IC, OC, N, 1.0f, inp, IC, dout, OC, 1.0f, dweight, OC);
    } else {
        // dinp (N,IC) += dout (N,OC) . weight, weight stored (OC,IC) = (K_gemm, N_gemm)
        sgemm(false, false, N, IC, OC, 1.0f, dout, OC, weight, IC, 1.0f, dinp, IC);
        // dweight (OC,IC) += dout^T . inp, dout stored (N,OC) = (K_gemm, M_gemm)
        if (dweight) sgemm(true, false, OC, IC, N, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
    }
    if (dbias) {
#pragma omp parallel
        {
            int j0, j1;
            column_slice(OC, &j0, &j1);
            for (int n = 0; n < N; n++) {
                const float* d = dout + static_cast<size_t>(n) * OC;
#pragma omp simd
                for (int j = j0; j < j1; j++) dbias[j] += d[j];
            }
        }
    }
}

}  // namespace plw::cpu
