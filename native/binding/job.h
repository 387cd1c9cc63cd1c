// Job: the baton pattern for every computing call. Arguments are read and validated on
// the JS thread into plain C++ values (the lambdas' captures); Execute runs only native
// work on a libuv worker thread and catches every exception; OnOK/OnError settle the
// Promise. The tensors a job reads or writes are Ref()ed and locked for its whole life,
// so they cannot be collected, disposed or written by another op meanwhile.
#pragma once
#include <napi.h>

#include <functional>
#include <string>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace plw::binding {

class Job : public Napi::AsyncWorker {
public:
    using Work = std::function<void()>;
    using Result = std::function<Napi::Value(Napi::Env)>;

    Job(Napi::Env env, const char* name, Work work, Result result)
        : Napi::AsyncWorker(env, name), name_(name), deferred_(Napi::Promise::Deferred::New(env)),
          work_(std::move(work)), result_(std::move(result)) {}

    ~Job() override {
        for (auto& [t, write] : locked_) {
            (write ? t->writers : t->readers)--;
            t->Unref();
        }
    }

    // Lock a tensor for reading or writing; throws (on the JS thread) if it is not usable.
    void use(Tensor* t, bool write, const char* arg) {
        for (auto& [held, held_write] : locked_) {
            if (held != t) continue;  // the same tensor twice in one op (in place): lock once
            if (write && !held_write) {
                t->readers--;
                t->writers++;
                held_write = true;
            }
            return;
        }
        if (t->disposed()) throw ArgError(std::string("Expected ") + arg + " to be a live tensor but it has been disposed");
        if (t->writers > 0 || (write && t->readers > 0))
            throw ArgError(std::string("Expected ") + arg +
                           " to be free but it is in use by a pending operation; await that operation first");
        (write ? t->writers : t->readers)++;
        t->Ref();
        locked_.emplace_back(t, write);
    }

    Napi::Promise promise() { return deferred_.Promise(); }

    // Runs on the JS thread when the work is done, before the Promise settles (either way).
    void on_settle(std::function<void()> fn) { settle_ = std::move(fn); }

protected:
    void Execute() override {
        try {
            work_();
        } catch (const ValueError& e) {
            error_kind_ = ErrorKind::Range;
            SetError(name_ + ": " + e.what());
        } catch (const ArgError& e) {
            error_kind_ = ErrorKind::Type;
            SetError(name_ + ": " + e.what());
        } catch (const std::exception& e) {
            SetError(name_ + ": " + e.what());
        } catch (...) {
            SetError(name_ + ": unknown native error");
        }
    }
    void OnOK() override {
        if (settle_) settle_();
        Napi::Env env = Env();
        try {
            deferred_.Resolve(result_ ? result_(env) : env.Undefined());
        } catch (const Napi::Error& e) {
            deferred_.Reject(e.Value());
        }
    }
    void OnError(const Napi::Error& e) override {
        // Argument problems found during the work (e.g. a bad target on the device) reject
        // with the same error class they would have had on the JS thread.
        if (settle_) settle_();
        const std::string msg = e.Message();
        switch (error_kind_) {
            case ErrorKind::Range: deferred_.Reject(Napi::RangeError::New(Env(), msg).Value()); break;
            case ErrorKind::Type: deferred_.Reject(Napi::TypeError::New(Env(), msg).Value()); break;
            default: deferred_.Reject(e.Value());
        }
    }

private:
    std::string name_;
    Napi::Promise::Deferred deferred_;
    Work work_;
    Result result_;
    std::vector<std::pair<Tensor*, bool>> locked_;
    std::function<void()> settle_;
    enum class ErrorKind { Native, Type, Range } error_kind_ = ErrorKind::Native;
};

}  // namespace plw::binding
