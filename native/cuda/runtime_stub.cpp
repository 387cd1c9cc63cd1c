// runtime.h for builds without nvcc (plain C++, compiled by the host compiler instead of
// runtime.cu): the CUDA backend reports itself unavailable, with the reason, and every other
// call throws plw::Error with the same reason.
#include <cstddef>
#include <string>

#include "../common/check.h"
#include "runtime.h"

namespace plw::cuda {

namespace {

constexpr const char* kReason =
    "built without CUDA (nvcc was not found when plwtune was built; see docs/building.md)";

[[noreturn]] void unavailable(int line) { ::plw::fail(kReason, __FILE__, line); }

}  // namespace

bool available(std::string* reason) {
    if (reason != nullptr) {
        *reason = kReason;
    }
    return false;
}

std::string device_description() { unavailable(__LINE__); }

void* device_malloc(size_t) { unavailable(__LINE__); }

void device_free(void* ptr) {
    if (ptr != nullptr) {
        unavailable(__LINE__);
    }
}

void copy_to_device(void*, const void*, size_t) { unavailable(__LINE__); }

void copy_to_host(void*, const void*, size_t) { unavailable(__LINE__); }

void copy_device_to_device(void*, const void*, size_t) { unavailable(__LINE__); }

void memset_zero(void*, size_t) { unavailable(__LINE__); }

void synchronize() { unavailable(__LINE__); }
size_t free_memory() { unavailable(__LINE__); }

ScratchBuffer::ScratchBuffer(size_t) { unavailable(__LINE__); }

ScratchBuffer::~ScratchBuffer() = default;

}  // namespace plw::cuda
