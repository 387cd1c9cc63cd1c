// Host scratch memory from a small caching pool, the CPU twin of cuda::ScratchBuffer:
// large per-call buffers (the fused head's chunk of logits) are reused across calls
// instead of being freshly allocated and page-faulted in every time.
#pragma once
#include <cstddef>

namespace plw::binding {

class HostScratch {
public:
    explicit HostScratch(size_t bytes);
    ~HostScratch();
    HostScratch(const HostScratch&) = delete;
    HostScratch& operator=(const HostScratch&) = delete;
    template <typename T>
    T* as() const { return static_cast<T*>(ptr_); }

private:
    void* ptr_ = nullptr;
    size_t bytes_ = 0;
};

}  // namespace plw::binding
