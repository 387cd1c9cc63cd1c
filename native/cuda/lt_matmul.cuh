// One cuBLASLt matmul with explicit column-major layouts, shared by the GEMM callers of the
// CUDA backend (fused_head.cu, linear.cu). Only with cuBLASLt (PLW_HAVE_CUBLASLT=1);
// otherwise this header declares nothing.
//
//   D (m x n) = op_a(A) (m x k) . op_b(B) (k x n) + beta * D   [+ bias (m), broadcast over n]
//
// All column-major; C is D (in place). beta is 0 (D is written without being read) or 1
// (accumulate). A bias pointer selects CUBLASLT_EPILOGUE_BIAS: bias[i] is added to every
// column of row i of D (the bias has D's type). Runs on the legacy default stream with the
// process-wide handle and workspace (cublaslt_handle.h).
//
// Row-major callers: a row-major (R, K) matrix with row stride ld is, in the same memory,
// a column-major (K, R) matrix with leading dimension ld, i.e. its transpose for free. The
// callers write each GEMM for those transposed views and derive it in a comment.
//
// Descriptors are owned by RAII guards, so a throw in the middle of a call leaks nothing.
// The heuristic is told each operand's actual alignment (the default assumes 256 bytes),
// and the bias pointer is set before it is asked (it reads the bias alignment from it).
#pragma once

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "check.cuh"
#include "cublaslt_handle.h"

namespace plw::cuda::detail {

struct LtMatmulDesc {
    cublasLtMatmulDesc_t desc = nullptr;
    LtMatmulDesc(cublasComputeType_t compute, cudaDataType_t scale) {
        PLW_CUBLAS_CHECK(cublasLtMatmulDescCreate(&desc, compute, scale));
    }
    ~LtMatmulDesc() { (void)cublasLtMatmulDescDestroy(desc); }
    LtMatmulDesc(const LtMatmulDesc&) = delete;
    LtMatmulDesc& operator=(const LtMatmulDesc&) = delete;
};

struct LtLayout {
    cublasLtMatrixLayout_t layout = nullptr;
    LtLayout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
        PLW_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&layout, type, rows, cols, ld));
    }
    ~LtLayout() { (void)cublasLtMatrixLayoutDestroy(layout); }
    LtLayout(const LtLayout&) = delete;
    LtLayout& operator=(const LtLayout&) = delete;
};

struct LtPreference {
    cublasLtMatmulPreference_t pref = nullptr;
    LtPreference() { PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref)); }
    ~LtPreference() { (void)cublasLtMatmulPreferenceDestroy(pref); }
    LtPreference(const LtPreference&) = delete;
    LtPreference& operator=(const LtPreference&) = delete;
};

// Largest power of two (up to 256) dividing the address.
inline uint32_t lt_alignment_of(const void* ptr) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
    uint32_t alignment = 1;
    while (alignment < 256 && address % (2 * alignment) == 0) {
        alignment *= 2;
    }
    return alignment;
}

// A column-major operand as stored in memory: rows x cols, leading dimension ld.
struct LtOperand {
    const void* ptr;
    cudaDataType_t type;
    uint64_t rows;
    uint64_t cols;
    int64_t ld;
};

// what names the GEMM in errors ("linear forward", "fused head logits", ...).
inline void lt_matmul(const char* what, cublasComputeType_t compute, cublasOperation_t op_a,
                      const LtOperand& a, cublasOperation_t op_b, const LtOperand& b, void* d,
                      cudaDataType_t d_type, uint64_t m, uint64_t n, int64_t ldd, float beta,
                      const void* bias = nullptr) {
    const CublasLtContext& lt = cublaslt_context();

    LtMatmulDesc desc(compute, CUDA_R_32F);
    const int32_t trans_a = op_a;
    const int32_t trans_b = op_b;
    PLW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSA,
                                                    &trans_a, sizeof trans_a));
    PLW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_TRANSB,
                                                    &trans_b, sizeof trans_b));
    if (bias != nullptr) {
        const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
        PLW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(desc.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                        &epilogue, sizeof epilogue));
        PLW_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(
            desc.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }

    LtLayout a_layout(a.type, a.rows, a.cols, a.ld);
    LtLayout b_layout(b.type, b.rows, b.cols, b.ld);
    LtLayout d_layout(d_type, m, n, ldd);  // also C's layout: C == D

    LtPreference pref;
    const uint64_t workspace_bytes = lt.workspace_bytes;
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
        sizeof workspace_bytes));
    const uint32_t align_a = lt_alignment_of(a.ptr);
    const uint32_t align_b = lt_alignment_of(b.ptr);
    const uint32_t align_d = lt_alignment_of(d);
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof align_d));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof align_d));

    cublasLtMatmulHeuristicResult_t heuristic{};
    int found = 0;
    const cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(
        lt.handle, desc.desc, a_layout.layout, b_layout.layout, d_layout.layout,
        d_layout.layout, pref.pref, 1, &heuristic, &found);
    PLW_CHECK((status == CUBLAS_STATUS_SUCCESS || status == CUBLAS_STATUS_NOT_SUPPORTED) &&
                  found > 0 && heuristic.state == CUBLAS_STATUS_SUCCESS,
              "cuBLASLt has no algorithm for the "
                  << what << " GEMM (m=" << m << " n=" << n << " A " << a.rows << "x" << a.cols
                  << " ld " << a.ld << ", B " << b.rows << "x" << b.cols << " ld " << b.ld
                  << ", alignments A/B/D " << align_a << "/" << align_b << "/" << align_d
                  << " bytes" << (bias != nullptr ? ", bias epilogue" : "")
                  << "): " << cublasLtGetStatusName(status));

    const float alpha = 1.0f;
    PLW_CUBLAS_CHECK(cublasLtMatmul(lt.handle, desc.desc, &alpha, a.ptr, a_layout.layout, b.ptr,
                                    b_layout.layout, &beta, d, d_layout.layout, d,
                                    d_layout.layout, &heuristic.algo, lt.workspace,
                                    lt.workspace_bytes, /*stream: legacy default*/ nullptr));
}

}  // namespace plw::cuda::detail
#endif
