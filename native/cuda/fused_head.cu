// LM head fused with the weighted cross-entropy, the CUDA twin of native/cpu/fused_head.h
// (the reference). Per chunk of n <= chunk rows r0 .. r0+n:
//   1. logits (n, V)   = hidden[r0:] (n, C) . wte (V, C)^T          cuBLASLt, into scratch
//   2. the cross-entropy kernel of cross_entropy.cu on the scratch: forward (losses), or
//      backward in place (losses and dlogits)
//   3. dhidden[r0:] (n, C) = dlogits (n, V) . wte (V, C)            cuBLASLt, overwritten
//   4. dwte (V, C)        += dlogits^T (V, n) . hidden[r0:] (n, C)  cuBLASLt, beta = 1
// Chunks whose weights are all zero skip the GEMMs, as on the CPU: their losses and dhidden
// are zero and dwte is untouched. Finding them costs one copy of the weights to the host
// (4 * N bytes) and therefore one synchronization per call.
//
// Types: f32 inputs -> TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32), f32 logits;
// bf16 inputs -> bf16 tensor cores with f32 accumulation (CUBLAS_COMPUTE_32F), bf16 logits.
// dwte is f32 in both cases; dhidden is f32, or bf16 in the overload taking a bf16* dhidden
// (step 3's D type bf16: accumulated in f32, rounded once when stored); alpha/beta are f32.
//
// The scratch holds one chunk of logits, row-major with a row stride Vs = V rounded up to a
// multiple of 16 elements (so that every row starts 32-byte aligned: the tensor-core GEMMs
// and the 16-byte loads of the loss kernel need that); columns [V, Vs) are the loss
// kernel's padding and never enter a GEMM.
//
// cuBLASLt is column-major. A row-major (R, K) matrix with row stride ld is, in the same
// memory, a column-major (K, R) matrix with leading dimension ld: the transpose, for free.
// Every GEMM below is therefore written for the transposed (column-major) views:
//   1. logits^T (V, n) = wte (V, C) . hidden^T (C, n)
//        A = wte stored col-major (C, V) ld C, op T -> (V, C)      m = V
//        B = hidden[r0:] stored col-major (C, n) ld C, op N         n = n, k = C
//        D = scratch col-major (V, n) ld Vs
//   3. dhidden^T (C, n) = wte^T (C, V) . dlogits^T (V, n)
//        A = wte stored col-major (C, V) ld C, op N                 m = C
//        B = scratch col-major (V, n) ld Vs, op N                   n = n, k = V
//        D = dhidden[r0:] col-major (C, n) ld C, beta = 0 (f32 or bf16)
//   4. dwte^T (C, V) += hidden^T (C, n) . dlogits (n, V)
//        A = hidden[r0:] stored col-major (C, n) ld C, op N         m = C
//        B = scratch col-major (V, n) ld Vs, op T -> (n, V)         n = V, k = n
//        C = D = dwte col-major (C, V) ld C, beta = 1 (in place; rows >= V of a padded
//        wte are not touched)
// Check of 4, element (c, v): D[c, v] = dwte[v, c] (row-major), and
//   sum_r A[c, r] op(B)[r, v] = sum_r hidden[r0 + r, c] * dlogits[r, v]
//                             = (dlogits^T . hidden)[v, c].
//
// Cost per chunk of n rows (bf16): 3 GEMMs of 2 * n * V * C flops each (the tensor cores),
// plus the loss kernel's 2 * n * Vs * 2 bytes and dwte's f32 read-modify-write of 8 * V * C
// bytes, which the chunk amortizes: choose chunk >= 2048 for GPT-2 sizes so that step 4 is
// compute-bound rather than bound by the dwte traffic.
#include "fused_head.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "check.cuh"
#include "cross_entropy.h"
#include "lt_matmul.cuh"
#include "runtime.h"

namespace plw::cuda {

namespace {

// Row stride of the logits in the scratch.
int64_t scratch_ld(int V) { return (static_cast<int64_t>(V) + 15) / 16 * 16; }

}  // namespace

size_t fused_head_scratch_bytes(int chunk, int V, size_t elem_size) {
    PLW_CHECK(chunk > 0 && V > 0, "fused_head_scratch_bytes: bad shape chunk=" << chunk
                                                                              << " V=" << V);
    PLW_CHECK(elem_size == 2 || elem_size == 4,
              "fused_head_scratch_bytes: elem_size must be 2 (bf16) or 4 (f32), got "
                  << elem_size);
    const size_t bytes =
        static_cast<size_t>(chunk) * static_cast<size_t>(scratch_ld(V)) * elem_size;
    return (bytes + 255) / 256 * 256;
}

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT

namespace {

void check_shapes(const char* what, const void* hidden, const void* wte, const int32_t* targets,
                  const float* weights, const void* scratch, int N, int C, int V, int chunk) {
    PLW_CHECK(N >= 0 && C > 0 && V > 0 && chunk > 0,
              what << ": bad shape N=" << N << " C=" << C << " V=" << V << " chunk=" << chunk);
    PLW_CHECK(N == 0 || (hidden != nullptr && wte != nullptr && targets != nullptr &&
                         weights != nullptr && scratch != nullptr),
              what << ": null device pointer");
    PLW_CHECK(scratch_ld(V) <= INT32_MAX, what << ": V=" << V << " is too large");
}

// weights of every row, on the host, to find the all-zero chunks (synchronizes).
std::vector<float> host_weights(const float* weights, int N) {
    std::vector<float> w(static_cast<size_t>(N));
    copy_to_host(w.data(), weights, sizeof(float) * w.size());
    return w;
}

bool all_zero(const float* w, int n) {
    return std::all_of(w, w + n, [](float x) { return x == 0.0f; });
}

using detail::lt_matmul;
using detail::LtOperand;
using detail::LtTypes;

// Step 1: scratch (n, Vs) row-major <- hidden[r0:] (n, C) . wte (V, C)^T.
template <typename T>
void logits_gemm(T* scratch, const T* h, const T* wte, int n, int C, int V) {
    const int64_t ld = scratch_ld(V);
    lt_matmul("fused head's logits", LtTypes<T>::kCompute,
              CUBLAS_OP_T, LtOperand{wte, LtTypes<T>::kData, uint64_t(C), uint64_t(V), C},
              CUBLAS_OP_N, LtOperand{h, LtTypes<T>::kData, uint64_t(C), uint64_t(n), C},
              scratch, LtTypes<T>::kData, uint64_t(V), uint64_t(n), ld, 0.0f);
}

// Steps 3 and 4 from the dlogits in scratch. DH: dhidden's type, f32 or bf16 (its D type).
template <typename T, typename DH>
void backward_gemms(DH* dh, float* dwte, const T* dlogits, const T* h, const T* wte, int n,
                    int C, int V) {
    const int64_t ld = scratch_ld(V);
    lt_matmul("fused head's dhidden", LtTypes<T>::kCompute,
              CUBLAS_OP_N, LtOperand{wte, LtTypes<T>::kData, uint64_t(C), uint64_t(V), C},
              CUBLAS_OP_N, LtOperand{dlogits, LtTypes<T>::kData, uint64_t(V), uint64_t(n), ld},
              dh, LtTypes<DH>::kData, uint64_t(C), uint64_t(n), C, 0.0f);
    if (dwte == nullptr) return;  // a frozen head (LoRA)
    lt_matmul("fused head's dwte", LtTypes<T>::kCompute,
              CUBLAS_OP_N, LtOperand{h, LtTypes<T>::kData, uint64_t(C), uint64_t(n), C},
              CUBLAS_OP_T, LtOperand{dlogits, LtTypes<T>::kData, uint64_t(V), uint64_t(n), ld},
              dwte, CUDA_R_32F, uint64_t(C), uint64_t(V), C, 1.0f);
}

template <typename T>
void forward_impl(float* losses, void* scratch, const T* hidden, const T* wte,
                  const int32_t* targets, const float* weights, int N, int C, int V, int chunk) {
    check_shapes("fused_head_cross_entropy_forward", hidden, wte, targets, weights, scratch, N,
                 C, V, chunk);
    PLW_CHECK(N == 0 || losses != nullptr, "fused_head_cross_entropy_forward: losses is null");
    if (N == 0) {
        return;
    }
    const std::vector<float> w = host_weights(weights, N);
    T* logits = static_cast<T*>(scratch);
    const int ld = static_cast<int>(scratch_ld(V));
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int n = std::min(chunk, N - r0);
        if (all_zero(w.data() + r0, n)) {
            memset_zero(losses + r0, sizeof(float) * static_cast<size_t>(n));
            continue;
        }
        const T* h = hidden + static_cast<int64_t>(r0) * C;
        logits_gemm(logits, h, wte, n, C, V);
        weighted_cross_entropy_forward(losses + r0, logits, targets + r0, weights + r0, n, V, ld);
    }
}

template <typename T, typename DH>
void backward_impl(float* losses, DH* dhidden, float* dwte, void* scratch, const T* hidden,
                   const T* wte, const int32_t* targets, const float* weights, float grad_scale,
                   int N, int C, int V, int chunk) {
    check_shapes("fused_head_cross_entropy_backward", hidden, wte, targets, weights, scratch, N,
                 C, V, chunk);
    PLW_CHECK(N == 0 || dhidden != nullptr, "fused_head_cross_entropy_backward: null dhidden");
    if (N == 0) {
        return;
    }
    const std::vector<float> w = host_weights(weights, N);
    T* logits = static_cast<T*>(scratch);
    const int ld = static_cast<int>(scratch_ld(V));
    for (int r0 = 0; r0 < N; r0 += chunk) {
        const int n = std::min(chunk, N - r0);
        DH* dh = dhidden + static_cast<int64_t>(r0) * C;
        if (all_zero(w.data() + r0, n)) {
            if (losses != nullptr) {
                memset_zero(losses + r0, sizeof(float) * static_cast<size_t>(n));
            }
            memset_zero(dh, sizeof(DH) * static_cast<size_t>(n) * static_cast<size_t>(C));
            continue;
        }
        const T* h = hidden + static_cast<int64_t>(r0) * C;
        logits_gemm(logits, h, wte, n, C, V);
        weighted_cross_entropy_backward(logits, losses != nullptr ? losses + r0 : nullptr, logits,
                                        targets + r0, weights + r0, grad_scale, n, V, ld);
        backward_gemms(dh, dwte, logits, h, wte, n, C, V);
    }
}

}  // namespace

void fused_head_cross_entropy_forward(float* losses, void* scratch, const float* hidden,
                                      const float* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk) {
    forward_impl(losses, scratch, hidden, wte, targets, weights, N, C, V, chunk);
}

void fused_head_cross_entropy_forward(float* losses, void* scratch, const bf16* hidden,
                                      const bf16* wte, const int32_t* targets,
                                      const float* weights, int N, int C, int V, int chunk) {
    forward_impl(losses, scratch, hidden, wte, targets, weights, N, C, V, chunk);
}

void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, void* scratch,
                                       const float* hidden, const float* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk) {
    backward_impl(losses, dhidden, dwte, scratch, hidden, wte, targets, weights, grad_scale, N, C,
                  V, chunk);
}

void fused_head_cross_entropy_backward(float* losses, float* dhidden, float* dwte, void* scratch,
                                       const bf16* hidden, const bf16* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk) {
    backward_impl(losses, dhidden, dwte, scratch, hidden, wte, targets, weights, grad_scale, N, C,
                  V, chunk);
}

void fused_head_cross_entropy_backward(float* losses, bf16* dhidden, float* dwte, void* scratch,
                                       const bf16* hidden, const bf16* wte,
                                       const int32_t* targets, const float* weights,
                                       float grad_scale, int N, int C, int V, int chunk) {
    backward_impl(losses, dhidden, dwte, scratch, hidden, wte, targets, weights, grad_scale, N, C,
                  V, chunk);
}

#else  // no cuBLASLt: the backend reports itself unavailable, and these throw if reached


void fused_head_cross_entropy_forward(float*, void*, const float*, const float*, const int32_t*,
                                      const float*, int, int, int, int) {
    detail::no_cublaslt("fused_head_cross_entropy_forward", __FILE__, __LINE__);
}

void fused_head_cross_entropy_forward(float*, void*, const bf16*, const bf16*, const int32_t*,
                                      const float*, int, int, int, int) {
    detail::no_cublaslt("fused_head_cross_entropy_forward", __FILE__, __LINE__);
}

void fused_head_cross_entropy_backward(float*, float*, float*, void*, const float*, const float*,
                                       const int32_t*, const float*, float, int, int, int, int) {
    detail::no_cublaslt("fused_head_cross_entropy_backward", __FILE__, __LINE__);
}

void fused_head_cross_entropy_backward(float*, float*, float*, void*, const bf16*, const bf16*,
                                       const int32_t*, const float*, float, int, int, int, int) {
    detail::no_cublaslt("fused_head_cross_entropy_backward", __FILE__, __LINE__);
}

void fused_head_cross_entropy_backward(float*, bf16*, float*, void*, const bf16*, const bf16*,
                                       const int32_t*, const float*, float, int, int, int, int) {
    detail::no_cublaslt("fused_head_cross_entropy_backward", __FILE__, __LINE__);
}

#endif

}  // namespace plw::cuda
