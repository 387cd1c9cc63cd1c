// Argument readers and shape/dtype/device expectations (see args.h).
#include "args.h"

#include <cmath>

#include "../cuda/runtime.h"

namespace plw::binding {

std::string received(const Napi::Value& v) {
    if (v.IsUndefined()) return "undefined";
    if (v.IsNull()) return "null";
    if (v.IsNumber()) return "number " + v.ToString().Utf8Value();
    if (v.IsString()) return "string '" + v.As<Napi::String>().Utf8Value() + "'";
    if (v.IsBoolean()) return std::string("boolean ") + (v.As<Napi::Boolean>().Value() ? "true" : "false");
    if (v.IsArray()) return "an array";
    if (v.IsTypedArray()) return "a typed array";
    if (v.IsFunction()) return "a function";
    if (Tensor::IsTensor(v)) return "a Tensor";
    return "an object";
}

Tensor* Args::tensor(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!Tensor::IsTensor(v)) throw ArgError(std::string("Expected a Tensor for ") + name + " but received " + received(v));
    Tensor* t = Tensor::Unwrap(v.As<Napi::Object>());
    if (t->disposed()) throw ArgError(std::string("Expected a live Tensor for ") + name + " but it has been disposed");
    return t;
}

Tensor* Args::optional_tensor(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (v.IsUndefined() || v.IsNull()) return nullptr;
    return tensor(i, name);
}

std::vector<Tensor*> Args::tensor_list(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsArray()) throw ArgError(std::string("Expected an array of Tensors for ") + name + " but received " + received(v));
    Napi::Array a = v.As<Napi::Array>();
    std::vector<Tensor*> out;
    for (uint32_t k = 0; k < a.Length(); k++) {
        Napi::Value e = a.Get(k);
        const std::string item = std::string(name) + "[" + std::to_string(k) + "]";
        if (!Tensor::IsTensor(e)) throw ArgError("Expected a Tensor for " + item + " but received " + received(e));
        Tensor* t = Tensor::Unwrap(e.As<Napi::Object>());
        if (t->disposed()) throw ArgError("Expected a live Tensor for " + item + " but it has been disposed");
        out.push_back(t);
    }
    return out;
}

double Args::number(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsNumber()) throw ArgError(std::string("Expected a number for ") + name + " but received " + received(v));
    return v.As<Napi::Number>().DoubleValue();
}

int64_t Args::integer(size_t i, const char* name, int64_t lo, int64_t hi) const {
    const double x = number(i, name);
    if (!(x == std::floor(x) && x >= double(lo) && x <= double(hi)))
        throw ArgError(std::string("Expected an integer in [") + std::to_string(lo) + ", " + std::to_string(hi) +
                       "] for " + name + " but received " + received(info_[i]));
    return static_cast<int64_t>(x);
}

int64_t Args::optional_integer(size_t i, const char* name, int64_t fallback, int64_t lo, int64_t hi) const {
    Napi::Value v = info_[i];
    if (v.IsUndefined() || v.IsNull()) return fallback;
    return integer(i, name, lo, hi);
}

bool Args::boolean(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsBoolean()) throw ArgError(std::string("Expected a boolean for ") + name + " but received " + received(v));
    return v.As<Napi::Boolean>().Value();
}

Napi::Object Args::object(size_t i, const char* name) const {
    Napi::Value v = info_[i];
    if (!v.IsObject() || v.IsArray()) throw ArgError(std::string("Expected an object for ") + name + " but received " + received(v));
    return v.As<Napi::Object>();
}

void expect_dtype(const Tensor* t, const char* name, DType dtype) {
    if (t->dtype() != dtype)
        throw ArgError(std::string("Expected ") + dtype_name(dtype) + " for " + name + " but received " + t->describe());
}

void expect_float(const Tensor* t, const char* name) {
    if (t->dtype() == DType::I32)
        throw ArgError(std::string("Expected float32 or bfloat16 for ") + name + " but received " + t->describe());
}

void expect_rank(const Tensor* t, const char* name, size_t rank, const char* meaning) {
    if (t->shape().size() != rank)
        throw ArgError(std::string("Expected a ") + std::to_string(rank) + "-d tensor " + meaning + " for " + name +
                       " but received " + t->describe());
}

void expect_dim(const Tensor* t, const char* name, size_t axis, int64_t size, const char* why) {
    if (t->shape().size() <= axis || t->shape()[axis] != size)
        throw ArgError(std::string("Expected size ") + std::to_string(size) + " in dimension " + std::to_string(axis) +
                       " (" + why + ") for " + name + " but received " + t->describe());
}

void expect_same_device(const Tensor* a, const char* an, const Tensor* b, const char* bn) {
    if (a->device() != b->device())
        throw ArgError(std::string("Expected ") + bn + " on " + device_name(a->device()) + " like " + an +
                       " but received " + b->describe() + " (mixed devices)");
}

void expect_same_dtype(const Tensor* a, const char* an, const Tensor* b, const char* bn) {
    if (a->dtype() != b->dtype())
        throw ArgError(std::string("Expected ") + dtype_name(a->dtype()) + " for " + bn + " like " + an +
                       " but received " + b->describe());
}

void expect_same_shape(const Tensor* a, const char* an, const Tensor* b, const char* bn) {
    if (a->shape() != b->shape())
        throw ArgError(std::string("Expected shape ") + shape_string(a->shape()) + " for " + bn + " like " + an +
                       " but received " + b->describe());
}

void expect_device_usable(const Tensor* t, const char* name) {
    if (t->device() != Device::CUDA) return;
    std::string reason;
    if (!cuda::available(&reason))
        throw ArgError(std::string("Expected ") + name + " on a usable device but the CUDA backend is unavailable: " + reason);
}

Napi::Value guarded(const Napi::CallbackInfo& info, const char* op, const std::function<Napi::Value()>& body) {
    try {
        return body();
    } catch (const ValueError& e) {
        throw Napi::RangeError::New(info.Env(), std::string(op) + ": " + e.what());
    } catch (const ArgError& e) {
        throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + e.what());
    } catch (const Napi::Error&) {
        throw;
    } catch (const std::exception& e) {
        throw Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
    }
}

}  // namespace plw::binding
