// Model: an engine instance (native/engine; any architecture) wrapped for JS. Created by createModel()
// off the event loop; every computing method returns a Promise. One call at a time: a
// call on a busy model is rejected with an error naming what it is busy with.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "../engine/model.h"

namespace plw::binding {

class Model : public Napi::ObjectWrap<Model> {
public:
    static Napi::Function Define(Napi::Env env);
    static Napi::FunctionReference* constructor;
    explicit Model(const Napi::CallbackInfo& info);

private:
    engine::Model& engine(const Napi::Env& env, const char* op);  // throws if disposed or busy
    Napi::Value Info(const Napi::CallbackInfo& info);
    Napi::Value Parameters(const Napi::CallbackInfo& info);
    Napi::Value Read(const Napi::CallbackInfo& info);
    Napi::Value Write(const Napi::CallbackInfo& info);
    Napi::Value GetAdamStep(const Napi::CallbackInfo& info);
    Napi::Value SetAdamStep(const Napi::CallbackInfo& info);
    Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
    Napi::Value InitRandom(const Napi::CallbackInfo& info);
    Napi::Value InitAdapters(const Napi::CallbackInfo& info);
    Napi::Value Accumulate(const Napi::CallbackInfo& info);
    Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
    Napi::Value TrainStep(const Napi::CallbackInfo& info);
    Napi::Value Evaluate(const Napi::CallbackInfo& info);
    Napi::Value Logits(const Napi::CallbackInfo& info);
    Napi::Value Generate(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);

    std::shared_ptr<engine::Model> model_;
    std::string busy_;  // name of the op in flight, empty when idle
};

// createModel(spec, device, maxBatch, maxSeqLen, precision?) -> Promise<Model>
Napi::Value CreateModel(const Napi::CallbackInfo& info);

// planMemory(spec, device, maxBatch, maxSeqLen, precision?) -> the memory bill createModel
// would allocate (bytes by bucket), computed without allocating.
Napi::Value PlanMemory(const Napi::CallbackInfo& info);

}  // namespace plw::binding
