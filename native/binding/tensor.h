// Tensor: a block of host or CUDA memory with a dtype and a shape, wrapped for JS.
//
// Memory is released by dispose() or, failing that, by the finalizer when JS collects the
// object. While an asynchronous op uses a tensor it is locked (readers/writer counts):
// disposing it, or writing it from a second op, fails with an error instead of racing.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace plw::binding {

enum class Device { CPU, CUDA };
enum class DType { F32, BF16, I32 };

const char* device_name(Device d);
const char* dtype_name(DType t);
size_t dtype_size(DType t);
std::string shape_string(const std::vector<int64_t>& shape);

class Tensor : public Napi::ObjectWrap<Tensor> {
public:
    static Napi::Function Define(Napi::Env env);
    static bool IsTensor(Napi::Value v);
    static Napi::FunctionReference* constructor;

    explicit Tensor(const Napi::CallbackInfo& info);
    ~Tensor() override;
    void Finalize(Napi::Env env) override;

    Device device() const { return device_; }
    DType dtype() const { return dtype_; }
    const std::vector<int64_t>& shape() const { return shape_; }
    int64_t numel() const { return numel_; }
    size_t bytes() const { return bytes_; }
    void* data() const { return data_; }
    bool disposed() const { return released_; }
    std::string describe() const;  // "float32 [2, 3] on cpu"

    // Locking for the life of an asynchronous op (see job.h).
    int readers = 0;
    int writers = 0;

private:
    Napi::Value GetShape(const Napi::CallbackInfo& info);
    Napi::Value GetDType(const Napi::CallbackInfo& info);
    Napi::Value GetDevice(const Napi::CallbackInfo& info);
    Napi::Value GetDisposed(const Napi::CallbackInfo& info);
    Napi::Value GetByteLength(const Napi::CallbackInfo& info);
    Napi::Value ToArray(const Napi::CallbackInfo& info);
    Napi::Value CopyFrom(const Napi::CallbackInfo& info);
    Napi::Value Fill(const Napi::CallbackInfo& info);
    Napi::Value Dispose(const Napi::CallbackInfo& info);
    void Release();

    Device device_ = Device::CPU;
    DType dtype_ = DType::F32;
    std::vector<int64_t> shape_;
    int64_t numel_ = 0;
    size_t bytes_ = 0;
    void* data_ = nullptr;
    bool released_ = false;
};

// Live native memory, for leak tests and memory reports.
struct MemoryStats {
    int64_t live_tensors;
    int64_t cpu_bytes;
    int64_t cuda_bytes;
};
MemoryStats memory_stats();

}  // namespace plw::binding
