// The two backends as the engine sees them: memory, the ops (same names for both) and the
// traits that differ (vocabulary padding, the head's chunk), so the engine (engine.h) and
// every architecture (arch/) are written once as templates over the backend.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <new>

#include <omp.h>

#include "../cpu/adamw.h"
#include "../cpu/attention.h"
#include "../cpu/convert.h"
#include "../cpu/decode.h"
#include "../cpu/embedding.h"
#include "../cpu/flash_attention.h"
#include "../cpu/fused_head.h"
#include "../cpu/gelu.h"
#include "../cpu/layernorm.h"
#include "../cpu/linear.h"
#include "../cpu/lora.h"
#include "../cpu/matmul.h"
#include "../cpu/residual.h"
#include "../cpu/rmsnorm.h"
#include "../cpu/rope.h"
#include "../cpu/swiglu.h"
#include "../common/layout.h"
#include "../cuda/runtime.h"

#if PLW_WITH_CUDA
#include "../cuda/adamw.h"
#include "../cuda/attention.h"
#include "../cuda/convert.h"
#include "../cuda/decode.h"
#include "../cuda/embedding.h"
#include "../cuda/flash_attention.h"
#include "../cuda/fused_head.h"
#include "../cuda/gelu.h"
#include "../cuda/layernorm.h"
#include "../cuda/linear.h"
#include "../cuda/lora.h"
#include "../cuda/residual.h"
#include "../cuda/rmsnorm.h"
#include "../cuda/rope.h"
#include "../cuda/swiglu.h"
#endif

namespace plw::engine {

// The ops the engine calls, listed once; each backend forwards them to its namespace.
#define PLW_BACKEND_OPS(X)                                                                   \
    X(embedding_forward) X(embedding_backward) X(layernorm_forward) X(layernorm_backward)   \
    X(linear_forward) X(linear_backward) X(attention_forward) X(attention_backward)         \
    X(gelu_forward) X(gelu_backward) X(residual_forward) X(residual_backward)               \
    X(fused_head_cross_entropy_forward) X(fused_head_cross_entropy_backward) X(adamw_update) \
    X(grad_sum_squares) X(attention_decode_forward) X(head_logits_forward) X(convert)             \
    X(rmsnorm_forward) X(rmsnorm_backward) X(rope_forward) X(rope_backward) X(swiglu_forward)   \
    X(swiglu_backward) X(lora_forward) X(lora_backward) X(dropout_forward) X(dropout_backward)       \
    X(flash_attention_forward) X(flash_attention_backward)

struct CpuBackend {
    static constexpr const char* name = "cpu";
    static void* alloc(size_t bytes) {
        void* p = ::operator new(bytes == 0 ? 1 : bytes, std::align_val_t{64}, std::nothrow);
        if (!p) throw Error("out of host memory allocating " + std::to_string(bytes >> 20) + " MiB");
        return p;
    }
    static void release(void* p) { ::operator delete(p, std::align_val_t{64}); }
    static void zero(void* p, size_t bytes) { std::memset(p, 0, bytes); }
    static void upload(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
    static void download(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
    static void copy(void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
    static void sync() {}
    // MemAvailable from /proc/meminfo (what can be allocated without swapping or the OOM
    // killer); 0 when unknown, which skips the check.
    static size_t free_memory() {
        FILE* f = std::fopen("/proc/meminfo", "r");
        if (!f) return 0;
        char line[256];
        size_t kib = 0;
        while (std::fgets(line, sizeof line, f)) {
            if (std::sscanf(line, "MemAvailable: %zu kB", &kib) == 1) break;
        }
        std::fclose(f);
        return kib * 1024;
    }
    // The CPU engine is f32 only (elem_size 4).
    static size_t fused_head_scratch_bytes(int chunk, int V, size_t /*elem_size*/) {
        return sizeof(float) * cpu::fused_head_scratch_floats(chunk, V);
    }
    // The unfused attention takes no scratch; the fused one a few tiles per thread.
    static size_t attention_scratch_bytes(int /*B*/, int T, int NH, int hs, size_t /*elem_size*/, bool fused) {
        return fused ? cpu::flash_attention_scratch_bytes(T, NH, hs, omp_get_max_threads()) : 0;
    }
    static bool fused_attention_supported(int /*hs*/) { return true; }
    static int default_head_chunk() { return 256; }
    // Rows of the stored token table / head: the CPU gains nothing from padding.
    static int padded_vocab(int V) { return V; }
#define PLW_FORWARD(fn) \
    template <typename... A> static auto fn(A... a) { return cpu::fn(a...); }
    PLW_BACKEND_OPS(PLW_FORWARD)
#undef PLW_FORWARD
};

#if PLW_WITH_CUDA
struct CudaBackend {
    static constexpr const char* name = "cuda";
    static void* alloc(size_t bytes) { return cuda::device_malloc(bytes == 0 ? 1 : bytes); }
    static void release(void* p) { cuda::device_free(p); }
    static void zero(void* p, size_t bytes) { cuda::memset_zero(p, bytes); }
    static void upload(void* dst, const void* src, size_t bytes) { cuda::copy_to_device(dst, src, bytes); }
    static void download(void* dst, const void* src, size_t bytes) { cuda::copy_to_host(dst, src, bytes); }
    static void copy(void* dst, const void* src, size_t bytes) { cuda::copy_device_to_device(dst, src, bytes); }
    static void sync() { cuda::synchronize(); }
    static size_t free_memory() { return cuda::free_memory(); }
    static size_t fused_head_scratch_bytes(int chunk, int V, size_t elem_size) {
        return cuda::fused_head_scratch_bytes(chunk, V, elem_size);
    }
    // Held by the attention op from the scratch pool, not by the engine's arenas.
    static size_t attention_scratch_bytes(int B, int T, int NH, int hs, size_t elem_size, bool fused) {
        return fused ? cuda::flash_attention_scratch_bytes(B, T, NH, hs) : cuda::attention_scratch_bytes(T, NH, elem_size);
    }
    static bool fused_attention_supported(int hs) { return cuda::flash_attention_supports(hs); }
    static int default_head_chunk() { return 2048; }
    // The CUDA kernels like rows of 128 floats.
    static int padded_vocab(int V) { return (V + 127) / 128 * 128; }
#define PLW_FORWARD(fn) \
    template <typename... A> static auto fn(A... a) { return cuda::fn(a...); }
    PLW_BACKEND_OPS(PLW_FORWARD)
#undef PLW_FORWARD
};
#endif

}  // namespace plw::engine
