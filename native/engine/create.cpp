// create_model: the one place that picks an architecture, a backend and a precision, and
// instantiates the engine for them.
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

}  // namespace

std::unique_ptr<Model> create_model(const ModelSpec& spec, const std::string& device, BatchShape max_batch,
                                    Precision precision) {
    if (device == "cpu") {
        PLW_CHECK(precision == Precision::F32,
                  "bf16 mixed precision runs on CUDA only; the CPU engine computes in f32 (use precision 'f32')");
        return make<CpuBackend, float>(spec, max_batch);
    }
    if (device == "cuda") {
        std::string reason;
        if (!cuda::available(&reason)) throw Error("CUDA backend unavailable: " + reason);
#if PLW_WITH_CUDA
        if (precision == Precision::BF16) return make<CudaBackend, bf16>(spec, max_batch);
        return make<CudaBackend, float>(spec, max_batch);
#endif
    }
    throw Error("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

MemoryReport plan_memory(const ModelSpec& spec, const std::string& device, BatchShape max_batch, Precision precision) {
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
