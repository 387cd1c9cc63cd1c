// Device memory for one model, taken in one pass over a list of buffers. The same list is
// walked twice: a dry run that only adds up the bytes (so a model that cannot fit is refused
// with the whole bill before anything is allocated), then the real allocation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model.h"

namespace plw::engine {

template <typename BK>
class Arena {
public:
    ~Arena() { release_all(); }

    // Starts a pass: dry (count only) or real (allocate and zero).
    void begin(bool dry, MemoryReport* bill) {
        dry_ = dry;
        bill_ = bill;
    }

    // `count` elements of T, 64-byte aligned, billed to `bucket` (a member of MemoryReport).
    template <typename T>
    T* take(size_t count, size_t MemoryReport::*bucket) {
        const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
        bill_->*bucket += bytes;
        if (dry_) return nullptr;
        void* p = BK::alloc(bytes);
        allocations_.push_back(p);
        BK::zero(p, bytes);
        return static_cast<T*>(p);
    }

    void release_all() {
        for (void* p : allocations_) BK::release(p);
        allocations_.clear();
    }

private:
    bool dry_ = true;
    MemoryReport* bill_ = nullptr;
    std::vector<void*> allocations_;
};

}  // namespace plw::engine
