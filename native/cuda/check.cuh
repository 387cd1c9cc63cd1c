// Error checks of the CUDA backend. A failed CUDA or cuBLASLt call throws plw::Error (see
// ../common/check.h) carrying the statement, the library's error name and text, the function,
// file and line; nothing aborts. Every kernel launch is followed by PLW_CUDA_CHECK_LAUNCH.
//
//   PLW_CUDA_CHECK(cudaMemcpy(...));
//   my_kernel<<<grid, block>>>(...);
//   PLW_CUDA_CHECK_LAUNCH("my_kernel");
//   PLW_CUBLAS_CHECK(cublasLtMatmul(...));   // only where cublasLt.h is included
#pragma once
#include <cuda_runtime.h>

#include <sstream>
#include <string>

#include "../common/check.h"

namespace plw::cuda::detail {

[[noreturn]] inline void cuda_fail(cudaError_t err, const char* what, const char* func,
                                   const char* file, int line) {
    std::ostringstream msg;
    msg << "CUDA error in " << func << ": " << what << " failed with " << cudaGetErrorName(err)
        << " (" << cudaGetErrorString(err) << ")";
    ::plw::fail(msg.str(), file, line);
}

}  // namespace plw::cuda::detail

#define PLW_CUDA_CHECK(call)                                                                 \
    do {                                                                                     \
        const cudaError_t plw_cuda_err_ = (call);                                            \
        if (plw_cuda_err_ != cudaSuccess) {                                                  \
            ::plw::cuda::detail::cuda_fail(plw_cuda_err_, #call, __func__, __FILE__, __LINE__); \
        }                                                                                    \
    } while (0)

// After every <<<...>>>: reports a bad launch configuration (or an earlier asynchronous
// fault) with the kernel's name. kernel_name is a string literal.
#define PLW_CUDA_CHECK_LAUNCH(kernel_name)                                                   \
    do {                                                                                     \
        const cudaError_t plw_cuda_err_ = cudaGetLastError();                                \
        if (plw_cuda_err_ != cudaSuccess) {                                                  \
            ::plw::cuda::detail::cuda_fail(plw_cuda_err_, "launch of " kernel_name, __func__, \
                                           __FILE__, __LINE__);                              \
        }                                                                                    \
    } while (0)

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT
#include <cublasLt.h>

namespace plw::cuda::detail {

[[noreturn]] inline void cublas_fail(cublasStatus_t status, const char* what, const char* func,
                                     const char* file, int line) {
    std::ostringstream msg;
    msg << "cuBLASLt error in " << func << ": " << what << " failed with "
        << cublasLtGetStatusName(status) << " (" << cublasLtGetStatusString(status) << ")";
    ::plw::fail(msg.str(), file, line);
}

}  // namespace plw::cuda::detail

#define PLW_CUBLAS_CHECK(call)                                                                 \
    do {                                                                                       \
        const cublasStatus_t plw_cublas_status_ = (call);                                      \
        if (plw_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                                     \
            ::plw::cuda::detail::cublas_fail(plw_cublas_status_, #call, __func__, __FILE__,   \
                                             __LINE__);                                        \
        }                                                                                      \
    } while (0)
#endif

namespace plw::cuda::detail {
// The CUDA backend is unavailable in a build without cuBLASLt, so its GEMM entry points are
// never reached; if one is, it throws with the fix instead of computing nothing.
[[noreturn]] inline void no_cublaslt(const char* what, const char* file, int line) {
    ::plw::fail(std::string(what) +
                    ": cuBLASLt unavailable (plwtune was built without cuBLASLt; install the CUDA "
                    "toolkit's cuBLAS and rebuild)",
                file, line);
}
}  // namespace plw::cuda::detail
