// Registration of the plwtune native addon: the Tensor class, the kernels, and what the
// backends can do on this machine. Everything else lives in one file per wrapped thing.
#include <napi.h>

#include "../cpu/cpu_info.h"
#include "../cpu/matmul.h"
#include "../cuda/runtime.h"
#include "model.h"
#include "ops.h"
#include "tensor.h"

namespace plw::binding {

namespace {

// backendInfo(): { cpu: { threads, simd, kernel }, cuda: { built, cublasLt, available, reason, device } }
Napi::Value BackendInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object cpu = Napi::Object::New(env);
    cpu.Set("threads", cpu::max_threads());
    cpu.Set("simd", cpu::simd_level());
    cpu.Set("kernel", cpu::sgemm_kernel_name());  // the SGEMM kernel chosen at run time
    Napi::Object cuda = Napi::Object::New(env);
    cuda.Set("built", static_cast<bool>(PLW_WITH_CUDA));
    cuda.Set("cublasLt", static_cast<bool>(PLW_HAVE_CUBLASLT));
    std::string reason;
    const bool ok = cuda::available(&reason);
    cuda.Set("available", ok);
    cuda.Set("reason", ok ? env.Null() : Napi::String::New(env, reason));
    std::string device;
    if (ok) {
        try {
            device = cuda::device_description();
        } catch (const std::exception& e) {
            device = std::string("unknown (") + e.what() + ")";
        }
    }
    cuda.Set("device", ok ? Napi::Value(Napi::String::New(env, device)) : env.Null());
    Napi::Object out = Napi::Object::New(env);
    out.Set("cpu", cpu);
    out.Set("cuda", cuda);
    return out;
}

// cpuPeak(): { ghz, flopsPerCycle256, flopsPerCycle512, kernel }, measured now (~0.5 s, every
// OpenMP thread busy): see cpu_info.h. For the benchmarks' fp32 peak.
Napi::Value CpuPeak(const Napi::CallbackInfo& info) {
    const double ghz = cpu::measure_clock_ghz();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("ghz", ghz);
    out.Set("flopsPerCycle256", cpu::measure_fma_flops_per_cycle(256, ghz));
    out.Set("flopsPerCycle512", cpu::measure_fma_flops_per_cycle(512, ghz));
    out.Set("kernel", cpu::sgemm_kernel_name());
    return out;
}

// cpuBandwidth(bytes): GB/s of an all-thread copy of `bytes` (cpu_info.h), measured now. For the
// benchmarks' memory floor; 0 when the buffers cannot be allocated.
Napi::Value CpuBandwidth(const Napi::CallbackInfo& info) {
    const double bytes = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0.0;
    if (!(bytes >= 1 << 20 && bytes <= 16.0 * (1ull << 30)))
        throw Napi::RangeError::New(info.Env(), "cpuBandwidth: Expected bytes between 1 MiB and 16 GiB");
    return Napi::Number::New(info.Env(), cpu::measure_copy_bandwidth_gbs(static_cast<size_t>(bytes), 5));
}

Napi::Value MemoryStatsJs(const Napi::CallbackInfo& info) {
    const MemoryStats s = memory_stats();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("liveTensors", static_cast<double>(s.live_tensors));
    out.Set("cpuBytes", static_cast<double>(s.cpu_bytes));
    out.Set("cudaBytes", static_cast<double>(s.cuda_bytes));
    return out;
}

}  // namespace

Napi::Object Register(Napi::Env env, Napi::Object exports) {
    exports.Set("Tensor", Tensor::Define(env));
    exports.Set("Model", Model::Define(env));
    exports.Set("createModel", Napi::Function::New(env, CreateModel));
    exports.Set("planMemory", Napi::Function::New(env, PlanMemory));
    exports.Set("backendInfo", Napi::Function::New(env, BackendInfo));
    exports.Set("cpuPeak", Napi::Function::New(env, CpuPeak));
    exports.Set("cpuBandwidth", Napi::Function::New(env, CpuBandwidth));
    exports.Set("memoryStats", Napi::Function::New(env, MemoryStatsJs));
    exports.Set("weightedCrossEntropyForward", Napi::Function::New(env, WeightedCrossEntropyForward));
    exports.Set("weightedCrossEntropyBackward", Napi::Function::New(env, WeightedCrossEntropyBackward));
    exports.Set("fusedHeadCrossEntropyForward", Napi::Function::New(env, FusedHeadCrossEntropyForward));
    exports.Set("fusedHeadCrossEntropyBackward", Napi::Function::New(env, FusedHeadCrossEntropyBackward));
    exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward));
    exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward));
    exports.Set("adamw", Napi::Function::New(env, AdamW));
    exports.Set("matmul", Napi::Function::New(env, Matmul));
    exports.Set("flashAttentionForward", Napi::Function::New(env, FlashAttentionForward));
    exports.Set("flashAttentionBackward", Napi::Function::New(env, FlashAttentionBackward));
    return exports;
}

}  // namespace plw::binding

// The module macro pastes its argument into an identifier, so it needs an unqualified name.
static Napi::Object InitPlwtune(Napi::Env env, Napi::Object exports) {
    return plw::binding::Register(env, exports);
}
NODE_API_MODULE(plwtune, InitPlwtune)
