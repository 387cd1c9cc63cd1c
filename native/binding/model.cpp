// Model: JS wrapper of engine::Model (see model.h).
#include "model.h"

#include <atomic>
#include <cmath>
#include <memory>
#include <vector>

#include "args.h"
#include "job.h"

namespace plw::binding {

namespace {

// A batch copied out of JS typed arrays on the JS thread (the baton's inputs).
struct BatchCopy {
    int B = 0, T = 0;
    std::vector<int32_t> tokens, targets, positions, segments;
    std::vector<float> weights;
    std::vector<uint8_t> kinds;

    engine::StepBatch view() const {
        engine::StepBatch b;
        b.B = B;
        b.T = T;
        b.tokens = tokens.data();
        b.targets = targets.data();
        b.weights = weights.data();
        b.kinds = kinds.empty() ? nullptr : kinds.data();
        b.positions = positions.empty() ? nullptr : positions.data();
        b.segments = segments.empty() ? nullptr : segments.data();
        return b;
    }
};

template <typename Array, typename T>
std::vector<T> copy_array(const Napi::Object& o, const char* key, size_t n, bool required, const char* type_name) {
    Napi::Value v = o.Get(key);
    const std::string name = std::string("batch.") + key;
    if (v.IsUndefined() || v.IsNull()) {
        if (required) throw ArgError("Expected " + std::string(type_name) + " for " + name + " but received " + received(v));
        return {};
    }
    if (!v.IsTypedArray()) throw ArgError("Expected " + std::string(type_name) + " for " + name + " but received " + received(v));
    Napi::TypedArray ta = v.As<Napi::TypedArray>();
    const bool ok = (std::is_same_v<T, int32_t> && ta.TypedArrayType() == napi_int32_array) ||
                    (std::is_same_v<T, float> && ta.TypedArrayType() == napi_float32_array) ||
                    (std::is_same_v<T, uint8_t> && ta.TypedArrayType() == napi_uint8_array);
    if (!ok) throw ArgError("Expected " + std::string(type_name) + " for " + name + " but received another typed array");
    if (ta.ElementLength() != n)
        throw ArgError("Expected " + std::to_string(n) + " elements (B*T) for " + name + " but received " +
                       std::to_string(ta.ElementLength()));
    Array arr = v.As<Array>();
    return std::vector<T>(arr.Data(), arr.Data() + n);
}

BatchCopy read_batch(const Napi::Value& v) {
    if (!v.IsObject()) throw ArgError("Expected a batch object for batch but received " + received(v));
    Napi::Object o = v.As<Napi::Object>();
    BatchCopy b;
    for (auto [key, dst] : {std::pair<const char*, int*>{"B", &b.B}, {"T", &b.T}}) {
        Napi::Value d = o.Get(key);
        const double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
        if (!(x >= 1 && x == std::floor(x) && x < 1e9))
            throw ArgError(std::string("Expected a positive integer for batch.") + key + " but received " + received(d));
        *dst = static_cast<int>(x);
    }
    const size_t n = static_cast<size_t>(b.B) * b.T;
    b.tokens = copy_array<Napi::Int32Array, int32_t>(o, "tokens", n, true, "an Int32Array");
    b.targets = copy_array<Napi::Int32Array, int32_t>(o, "targets", n, true, "an Int32Array");
    b.weights = copy_array<Napi::Float32Array, float>(o, "weights", n, true, "a Float32Array");
    b.kinds = copy_array<Napi::Uint8Array, uint8_t>(o, "kinds", n, false, "a Uint8Array");
    b.positions = copy_array<Napi::Int32Array, int32_t>(o, "positions", n, false, "an Int32Array");
    b.segments = copy_array<Napi::Int32Array, int32_t>(o, "segments", n, false, "an Int32Array");
    return b;
}

Napi::Value report_to_js(Napi::Env env, const engine::LossReport& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", r.loss_sum);
    o.Set("weightSum", r.weight_sum);
    o.Set("completionLossSum", r.completion_sum);
    o.Set("completionCount", static_cast<double>(r.completion_count));
    o.Set("promptLossSum", r.prompt_sum);
    o.Set("promptCount", static_cast<double>(r.prompt_count));
    return o;
}

Napi::Value step_to_js(Napi::Env env, const engine::StepResult& s) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("gradNorm", s.grad_norm);
    r.Set("clipCoefficient", s.clip_coefficient);
    r.Set("step", s.step);
    return r;
}

engine::OptimizerSettings read_optimizer(const Napi::Object& o) {
    auto field = [&](const char* key, double lo, double hi) {
        Napi::Value v = o.Get(key);
        if (!v.IsNumber()) throw ArgError(std::string("Expected a number for options.") + key + " but received " + received(v));
        const double x = v.As<Napi::Number>().DoubleValue();
        if (!(std::isfinite(x) && x >= lo && x <= hi))
            throw ValueError(std::string("Expected options.") + key + " in [" + std::to_string(lo) + ", " +
                             std::to_string(hi) + "] but received " + std::to_string(x));
        return x;
    };
    engine::OptimizerSettings s;
    s.lr = field("lr", 0, 1e3);
    s.beta1 = field("beta1", 0, 0.999999999);
    s.beta2 = field("beta2", 0, 0.999999999);
    s.eps = field("eps", 1e-30, 1);
    s.weight_decay = field("weightDecay", 0, 1e3);
    s.max_grad_norm = static_cast<float>(field("maxGradNorm", 0, 1e30));
    return s;
}

double read_normalizer(const Args& a, size_t i) {
    const double norm = a.number(i, "normalizer");
    if (!(norm > 0 && std::isfinite(norm)))
        throw ValueError("Expected a positive finite number for normalizer (the sum of weights over the "
                         "optimizer step) but received " + std::to_string(norm));
    return norm;
}

// The model spec from JS (ts/arch/ builds it from a config.json; names in native/engine/spec.h).
engine::ModelSpec read_spec(const Napi::Object& c) {
    auto num = [&](const char* key, double lo, double hi, bool integer) {
        Napi::Value v = c.Get(key);
        const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
        if (!(x >= lo && x <= hi) || (integer && x != std::floor(x)))
            throw ArgError(std::string("Expected ") + (integer ? "an integer" : "a number") + " in [" + std::to_string(lo) +
                           ", " + std::to_string(hi) + "] for spec." + key + " but received " + received(v));
        return x;
    };
    auto dim = [&](const char* key) { return static_cast<int>(num(key, 1, 1e9, true)); };
    auto flag = [&](const char* key) {
        Napi::Value v = c.Get(key);
        if (!v.IsBoolean()) throw ArgError(std::string("Expected a boolean for spec.") + key + " but received " + received(v));
        return v.As<Napi::Boolean>().Value();
    };
    engine::ModelSpec s;
    Napi::Value arch = c.Get("arch");
    const std::string a = arch.IsString() ? arch.As<Napi::String>().Utf8Value() : "";
    if (a == "gpt2") s.arch = engine::Arch::GPT2;
    else if (a == "llama") s.arch = engine::Arch::Llama;
    else throw ArgError("Expected 'gpt2' or 'llama' for spec.arch but received " + received(arch));
    s.vocab_size = dim("vocabSize");
    s.hidden = dim("hidden");
    s.layers = dim("layers");
    s.heads = dim("heads");
    s.kv_heads = dim("kvHeads");
    s.head_dim = dim("headDim");
    s.intermediate = dim("intermediate");
    s.max_positions = dim("maxPositions");
    if (s.arch == engine::Arch::Llama) {
        s.norm_eps = num("normEps", 1e-30, 1, false);
        s.rope_theta = num("ropeTheta", 1e-30, 1e30, false);
        s.tied_head = flag("tiedHead");
        s.qkv_bias = flag("qkvBias");
        s.o_bias = flag("oBias");
        s.mlp_bias = flag("mlpBias");
        s.qk_norm = flag("qkNorm");
        s.sliding_window = static_cast<int>(num("slidingWindow", 0, 1e9, true));
        Napi::Value rs = c.Get("ropeScaling");
        if (!rs.IsNull() && !rs.IsUndefined()) {
            if (!rs.IsObject()) throw ArgError("Expected null or an object for spec.ropeScaling but received " + received(rs));
            Napi::Object r = rs.As<Napi::Object>();
            auto rnum = [&](const char* key) {
                Napi::Value v = r.Get(key);
                if (!v.IsNumber()) throw ArgError(std::string("Expected a number for spec.ropeScaling.") + key + " but received " + received(v));
                return v.As<Napi::Number>().DoubleValue();
            };
            s.rope_scaling.llama3 = true;
            s.rope_scaling.factor = rnum("factor");
            s.rope_scaling.low_freq_factor = rnum("lowFreqFactor");
            s.rope_scaling.high_freq_factor = rnum("highFreqFactor");
            s.rope_scaling.original_max_positions = rnum("originalMaxPositions");
        }
    }
    Napi::Value lora = c.Get("lora");
    if (!lora.IsNull() && !lora.IsUndefined()) {
        if (!lora.IsObject()) throw ArgError("Expected null or an object for spec.lora but received " + received(lora));
        Napi::Object l = lora.As<Napi::Object>();
        auto lnum = [&](const char* key, double lo, double hi) {
            Napi::Value v = l.Get(key);
            const double x = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
            if (!(x >= lo && x <= hi))
                throw ArgError(std::string("Expected a number in [") + std::to_string(lo) + ", " + std::to_string(hi) +
                               "] for spec.lora." + key + " but received " + received(v));
            return x;
        };
        s.lora.r = static_cast<int>(lnum("r", 1, 65536));
        s.lora.alpha = lnum("alpha", 1e-30, 1e30);
        s.lora.dropout = lnum("dropout", 0, 0.999999);
        s.lora.seed = static_cast<uint64_t>(lnum("seed", 0, 9007199254740991.0));
        Napi::Value rs = l.Get("rslora");
        if (!rs.IsBoolean()) throw ArgError("Expected a boolean for spec.lora.rslora but received " + received(rs));
        s.lora.rslora = rs.As<Napi::Boolean>().Value();
        Napi::Value t = l.Get("targets");
        if (!t.IsArray()) throw ArgError("Expected an array of module names for spec.lora.targets but received " + received(t));
        Napi::Array ta = t.As<Napi::Array>();
        for (uint32_t i = 0; i < ta.Length(); i++) {
            Napi::Value v = ta.Get(i);
            if (!v.IsString()) throw ArgError("Expected a string for spec.lora.targets[" + std::to_string(i) + "] but received " + received(v));
            s.lora.targets.push_back(v.As<Napi::String>().Utf8Value());
        }
    }
    Napi::Value rc = c.Get("recompute");
    if (!rc.IsNull() && !rc.IsUndefined()) {
        const std::string r = rc.IsString() ? rc.As<Napi::String>().Utf8Value() : "";
        if (r == "none") s.recompute = engine::Recompute::None;
        else if (r == "attention") s.recompute = engine::Recompute::Attention;
        else if (r == "block") s.recompute = engine::Recompute::Block;
        else if (r == "auto") s.recompute = engine::Recompute::Auto;
        else throw ArgError("Expected 'none', 'attention', 'block' or 'auto' for spec.recompute but received " + received(rc));
    }
    return s;
}

Napi::Object spec_to_js(Napi::Env env, const engine::ModelSpec& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("arch", engine::arch_name(s.arch));
    o.Set("vocabSize", s.vocab_size);
    o.Set("hidden", s.hidden);
    o.Set("layers", s.layers);
    o.Set("heads", s.heads);
    o.Set("kvHeads", s.kv_heads);
    o.Set("headDim", s.head_dim);
    o.Set("intermediate", s.intermediate);
    o.Set("maxPositions", s.max_positions);
    o.Set("recompute", engine::recompute_name(s.recompute));
    return o;
}

Napi::Object memory_to_js(Napi::Env env, const engine::MemoryReport& m) {
    Napi::Object mem = Napi::Object::New(env);
    mem.Set("parameters", static_cast<double>(m.parameters));
    mem.Set("gradients", static_cast<double>(m.gradients));
    mem.Set("optimizer", static_cast<double>(m.optimizer));
    mem.Set("activations", static_cast<double>(m.activations));
    mem.Set("scratch", static_cast<double>(m.scratch));
    mem.Set("total", static_cast<double>(m.total()));
    return mem;
}

// device, maxBatch, maxSeqLen, precision: createModel's arguments 1-4.
struct Placement {
    std::string device;
    engine::BatchShape max;
    engine::Precision precision = engine::Precision::F32;
};

Placement read_placement(const Napi::CallbackInfo& info, const engine::ModelSpec& spec) {
    Args a(info);
    Placement p;
    if (!info[1].IsString()) throw ArgError("Expected 'cpu' or 'cuda' for device but received " + received(info[1]));
    p.device = info[1].As<Napi::String>().Utf8Value();
    if (p.device != "cpu" && p.device != "cuda")
        throw ArgError("Expected 'cpu' or 'cuda' for device but received '" + p.device + "'");
    p.max.B = static_cast<int>(a.integer(2, "maxBatch", 1, 1 << 20));
    p.max.T = static_cast<int>(a.integer(3, "maxSeqLen", 1, spec.max_positions));
    if (info.Length() > 4 && !info[4].IsUndefined()) {
        const std::string s = info[4].IsString() ? info[4].As<Napi::String>().Utf8Value() : "";
        if (s != "f32" && s != "bf16") throw ArgError("Expected 'f32' or 'bf16' for precision but received " + received(info[4]));
        p.precision = s == "bf16" ? engine::Precision::BF16 : engine::Precision::F32;
    }
    return p;
}

engine::Buffer parse_buffer(const Napi::Value& v) {
    const std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (s == "param") return engine::Buffer::Param;
    if (s == "grad") return engine::Buffer::Grad;
    if (s == "m") return engine::Buffer::AdamM;
    if (s == "v") return engine::Buffer::AdamV;
    throw ArgError("Expected 'param', 'grad', 'm' or 'v' for buffer but received " + received(v));
}

}  // namespace

Napi::FunctionReference* Model::constructor = nullptr;

Napi::Function Model::Define(Napi::Env env) {
    Napi::Function cls = DefineClass(env, "Model",
        {InstanceMethod<&Model::Info>("info"),
         InstanceMethod<&Model::Parameters>("parameters"),
         InstanceMethod<&Model::Read>("read"),
         InstanceMethod<&Model::Write>("write"),
         InstanceMethod<&Model::GetAdamStep>("getAdamStep"),
         InstanceMethod<&Model::SetAdamStep>("setAdamStep"),
         InstanceMethod<&Model::ZeroGrad>("zeroGrad"),
         InstanceMethod<&Model::InitRandom>("initRandom"),
         InstanceMethod<&Model::InitAdapters>("initAdapters"),
         InstanceMethod<&Model::Accumulate>("accumulate"),
         InstanceMethod<&Model::OptimizerStep>("optimizerStep"),
         InstanceMethod<&Model::TrainStep>("trainStep"),
         InstanceMethod<&Model::Evaluate>("evaluate"),
         InstanceMethod<&Model::Logits>("logits"),
         InstanceMethod<&Model::Generate>("generate"),
         InstanceMethod<&Model::Dispose>("dispose")});
    constructor = new Napi::FunctionReference(Napi::Persistent(cls));
    return cls;
}

// Only createModel() constructs: it passes the engine as an External.
Model::Model(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Model>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
        throw Napi::TypeError::New(info.Env(), "Model: use createModel() to create a model");
    auto* holder = info[0].As<Napi::External<std::shared_ptr<engine::Model>>>().Data();
    model_ = *holder;
}

engine::Model& Model::engine(const Napi::Env& env, const char* op) {
    if (!model_) throw Napi::Error::New(env, std::string(op) + ": the model has been disposed");
    if (!busy_.empty())
        throw Napi::Error::New(env, std::string(op) + ": the model is busy with " + busy_ +
                                        "; await it before starting another call");
    return *model_;
}

Napi::Value Model::Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!model_) throw Napi::Error::New(env, "info: the model has been disposed");
    Napi::Object out = Napi::Object::New(env);
    out.Set("spec", spec_to_js(env, model_->spec()));
    out.Set("device", model_->device());
    out.Set("precision", engine::precision_name(model_->precision()));
    out.Set("maxBatch", model_->max_batch().B);
    out.Set("maxSeqLen", model_->max_batch().T);
    out.Set("memory", memory_to_js(env, model_->memory()));
    return out;
}

Napi::Value Model::Parameters(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    engine::Model& m = engine(env, "parameters");
    auto params = m.parameters();
    Napi::Array out = Napi::Array::New(env, params.size());
    for (size_t i = 0; i < params.size(); i++) {
        Napi::Object p = Napi::Object::New(env);
        p.Set("name", params[i].name);
        Napi::Array shape = Napi::Array::New(env, params[i].shape.size());
        for (size_t d = 0; d < params[i].shape.size(); d++) shape.Set(d, static_cast<double>(params[i].shape[d]));
        p.Set("shape", shape);
        p.Set("decay", params[i].decay);
        p.Set("trainable", params[i].trainable);
        p.Set("adapter", params[i].adapter);
        out.Set(i, p);
    }
    return out;
}

static size_t numel_of(engine::Model& m, const std::string& name) {
    for (const auto& p : m.parameters()) {
        if (p.name != name) continue;
        size_t n = 1;
        for (int64_t d : p.shape) n *= static_cast<size_t>(d);
        return n;
    }
    throw ArgError("Expected the name of a parameter for name but received '" + name + "' (see parameters())");
}

// read(buffer: 'param'|'grad'|'m'|'v', name) -> Float32Array (a copy, Hugging Face shape)
Napi::Value Model::Read(const Napi::CallbackInfo& info) {
    return guarded(info, "read", [&]() -> Napi::Value {
        engine::Model& m = engine(info.Env(), "read");
        const engine::Buffer which = parse_buffer(info[0]);
        if (!info[1].IsString()) throw ArgError("Expected a string for name but received " + received(info[1]));
        const std::string name = info[1].As<Napi::String>().Utf8Value();
        const size_t n = numel_of(m, name);
        Napi::Float32Array out = Napi::Float32Array::New(info.Env(), n);
        m.read(which, name, out.Data(), n);
        return out;
    });
}

// write(buffer, name, data: Float32Array)
Napi::Value Model::Write(const Napi::CallbackInfo& info) {
    return guarded(info, "write", [&]() -> Napi::Value {
        engine::Model& m = engine(info.Env(), "write");
        const engine::Buffer which = parse_buffer(info[0]);
        if (!info[1].IsString()) throw ArgError("Expected a string for name but received " + received(info[1]));
        const std::string name = info[1].As<Napi::String>().Utf8Value();
        const size_t n = numel_of(m, name);
        if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
            throw ArgError("Expected a Float32Array for data but received " + received(info[2]));
        Napi::Float32Array data = info[2].As<Napi::Float32Array>();
        if (data.ElementLength() != n)
            throw ArgError("Expected " + std::to_string(n) + " elements for " + name + " but received " +
                           std::to_string(data.ElementLength()));
        m.write(which, name, data.Data(), n);
        return info.Env().Undefined();
    });
}

Napi::Value Model::GetAdamStep(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), engine(info.Env(), "getAdamStep").adam_step());
}

Napi::Value Model::SetAdamStep(const Napi::CallbackInfo& info) {
    return guarded(info, "setAdamStep", [&]() -> Napi::Value {
        engine::Model& m = engine(info.Env(), "setAdamStep");
        m.set_adam_step(static_cast<int>(Args(info).integer(0, "step", 0, 2147483647)));
        return info.Env().Undefined();
    });
}

Napi::Value Model::ZeroGrad(const Napi::CallbackInfo& info) {
    engine(info.Env(), "zeroGrad").zero_grad();
    return info.Env().Undefined();
}

// Queues a computing call: the model is marked busy until it settles, and the JS object is
// referenced meanwhile so that it cannot be collected under the work.
Napi::Value queue_on_model(const Napi::CallbackInfo& info, Napi::Object self, std::string* busy, const char* name,
                           Job::Work work, Job::Result result) {
    auto* job = new Job(info.Env(), name, std::move(work), std::move(result));
    auto keep = std::make_shared<Napi::ObjectReference>(Napi::Persistent(self));
    job->on_settle([busy, keep]() { busy->clear(); });
    *busy = name;
    job->Queue();
    return job->promise();
}

Napi::Value Model::InitRandom(const Napi::CallbackInfo& info) {
    return guarded(info, "initRandom", [&]() -> Napi::Value {
        engine(info.Env(), "initRandom");
        const uint64_t seed = static_cast<uint64_t>(Args(info).integer(0, "seed", 0, 9007199254740991LL));
        auto m = model_;
        return queue_on_model(info, Value(), &busy_, "initRandom", [m, seed] { m->init_random(seed); }, nullptr);
    });
}

// initAdapters(seed): the LoRA adapters' init only (A Kaiming-uniform, B zeros), the base untouched.
Napi::Value Model::InitAdapters(const Napi::CallbackInfo& info) {
    return guarded(info, "initAdapters", [&]() -> Napi::Value {
        engine(info.Env(), "initAdapters");
        const uint64_t seed = static_cast<uint64_t>(Args(info).integer(0, "seed", 0, 9007199254740991LL));
        auto m = model_;
        return queue_on_model(info, Value(), &busy_, "initAdapters", [m, seed] { m->init_adapters(seed); }, nullptr);
    });
}

// accumulate(batch, normalizer) -> Promise<LossReport>: forward + backward, gradients +=.
Napi::Value Model::Accumulate(const Napi::CallbackInfo& info) {
    return guarded(info, "accumulate", [&]() -> Napi::Value {
        engine(info.Env(), "accumulate");
        auto batch = std::make_shared<BatchCopy>(read_batch(info[0]));
        const double norm = read_normalizer(Args(info), 1);
        auto m = model_;
        auto out = std::make_shared<engine::LossReport>();
        return queue_on_model(info, Value(), &busy_, "accumulate",
            [m, batch, norm, out] { *out = m->accumulate(batch->view(), norm); },
            [out](Napi::Env env) { return report_to_js(env, *out); });
    });
}

// optimizerStep({ lr, beta1, beta2, eps, weightDecay, maxGradNorm }) -> Promise<{ gradNorm, clipCoefficient, step }>
Napi::Value Model::OptimizerStep(const Napi::CallbackInfo& info) {
    return guarded(info, "optimizerStep", [&]() -> Napi::Value {
        engine(info.Env(), "optimizerStep");
        const engine::OptimizerSettings s = read_optimizer(Args(info).object(0, "options"));
        auto m = model_;
        auto out = std::make_shared<engine::StepResult>();
        return queue_on_model(info, Value(), &busy_, "optimizerStep", [m, s, out] { *out = m->optimizer_step(s); },
            [out](Napi::Env env) { return step_to_js(env, *out); });
    });
}

// trainStep(microBatches: Batch[], normalizer, options) -> Promise<LossReport & { gradNorm,
// clipCoefficient, step, skipped }>: every micro-batch's forward + backward, then AdamW (skipped,
// with the gradients dropped, when the loss is not finite).
Napi::Value Model::TrainStep(const Napi::CallbackInfo& info) {
    return guarded(info, "trainStep", [&]() -> Napi::Value {
        engine(info.Env(), "trainStep");
        if (!info[0].IsArray()) throw ArgError("Expected an array of batches for microBatches but received " + received(info[0]));
        Napi::Array list = info[0].As<Napi::Array>();
        if (list.Length() == 0) throw ValueError("Expected at least one batch in microBatches but received an empty array");
        auto batches = std::make_shared<std::vector<BatchCopy>>();
        for (uint32_t i = 0; i < list.Length(); i++) batches->push_back(read_batch(list.Get(i)));
        const double norm = read_normalizer(Args(info), 1);
        const engine::OptimizerSettings s = read_optimizer(Args(info).object(2, "options"));
        auto m = model_;
        auto out = std::make_shared<engine::TrainStepResult>();
        return queue_on_model(info, Value(), &busy_, "trainStep",
            [m, batches, norm, s, out] {
                std::vector<engine::StepBatch> views;
                for (const BatchCopy& b : *batches) views.push_back(b.view());
                *out = m->train_step(views, norm, s);
            },
            [out](Napi::Env env) -> Napi::Value {
                Napi::Object r = report_to_js(env, out->report).As<Napi::Object>();
                Napi::Object st = step_to_js(env, out->step).As<Napi::Object>();
                for (const char* k : {"gradNorm", "clipCoefficient", "step"}) r.Set(k, st.Get(k));
                r.Set("skipped", out->skipped);
                return r;
            });
    });
}

// evaluate(batch, tokenLosses?: boolean) -> Promise<LossReport & { tokenLosses?: Float32Array }>:
// forward only; every non-padding target measured; with tokenLosses, -log p(target) per
// position (B*T, 0 at padding).
Napi::Value Model::Evaluate(const Napi::CallbackInfo& info) {
    return guarded(info, "evaluate", [&]() -> Napi::Value {
        engine(info.Env(), "evaluate");
        auto batch = std::make_shared<BatchCopy>(read_batch(info[0]));
        const bool per_token = info.Length() > 1 && !info[1].IsUndefined() && Args(info).boolean(1, "tokenLosses");
        auto m = model_;
        auto out = std::make_shared<engine::LossReport>();
        auto losses = std::make_shared<std::vector<float>>(per_token ? static_cast<size_t>(batch->B) * batch->T : 0);
        return queue_on_model(info, Value(), &busy_, "evaluate",
            [m, batch, out, losses] { *out = m->evaluate(batch->view(), losses->empty() ? nullptr : losses->data()); },
            [out, losses, per_token](Napi::Env env) -> Napi::Value {
                Napi::Object r = report_to_js(env, *out).As<Napi::Object>();
                if (per_token) {
                    Napi::Float32Array a = Napi::Float32Array::New(env, losses->size());
                    std::copy(losses->begin(), losses->end(), a.Data());
                    r.Set("tokenLosses", a);
                }
                return r;
            });
    });
}

// logits(batch) -> Promise<Float32Array> of (B, T, V)
Napi::Value Model::Logits(const Napi::CallbackInfo& info) {
    return guarded(info, "logits", [&]() -> Napi::Value {
        engine(info.Env(), "logits");
        auto batch = std::make_shared<BatchCopy>(read_batch(info[0]));
        auto m = model_;
        const size_t n = static_cast<size_t>(batch->B) * batch->T * m->spec().vocab_size;
        auto out = std::make_shared<std::vector<float>>(n);
        return queue_on_model(info, Value(), &busy_, "logits", [m, batch, out] { m->logits(batch->view(), out->data()); },
            [out](Napi::Env env) -> Napi::Value {
                Napi::Float32Array a = Napi::Float32Array::New(env, out->size());
                std::copy(out->begin(), out->end(), a.Data());
                return a;
            });
    });
}

// Tokens handed to JS as they are made: onToken(index, token) runs on the JS thread through a
// thread-safe function (queued, never blocking the computing thread); when it returns false
// the generation stops at its next token. The calls may still be queued when the Promise
// settles: the result's tokens are the whole truth, the calls only an early look at them.
struct TokenStream {
    Napi::ThreadSafeFunction tsfn;
    std::atomic<bool> cancelled{false};

    // On the computing thread, after each token: false once JS has asked to stop. Each queued
    // call holds the stream, which may outlive the job.
    static bool deliver(const std::shared_ptr<TokenStream>& s, int index, int32_t token) {
        s->tsfn.NonBlockingCall([s, index, token](Napi::Env env, Napi::Function fn) {
            try {
                Napi::Value keep = fn.Call({Napi::Number::New(env, index), Napi::Number::New(env, token)});
                if (keep.IsBoolean() && !keep.As<Napi::Boolean>().Value()) s->cancelled = true;
            } catch (const Napi::Error& e) {
                s->cancelled = true;  // a throwing callback ends the stream; the exception is reported, not lost
                e.ThrowAsJavaScriptException();
            }
        });
        return !s->cancelled.load();
    }
};

// generate(prompt: Int32Array, { maxNewTokens, temperature, topK, topP, seed, stopIds: Int32Array, useCache, reuseCache }, onToken?)
//   -> Promise<{ tokens: Int32Array, stopReason, reused }>
Napi::Value Model::Generate(const Napi::CallbackInfo& info) {
    return guarded(info, "generate", [&]() -> Napi::Value {
        engine(info.Env(), "generate");
        auto int32s = [&](const Napi::Value& v, const char* name) {
            if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
                throw ArgError(std::string("Expected an Int32Array for ") + name + " but received " + received(v));
            Napi::Int32Array a = v.As<Napi::Int32Array>();
            return std::vector<int32_t>(a.Data(), a.Data() + a.ElementLength());
        };
        auto prompt = std::make_shared<std::vector<int32_t>>(int32s(info[0], "prompt"));
        Napi::Object o = Args(info).object(1, "options");
        auto num = [&](const char* key, double lo, double hi) {
            Napi::Value v = o.Get(key);
            if (!v.IsNumber()) throw ArgError(std::string("Expected a number for options.") + key + " but received " + received(v));
            const double x = v.As<Napi::Number>().DoubleValue();
            if (!(x >= lo && x <= hi))
                throw ValueError(std::string("Expected options.") + key + " in [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "] but received " + std::to_string(x));
            return x;
        };
        engine::GenerateOptions g;
        g.max_new_tokens = static_cast<int>(num("maxNewTokens", 0, 1 << 20));
        g.temperature = static_cast<float>(num("temperature", 0, 100));
        g.top_k = static_cast<int>(num("topK", 0, 1 << 30));
        g.top_p = static_cast<float>(num("topP", 1e-6, 1));
        g.seed = static_cast<uint64_t>(num("seed", 0, 9007199254740991.0));
        g.stop_ids = int32s(o.Get("stopIds"), "options.stopIds");
        auto flag = [&](const char* key) {
            Napi::Value v = o.Get(key);
            if (!v.IsBoolean()) throw ArgError(std::string("Expected a boolean for options.") + key + " but received " + received(v));
            return v.As<Napi::Boolean>().Value();
        };
        g.use_cache = flag("useCache");
        g.reuse_cache = flag("reuseCache");
        if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsFunction())
            throw ArgError("Expected a function for onToken but received " + received(info[2]));
        // Made last: once it exists, only the queued work releases it (an unreleased one keeps
        // the event loop alive).
        std::shared_ptr<TokenStream> stream;
        if (info.Length() > 2 && info[2].IsFunction()) {
            stream = std::make_shared<TokenStream>();
            stream->tsfn = Napi::ThreadSafeFunction::New(info.Env(), info[2].As<Napi::Function>(), "plwtune.generate.onToken", 0, 1);
            g.on_token = [stream](int index, int32_t token) { return TokenStream::deliver(stream, index, token); };
        }
        auto m = model_;
        auto out = std::make_shared<engine::GenerateResult>();
        return queue_on_model(info, Value(), &busy_, "generate",
            [m, prompt, g, out, stream] {
                struct Release {
                    TokenStream* s;
                    ~Release() { if (s) s->tsfn.Release(); }
                } release{stream.get()};
                *out = m->generate(*prompt, g);
            },
            [out](Napi::Env env) -> Napi::Value {
                Napi::Object r = Napi::Object::New(env);
                Napi::Int32Array t = Napi::Int32Array::New(env, out->tokens.size());
                std::copy(out->tokens.begin(), out->tokens.end(), t.Data());
                r.Set("tokens", t);
                r.Set("stopReason", out->stop_reason);
                r.Set("reused", out->reused);
                return r;
            });
    });
}

Napi::Value Model::Dispose(const Napi::CallbackInfo& info) {
    // A pending call holds its own reference to the engine; disposing only while idle keeps
    // the rule simple: the memory goes exactly when dispose() returns.
    if (!model_) return info.Env().Undefined();
    engine(info.Env(), "dispose");
    model_.reset();
    return info.Env().Undefined();
}

// createModel(spec { arch, vocabSize, hidden, layers, heads, kvHeads, headDim, intermediate,
//   maxPositions, and for llama: normEps, ropeTheta, ropeScaling, tiedHead, qkvBias, oBias, mlpBias,
//   qkNorm, slidingWindow }, device, maxBatch, maxSeqLen, precision 'f32' | 'bf16' (optional, default 'f32'))
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
    return guarded(info, "createModel", [&]() -> Napi::Value {
        Args a(info);
        const engine::ModelSpec cfg = read_spec(a.object(0, "spec"));
        const Placement pl = read_placement(info, cfg);
        const std::string device = pl.device;
        const engine::BatchShape max = pl.max;
        const engine::Precision precision = pl.precision;
        auto holder = std::make_shared<std::shared_ptr<engine::Model>>();
        auto* job = new Job(info.Env(), "createModel", [cfg, device, max, precision, holder] {
            *holder = engine::create_model(cfg, device, max, precision);
        }, [holder](Napi::Env env) -> Napi::Value {
            auto ext = Napi::External<std::shared_ptr<engine::Model>>::New(env, holder.get());
            return Model::constructor->New({ext});  // the constructor copies the shared_ptr
        });
        job->Queue();
        return job->promise();
    });
}

Napi::Value PlanMemory(const Napi::CallbackInfo& info) {
    return guarded(info, "planMemory", [&]() -> Napi::Value {
        const engine::ModelSpec spec = read_spec(Args(info).object(0, "spec"));
        const Placement pl = read_placement(info, spec);
        return memory_to_js(info.Env(), engine::plan_memory(spec, pl.device, pl.max, pl.precision));
    });
}

}  // namespace plw::binding
