// The CUDA runtime as plwtune sees it (runtime.h): device probe, allocation, copies, the
// scratch pool, and the process-wide cuBLASLt handle (cublaslt_handle.h).
//
// Decisions:
// - available() probes once per process (std::call_once) and never throws; a failed probe
//   clears CUDA's last-error state so that later calls do not see a stale error.
// - Everything runs on device 0 (the runtime's default for every host thread) and on the
//   legacy default stream, so work queued by different host threads is still ordered.
// - Allocation failures retry once after returning the scratch pool's cached blocks to the
//   driver, then throw "CUDA out of memory allocating X MiB (free Y MiB of Z MiB)".
// - The scratch pool and the cuBLASLt handle live until the process exits and are never
//   freed explicitly: freeing them from static destructors would race the runtime's own
//   teardown.
#include "runtime.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <iomanip>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <unordered_map>

#include "check.cuh"
#include "cublaslt_handle.h"

namespace plw::cuda {

namespace {

// ----------------------------------------------------------------------------
// device probe

struct Probe {
    bool ok = false;
    std::string reason;
};

// The GPU itself, whatever the build: a machine without one says "no device" first.
Probe probe_gpu() {
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // clear the error state the failed call left behind
        switch (err) {
            case cudaErrorNoDevice:
                return {false, "no device"};
            case cudaErrorInsufficientDriver:  // also what a machine with no driver at all returns
            case cudaErrorStubLibrary:
                return {false, std::string("no device (no usable CUDA driver: ") + cudaGetErrorString(err) + ")"};
            case cudaErrorSystemDriverMismatch:
            case cudaErrorCallRequiresNewerDriver:
                return {false, std::string("CUDA driver too old or mismatched (") + cudaGetErrorString(err) + ")"};
            default:
                return {false, std::string("CUDA unavailable (") + cudaGetErrorString(err) + ")"};
        }
    }
    if (count == 0) {
        return {false, "no device"};
    }
    int device = 0;
    int major = 0;
    int minor = 0;
    cudaError_t attr_err = cudaGetDevice(&device);
    if (attr_err == cudaSuccess) {
        attr_err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    }
    if (attr_err == cudaSuccess) {
        attr_err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    }
    if (attr_err != cudaSuccess) {
        (void)cudaGetLastError();
        return {false, std::string("CUDA unavailable (") + cudaGetErrorString(attr_err) + ")"};
    }
    if (major < 8) {
        std::ostringstream reason;
        reason << "needs sm_80 or newer for bf16 (device " << device << " is sm_" << major
               << minor << ")";
        return {false, reason.str()};
    }
    return {true, ""};
}

Probe probe_device() {
    Probe gpu = probe_gpu();
#if !(defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT)
    const std::string no_lt =
        "built without cuBLASLt (install the CUDA toolkit's cuBLAS and rebuild)";
    return {false, gpu.ok ? no_lt : gpu.reason + "; also " + no_lt};
#else
    return gpu;
#endif
}

const Probe& probe() {
    static std::once_flag once;
    static Probe result;
    std::call_once(once, [] {
        try {
            result = probe_device();
        } catch (...) {  // std::bad_alloc from the strings: report, never throw
            result.ok = false;
            result.reason = "CUDA probe failed";
        }
    });
    return result;
}

void require_available() {
    std::string reason;
    if (!available(&reason)) {
        ::plw::fail("CUDA backend unavailable: " + reason, __FILE__, __LINE__);
    }
}

// ----------------------------------------------------------------------------
// allocation

std::string mib(size_t bytes) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(1) << static_cast<double>(bytes) / (1024.0 * 1024.0);
    return s.str();
}

// Blocks of released ScratchBuffers, kept for reuse. A request of `bytes` (rounded up to
// kGranule) is served by the smallest cached block of at least that size and at most twice
// it, else by cudaMalloc.
class ScratchPool {
public:
    static constexpr size_t kGranule = 256;

    void* acquire(size_t bytes);
    void release(void* ptr) noexcept;
    void trim() noexcept;  // cudaFree every cached (not in-use) block

private:
    std::mutex mutex_;
    std::multimap<size_t, void*> cached_;       // size -> block, free for reuse
    std::unordered_map<void*, size_t> in_use_;  // block -> size
};

ScratchPool& scratch_pool() {
    static ScratchPool* pool = new ScratchPool();  // never destroyed: see the file comment
    return *pool;
}

// cudaMalloc with one retry after trimming the scratch pool; bytes > 0.
void* raw_malloc(size_t bytes) {
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, bytes);
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        scratch_pool().trim();
        err = cudaMalloc(&ptr, bytes);
    }
    if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        size_t free_bytes = 0;
        size_t total_bytes = 0;
        if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
            (void)cudaGetLastError();
        }
        std::ostringstream msg;
        msg << "CUDA out of memory allocating " << mib(bytes) << " MiB (free " << mib(free_bytes)
            << " MiB of " << mib(total_bytes) << " MiB)";
        ::plw::fail(msg.str(), __FILE__, __LINE__);
    }
    if (err != cudaSuccess) {
        detail::cuda_fail(err, "cudaMalloc", __func__, __FILE__, __LINE__);
    }
    return ptr;
}

void* ScratchPool::acquire(size_t bytes) {
    const size_t rounded = (bytes + kGranule - 1) / kGranule * kGranule;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = cached_.lower_bound(rounded);
        if (it != cached_.end() && it->first / 2 <= rounded) {
            void* ptr = it->second;
            const size_t size = it->first;
            in_use_.emplace(ptr, size);
            cached_.erase(it);
            return ptr;
        }
    }
    void* ptr = raw_malloc(rounded);  // outside the lock: it may call trim()
    try {
        std::lock_guard<std::mutex> lock(mutex_);
        in_use_.emplace(ptr, rounded);
    } catch (...) {
        (void)cudaFree(ptr);
        throw;
    }
    return ptr;
}

void ScratchPool::release(void* ptr) noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = in_use_.find(ptr);
    if (it == in_use_.end()) {
        return;
    }
    const size_t size = it->second;
    in_use_.erase(it);
    try {
        cached_.emplace(size, ptr);
    } catch (...) {
        (void)cudaFree(ptr);  // could not remember it: give it back instead
        (void)cudaGetLastError();
    }
}

void ScratchPool::trim() noexcept {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& entry : cached_) {
        if (cudaFree(entry.second) != cudaSuccess) {
            (void)cudaGetLastError();
        }
    }
    cached_.clear();
}

}  // namespace

// ----------------------------------------------------------------------------
// runtime.h

bool available(std::string* reason) {
    const Probe& p = probe();
    if (reason != nullptr) {
        *reason = p.reason;
    }
    return p.ok;
}

std::string device_description() {
    require_available();
    int device = 0;
    PLW_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    PLW_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    std::ostringstream s;
    s << prop.name << " (sm_" << prop.major << prop.minor << ", " << prop.multiProcessorCount
      << " SMs)";
    return s.str();
}

void* device_malloc(size_t bytes) {
    if (bytes == 0) {
        return nullptr;
    }
    return raw_malloc(bytes);
}

void device_free(void* ptr) {
    if (ptr != nullptr) {
        PLW_CUDA_CHECK(cudaFree(ptr));
    }
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes != 0) {
        PLW_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    }
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
    if (bytes != 0) {
        PLW_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
    }
}

void copy_device_to_device(void* dst, const void* src, size_t bytes) {
    if (bytes != 0) {
        PLW_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
    }
}

void memset_zero(void* ptr, size_t bytes) {
    if (bytes != 0) {
        PLW_CUDA_CHECK(cudaMemset(ptr, 0, bytes));
    }
}

void synchronize() { PLW_CUDA_CHECK(cudaDeviceSynchronize()); }

size_t free_memory() {
    size_t free_bytes = 0, total_bytes = 0;
    PLW_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return free_bytes;
}

ScratchBuffer::ScratchBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes != 0) {
        ptr_ = scratch_pool().acquire(bytes);
    }
}

ScratchBuffer::~ScratchBuffer() {
    if (ptr_ != nullptr) {
        scratch_pool().release(ptr_);
    }
}

// ----------------------------------------------------------------------------
// cublaslt_handle.h

#if defined(PLW_HAVE_CUBLASLT) && PLW_HAVE_CUBLASLT
const CublasLtContext& cublaslt_context() {
    // A mutex rather than std::call_once: a failed creation throws, and call_once with a
    // throwing callable is unreliable in some libstdc++ versions (GCC bug 66146).
    static std::mutex mutex;
    static CublasLtContext context;
    static bool created = false;
    std::lock_guard<std::mutex> lock(mutex);
    if (!created) {
        require_available();
        cublasLtHandle_t handle = nullptr;
        PLW_CUBLAS_CHECK(cublasLtCreate(&handle));
        void* workspace = nullptr;
        try {
            workspace = device_malloc(kCublasLtWorkspaceBytes);
        } catch (...) {
            (void)cublasLtDestroy(handle);
            throw;
        }
        context.handle = handle;
        context.workspace = workspace;
        context.workspace_bytes = kCublasLtWorkspaceBytes;
        created = true;
    }
    return context;
}
#endif

}  // namespace plw::cuda
