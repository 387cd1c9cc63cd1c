// Dropout's keep/drop decision, the same bits on the CPU and in CUDA kernels: element i of a
// tensor is kept when a counter-based hash of (seed, i) is at least p * 2^32. Nothing is
// stored: the backward pass and a resumed run regenerate the mask from the seed, and both
// backends (and the emulator) drop exactly the same elements.
//
// The hash is SplitMix64's finalizer (Steele, Lea, Flood 2014) of seed + (i + 1) * golden
// ratio: a bijection of 64-bit words whose high 32 bits pass BigCrush as a stream.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define PLW_HOST_DEVICE __host__ __device__
#else
#define PLW_HOST_DEVICE
#endif

namespace plw {

PLW_HOST_DEVICE inline uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// The drop threshold for probability p in [0, 1): elements whose bits are below it are dropped.
inline uint32_t dropout_threshold(float p) {
    const double t = static_cast<double>(p) * 4294967296.0;
    return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(t);
}

PLW_HOST_DEVICE inline bool dropout_keep(uint64_t seed, uint64_t i, uint32_t threshold) {
    return static_cast<uint32_t>(splitmix64(seed + (i + 1) * 0x9E3779B97F4A7C15ull) >> 32) >= threshold;
}

// One seed from several counters (the run's seed, the optimizer step, the micro-batch, the
// adapter): each folded in through the hash so nearby counters give unrelated streams.
inline uint64_t mix_seed(uint64_t a, uint64_t b) { return splitmix64(a ^ splitmix64(b + 0x632BE59BD9B4E019ull)); }

}  // namespace plw
