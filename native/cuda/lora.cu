// LoRA adapter products and dropout, the CUDA twin of native/cpu/lora.h (the reference: same
// names, arguments and math).
//
// Shapes: N = rows (B*T), IC = in channels, OC = out channels, r = the adapter's rank;
// A stored (r, IC), B stored (OC, r) (nn.Linear layout: PEFT's lora_A / lora_B).
//   forward   xs (N, r)    = scaling * inp (N, IC) . A^T       beta 0, alpha = scaling
//             out (N, OC) += xs . B^T                          beta 1
//   backward  dB (OC, r)  += dout^T . xs                       beta 1
//             dxs (N, r)   = scaling * dout . B                beta 0, alpha = scaling
//             dA (r, IC)  += dxs^T . inp                       beta 1
//             dinp (N, IC) += dxs . A                          beta 1
// in the reference's order; scaling is the GEMM's alpha, as in the reference's sgemm calls.
//
// Two precisions, one templated implementation (as linear.cu):
//   f32:  every operand f32; TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: 10-bit mantissa
//         inputs, f32 accumulation), so results match the f32 reference to ~1e-3 relative.
//   bf16: out, xs, inp, A, B, dinp, dxs and dout bf16; dA and dB f32. bf16 tensor cores with
//         f32 accumulation (CUBLAS_COMPUTE_32F, A/B CUDA_R_16BF). xs and dxs are rounded to
//         bf16 when their GEMM stores them, and the next products read the rounded values
//         (out from xs; dA and dinp from dxs), as a bf16 PyTorch graph does; out's and dinp's
//         += read the bf16 C, add in f32, round once; dA and dB are f32 Ds (beta = 1) of bf16
//         A/B operands, as linear.cu's dweight.
//
// cuBLASLt is column-major; a row-major (R, K) matrix with row stride ld is, in the same
// memory, a column-major (K, R) matrix with leading dimension ld (its transpose). So:
//   inp   row-major (N, IC) = col-major (IC, N)  ld IC      (dinp alike)
//   A     row-major (r, IC) = col-major (IC, r)  ld IC
//   B     row-major (OC, r) = col-major (r, OC)  ld r       (dB alike)
//   xs    row-major (N, r)  = col-major (r, N)   ld r       (dxs alike)
//   out   row-major (N, OC) = col-major (OC, N)  ld OC      (dout alike)
//   dA    row-major (r, IC) = col-major (IC, r)  ld IC
// and every GEMM is written for these views:
//   xs       xs^T (r, N) = scaling * A-view^T (r, IC) . inp-view (IC, N)
//        A = A col-major (IC, r) ld IC, op T -> (r, IC)            m = r
//        B = inp col-major (IC, N) ld IC, op N                     n = N, k = IC
//        D = xs col-major (r, N) ld r, alpha = scaling, beta = 0
//        Check: D[j, n] = scaling * sum_i A[j, i] * inp[n, i] = scaling * (inp . A^T)[n, j].
//   out      out^T (OC, N) += B-view^T (OC, r) . xs-view (r, N)
//        A = B col-major (r, OC) ld r, op T -> (OC, r)             m = OC
//        B = xs col-major (r, N) ld r, op N                        n = N, k = r
//        D = out col-major (OC, N) ld OC, beta = 1
//        Check: D[o, n] = sum_j B[o, j] * xs[n, j] = (xs . B^T)[n, o].
//   dB       dB^T-view (r, OC) += xs-view (r, N) . dout-view^T (N, OC)
//        A = xs col-major (r, N) ld r, op N                        m = r
//        B = dout col-major (OC, N) ld OC, op T -> (N, OC)         n = OC, k = N
//        D = dB col-major (r, OC) ld r, f32, beta = 1
//        Check: D[j, o] = sum_n xs[n, j] * dout[n, o] = (dout^T . xs)[o, j].
//   dxs      dxs^T (r, N) = scaling * B-view (r, OC) . dout-view (OC, N)
//        A = B col-major (r, OC) ld r, op N                        m = r
//        B = dout col-major (OC, N) ld OC, op N                    n = N, k = OC
//        D = dxs col-major (r, N) ld r, alpha = scaling, beta = 0
//        Check: D[j, n] = scaling * sum_o B[o, j] * dout[n, o] = scaling * (dout . B)[n, j].
//   dA       dA^T-view (IC, r) += inp-view (IC, N) . dxs-view^T (N, r)
//        A = inp col-major (IC, N) ld IC, op N                     m = IC
//        B = dxs col-major (r, N) ld r, op T -> (N, r)             n = r, k = N
//        D = dA col-major (IC, r) ld IC, f32, beta = 1
//        Check: D[i, j] = sum_n inp[n, i] * dxs[n, j] = (dxs^T . inp)[j, i].
//   dinp     dinp^T (IC, N) += A-view (IC, r) . dxs-view (r, N)
//        A = A col-major (IC, r) ld IC, op N                       m = IC
//        B = dxs col-major (r, N) ld r, op N                       n = N, k = r
//        D = dinp col-major (IC, N) ld IC, beta = 1
//        Check: D[i, n] = sum_j A[j, i] * dxs[n, j] = (dxs . A)[n, i].
//
// Dropout: element i is kept when plw::dropout_keep(seed, i, dropout_threshold(p)) (the hash
// of common/dropout_mask.h, the same on the CPU), so both backends drop exactly the same
// elements. The threshold and scale = 1 / (1 - p) are formed on the host as the reference
// forms them; kept f32 values are in * scale (forward) and dinp + dout * scale (backward,
// with the product rounded before the add, __fmul_rn, so that no FMA contraction changes the
// bits): bitwise the reference's. bf16: the same f32 math on the widened values, rounded once
// to nearest even. Dropped elements of dinp are not touched. out may alias in. Grid-stride,
// one element per thread per step, 64-bit indices.
//
// Cost: each product is 2 * N * r * (IC or OC) flops; with r << IC, OC (8-64) the GEMMs are
// thin and bound by reading/writing the (N, IC) and (N, OC) operands: forward ~ one pass over
// inp and a read-modify-write of out, backward two passes over dout, one over inp and a
// read-modify-write of dinp. Dropout moves 2 (forward) or 3 (backward, kept elements) values
// per element and hashes each index (three 64-bit multiplies): memory-bound or close to it.
// Not measured on a GPU yet.
#include "lora.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "../common/dropout_mask.h"
#include "check.cuh"
#include "common.cuh"
#include "lt_matmul.cuh"

namespace plw::cuda {

namespace {

using detail::from_float;
using detail::to_float;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

// ----------------------------------------------------------------------------
// CUDA kernels. T: float, or uint16_t (raw bf16: f32 math, rounded once when stored).

// out[i] = keep(i) ? in[i] * scale : 0, i < n.
template <typename T>
__global__ void dropout_forward_kernel(T* out, const T* in, int64_t n, uint64_t seed,
                                       uint32_t threshold, float scale) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        const bool keep = dropout_keep(seed, static_cast<uint64_t>(i), threshold);
        out[i] = from_float<T>(keep ? to_float(in[i]) * scale : 0.0f);
    }
}

// dinp[i] += dout[i] * scale where keep(i); the dropped elements are not touched.
template <typename T>
__global__ void dropout_backward_kernel(T* dinp, const T* dout, int64_t n, uint64_t seed,
                                        uint32_t threshold, float scale) {
    const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += stride) {
        if (dropout_keep(seed, static_cast<uint64_t>(i), threshold)) {
            dinp[i] = from_float<T>(to_float(dinp[i]) + __fmul_rn(to_float(dout[i]), scale));
        }
    }
}

// ----------------------------------------------------------------------------
// kernel launchers

void check_p(const char* what, float p) {
    PLW_CHECK(p >= 0.0f && p < 1.0f, what << ": p must be in [0, 1), got " << p);
}

template <typename T>
void dropout_forward_impl(T* out, const T* in, size_t n, float p, uint64_t seed) {
    check_p("dropout_forward", p);
    if (n == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && in != nullptr, "dropout_forward: null device pointer");
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    const int64_t count = static_cast<int64_t>(n);
    dropout_forward_kernel<T><<<detail::grid_for(count, kThreads, kMaxBlocks), kThreads>>>(
        out, in, count, seed, threshold, scale);
    PLW_CUDA_CHECK_LAUNCH("dropout_forward_kernel");
}

template <typename T>
void dropout_backward_impl(T* dinp, const T* dout, size_t n, float p, uint64_t seed) {
    check_p("dropout_backward", p);
    if (n == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dout != nullptr, "dropout_backward: null device pointer");
    const uint32_t threshold = dropout_threshold(p);
    const float scale = 1.0f / (1.0f - p);
    const int64_t count = static_cast<int64_t>(n);
    dropout_backward_kernel<T><<<detail::grid_for(count, kThreads, kMaxBlocks), kThreads>>>(
        dinp, dout, count, seed, threshold, scale);
    PLW_CUDA_CHECK_LAUNCH("dropout_backward_kernel");
}

using detail::raw;

}  // namespace

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT

namespace {

using detail::lt_matmul;
using detail::LtOperand;
using detail::LtTypes;

void check_shape(const char* what, int N, int IC, int OC, int r) {
    PLW_CHECK(N >= 0 && IC > 0 && OC > 0 && r > 0,
              what << ": bad shape N=" << N << " IC=" << IC << " OC=" << OC << " r=" << r);
}

// A row-major (rows, cols) operand as cuBLASLt sees it: column-major (cols, rows), ld cols.
template <typename T>
LtOperand view(const T* p, int rows, int cols) {
    return LtOperand{p, LtTypes<T>::kData, uint64_t(cols), uint64_t(rows), cols};
}

template <typename T>
void forward_impl(T* out, T* xs, const T* inp, const T* A, const T* B, int N, int IC, int OC,
                  int r, float scaling) {
    check_shape("lora_forward", N, IC, OC, r);
    if (N == 0) {
        return;
    }
    PLW_CHECK(out != nullptr && xs != nullptr && inp != nullptr && A != nullptr && B != nullptr,
              "lora_forward: null device pointer");
    constexpr cublasComputeType_t kCompute = LtTypes<T>::kCompute;
    constexpr cudaDataType_t kData = LtTypes<T>::kData;
    // xs^T (r, N) = scaling * A-view^T . inp-view
    lt_matmul("lora xs", kCompute, CUBLAS_OP_T, view(A, r, IC), CUBLAS_OP_N, view(inp, N, IC),
              xs, kData, uint64_t(r), uint64_t(N), r, scaling, 0.0f);
    // out^T (OC, N) += B-view^T . xs-view
    lt_matmul("lora out", kCompute, CUBLAS_OP_T, view(B, OC, r), CUBLAS_OP_N,
              view(xs, N, r), out, kData, uint64_t(OC), uint64_t(N), OC, 1.0f);
}

// dinp and dxs have the activations' type T; dA and dB are f32 in both precisions.
template <typename T>
void backward_impl(T* dinp, float* dA, float* dB, T* dxs, const T* dout, const T* inp,
                   const T* xs, const T* A, const T* B, int N, int IC, int OC, int r,
                   float scaling) {
    check_shape("lora_backward", N, IC, OC, r);
    if (N == 0) {
        return;
    }
    PLW_CHECK(dinp != nullptr && dA != nullptr && dB != nullptr && dxs != nullptr &&
                  dout != nullptr && inp != nullptr && xs != nullptr && A != nullptr &&
                  B != nullptr,
              "lora_backward: null device pointer");
    constexpr cublasComputeType_t kCompute = LtTypes<T>::kCompute;
    constexpr cudaDataType_t kData = LtTypes<T>::kData;
    const LtOperand dout_view = view(dout, N, OC);
    const LtOperand dxs_view = view(dxs, N, r);
    // dB^T-view (r, OC) += xs-view . dout-view^T
    lt_matmul("lora dB", kCompute, CUBLAS_OP_N, view(xs, N, r), CUBLAS_OP_T, dout_view, dB,
              CUDA_R_32F, uint64_t(r), uint64_t(OC), r, 1.0f);
    // dxs^T (r, N) = scaling * B-view . dout-view
    lt_matmul("lora dxs", kCompute, CUBLAS_OP_N, view(B, OC, r), CUBLAS_OP_N, dout_view, dxs,
              kData, uint64_t(r), uint64_t(N), r, scaling, 0.0f);
    // dA^T-view (IC, r) += inp-view . dxs-view^T
    lt_matmul("lora dA", kCompute, CUBLAS_OP_N, view(inp, N, IC), CUBLAS_OP_T, dxs_view, dA,
              CUDA_R_32F, uint64_t(IC), uint64_t(r), IC, 1.0f);
    // dinp^T (IC, N) += A-view . dxs-view
    lt_matmul("lora dinp", kCompute, CUBLAS_OP_N, view(A, r, IC), CUBLAS_OP_N, dxs_view, dinp,
              kData, uint64_t(IC), uint64_t(N), IC, 1.0f);
}

}  // namespace

// ----------------------------------------------------------------------------
// lora.h: the products

void lora_forward(float* out, float* xs, const float* inp, const float* A, const float* B, int N, int IC,
                  int OC, int r, float scaling) {
    forward_impl(out, xs, inp, A, B, N, IC, OC, r, scaling);
}

void lora_forward(bf16* out, bf16* xs, const bf16* inp, const bf16* A, const bf16* B, int N, int IC,
                  int OC, int r, float scaling) {
    forward_impl(out, xs, inp, A, B, N, IC, OC, r, scaling);
}

void lora_backward(float* dinp, float* dA, float* dB, float* dxs, const float* dout, const float* inp,
                   const float* xs, const float* A, const float* B, int N, int IC, int OC, int r,
                   float scaling) {
    backward_impl(dinp, dA, dB, dxs, dout, inp, xs, A, B, N, IC, OC, r, scaling);
}

void lora_backward(bf16* dinp, float* dA, float* dB, bf16* dxs, const bf16* dout, const bf16* inp,
                   const bf16* xs, const bf16* A, const bf16* B, int N, int IC, int OC, int r,
                   float scaling) {
    backward_impl(dinp, dA, dB, dxs, dout, inp, xs, A, B, N, IC, OC, r, scaling);
}

#else  // no cuBLASLt: the backend reports itself unavailable, and these throw if reached

void lora_forward(float*, float*, const float*, const float*, const float*, int, int, int, int, float) {
    detail::no_cublaslt("lora_forward", __FILE__, __LINE__);
}

void lora_forward(bf16*, bf16*, const bf16*, const bf16*, const bf16*, int, int, int, int, float) {
    detail::no_cublaslt("lora_forward", __FILE__, __LINE__);
}

void lora_backward(float*, float*, float*, float*, const float*, const float*, const float*,
                   const float*, const float*, int, int, int, int, float) {
    detail::no_cublaslt("lora_backward", __FILE__, __LINE__);
}

void lora_backward(bf16*, float*, float*, bf16*, const bf16*, const bf16*, const bf16*, const bf16*,
                   const bf16*, int, int, int, int, float) {
    detail::no_cublaslt("lora_backward", __FILE__, __LINE__);
}

#endif

// ----------------------------------------------------------------------------
// lora.h: dropout (no cuBLASLt needed)

void dropout_forward(float* out, const float* in, size_t n, float p, uint64_t seed) {
    dropout_forward_impl(out, in, n, p, seed);
}

void dropout_forward(bf16* out, const bf16* in, size_t n, float p, uint64_t seed) {
    dropout_forward_impl(raw(out), raw(in), n, p, seed);
}

void dropout_backward(float* dinp, const float* dout, size_t n, float p, uint64_t seed) {
    dropout_backward_impl(dinp, dout, n, p, seed);
}

void dropout_backward(bf16* dinp, const bf16* dout, size_t n, float p, uint64_t seed) {
    dropout_backward_impl(raw(dinp), raw(dout), n, p, seed);
}

}  // namespace plw::cuda
