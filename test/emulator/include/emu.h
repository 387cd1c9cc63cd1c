// A host emulation of the CUDA execution model, enough to run native/cuda's kernels on the CPU
// and check their logic against the C++ twins in native/cpu (see docs/testing.md).
//
// Each CUDA thread of a block is a std::thread, so __syncthreads and warp shuffles are real
// barriers between real threads and a kernel runs unmodified. The blocks of a grid run one
// after another on the same block.x threads (creating threads per block would dominate the
// run time). Limits, each checked at launch with a clear error: 1-D blocks of a multiple of
// 32 threads (whole warps), at most 1024; grids of at most 2 dimensions; at most 48 KiB of
// dynamic shared memory (the default limit without an opt-in).
//
// test/emulator/build.js rewrites kernel<<<grid, block[, smem]>>>(args) into
// emu::launch(kernel, grid, block, smem, args) and `extern __shared__ T name[];` into a
// pointer to emu::dynamic_shared<T>().
//
// Warp collectives (shuffles, and the wide exchange behind the emulated mma.sync in
// mma_emu.h) are full-warp only: every lane publishes, a warp barrier, every lane reads, a
// second barrier. Each lane counts its collectives; an exchange whose lanes are at different
// counts (divergent control flow around a warp-wide instruction) fails. A lane that never
// arrives cannot be detected: the warp hangs instead.
#pragma once
#include <array>
#include <barrier>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Static shared memory: one copy per kernel instantiation. Blocks run one at a time, so
// that is one copy per running block, as on the GPU (but it keeps its values from the
// previous block: a read before the block's own write goes unnoticed).
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
inline thread_local uint3 threadIdx, blockIdx, blockDim, gridDim;

struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
using std::max;
using std::min;

// The runtime API calls the kernels' host code makes ("device" memory is host memory).
typedef int cudaError_t;
enum { cudaSuccess = 0 };
typedef void* cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulator"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulator"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) {
    std::memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) {
    std::memset(d, v, n);
    return cudaSuccess;
}
// One device, reported as compute capability 9.0 (an H100's), so that code choosing a path by
// architecture (sm_80+: tensor cores) takes the one the GPUs here take.
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76 };
inline cudaError_t cudaGetDevice(int* device) {
    *device = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
    if (device != 0) return 101;  // cudaErrorInvalidDevice
    *value = attr == cudaDevAttrComputeCapabilityMajor ? 9 : 0;
    return cudaSuccess;
}

// Device intrinsics. The _rn arithmetic is what it says: one IEEE operation, no contraction.
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline float __uint_as_float(unsigned i) { float f; std::memcpy(&f, &i, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned i; std::memcpy(&i, &f, 4); return i; }
inline float __fadd_rn(float a, float b) { volatile float r = a + b; return r; }
inline float __fsub_rn(float a, float b) { volatile float r = a - b; return r; }
inline float __fmul_rn(float a, float b) { volatile float r = a * b; return r; }
inline float __fdiv_rn(float a, float b) { volatile float r = a / b; return r; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }

namespace emu {

[[noreturn]] inline void fail(const std::string& what) {
    throw std::runtime_error("CUDA emulator: " + what);
}

constexpr size_t kMaxDynamicShared = 48 * 1024;
constexpr size_t kExchangeBytes = 256;  // per lane: the widest warp exchange

// The state one block's threads share: barriers and the exchange slots of the shuffles.
struct Block {
    Block(unsigned threads, size_t dynamic_bytes)
        : sync(threads), slots(threads / 32), wide(threads / 32, std::vector<unsigned char>(32 * kExchangeBytes)),
          dynamic(dynamic_bytes + 16) {
        for (unsigned w = 0; w < threads / 32; w++) warp_sync.push_back(std::make_unique<std::barrier<>>(32));
        poison();
    }
    // Shared memory starts as NaN bytes, so a read before a write shows in the results.
    void poison() { std::fill(dynamic.begin(), dynamic.end(), 0xff); }
    std::barrier<> sync;  // __syncthreads
    std::vector<std::unique_ptr<std::barrier<>>> warp_sync;
    std::vector<std::array<uint64_t, 32>> slots;
    std::vector<std::vector<unsigned char>> wide;  // per warp: 32 lanes x kExchangeBytes
    std::vector<unsigned char> dynamic;  // extern __shared__ (16-byte aligned, like new[])
};
inline thread_local Block* current = nullptr;
inline thread_local uint64_t collectives = 0;  // warp collectives this thread has run in its block
inline std::mutex atomic_mutex;

template <typename T>
T* dynamic_shared() {
    return reinterpret_cast<T*>(current->dynamic.data());
}

template <typename K, typename... A>
void launch(K kernel, dim3 grid, dim3 block, size_t dynamic_bytes, A... args) {
    if (block.x == 0 || block.x > 1024 || block.x % 32 != 0 || block.y != 1 || block.z != 1)
        fail("block (" + std::to_string(block.x) + ", " + std::to_string(block.y) + ", " + std::to_string(block.z) +
             "): only 1-D blocks of whole warps, at most 1024 threads, are emulated");
    if (grid.x == 0 || grid.x > 0x7fffffffu || grid.y == 0 || grid.y > 65535 || grid.z != 1)
        fail("bad grid (" + std::to_string(grid.x) + ", " + std::to_string(grid.y) + ", " + std::to_string(grid.z) + ")");
    if (dynamic_bytes > kMaxDynamicShared)
        fail(std::to_string(dynamic_bytes) + " bytes of dynamic shared memory (limit 48 KiB)");
    Block b(block.x, dynamic_bytes);
    // Between blocks: every thread has left the kernel; the completion step resets the block.
    std::barrier next_block(block.x, [&b]() noexcept { b.poison(); });
    std::vector<std::thread> threads;
    threads.reserve(block.x);
    for (unsigned tx = 0; tx < block.x; tx++) {
        threads.emplace_back([&, tx] {
            threadIdx = {tx, 0, 0};
            blockDim = {block.x, 1, 1};
            gridDim = {grid.x, grid.y, 1};
            current = &b;
            for (unsigned by = 0; by < grid.y; by++) {
                for (unsigned bx = 0; bx < grid.x; bx++) {
                    blockIdx = {bx, by, 0};
                    collectives = 0;
                    kernel(args...);
                    next_block.arrive_and_wait();
                }
            }
            current = nullptr;
        });
    }
    for (auto& t : threads) t.join();
}

// One step of a warp shuffle: every lane publishes v, then reads the lane src_lane(lane).
template <typename T, typename F>
T shuffle(T v, F src_lane) {
    static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof v);
    ++collectives;
    current->slots[warp][lane] = bits;
    current->warp_sync[warp]->arrive_and_wait();
    const uint64_t other = current->slots[warp][src_lane(lane)];
    current->warp_sync[warp]->arrive_and_wait();  // nobody overwrites a slot still being read
    T r;
    std::memcpy(&r, &other, sizeof r);
    return r;
}

// A wide warp exchange (the two-barrier discipline of shuffle, for up to kExchangeBytes - 8
// bytes a lane): every lane of the warp publishes `mine`, then `use` gets all 32 lanes'
// values (index = lane). All lanes must be at the same collective, or it fails.
template <typename T, typename F>
void warp_exchange(const T& mine, F&& use) {
    static_assert(std::is_trivially_copyable_v<T>, "exchange of a type that is not trivially copyable");
    static_assert(sizeof(T) + 8 <= kExchangeBytes, "exchange wider than kExchangeBytes");
    const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    unsigned char* slots = current->wide[warp].data();
    const uint64_t seq = ++collectives;
    std::memcpy(slots + lane * kExchangeBytes, &seq, 8);
    std::memcpy(slots + lane * kExchangeBytes + 8, &mine, sizeof(T));
    current->warp_sync[warp]->arrive_and_wait();
    std::array<T, 32> all;
    unsigned diverged = 0;
    for (unsigned l = 0; l < 32; l++) {
        uint64_t s;
        std::memcpy(&s, slots + l * kExchangeBytes, 8);
        diverged += s != seq;
        std::memcpy(&all[l], slots + l * kExchangeBytes + 8, sizeof(T));
    }
    current->warp_sync[warp]->arrive_and_wait();  // nobody overwrites a slot still being read
    if (diverged)
        fail("warp " + std::to_string(warp) + " of block (" + std::to_string(blockIdx.x) + ", " +
             std::to_string(blockIdx.y) + "): " + std::to_string(diverged) +
             " lanes at another warp collective than lane " + std::to_string(lane) + " (divergent warp-wide instruction)");
    use(all);
}

}  // namespace emu

inline void __syncthreads() { emu::current->sync.arrive_and_wait(); }

// Full-warp masks only (what the kernels use): every lane of the warp must take part.
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
    if (mask != 0xffffffffu) emu::fail("__shfl_xor_sync with a partial mask");
    return emu::shuffle(v, [lane_mask](unsigned lane) { return (lane ^ unsigned(lane_mask)) & 31; });
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    if (mask != 0xffffffffu) emu::fail("__shfl_down_sync with a partial mask");
    return emu::shuffle(v, [delta](unsigned lane) { return lane + delta < 32 ? lane + delta : lane; });
}

inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
    std::lock_guard<std::mutex> lock(emu::atomic_mutex);
    const unsigned long long old = *p;
    if (v < old) *p = v;
    return old;
}
