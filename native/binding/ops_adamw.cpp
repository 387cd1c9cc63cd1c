// JS entry point of the optimizer step.
//   adamw(params[], grads[], m[], v[], decay: boolean[], { lr, beta1, beta2, eps, weightDecay,
//         step, maxGradNorm }) -> { gradNorm, clipCoefficient }
// The global gradient norm is taken over every tensor of grads (as clip_grad_norm_ over all
// parameters); each tensor then gets one AdamW update, with weightDecay where decay[i] is true.
#include <cmath>

#include "../cpu/adamw.h"
#include "../cuda/adamw.h"
#include "../cuda/runtime.h"
#include "args.h"
#include "cuda_guard.h"
#include "job.h"
#include "ops.h"

namespace plw::binding {

namespace {

double read_field(const Napi::Object& o, const char* key, double lo, double hi, bool lo_open) {
    Napi::Value v = o.Get(key);
    const std::string name = std::string("options.") + key;
    if (!v.IsNumber()) throw ArgError("Expected a number for " + name + " but received " + received(v));
    const double x = v.As<Napi::Number>().DoubleValue();
    const bool ok = std::isfinite(x) && (lo_open ? x > lo : x >= lo) && x <= hi;
    if (!ok)
        throw ValueError("Expected " + name + " in " + (lo_open ? "(" : "[") + std::to_string(lo) + ", " +
                         std::to_string(hi) + "] but received " + std::to_string(x));
    return x;
}

}  // namespace

Napi::Value AdamW(const Napi::CallbackInfo& info) {
    return guarded(info, "adamw", [&]() -> Napi::Value {
        Args a(info);
        auto params = a.tensor_list(0, "params");
        auto grads = a.tensor_list(1, "grads");
        auto m = a.tensor_list(2, "m");
        auto v = a.tensor_list(3, "v");
        Napi::Value decay_v = info[4];
        if (!decay_v.IsArray()) throw ArgError("Expected an array of booleans for decay but received " + received(decay_v));
        Napi::Array decay_a = decay_v.As<Napi::Array>();
        Napi::Object o = a.object(5, "options");

        const size_t count = params.size();
        if (count == 0) throw ArgError("Expected at least one tensor in params");
        for (auto [list, name] : std::initializer_list<std::pair<std::vector<Tensor*>*, const char*>>{
                 {&grads, "grads"}, {&m, "m"}, {&v, "v"}}) {
            if (list->size() != count)
                throw ArgError(std::string("Expected ") + std::to_string(count) + " tensors (one per param) for " + name +
                               " but received " + std::to_string(list->size()));
        }
        if (decay_a.Length() != count)
            throw ArgError("Expected " + std::to_string(count) + " booleans (one per param) for decay but received " +
                           std::to_string(decay_a.Length()));

        std::vector<bool> decay(count);
        for (size_t i = 0; i < count; i++) {
            Napi::Value d = decay_a.Get(static_cast<uint32_t>(i));
            if (!d.IsBoolean()) throw ArgError("Expected a boolean for decay[" + std::to_string(i) + "] but received " + received(d));
            decay[i] = d.As<Napi::Boolean>().Value();
            const std::string idx = "[" + std::to_string(i) + "]";
            for (auto [t, base] : std::initializer_list<std::pair<Tensor*, const char*>>{
                     {params[i], "params"}, {grads[i], "grads"}, {m[i], "m"}, {v[i], "v"}}) {
                const std::string name = base + idx;
                expect_dtype(t, name.c_str(), DType::F32);
                expect_same_device(params[0], "params[0]", t, name.c_str());
                if (t != params[i]) expect_same_shape(params[i], ("params" + idx).c_str(), t, name.c_str());
            }
        }
        expect_device_usable(params[0], "params");

        cpu::AdamWParams hp{};
        hp.lr = read_field(o, "lr", 0.0, 1e3, false);
        hp.beta1 = read_field(o, "beta1", 0.0, 1.0, false);
        hp.beta2 = read_field(o, "beta2", 0.0, 1.0, false);
        if (hp.beta1 >= 1.0 || hp.beta2 >= 1.0) throw ValueError("Expected options.beta1 and options.beta2 below 1");
        hp.eps = read_field(o, "eps", 0.0, 1.0, true);
        const double wd = read_field(o, "weightDecay", 0.0, 1e3, false);
        hp.step = static_cast<int>(read_field(o, "step", 1.0, 2147483647.0, false));
        if (hp.step != o.Get("step").As<Napi::Number>().DoubleValue()) throw ValueError("Expected an integer for options.step");
        const float max_norm = static_cast<float>(read_field(o, "maxGradNorm", 0.0, 1e30, false));

        const Device dev = params[0]->device();
        std::vector<float*> p(count), mm(count), vv(count);
        std::vector<const float*> g(count);
        std::vector<size_t> n(count);
        for (size_t i = 0; i < count; i++) {
            p[i] = static_cast<float*>(params[i]->data());
            g[i] = static_cast<const float*>(grads[i]->data());
            mm[i] = static_cast<float*>(m[i]->data());
            vv[i] = static_cast<float*>(v[i]->data());
            n[i] = static_cast<size_t>(params[i]->numel());
        }
        auto result = std::make_shared<std::pair<double, float>>(0.0, 1.0f);
        auto* job = new Job(info.Env(), "adamw", [=] {
            double sumsq = 0.0;
            for (size_t i = 0; i < count; i++)
                sumsq += dev == Device::CPU ? cpu::grad_sum_squares(g[i], n[i])
                                            : PLW_CUDA_CALL(cuda::grad_sum_squares(g[i], n[i]));
            const double norm = std::sqrt(sumsq);
            cpu::AdamWParams step = hp;
            step.grad_scale = cpu::clip_coefficient(norm, max_norm);
            for (size_t i = 0; i < count; i++) {
                step.weight_decay = decay[i] ? wd : 0.0;
                if (dev == Device::CPU) cpu::adamw_update(p[i], mm[i], vv[i], g[i], n[i], step);
                else PLW_CUDA_CALL(cuda::adamw_update(p[i], mm[i], vv[i], g[i], n[i], step));
            }
            if (dev == Device::CUDA) PLW_CUDA_CALL(cuda::synchronize());
            *result = {norm, step.grad_scale};
        }, [result](Napi::Env env) -> Napi::Value {
            Napi::Object out = Napi::Object::New(env);
            out.Set("gradNorm", result->first);
            out.Set("clipCoefficient", result->second);
            return out;
        });
        for (size_t i = 0; i < count; i++) {
            job->use(params[i], true, "params");
            job->use(grads[i], false, "grads");
            job->use(m[i], true, "m");
            job->use(v[i], true, "v");
        }
        job->Queue();
        return job->promise();
    });
}

}  // namespace plw::binding
