// HostScratch pool: a request takes the smallest cached block that fits and is at most
// twice its size; a release returns the block. At most kMaxCached blocks are kept.
#include "host_scratch.h"

#include <cstdlib>
#include <map>
#include <mutex>

#include "../common/check.h"

namespace plw::binding {

namespace {
constexpr size_t kMaxCached = 8;
std::mutex g_mutex;
std::multimap<size_t, void*> g_free;  // capacity -> block
}  // namespace

HostScratch::HostScratch(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    {
        std::lock_guard<std::mutex> lock(g_mutex);
        auto it = g_free.lower_bound(bytes);
        if (it != g_free.end() && it->first <= 2 * bytes) {
            ptr_ = it->second;
            bytes_ = it->first;
            g_free.erase(it);
            return;
        }
    }
    ptr_ = std::aligned_alloc(64, bytes);
    if (!ptr_) throw Error("out of host memory allocating " + std::to_string(bytes >> 20) + " MiB of scratch");
    bytes_ = bytes;
}

HostScratch::~HostScratch() {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_free.size() < kMaxCached) {
        g_free.emplace(bytes_, ptr_);
    } else {
        std::free(ptr_);
    }
}

}  // namespace plw::binding
