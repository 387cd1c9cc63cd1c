// create_model: the one place that picks an architecture, a backend and a precision, and
// instantiates the engine for them.
#include <string>
#include <vector>

#include "../common/check.h"
#include "arch/gpt2.h"
#include "arch/llama.h"
#include "engine.h"
#include "model.h"

namespace plw::engine {

namespace {

template <typename BK, typename Act>
std::unique_ptr<Model> make(const ModelSpec& spec, BatchShape max, bool plan_only = false) {
    switch (spec.arch) {
        case Arch::GPT2: return std::make_unique<Engine<BK, Act, Gpt2>>(spec, max, plan_only);
        case Arch::Llama: return std::make_unique<Engine<BK, Act, Llama>>(spec, max, plan_only);
    }
    throw Error("unknown architecture");
}

// Recompute::Auto on a device, in order of preference. The CPU's fused attention is faster
// than its unfused one (docs/memory.md), so it comes first. On CUDA the unfused attention
// (cuBLASLt tensor-core GEMMs) comes first while the fused kernels are unmeasured on a GPU.
std::vector<Recompute> auto_order(const std::string& device) {
    if (device == "cpu") return {Recompute::Attention, Recompute::Block};
    return {Recompute::None, Recompute::Attention, Recompute::Block};
}

// Recompute::Auto: the first of the device's auto_order() whose bill fits the free memory
// (0: unknown, taken as fitting); the last one when none fits (its refusal is the clearest).
template <typename BK, typename Act>
ModelSpec resolve_recompute(ModelSpec spec, BatchShape max) {
    if (spec.recompute != Recompute::Auto) return spec;
    const size_t free = BK::free_memory();
    for (Recompute r : auto_order(BK::name)) {
        spec.recompute = r;
        if (free == 0 || make<BK, Act>(spec, max, true)->memory().total() <= free) break;
    }
    return spec;
}

template <typename BK, typename Act>
std::unique_ptr<Model> make_resolved(const ModelSpec& spec, BatchShape max) {
    return make<BK, Act>(resolve_recompute<BK, Act>(spec, max), max);
}

}  // namespace

std::unique_ptr<Model> create_model(const ModelSpec& spec, const std::string& device, BatchShape max_batch,
                                    Precision precision) {
    if (device == "cpu") {
        PLW_CHECK(precision == Precision::F32,
                  "bf16 mixed precision runs on CUDA only; the CPU engine computes in f32 (use precision 'f32')");
        return make_resolved<CpuBackend, float>(spec, max_batch);
    }
    if (device == "cuda") {
        std::string reason;
        if (!cuda::available(&reason)) throw Error("CUDA backend unavailable: " + reason);
#if PLW_WITH_CUDA
        if (precision == Precision::BF16) return make_resolved<CudaBackend, bf16>(spec, max_batch);
        return make_resolved<CudaBackend, float>(spec, max_batch);
#endif
    }
    throw Error("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

MemoryReport plan_memory(const ModelSpec& requested, const std::string& device, BatchShape max_batch, Precision precision) {
    ModelSpec spec = requested;  // a plan is for a device that may not be here: Auto plans the device's first choice
    if (spec.recompute == Recompute::Auto) spec.recompute = auto_order(device).front();
    if (device == "cpu") {
        PLW_CHECK(precision == Precision::F32, "the CPU engine computes in f32 only");
        return make<CpuBackend, float>(spec, max_batch, true)->memory();
    }
    if (device == "cuda") {
#if PLW_WITH_CUDA
        if (precision == Precision::BF16) return make<CudaBackend, bf16>(spec, max_batch, true)->memory();
        return make<CudaBackend, float>(spec, max_batch, true)->memory();
#else
        throw Error("this build has no CUDA backend to plan for (built without nvcc)");
#endif
    }
    throw Error("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

}  // namespace plw::engine
