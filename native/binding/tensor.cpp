// Tensor: construction from JS, host/device memory, copies in and out, disposal.
#include "tensor.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "../common/bf16.h"
#include "../common/check.h"
#include "../cuda/runtime.h"
#include "errors.h"

namespace plw::binding {

namespace {
std::atomic<int64_t> g_live_tensors{0};
std::atomic<int64_t> g_cpu_bytes{0};
std::atomic<int64_t> g_cuda_bytes{0};

Device parse_device(const std::string& s) {
    if (s == "cpu") return Device::CPU;
    if (s == "cuda") return Device::CUDA;
    throw ArgError("Expected device to be 'cpu' or 'cuda' but received '" + s + "'");
}

DType parse_dtype(const std::string& s) {
    if (s == "float32") return DType::F32;
    if (s == "bfloat16") return DType::BF16;
    if (s == "int32") return DType::I32;
    throw ArgError("Expected dtype to be 'float32', 'bfloat16' or 'int32' but received '" + s + "'");
}

void* host_alloc(size_t bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded == 0 ? 64 : rounded);
    if (!p) throw Error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    return p;
}

void require_cuda() {
    std::string reason;
    if (!cuda::available(&reason)) throw Error("CUDA backend unavailable: " + reason);
}
}  // namespace

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }
const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "float32";
        case DType::BF16: return "bfloat16";
        case DType::I32: return "int32";
    }
    return "?";
}
size_t dtype_size(DType t) { return t == DType::BF16 ? 2 : 4; }

std::string shape_string(const std::vector<int64_t>& shape) {
    std::ostringstream os;
    os << "[";
    for (size_t i = 0; i < shape.size(); i++) os << (i ? ", " : "") << shape[i];
    os << "]";
    return os.str();
}

Napi::FunctionReference* Tensor::constructor = nullptr;

Napi::Function Tensor::Define(Napi::Env env) {
    Napi::Function cls = DefineClass(env, "Tensor",
        {InstanceAccessor<&Tensor::GetShape>("shape"),
         InstanceAccessor<&Tensor::GetDType>("dtype"),
         InstanceAccessor<&Tensor::GetDevice>("device"),
         InstanceAccessor<&Tensor::GetDisposed>("disposed"),
         InstanceAccessor<&Tensor::GetByteLength>("byteLength"),
         InstanceMethod<&Tensor::ToArray>("toArray"),
         InstanceMethod<&Tensor::CopyFrom>("copyFrom"),
         InstanceMethod<&Tensor::Fill>("fill"),
         InstanceMethod<&Tensor::Dispose>("dispose")});
    constructor = new Napi::FunctionReference(Napi::Persistent(cls));
    return cls;
}

bool Tensor::IsTensor(Napi::Value v) {
    return constructor && v.IsObject() && v.As<Napi::Object>().InstanceOf(constructor->Value());
}

// new Tensor(shape: number[], dtype, device, data?: Float32Array | Int32Array)
Tensor::Tensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Tensor>(info) {
    Napi::Env env = info.Env();
    try {
        if (!info[0].IsArray()) throw ArgError("Expected shape to be an array of integers");
        Napi::Array dims = info[0].As<Napi::Array>();
        numel_ = 1;
        for (uint32_t i = 0; i < dims.Length(); i++) {
            Napi::Value d = dims.Get(i);
            double x = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
            if (!(x >= 0 && x == static_cast<double>(static_cast<int64_t>(x)) && x < 2147483648.0))
                throw ArgError("Expected shape to hold non-negative integers (< 2^31) but received " +
                               d.ToString().Utf8Value() + " at index " + std::to_string(i));
            shape_.push_back(static_cast<int64_t>(x));
            numel_ *= shape_.back();
        }
        dtype_ = parse_dtype(info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "");
        device_ = parse_device(info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "");
        bytes_ = static_cast<size_t>(numel_) * dtype_size(dtype_);
        if (device_ == Device::CUDA) require_cuda();

        if (device_ == Device::CPU) {
            data_ = host_alloc(bytes_);
            std::memset(data_, 0, bytes_);
            g_cpu_bytes += bytes_;
            Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(bytes_));
        } else {
            data_ = cuda::device_malloc(bytes_ == 0 ? 1 : bytes_);
            cuda::memset_zero(data_, bytes_);
            g_cuda_bytes += bytes_;
        }
        g_live_tensors++;
        if (info.Length() > 3 && !info[3].IsUndefined() && !info[3].IsNull()) {
            Napi::Value arg = info[3];
            // Reuse copyFrom's checks and conversions.
            Napi::Value r = Value().Get("copyFrom").As<Napi::Function>().Call(Value(), {arg});
            (void)r;
        }
    } catch (const ArgError& e) {
        Release();
        throw Napi::TypeError::New(env, std::string("Tensor: ") + e.what());
    } catch (const Napi::Error&) {
        Release();
        throw;
    } catch (const std::exception& e) {
        Release();
        throw Napi::Error::New(env, std::string("Tensor: ") + e.what());
    }
}

Tensor::~Tensor() { Release(); }
void Tensor::Finalize(Napi::Env env) {
    if (!released_ && device_ == Device::CPU && data_)
        Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes_));
    Release();
}

void Tensor::Release() {
    if (released_) return;
    released_ = true;
    if (!data_) return;
    if (device_ == Device::CPU) {
        std::free(data_);
        g_cpu_bytes -= bytes_;
    } else {
        try {
            cuda::device_free(data_);
        } catch (...) {
            // A failed free at teardown has no one to report to; the context is going away.
        }
        g_cuda_bytes -= bytes_;
    }
    data_ = nullptr;
    g_live_tensors--;
}

std::string Tensor::describe() const {
    return std::string(dtype_name(dtype_)) + " " + shape_string(shape_) + " on " + device_name(device_);
}

Napi::Value Tensor::GetShape(const Napi::CallbackInfo& info) {
    Napi::Array a = Napi::Array::New(info.Env(), shape_.size());
    for (size_t i = 0; i < shape_.size(); i++) a.Set(i, Napi::Number::New(info.Env(), double(shape_[i])));
    return a;
}
Napi::Value Tensor::GetDType(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), dtype_name(dtype_)); }
Napi::Value Tensor::GetDevice(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), device_name(device_)); }
Napi::Value Tensor::GetDisposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), released_); }
Napi::Value Tensor::GetByteLength(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(bytes_)); }

static void check_usable(const Napi::Env& env, const Tensor& t, bool write, const char* what) {
    if (t.disposed()) throw Napi::Error::New(env, std::string(what) + ": the tensor has been disposed");
    if (t.writers > 0 || (write && t.readers > 0))
        throw Napi::Error::New(env, std::string(what) +
            ": the tensor is in use by a pending operation; await it before touching the tensor");
}

// toArray(): a copy as Float32Array (float32, bfloat16) or Int32Array (int32).
Napi::Value Tensor::ToArray(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_usable(env, *this, false, "toArray");
    const size_t n = static_cast<size_t>(numel_);
    std::vector<uint8_t> staged;
    const void* src = data_;
    try {
        if (device_ == Device::CUDA) {
            staged.resize(bytes_);
            cuda::copy_to_host(staged.data(), data_, bytes_);
            src = staged.data();
        }
    } catch (const std::exception& e) {
        throw Napi::Error::New(env, std::string("toArray: ") + e.what());
    }
    if (dtype_ == DType::I32) {
        Napi::Int32Array out = Napi::Int32Array::New(env, n);
        std::memcpy(out.Data(), src, bytes_);
        return out;
    }
    Napi::Float32Array out = Napi::Float32Array::New(env, n);
    if (dtype_ == DType::F32) {
        std::memcpy(out.Data(), src, bytes_);
    } else {
        const bf16* b = static_cast<const bf16*>(src);
        for (size_t i = 0; i < n; i++) out[i] = bf16_to_f32(b[i]);
    }
    return out;
}

// copyFrom(data: Float32Array | Int32Array): overwrite the whole tensor (bfloat16 rounds).
Napi::Value Tensor::CopyFrom(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_usable(env, *this, true, "copyFrom");
    const bool want_int = dtype_ == DType::I32;
    Napi::Value arg = info[0];
    bool ok = arg.IsTypedArray();
    napi_typedarray_type type = ok ? arg.As<Napi::TypedArray>().TypedArrayType() : napi_int8_array;
    ok = ok && (want_int ? type == napi_int32_array : type == napi_float32_array);
    if (!ok)
        throw Napi::TypeError::New(env, std::string("copyFrom: Expected data to be ") +
            (want_int ? "an Int32Array" : "a Float32Array") + " for a " + dtype_name(dtype_) + " tensor");
    Napi::TypedArray ta = arg.As<Napi::TypedArray>();
    if (static_cast<int64_t>(ta.ElementLength()) != numel_)
        throw Napi::RangeError::New(env, "copyFrom: Expected data to have " + std::to_string(numel_) +
            " elements (shape " + shape_string(shape_) + ") but received " + std::to_string(ta.ElementLength()));
    const uint8_t* raw = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    std::vector<bf16> converted;
    const void* src = raw;
    if (dtype_ == DType::BF16) {
        converted.resize(static_cast<size_t>(numel_));
        const float* f = reinterpret_cast<const float*>(raw);
        for (size_t i = 0; i < converted.size(); i++) converted[i] = f32_to_bf16(f[i]);
        src = converted.data();
    }
    try {
        if (device_ == Device::CPU) std::memcpy(data_, src, bytes_);
        else cuda::copy_to_device(data_, src, bytes_);
    } catch (const std::exception& e) {
        throw Napi::Error::New(env, std::string("copyFrom: ") + e.what());
    }
    return Value();
}

// fill(value: number): every element set to value (rounded to the dtype).
Napi::Value Tensor::Fill(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    check_usable(env, *this, true, "fill");
    if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "fill: Expected value to be a number");
    const double x = info[0].As<Napi::Number>().DoubleValue();
    const size_t n = static_cast<size_t>(numel_);
    try {
        if (x == 0.0 && device_ == Device::CUDA) {
            cuda::memset_zero(data_, bytes_);
            return Value();
        }
        std::vector<uint8_t> host(device_ == Device::CUDA ? bytes_ : 0);
        void* dst = device_ == Device::CUDA ? host.data() : data_;
        if (dtype_ == DType::F32) std::fill_n(static_cast<float*>(dst), n, static_cast<float>(x));
        else if (dtype_ == DType::I32) std::fill_n(static_cast<int32_t*>(dst), n, static_cast<int32_t>(x));
        else std::fill_n(static_cast<bf16*>(dst), n, f32_to_bf16(static_cast<float>(x)));
        if (device_ == Device::CUDA) cuda::copy_to_device(data_, host.data(), bytes_);
    } catch (const std::exception& e) {
        throw Napi::Error::New(env, std::string("fill: ") + e.what());
    }
    return Value();
}

Napi::Value Tensor::Dispose(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (released_) return env.Undefined();  // idempotent
    if (readers > 0 || writers > 0)
        throw Napi::Error::New(env, "dispose: the tensor is in use by a pending operation; await it first");
    if (device_ == Device::CPU && data_)
        Napi::MemoryManagement::AdjustExternalMemory(env, -static_cast<int64_t>(bytes_));
    Release();
    return env.Undefined();
}

MemoryStats memory_stats() { return {g_live_tensors.load(), g_cpu_bytes.load(), g_cuda_bytes.load()}; }

}  // namespace plw::binding
