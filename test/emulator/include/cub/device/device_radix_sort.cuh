// Stand-in for CUB's DeviceRadixSort::SortPairs: a stable sort by key, as the radix sort is.
#pragma once
#include <algorithm>
#include <utility>
#include <vector>

#include "../../emu.h"

namespace cub {
struct DeviceRadixSort {
    template <class K, class V>
    static cudaError_t SortPairs(void* temp, size_t& temp_bytes, const K* keys_in, K* keys_out,
                                 const V* values_in, V* values_out, int n, int begin_bit = 0,
                                 int end_bit = sizeof(K) * 8, cudaStream_t = nullptr) {
        if (begin_bit != 0 || end_bit != int(sizeof(K) * 8)) emu::fail("SortPairs on a bit range");
        if (!temp) {  // the size query
            temp_bytes = 64;
            return cudaSuccess;
        }
        std::vector<std::pair<K, V>> v(n);
        for (int i = 0; i < n; i++) v[i] = {keys_in[i], values_in[i]};
        std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        for (int i = 0; i < n; i++) {
            keys_out[i] = v[i].first;
            values_out[i] = v[i].second;
        }
        return cudaSuccess;
    }
};
}  // namespace cub
