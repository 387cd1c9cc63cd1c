// A reference cuBLASLt for the emulator: the calls the backend makes (lt_matmul.cuh),
// computing column-major D = alpha op(A) op(B) + beta C [+ bias] per strided batch, summed in
// double and rounded once into D's type (f32 or bf16). It accepts only what the backend is
// meant to use and fails loudly on anything else, and it makes the checks the real library
// makes that a host run could otherwise miss: shapes, batch counts, and pointers at least as
// aligned as the heuristic was promised.
#include <cublasLt.h>

#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "native/common/bf16.h"
#include "support.h"

namespace {

// The opaque descriptors hold these (plain structs: copied in and out with memcpy).
struct Desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t trans_a, trans_b;
    uint32_t epilogue;
    const void* bias;
};
struct Layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch_count;
    int64_t batch_stride;
};
struct Alignments {
    uint32_t a, b, c, d;  // bytes; the real default is 256
};
static_assert(sizeof(Desc) <= sizeof(cublasLtMatmulDescOpaque_t), "Desc size");
static_assert(sizeof(Layout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "Layout size");
static_assert(sizeof(Alignments) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "Alignments size");
static_assert(sizeof(Alignments) <= sizeof(cublasLtMatmulAlgo_t), "algo size");

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "reference cuBLASLt: %s\n", what.c_str());
    throw std::runtime_error("reference cuBLASLt: " + what);
}

template <typename T, typename Opaque>
T load(const Opaque* p) {
    T t;
    std::memcpy(&t, p, sizeof t);
    return t;
}
template <typename T, typename Opaque>
void store(Opaque* p, const T& t) {
    std::memcpy(static_cast<void*>(p), &t, sizeof t);
}

size_t element_bytes(cudaDataType t) {
    if (t == CUDA_R_32F) return 4;
    if (t == CUDA_R_16BF) return 2;
    fail("data type " + std::to_string(int(t)));
}
double element(const void* base, cudaDataType t, int64_t i) {
    if (t == CUDA_R_32F) return static_cast<const float*>(base)[i];
    return plw::bf16_to_f32(static_cast<const plw::bf16*>(base)[i]);
}
void set_element(void* base, cudaDataType t, int64_t i, double v) {
    if (t == CUDA_R_32F) static_cast<float*>(base)[i] = float(v);
    else static_cast<plw::bf16*>(base)[i] = plw::f32_to_bf16(float(v));
}
bool misaligned(const void* p, uint32_t align) { return reinterpret_cast<uintptr_t>(p) % align != 0; }

}  // namespace

namespace emu {
long lt_calls = 0, lt_batched_calls = 0;
}

extern "C" {

cublasStatus_t cublasLtCreate(cublasLtHandle_t* h) {
    *h = reinterpret_cast<cublasLtHandle_t>(1);
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasLtGetStatusName(cublasStatus_t) { return "CUBLAS_STATUS_EMULATOR"; }
const char* cublasLtGetStatusString(cublasStatus_t) { return "reference cuBLASLt"; }

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* l, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (ld < int64_t(rows)) fail("leading dimension < rows");
    element_bytes(type);
    *l = new cublasLtMatrixLayoutOpaque_t;
    store(*l, Layout{type, rows, cols, ld, 1, 0});
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t attr,
                                                const void* buf, size_t bytes) {
    auto L = load<Layout>(l);
    if (attr == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT) {
        if (bytes != 4) fail("batch count is an int32");
        std::memcpy(&L.batch_count, buf, 4);
        if (L.batch_count < 1) fail("batch count < 1");
    } else if (attr == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET) {
        if (bytes != 8) fail("batch stride is an int64");
        std::memcpy(&L.batch_stride, buf, 8);
        if (L.batch_stride < 0) fail("negative batch stride");
    } else {
        fail("layout attribute " + std::to_string(int(attr)));
    }
    store(l, L);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (scale != CUDA_R_32F) fail("scale type other than f32");
    *d = new cublasLtMatmulDescOpaque_t;
    store(*d, Desc{compute, scale, 0, 0, CUBLASLT_EPILOGUE_DEFAULT, nullptr});
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr,
                                              const void* buf, size_t bytes) {
    auto D = load<Desc>(d);
    if (attr == CUBLASLT_MATMUL_DESC_BIAS_POINTER) {
        if (bytes != sizeof(void*)) fail("bias pointer size");
        std::memcpy(&D.bias, buf, bytes);
    } else if (bytes != 4) {
        fail("descriptor attribute size");
    } else if (attr == CUBLASLT_MATMUL_DESC_TRANSA) {
        std::memcpy(&D.trans_a, buf, 4);
    } else if (attr == CUBLASLT_MATMUL_DESC_TRANSB) {
        std::memcpy(&D.trans_b, buf, 4);
    } else if (attr == CUBLASLT_MATMUL_DESC_EPILOGUE) {
        std::memcpy(&D.epilogue, buf, 4);
        if (D.epilogue != CUBLASLT_EPILOGUE_DEFAULT && D.epilogue != CUBLASLT_EPILOGUE_BIAS)
            fail("epilogue " + std::to_string(D.epilogue));
    } else {
        fail("descriptor attribute " + std::to_string(int(attr)));
    }
    store(d, D);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* p) {
    *p = new cublasLtMatmulPreferenceOpaque_t;
    store(*p, Alignments{256, 256, 256, 256});
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                    size_t bytes) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
        if (bytes != 8) fail("workspace size is a uint64");
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr < CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES || attr > CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
        fail("preference attribute " + std::to_string(int(attr)));
    if (bytes != 4) fail("alignment is a uint32");
    uint32_t v;
    std::memcpy(&v, buf, 4);
    if (v == 0 || (v & (v - 1)) || v > 256) fail("alignment " + std::to_string(v));
    auto A = load<Alignments>(p);
    uint32_t* field[] = {&A.a, &A.b, &A.c, &A.d};
    *field[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES] = v;
    store(p, A);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t, cublasLtMatmulDesc_t, cublasLtMatrixLayout_t al,
                                              cublasLtMatrixLayout_t bl, cublasLtMatrixLayout_t cl,
                                              cublasLtMatrixLayout_t dl, cublasLtMatmulPreference_t p,
                                              int requested, cublasLtMatmulHeuristicResult_t results[],
                                              int* returned) {
    if (requested < 1) fail("no algorithm requested");
    if (cl != dl) fail("C and D layouts differ (the backend computes in place)");
    const auto a = load<Layout>(al), b = load<Layout>(bl), d = load<Layout>(dl);
    if (a.batch_count != d.batch_count || b.batch_count != d.batch_count) fail("batch counts differ");
    std::memset(&results[0], 0, sizeof results[0]);
    results[0].state = CUBLAS_STATUS_SUCCESS;
    store(&results[0].algo, load<Alignments>(p));  // the algo remembers the alignments it was chosen for
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t desc, const void* alpha, const void* A,
                              cublasLtMatrixLayout_t al, const void* B, cublasLtMatrixLayout_t bl, const void* beta,
                              const void* C, cublasLtMatrixLayout_t cl, void* D, cublasLtMatrixLayout_t dl,
                              const cublasLtMatmulAlgo_t* algo, void*, size_t, cudaStream_t) {
    const auto ds = load<Desc>(desc);
    const auto a = load<Layout>(al), b = load<Layout>(bl), d = load<Layout>(dl);
    if (C != D || cl != dl) fail("C != D (the backend computes in place)");
    const uint64_t m = ds.trans_a ? a.cols : a.rows, k = ds.trans_a ? a.rows : a.cols;
    const uint64_t kb = ds.trans_b ? b.cols : b.rows, n = ds.trans_b ? b.rows : b.cols;
    if (k != kb || d.rows != m || d.cols != n)
        fail("shapes: op(A) " + std::to_string(m) + "x" + std::to_string(k) + ", op(B) " + std::to_string(kb) +
             "x" + std::to_string(n) + ", D " + std::to_string(d.rows) + "x" + std::to_string(d.cols));
    if (a.type != b.type) fail("A and B types differ");
    if (ds.compute == CUBLAS_COMPUTE_32F_FAST_TF32 && (a.type != CUDA_R_32F || d.type != CUDA_R_32F))
        fail("TF32 compute needs f32 A, B and D");
    if (ds.compute == CUBLAS_COMPUTE_32F && a.type != CUDA_R_16BF) fail("COMPUTE_32F used only for bf16 inputs");
    const float al_ = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    if (be != 0 && be != 1) fail("beta other than 0 or 1");
    if (a.batch_count != d.batch_count || b.batch_count != d.batch_count) fail("batch counts differ");
    if (ds.epilogue == CUBLASLT_EPILOGUE_BIAS && (!ds.bias || misaligned(ds.bias, 16)))
        fail("bias epilogue needs a 16-byte aligned bias pointer");
    const auto promised = load<Alignments>(algo);
    const size_t sa = element_bytes(a.type), sb = element_bytes(b.type), sd = element_bytes(d.type);
    emu::lt_calls++;
    if (d.batch_count > 1) emu::lt_batched_calls++;
    std::unordered_set<const char*> written;  // the batches of D must not overlap
    for (int32_t z = 0; z < d.batch_count; z++) {
        const char* Az = static_cast<const char*>(A) + z * a.batch_stride * sa;
        const char* Bz = static_cast<const char*>(B) + z * b.batch_stride * sb;
        char* Dz = static_cast<char*>(D) + z * d.batch_stride * sd;
        if (misaligned(Az, promised.a) || misaligned(Bz, promised.b) || misaligned(Dz, promised.c) ||
            misaligned(Dz, promised.d))
            fail("a pointer is less aligned than the heuristic was promised (batch " + std::to_string(z) + ")");
        for (uint64_t j = 0; j < n; j++) {
            for (uint64_t i = 0; i < m; i++) {
                double acc = 0;
                for (uint64_t p = 0; p < k; p++) {
                    const double x = element(Az, a.type, ds.trans_a ? i * a.ld + p : p * a.ld + i);
                    const double y = element(Bz, b.type, ds.trans_b ? p * b.ld + j : j * b.ld + p);
                    acc += x * y;
                }
                double out = al_ * acc;
                if (be != 0) out += be * element(Dz, d.type, j * d.ld + i);
                if (ds.epilogue == CUBLASLT_EPILOGUE_BIAS) out += element(ds.bias, d.type, i);  // bias in D's type
                if (!written.insert(Dz + (j * d.ld + i) * sd).second) fail("the batches of D overlap");
                set_element(Dz, d.type, j * d.ld + i, out);
            }
        }
    }
    return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
