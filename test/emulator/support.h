// Shared by the emulator's test programs: failure counting, device-like buffers, random
// inputs and bf16 rounding, and the counters the emulated runtime and cuBLASLt keep.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
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

// n elements of T at `off` elements past a 256-byte boundary (NaN bytes until written), alive
// until the program ends.
template <typename T>
T* alloc(size_t n, int off) {
    static std::vector<std::unique_ptr<Buf<T>>> keep;
    keep.push_back(std::make_unique<Buf<T>>(n, off));
    return keep.back()->p;
}
// bf16 copy of p, and p itself rounded to the same values (the reference's inputs)
inline plw::bf16* to_bf16(float* p, size_t n, int off) {
    plw::bf16* b = alloc<plw::bf16>(n, off);
    for (size_t i = 0; i < n; i++) {
        b[i] = plw::f32_to_bf16(p[i]);
        p[i] = plw::bf16_to_f32(b[i]);
    }
    return b;
}

// |got - ref| <= atol + rtol |ref| elementwise (equal values incl. infinities, and NaN vs NaN,
// pass); returns the worst error in units of the tolerance (<= 1 passes).
inline double compare(const char* what, const float* got, const float* ref, size_t n, double rtol, double atol) {
    double worst = 0;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == ref[i] || (std::isnan(got[i]) && std::isnan(ref[i]))) continue;
        const double d = std::fabs(double(got[i]) - double(ref[i]));
        if (!(d <= atol + rtol * std::fabs(double(ref[i])))) bad++;
        const double r = std::isnan(d) ? INFINITY : d / (atol + rtol * std::fabs(double(ref[i])));
        if (r > worst) {
            worst = r;
            wi = i;
        }
    }
    EXPECT(bad == 0, "%s: %d of %zu out of tolerance; worst at %zu got %.9g ref %.9g", what, bad, n, wi, got[wi],
           ref[wi]);
    return worst;
}
// compare for a bf16 result: rtol_f32 plus the bf16 rounding of the result (2^-8)
inline double compare_bf16(const char* what, const plw::bf16* got, const float* ref, size_t n, double rtol_f32,
                           double atol) {
    const std::vector<float> g = widen(got, n);
    return compare(what, g.data(), ref, n, std::ldexp(1.0, -8) + rtol_f32, atol);
}
// fraction of elements that are exactly f32_to_bf16(ref) (NaN: any NaN)
inline double rne_fraction(const plw::bf16* got, const float* ref, size_t n) {
    size_t same = 0;
    for (size_t i = 0; i < n; i++) {
        const plw::bf16 r = plw::f32_to_bf16(ref[i]);
        if (got[i].bits == r.bits || (std::isnan(ref[i]) && std::isnan(plw::bf16_to_f32(got[i])))) same++;
    }
    return n ? double(same) / n : 1.0;
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
