// Register packs of one row, shared by the row-wise kernels (layernorm.cu, rmsnorm.cu): f32
// loads/stores of VEC values (16-byte accesses when VEC % 4 == 0) and RowPack, VEC
// activations of a row held in registers.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common.cuh"

namespace plw::cuda::detail {

// f32 values i * VEC ... i * VEC + VEC - 1 of p (weight, bias, partials); 16-byte accesses
// when VEC % 4 == 0 (then p is 16-byte aligned).
template <int VEC>
__device__ __forceinline__ void load_f32(float (&r)[VEC], const float* p, int i) {
    if constexpr (VEC % 4 == 0) {
#pragma unroll
        for (int k = 0; k < VEC / 4; ++k) {
            const Pack<float, 4> q =
                reinterpret_cast<const Pack<float, 4>*>(p)[i * (VEC / 4) + k];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                r[4 * k + j] = q.v[j];
            }
        }
    } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            r[j] = p[i * VEC + j];
        }
    }
}

template <int VEC>
__device__ __forceinline__ void store_f32(float* p, int i, const float (&r)[VEC]) {
    if constexpr (VEC % 4 == 0) {
#pragma unroll
        for (int k = 0; k < VEC / 4; ++k) {
            Pack<float, 4> q;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                q.v[j] = r[4 * k + j];
            }
            reinterpret_cast<Pack<float, 4>*>(p)[i * (VEC / 4) + k] = q;
        }
    } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            p[i * VEC + j] = r[j];
        }
    }
}

// Pack i of VEC activations of a row, held in registers (backward). A pack of 8 bf16 stays
// one uint4, unpacked on each use (see Pack16 in common.cuh); floats are kept as they are.
template <typename T, int VEC, bool PACKED_BF16 = (sizeof(T) == 2 && VEC == 8)>
struct RowPack {
    Pack<T, VEC> p;
    __device__ void load(const T* row, int i) {
        p = reinterpret_cast<const Pack<T, VEC>*>(row)[i];
    }
    __device__ void zero() { p = Pack<T, VEC>{}; }
    __device__ float get(int j) const { return to_float(p.v[j]); }
    __device__ static void store(T* row, int i, const float (&f)[VEC]) {
        Pack<T, VEC> q;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            q.v[j] = from_float<T>(f[j]);
        }
        reinterpret_cast<Pack<T, VEC>*>(row)[i] = q;
    }
};

template <typename T, int VEC>
struct RowPack<T, VEC, true> {
    uint4 p;
    __device__ void load(const T* row, int i) { p = reinterpret_cast<const uint4*>(row)[i]; }
    __device__ void zero() { p = make_uint4(0u, 0u, 0u, 0u); }
    __device__ float get(int j) const { return Pack16<T>::get(p, j); }
    __device__ static void store(T* row, int i, const float (&f)[VEC]) {
        reinterpret_cast<uint4*>(row)[i] = Pack16<T>::from_floats(f);
    }
};

}  // namespace plw::cuda::detail
