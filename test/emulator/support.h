// Shared by the emulator's test programs: failure counting, device-like buffers, random
// inputs and bf16 rounding, and the counters the emulated runtime and cuBLASLt keep.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "native/common/bf16.h"

namespace emu {
extern long lt_calls, lt_batched_calls;  // reference_cublaslt.cpp: matmuls, and batched ones
extern size_t scratch_peak;              // runtime_shim.cpp: largest ScratchBuffer since reset
}  // namespace emu

namespace test {

inline int failures = 0;
inline std::mt19937 rng(1234);  // fixed seed: a failure reproduces

#define EXPECT(cond, ...)                                        \
    do {                                                         \
        if (!(cond)) {                                           \
            if (++::test::failures <= 40) {                      \
                std::printf("FAIL %s:%d: ", __FILE__, __LINE__); \
                std::printf(__VA_ARGS__);                        \
                std::printf("\n");                               \
            }                                                    \
        }                                                        \
    } while (0)

// n elements of T starting `off` elements past a 256-byte boundary (off = 1: a bf16 buffer
// only 2-byte aligned), filled with 0xff bytes (NaN) so that an unwritten result shows.
template <typename T>
struct Buf {
    std::vector<unsigned char> store;
    T* p;
    size_t n;
    Buf(size_t n_, int off) : store((n_ + off) * sizeof(T) + 512, 0xff), n(n_) {
        const auto base = (reinterpret_cast<uintptr_t>(store.data()) + 255) / 256 * 256;
        p = reinterpret_cast<T*>(base) + off;
    }
    T& operator[](size_t i) { return p[i]; }
};

inline void fill(float* p, size_t n, float scale, float shift = 0.f) {
    std::normal_distribution<float> nd(0.f, scale);
    for (size_t i = 0; i < n; i++) p[i] = nd(rng) + shift;
}
// Random f32 values already on the bf16 grid, and their bf16 copy: a CPU reference run on
// the f32 values sees exactly the bf16 inputs.
inline void fill_bf16(float* f, plw::bf16* b, size_t n, float scale, float shift = 0.f) {
    fill(f, n, scale, shift);
    for (size_t i = 0; i < n; i++) {
        b[i] = plw::f32_to_bf16(f[i]);
        f[i] = plw::bf16_to_f32(b[i]);
    }
}
inline float round_bf16(float x) { return plw::bf16_to_f32(plw::f32_to_bf16(x)); }
inline std::vector<float> widen(const plw::bf16* b, size_t n) {
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = plw::bf16_to_f32(b[i]);
    return f;
}

inline void same_bits(const char* what, const void* a, const void* b, size_t bytes) {
    EXPECT(std::memcmp(a, b, bytes) == 0, "%s: bits differ", what);
}

// The selected groups: no argument runs them all, otherwise only the one named.
inline bool selected(int argc, char** argv, const char* group) {
    return argc < 2 || std::string(argv[1]) == group;
}

inline int finish(const char* program) {
    std::printf("%s: %s (%d failures)\n", program, failures ? "FAILED" : "ALL OK", failures);
    return failures != 0;
}

}  // namespace test
