// The process-wide cuBLASLt handle and matmul workspace, internal to the CUDA backend
// (fused_head.cu uses them; runtime.cu owns them). Only meaningful when the backend is
// built with cuBLASLt (PLW_HAVE_CUBLASLT=1); otherwise this header declares nothing.
#pragma once

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT
#include <cublasLt.h>

#include <cstddef>

namespace plw::cuda {

// 32 MiB: what NVIDIA recommends for Hopper (cuBLAS docs, "cuBLASLt workspace"); smaller
// GPUs use less of it.
constexpr size_t kCublasLtWorkspaceBytes = size_t(32) << 20;

struct CublasLtContext {
    cublasLtHandle_t handle = nullptr;
    void* workspace = nullptr;  // device memory, kCublasLtWorkspaceBytes
    size_t workspace_bytes = 0;
};

// Created on first use (cublasLtCreate + one device allocation), then shared by every call;
// never destroyed (the process exit tears down the CUDA context). Throws plw::Error when the
// creation fails; a later call tries again. All matmuls run on the legacy default stream, so
// sharing one workspace between them is safe.
const CublasLtContext& cublaslt_context();

}  // namespace plw::cuda
#endif
