// One cuBLASLt matmul with explicit column-major layouts, shared by the GEMM callers of the
// CUDA backend (attention.cu, fused_head.cu, linear.cu, lora.cu). Only with cuBLASLt
// (PLW_HAVE_CUBLASLT=1); otherwise this header declares nothing.
//
//   lt_matmul:          D (m x n) = op_a(A) (m x k) . op_b(B) (k x n) + beta * D
//                                   [+ bias (m), broadcast over n]
//                       or, the overload with alpha (no bias):
//                       D = alpha * op_a(A) . op_b(B) + beta * D
//   lt_matmul_batched:  for z < batch.count, in one call:
//                       D_z = alpha * op_a(A_z) . op_b(B_z) + beta * D_z
//                       where X_z starts batch.stride_x elements after X_{z-1}
//
// All column-major; C is D (in place). beta is 0 (D is written without being read) or 1
// (accumulate). A bias pointer selects CUBLASLT_EPILOGUE_BIAS: bias[i] is added to every
// column of row i of D (the bias has D's type). Runs on the legacy default stream with the
// process-wide handle and workspace (cublaslt_handle.h). The heuristic's algorithm is asked
// once per shape/type/alignment and cached for the process (lt_cached_algo).
//
// Batches are CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT / _STRIDED_BATCH_OFFSET on every layout.
// The strides may be smaller than a matrix (heads interleaved in the columns of one row-major
// tensor, e.g. attention's q/k/v at a stride of hs elements): the batches of D must not
// overlap, those of A and B may.
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
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

#include "../common/bf16.h"
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

// Per element type: its cuBLASLt data type, and the compute type the backend pairs with it
// (f32 -> TF32 tensor cores; bf16 -> bf16 tensor cores with f32 accumulation). bf16 is
// plw::bf16 in host-facing code and its raw bits (uint16_t) in kernel-facing code.
template <typename T>
struct LtTypes;
template <>
struct LtTypes<float> {
    static constexpr cudaDataType_t kData = CUDA_R_32F;
    static constexpr cublasComputeType_t kCompute = CUBLAS_COMPUTE_32F_FAST_TF32;
};
template <>
struct LtTypes<uint16_t> {
    static constexpr cudaDataType_t kData = CUDA_R_16BF;
    static constexpr cublasComputeType_t kCompute = CUBLAS_COMPUTE_32F;
};
template <>
struct LtTypes<plw::bf16> : LtTypes<uint16_t> {};

// Largest power of two (up to 256) dividing the address.
inline uint32_t lt_alignment_of(const void* ptr) {
    const uintptr_t address = reinterpret_cast<uintptr_t>(ptr);
    uint32_t alignment = 1;
    while (alignment < 256 && address % (2 * alignment) == 0) {
        alignment *= 2;
    }
    return alignment;
}

// Bytes per element of the types the callers use.
inline uint32_t lt_type_size(cudaDataType_t type) {
    return type == CUDA_R_16BF || type == CUDA_R_16F ? 2 : type == CUDA_R_64F ? 8 : 4;
}

// Alignment of every batch's pointer: that of the first, capped by the stride's (a batch
// stride of 3 bf16 puts batch 1 at 6 bytes, i.e. 2-byte aligned).
inline uint32_t lt_batch_alignment(const void* ptr, int64_t stride, cudaDataType_t type,
                                   int32_t count) {
    uint32_t alignment = lt_alignment_of(ptr);
    if (count > 1) {
        const uint64_t stride_bytes = static_cast<uint64_t>(stride) * lt_type_size(type);
        while (alignment > 1 && stride_bytes % alignment != 0) {
            alignment /= 2;
        }
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

// Strided batches (lt_matmul_batched): count GEMMs of the same shapes and types; batch z of
// each operand starts z * stride elements after its pointer.
struct LtBatch {
    int32_t count;
    int64_t stride_a;
    int64_t stride_b;
    int64_t stride_d;
};

// Batch layout attributes (only for count > 1, so unbatched calls keep their plain layouts).
inline void lt_set_batch(const LtLayout& layout, int32_t count, int64_t stride) {
    PLW_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout.layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count));
    PLW_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
        layout.layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
}

// Everything the heuristic's choice depends on (not the pointers, only their alignments):
// hashed as raw bytes, so the struct is zero-filled before it is set.
struct LtAlgoKey {
    int32_t compute, op_a, op_b, a_type, b_type, d_type, count;
    uint32_t align_a, align_b, align_d, align_bias;
    uint64_t a_rows, a_cols, b_rows, b_cols, m, n;
    int64_t lda, ldb, ldd, stride_a, stride_b, stride_d;
};

// The heuristic's answer per key, kept for the process: a training step makes hundreds of
// GEMM calls of a few dozen shapes, and asking the heuristic costs tens of microseconds each
// time (host time that would otherwise bound small steps).
inline bool lt_cached_algo(const LtAlgoKey& key, cublasLtMatmulAlgo_t* algo, const cublasLtMatmulAlgo_t* store) {
    static std::mutex mutex;
    static std::unordered_map<std::string, cublasLtMatmulAlgo_t> cache;
    const std::string bytes(reinterpret_cast<const char*>(&key), sizeof key);
    std::lock_guard<std::mutex> lock(mutex);
    if (store != nullptr) {
        cache[bytes] = *store;
        return true;
    }
    auto it = cache.find(bytes);
    if (it == cache.end()) return false;
    *algo = it->second;
    return true;
}

// The one implementation behind lt_matmul and lt_matmul_batched.
inline void lt_matmul_impl(const char* what, cublasComputeType_t compute, cublasOperation_t op_a,
                           const LtOperand& a, cublasOperation_t op_b, const LtOperand& b,
                           void* d, cudaDataType_t d_type, uint64_t m, uint64_t n, int64_t ldd,
                           float alpha, float beta, const LtBatch& batch, const void* bias) {
    PLW_CHECK(batch.count >= 1, what << ": batch count " << batch.count << " < 1");
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
    if (batch.count > 1) {
        lt_set_batch(a_layout, batch.count, batch.stride_a);
        lt_set_batch(b_layout, batch.count, batch.stride_b);
        lt_set_batch(d_layout, batch.count, batch.stride_d);
    }

    LtPreference pref;
    const uint64_t workspace_bytes = lt.workspace_bytes;
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
        sizeof workspace_bytes));
    const uint32_t align_a = lt_batch_alignment(a.ptr, batch.stride_a, a.type, batch.count);
    const uint32_t align_b = lt_batch_alignment(b.ptr, batch.stride_b, b.type, batch.count);
    const uint32_t align_d = lt_batch_alignment(d, batch.stride_d, d_type, batch.count);
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof align_a));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof align_b));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_d, sizeof align_d));
    PLW_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        pref.pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_d, sizeof align_d));

    LtAlgoKey key;
    std::memset(&key, 0, sizeof key);
    key.compute = compute;
    key.op_a = op_a;
    key.op_b = op_b;
    key.a_type = a.type;
    key.b_type = b.type;
    key.d_type = d_type;
    key.count = batch.count;
    key.align_a = align_a;
    key.align_b = align_b;
    key.align_d = align_d;
    key.align_bias = bias != nullptr ? lt_alignment_of(bias) : 0;
    key.a_rows = a.rows;
    key.a_cols = a.cols;
    key.b_rows = b.rows;
    key.b_cols = b.cols;
    key.m = m;
    key.n = n;
    key.lda = a.ld;
    key.ldb = b.ld;
    key.ldd = ldd;
    key.stride_a = batch.count > 1 ? batch.stride_a : 0;
    key.stride_b = batch.count > 1 ? batch.stride_b : 0;
    key.stride_d = batch.count > 1 ? batch.stride_d : 0;
    cublasLtMatmulHeuristicResult_t heuristic{};
    if (!lt_cached_algo(key, &heuristic.algo, nullptr)) {
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
                      << (batch.count > 1 ? ", batched" : "") << "): "
                      << cublasLtGetStatusName(status));
        lt_cached_algo(key, nullptr, &heuristic.algo);
    }

    PLW_CUBLAS_CHECK(cublasLtMatmul(lt.handle, desc.desc, &alpha, a.ptr, a_layout.layout, b.ptr,
                                    b_layout.layout, &beta, d, d_layout.layout, d,
                                    d_layout.layout, &heuristic.algo, lt.workspace,
                                    lt.workspace_bytes, /*stream: legacy default*/ nullptr));
}

// what names the GEMM in errors ("linear forward", "fused head logits", ...).
inline void lt_matmul(const char* what, cublasComputeType_t compute, cublasOperation_t op_a,
                      const LtOperand& a, cublasOperation_t op_b, const LtOperand& b, void* d,
                      cudaDataType_t d_type, uint64_t m, uint64_t n, int64_t ldd, float beta,
                      const void* bias = nullptr) {
    lt_matmul_impl(what, compute, op_a, a, op_b, b, d, d_type, m, n, ldd, 1.0f, beta,
                   LtBatch{1, 0, 0, 0}, bias);
}

// D = alpha * op_a(A) . op_b(B) + beta * D, no bias epilogue (e.g. LoRA's scaling as alpha).
inline void lt_matmul(const char* what, cublasComputeType_t compute, cublasOperation_t op_a,
                      const LtOperand& a, cublasOperation_t op_b, const LtOperand& b, void* d,
                      cudaDataType_t d_type, uint64_t m, uint64_t n, int64_t ldd, float alpha,
                      float beta) {
    lt_matmul_impl(what, compute, op_a, a, op_b, b, d, d_type, m, n, ldd, alpha, beta,
                   LtBatch{1, 0, 0, 0}, nullptr);
}

// Strided-batched D_z = alpha * op_a(A_z) . op_b(B_z) + beta * D_z, no bias epilogue.
inline void lt_matmul_batched(const char* what, cublasComputeType_t compute,
                              cublasOperation_t op_a, const LtOperand& a, cublasOperation_t op_b,
                              const LtOperand& b, void* d, cudaDataType_t d_type, uint64_t m,
                              uint64_t n, int64_t ldd, float alpha, float beta,
                              const LtBatch& batch) {
    lt_matmul_impl(what, compute, op_a, a, op_b, b, d, d_type, m, n, ldd, alpha, beta, batch,
                   nullptr);
}

}  // namespace plw::cuda::detail
#endif
