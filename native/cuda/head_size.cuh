// The head sizes the fused attention kernels are compiled for (64, 80, 96, 128), and the one
// switch that turns a run-time head size into the compile-time one: with_head_size(hs, who, f)
// calls f(std::integral_constant<int, HS>{}) for the matching HS, and fails naming `who`
// otherwise. Shared by the SIMT (flash_attention.cu) and tensor-core (flash_attention_mma.cu)
// launches.
#pragma once
#include <type_traits>

#include "check.cuh"

namespace plw::cuda::detail {

template <typename F>
void with_head_size(int hs, const char* who, F&& f) {
    switch (hs) {
        case 64:
            f(std::integral_constant<int, 64>{});
            break;
        case 80:
            f(std::integral_constant<int, 80>{});
            break;
        case 96:
            f(std::integral_constant<int, 96>{});
            break;
        case 128:
            f(std::integral_constant<int, 128>{});
            break;
        default:
            PLW_CHECK(false, who << ": head size " << hs << " (64, 80, 96, 128)");
    }
}

}  // namespace plw::cuda::detail
