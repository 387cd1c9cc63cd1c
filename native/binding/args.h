// Reading and validating op arguments on the JS thread. Every failure is an ArgError whose
// message names the argument, what was expected and what was received.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace plw::binding {

class Args {
public:
    explicit Args(const Napi::CallbackInfo& info) : info_(info) {}

    Tensor* tensor(size_t i, const char* name) const;
    Tensor* optional_tensor(size_t i, const char* name) const;  // undefined/null -> nullptr
    std::vector<Tensor*> tensor_list(size_t i, const char* name) const;
    double number(size_t i, const char* name) const;
    int64_t integer(size_t i, const char* name, int64_t lo, int64_t hi) const;
    int64_t optional_integer(size_t i, const char* name, int64_t fallback, int64_t lo, int64_t hi) const;
    bool boolean(size_t i, const char* name) const;
    Napi::Object object(size_t i, const char* name) const;

private:
    const Napi::CallbackInfo& info_;
};

std::string received(const Napi::Value& v);  // "number 3", "a string", "undefined", ...

void expect_dtype(const Tensor* t, const char* name, DType dtype);
void expect_float(const Tensor* t, const char* name);  // float32 or bfloat16
void expect_rank(const Tensor* t, const char* name, size_t rank, const char* meaning);
void expect_dim(const Tensor* t, const char* name, size_t axis, int64_t size, const char* why);
void expect_same_device(const Tensor* a, const char* an, const Tensor* b, const char* bn);
void expect_same_dtype(const Tensor* a, const char* an, const Tensor* b, const char* bn);
void expect_same_shape(const Tensor* a, const char* an, const Tensor* b, const char* bn);
// Rejects a tensor on CUDA when the CUDA backend cannot run (with the reason).
void expect_device_usable(const Tensor* t, const char* name);

// Runs an op's body, turning ArgError into a JS TypeError and other exceptions into an
// Error, each prefixed with the op's name.
Napi::Value guarded(const Napi::CallbackInfo& info, const char* op,
                    const std::function<Napi::Value()>& body);

}  // namespace plw::binding
