// The emulator's stand-in for native/cuda/runtime.cu: "device" memory is host memory, and
// the cuBLASLt context is that of the reference cuBLASLt.
#include <cstdlib>
#include <cstring>
#include <string>

#include "native/cuda/cublaslt_handle.h"
#include "native/cuda/runtime.h"

namespace emu {
size_t scratch_peak = 0;
}

namespace plw::cuda {

bool available(std::string*) { return true; }
std::string device_description() { return "CUDA emulator (host threads)"; }
void* device_malloc(size_t bytes) {
    const size_t rounded = (bytes + 255) / 256 * 256;  // cudaMalloc's alignment
    void* p = std::aligned_alloc(256, rounded ? rounded : 256);
    std::memset(p, 0xff, rounded);  // NaN garbage: a read before a write shows
    return p;
}
void device_free(void* p) { std::free(p); }
void copy_to_device(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void copy_to_host(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void copy_device_to_device(void* dst, const void* src, size_t n) { std::memmove(dst, src, n); }
void memset_zero(void* p, size_t n) { std::memset(p, 0, n); }
void synchronize() {}
size_t free_memory() { return size_t(16) << 30; }

ScratchBuffer::ScratchBuffer(size_t bytes) : bytes_(bytes) {
    if (bytes > emu::scratch_peak) emu::scratch_peak = bytes;
    ptr_ = bytes ? device_malloc(bytes) : nullptr;
}
ScratchBuffer::~ScratchBuffer() { device_free(ptr_); }

const CublasLtContext& cublaslt_context() {
    static void* workspace = device_malloc(kCublasLtWorkspaceBytes);
    static const CublasLtContext context{reinterpret_cast<cublasLtHandle_t>(1), workspace, kCublasLtWorkspaceBytes};
    return context;
}

}  // namespace plw::cuda
