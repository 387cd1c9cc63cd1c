// The CUDA runtime as the rest of plwtune sees it: plain C++, no CUDA headers, so the
// binding (compiled by the host compiler) can include it. Every function throws
// plw::Error with the failing call, file and line; none aborts.
//
// When the project is built without nvcc, runtime_stub.cpp provides the same functions:
// available() is false with the reason, the others throw.
#pragma once
#include <cstddef>
#include <string>

namespace plw::cuda {

// True when the CUDA backend can run: built with CUDA and cuBLASLt, a driver and a device
// present. Otherwise false, and *reason says why ("no device", "built without cuBLASLt", ...).
bool available(std::string* reason);

// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"; throws when unavailable.
std::string device_description();

void* device_malloc(size_t bytes);  // throws a readable out-of-memory error naming the size
void device_free(void* ptr);        // nullptr is fine
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
void memset_zero(void* ptr, size_t bytes);
void synchronize();
size_t free_memory();  // bytes free on the current device (cudaMemGetInfo)

// Scratch memory from a caching pool: a released buffer is kept for the next request of
// a size it can serve, so hot calls (loss scratch, per-row losses) do not cudaMalloc.
// All kernels run on the legacy default stream, so a buffer released after the work that
// used it has been queued is safe to hand out again.
class ScratchBuffer {
public:
    explicit ScratchBuffer(size_t bytes);
    ~ScratchBuffer();
    ScratchBuffer(const ScratchBuffer&) = delete;
    ScratchBuffer& operator=(const ScratchBuffer&) = delete;
    void* data() const { return ptr_; }
    size_t size() const { return bytes_; }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace plw::cuda
