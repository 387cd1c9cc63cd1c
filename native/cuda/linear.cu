// Linear layer y = x . W + b, weight stored (IC, OC) (InOut, Conv1D) or (OC, IC) (OutIn,
// nn.Linear), the CUDA twin of native/cpu/linear.h (the reference: same names, arguments and
// math).
//
// Shapes: N = rows (B*T), IC = in channels, OC = out channels; W = weight (InOut) or
// weight^T (OutIn), the (IC, OC) matrix x is multiplied by.
//   forward:  out (N, OC) = inp (N, IC) . W + bias (OC)                    (bias may be null)
//   backward: dinp (N, IC) += dout (N, OC) . W^T
//             dweight      += inp^T . dout, in weight's layout             (IC,OC) or (OC,IC)
//                             (dweight may be null: a frozen weight, no dweight GEMM)
//             dbias (OC)   += sum over rows of dout                         (dbias may be null)
//
// Two precisions, one templated implementation:
//   f32:  every operand f32; the GEMMs use TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32:
//         10-bit mantissa inputs, f32 accumulation), so results match the f32 reference to
//         ~1e-3 relative, not to f32 rounding.
//   bf16: out, inp, weight, bias, dinp and dout bf16; dweight and dbias f32. bf16 tensor
//         cores with f32 accumulation (CUBLAS_COMPUTE_32F, A/B CUDA_R_16BF); out and dinp
//         are rounded to bf16 once, when the GEMM stores them (dinp's += reads the bf16 C,
//         adds in f32, rounds once); dweight is an f32 D (beta = 1) of bf16 A/B.
// The bias is the GEMM's CUBLASLT_EPILOGUE_BIAS (the bias has D's type) when it is 16-byte
// aligned, else a separate add kernel (in bf16 out is then rounded twice: by the GEMM and
// by the add). dbias is our own deterministic column sum (column_sum.cuh, summed in f32):
// cuBLASLt's BGRADB epilogue overwrites instead of accumulating.
//
// cuBLASLt is column-major; a row-major (R, K) matrix with row stride ld is, in the same
// memory, a column-major (K, R) matrix with leading dimension ld (its transpose). So:
//   inp     row-major (N, IC)  = col-major (IC, N)  ld IC
//   weight  InOut: row-major (IC, OC) = col-major (OC, IC) ld OC
//           OutIn: row-major (OC, IC) = col-major (IC, OC) ld IC
//   out     row-major (N, OC)  = col-major (OC, N)  ld OC   (dout alike)
// and every GEMM is written for these views; the layout only flips the op on the weight (and
// which operand comes first in dweight):
//   forward  out^T (OC, N) = W^T-view (OC, IC) . inp-view (IC, N)  [+ bias (OC) per column]
//        A = weight: InOut col-major (OC, IC) ld OC, op N;         m = OC
//                    OutIn col-major (IC, OC) ld IC, op T
//        B = inp col-major (IC, N) ld IC, op N                     n = N, k = IC
//        D = out col-major (OC, N) ld OC, beta = 0; the epilogue adds bias[o] to row o of D,
//        i.e. to out[n, o] for every n.
//        Check: D[o, n] = sum_i W[i, o] * inp[n, i] = (inp . W)[n, o].
//   dinp     dinp^T (IC, N) += W-view (IC, OC) . dout-view (OC, N)
//        A = weight: InOut col-major (OC, IC) ld OC, op T;         m = IC
//                    OutIn col-major (IC, OC) ld IC, op N
//        B = dout col-major (OC, N) ld OC, op N                    n = N, k = OC
//        D = dinp col-major (IC, N) ld IC, beta = 1
//        Check: D[i, n] = sum_o W[i, o] * dout[n, o] = (dout . W^T)[n, i].
//   dweight, InOut (IC, OC): dweight^T-view (OC, IC) += dout-view (OC, N) . inp-view^T (N, IC)
//        A = dout col-major (OC, N) ld OC, op N                    m = OC
//        B = inp col-major (IC, N) ld IC, op T -> (N, IC)          n = IC, k = N
//        D = dweight col-major (OC, IC) ld OC, beta = 1
//        Check: D[o, i] = sum_n dout[n, o] * inp[n, i] = (inp^T . dout)[i, o].
//   dweight, OutIn (OC, IC): dweight^T-view (IC, OC) += inp-view (IC, N) . dout-view^T (N, OC)
//        A = inp col-major (IC, N) ld IC, op N                     m = IC
//        B = dout col-major (OC, N) ld OC, op T -> (N, OC)         n = OC, k = N
//        D = dweight col-major (IC, OC) ld IC, beta = 1
//        Check: D[i, o] = sum_n inp[n, i] * dout[n, o] = (dout^T . inp)[o, i].
//
// Cost: each GEMM is 2 * N * IC * OC flops; at GPT-2 sizes (N = 8k-16k, IC/OC = 768-3072)
// they are compute-bound, ~60-70% of the dense tensor-core peak expected (H100 SXM: ~495
// TFLOP/s TF32, ~990 bf16). dbias reads dout once (4 or 2 * N * OC bytes, memory-bound).
#include "linear.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "check.cuh"
#include "column_sum.cuh"
#include "common.cuh"
#include "lt_matmul.cuh"

namespace plw::cuda {

namespace {

using detail::is_aligned;

// ----------------------------------------------------------------------------
// CUDA kernels

// out (N, OC) += bias broadcast over rows; grid-stride over N * OC elements. Only for a bias
// that the GEMM epilogue cannot take (not 16-byte aligned). T: float, or uint16_t (raw bf16:
// the sum is formed in f32 and rounded once). A template also so that a build without
// cuBLASLt, where nothing launches it, has no unused function.
template <typename T>
__global__ void add_bias_kernel(T* out, const T* bias, int64_t rows, int cols) {
    const int64_t total = rows * cols;
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
         idx += stride) {
        out[idx] = detail::from_float<T>(detail::to_float(out[idx]) +
                                         detail::to_float(bias[idx % cols]));
    }
}

}  // namespace

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT

namespace {

using detail::lt_matmul;
using detail::LtOperand;
using detail::LtTypes;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;

void check_shape(const char* what, int N, int IC, int OC) {
    PLW_CHECK(N >= 0 && IC > 0 && OC > 0,
              what << ": bad shape N=" << N << " IC=" << IC << " OC=" << OC);
}

using detail::Raw;
using detail::raw;

// The weight as cuBLASLt's A operand of the forward and dinp GEMMs: its column-major view
// and the op that turns that view into W^T (OC, IC), for the forward.
template <typename T>
LtOperand weight_view(const T* weight, int IC, int OC, WeightLayout layout) {
    return layout == WeightLayout::InOut
               ? LtOperand{weight, LtTypes<T>::kData, uint64_t(OC), uint64_t(IC), OC}
               : LtOperand{weight, LtTypes<T>::kData, uint64_t(IC), uint64_t(OC), IC};
}
cublasOperation_t forward_op(WeightLayout layout) {
    return layout == WeightLayout::InOut ? CUBLAS_OP_N : CUBLAS_OP_T;
}
cublasOperation_t dinp_op(WeightLayout layout) {
    return layout == WeightLayout::InOut ? CUBLAS_OP_T : CUBLAS_OP_N;
}

template <typename T>
void forward_impl(T* out, const T* inp, const T* weight, const T* bias, int N, int IC, int OC,
                  WeightLayout layout) {
    check_shape("linear_forward", N, IC, OC);
    if (N == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && inp != nullptr && weight != nullptr,
              "linear_forward: null device pointer");
    constexpr cudaDataType_t kData = LtTypes<T>::kData;
    const bool epilogue = bias != nullptr && is_aligned(bias, 16);
    lt_matmul("linear forward", LtTypes<T>::kCompute,
              forward_op(layout), weight_view(weight, IC, OC, layout),
              CUBLAS_OP_N, LtOperand{inp, kData, uint64_t(IC), uint64_t(N), IC},
              out, kData, uint64_t(OC), uint64_t(N), OC, 0.0f,
              epilogue ? bias : nullptr);
    if (bias != nullptr && !epilogue) {
        const int64_t total = static_cast<int64_t>(N) * OC;
        add_bias_kernel<Raw<T>><<<detail::grid_for(total, kThreads, kMaxBlocks), kThreads>>>(raw(out), raw(bias), N, OC);
        PLW_CUDA_CHECK_LAUNCH("add_bias_kernel");
    }
}

// dinp has the activations' type T; dweight and dbias are f32 in both precisions. dweight
// null (a frozen weight): dinp and dbias only.
template <typename T>
void backward_impl(T* dinp, float* dweight, float* dbias, const T* dout, const T* inp,
                   const T* weight, int N, int IC, int OC, WeightLayout layout) {
    check_shape("linear_backward", N, IC, OC);
    if (N == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dout != nullptr && inp != nullptr && weight != nullptr,
              "linear_backward: null device pointer");
    constexpr cudaDataType_t kData = LtTypes<T>::kData;
    const LtOperand inp_view{inp, kData, uint64_t(IC), uint64_t(N), IC};
    const LtOperand dout_view{dout, kData, uint64_t(OC), uint64_t(N), OC};
    lt_matmul("linear dinp", LtTypes<T>::kCompute,
              dinp_op(layout), weight_view(weight, IC, OC, layout),
              CUBLAS_OP_N, dout_view,
              dinp, kData, uint64_t(IC), uint64_t(N), IC, 1.0f);
    if (dweight != nullptr && layout == WeightLayout::InOut) {
        lt_matmul("linear dweight", LtTypes<T>::kCompute, CUBLAS_OP_N, dout_view, CUBLAS_OP_T,
                  inp_view, dweight, CUDA_R_32F, uint64_t(OC), uint64_t(IC), OC, 1.0f);
    } else if (dweight != nullptr) {
        lt_matmul("linear dweight", LtTypes<T>::kCompute, CUBLAS_OP_N, inp_view, CUBLAS_OP_T,
                  dout_view, dweight, CUDA_R_32F, uint64_t(IC), uint64_t(OC), IC, 1.0f);
    }
    if (dbias != nullptr) {
        detail::column_sum_accumulate(dbias, raw(dout), N, OC, OC);
    }
}

}  // namespace

// ----------------------------------------------------------------------------
// linear.h

void linear_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                    int IC, int OC, WeightLayout layout) {
    forward_impl(out, inp, weight, bias, N, IC, OC, layout);
}

void linear_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N,
                    int IC, int OC, WeightLayout layout) {
    forward_impl(out, inp, weight, bias, N, IC, OC, layout);
}

void linear_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                     const float* inp, const float* weight, int N, int IC, int OC,
                     WeightLayout layout) {
    backward_impl(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout);
}

void linear_backward(bf16* dinp, float* dweight, float* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int IC, int OC, WeightLayout layout) {
    backward_impl(dinp, dweight, dbias, dout, inp, weight, N, IC, OC, layout);
}

#else  // no cuBLASLt: the backend reports itself unavailable, and these throw if reached

void linear_forward(float*, const float*, const float*, const float*, int, int, int, WeightLayout) {
    detail::no_cublaslt("linear_forward", __FILE__, __LINE__);
}

void linear_forward(bf16*, const bf16*, const bf16*, const bf16*, int, int, int, WeightLayout) {
    detail::no_cublaslt("linear_forward", __FILE__, __LINE__);
}

void linear_backward(float*, float*, float*, const float*, const float*, const float*, int, int,
                     int, WeightLayout) {
    detail::no_cublaslt("linear_backward", __FILE__, __LINE__);
}

void linear_backward(bf16*, float*, float*, const bf16*, const bf16*, const bf16*, int, int,
                     int, WeightLayout) {
    detail::no_cublaslt("linear_backward", __FILE__, __LINE__);
}

#endif

}  // namespace plw::cuda
