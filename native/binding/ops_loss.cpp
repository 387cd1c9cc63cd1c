// JS entry points of the loss kernels: weighted cross-entropy on logits, and the LM head
// fused with it. Both resolve to { lossSum, weightSum } (sum of w*CE and of w, in double).
//
//   weightedCrossEntropyForward(logits [N,Vp], targets [N] i32, weights [N] f32,
//                               vocabSize?, losses? [N] f32)
//   weightedCrossEntropyBackward(logits, targets, weights, normalizer, dlogits (may be logits),
//                                vocabSize?, losses?)
//   fusedHeadCrossEntropyForward(hidden [N,C], wte [Vp,C], targets, weights, vocabSize?,
//                                chunk?, losses?)
//   fusedHeadCrossEntropyBackward(hidden, wte, targets, weights, normalizer, dhidden [N,C] f32,
//                                 dwte [Vp,C] f32 (accumulated), vocabSize?, chunk?, losses?)
#include <cmath>
#include <limits>

#include "../cpu/cross_entropy.h"
#include "../cpu/fused_head.h"
#include "../cuda/cross_entropy.h"
#include "../cuda/fused_head.h"
#include "../cuda/runtime.h"
#include "args.h"
#include "cuda_guard.h"
#include "host_scratch.h"
#include "job.h"
#include "ops.h"

namespace plw::binding {

namespace {

constexpr int kDefaultChunkCpu = 256;    // 256 x 50304 f32 logits = 49 MiB of scratch
// On CUDA each chunk re-reads and re-writes dwte (V x C f32) in its GEMM: 2048 rows keep that
// traffic small next to the GEMMs' work, for 2048 x 50304 bf16 logits = 197 MiB of scratch.
constexpr int kDefaultChunkCuda = 2048;

struct Rows {
    Tensor* targets;
    Tensor* weights;
    Tensor* losses;  // nullable: a scratch buffer is used when the caller wants no losses
    int N;
};

// targets [N] int32, weights [N] float32, losses [N] float32 (optional), all beside `anchor`.
Rows read_rows(const Args& a, size_t i_targets, size_t i_weights, size_t i_losses, Tensor* anchor,
               const char* anchor_name, int N) {
    Rows r{a.tensor(i_targets, "targets"), a.tensor(i_weights, "weights"), a.optional_tensor(i_losses, "losses"), N};
    expect_dtype(r.targets, "targets", DType::I32);
    expect_rank(r.targets, "targets", 1, "(one target per row)");
    expect_dim(r.targets, "targets", 0, N, "one target per row");
    expect_same_device(anchor, anchor_name, r.targets, "targets");
    expect_dtype(r.weights, "weights", DType::F32);
    expect_rank(r.weights, "weights", 1, "(one weight per row)");
    expect_dim(r.weights, "weights", 0, N, "one weight per row");
    expect_same_device(anchor, anchor_name, r.weights, "weights");
    if (r.losses) {
        expect_dtype(r.losses, "losses", DType::F32);
        expect_rank(r.losses, "losses", 1, "(one loss per row)");
        expect_dim(r.losses, "losses", 0, N, "one loss per row");
        expect_same_device(anchor, anchor_name, r.losses, "losses");
    }
    return r;
}

float read_grad_scale(const Args& a, size_t i) {
    const double norm = a.number(i, "normalizer");
    if (!(norm > 0.0 && std::isfinite(norm)))
        throw ValueError("Expected a positive finite number for normalizer (the sum of weights over the "
                         "optimizer step) but received " + std::to_string(norm));
    return static_cast<float>(1.0 / norm);
}

void lock_rows(Job* job, const Rows& r) {
    job->use(r.targets, false, "targets");
    job->use(r.weights, false, "weights");
    if (r.losses) job->use(r.losses, true, "losses");
}

// Rejects a non-zero-weight target outside [0, V); runs inside the job (on CUDA it syncs).
void check_targets(Device d, const int32_t* targets, const float* weights, int N, int V) {
    const int64_t bad = d == Device::CPU ? cpu::find_invalid_target(targets, weights, N, V)
                                         : PLW_CUDA_CALL(cuda::find_invalid_target(targets, weights, N, V));
    if (bad < 0) return;
    int32_t t = 0;
    float w = 0;
    if (d == Device::CPU) {
        t = targets[bad];
        w = weights[bad];
    } else {
        PLW_CUDA_CALL(cuda::copy_to_host(&t, targets + bad, sizeof t));
        PLW_CUDA_CALL(cuda::copy_to_host(&w, weights + bad, sizeof w));
    }
    throw ValueError("Expected every target with a non-zero weight to be in [0, " + std::to_string(V) +
                     ") but targets[" + std::to_string(bad) + "] = " + std::to_string(t) +
                     " has weight " + std::to_string(w));
}

// Per-row losses live either in the caller's tensor or in scratch of the right device.
struct LossBuffer {
    std::unique_ptr<HostScratch> host;
    std::unique_ptr<cuda::ScratchBuffer> device;
    float* ptr = nullptr;
    LossBuffer(Device d, Tensor* given, int N) {
        if (given) ptr = static_cast<float*>(given->data());
        else if (d == Device::CPU) ptr = (host = std::make_unique<HostScratch>(sizeof(float) * N))->as<float>();
        else ptr = static_cast<float*>((device = std::make_unique<cuda::ScratchBuffer>(sizeof(float) * (N ? N : 1)))->data());
    }
};

struct Sums {
    double loss = 0, weight = 0;
};

void reduce(Device d, Sums* s, const float* losses, const float* weights, int N) {
    if (d == Device::CPU) cpu::weighted_loss_sum(&s->loss, &s->weight, losses, weights, N);
    else PLW_CUDA_CALL(cuda::weighted_loss_sum(&s->loss, &s->weight, losses, weights, N));
}

Napi::Value sums_to_js(Napi::Env env, const Sums& s) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("lossSum", s.loss);
    o.Set("weightSum", s.weight);
    return o;
}

int read_vocab(const Args& a, size_t i, int64_t rows_of_table) {
    return static_cast<int>(a.optional_integer(i, "vocabSize", rows_of_table, 1, rows_of_table));
}

}  // namespace

Napi::Value WeightedCrossEntropyForward(const Napi::CallbackInfo& info) {
    return guarded(info, "weightedCrossEntropyForward", [&]() -> Napi::Value {
        Args a(info);
        Tensor* logits = a.tensor(0, "logits");
        expect_float(logits, "logits");
        expect_rank(logits, "logits", 2, "[N, V]");
        expect_device_usable(logits, "logits");
        const int N = static_cast<int>(logits->shape()[0]);
        const int Vp = static_cast<int>(logits->shape()[1]);
        Rows r = read_rows(a, 1, 2, 4, logits, "logits", N);
        const int V = read_vocab(a, 3, Vp);

        auto sums = std::make_shared<Sums>();
        const Device d = logits->device();
        const DType dt = logits->dtype();
        const void* x = logits->data();
        const int32_t* t = static_cast<const int32_t*>(r.targets->data());
        const float* w = static_cast<const float*>(r.weights->data());
        Tensor* losses_t = r.losses;
        auto* job = new Job(info.Env(), "weightedCrossEntropyForward", [=] {
            check_targets(d, t, w, N, V);
            LossBuffer losses(d, losses_t, N);
            if (d == Device::CPU) {
                if (dt == DType::F32) cpu::weighted_cross_entropy_forward(losses.ptr, static_cast<const float*>(x), t, w, N, V, Vp);
                else cpu::weighted_cross_entropy_forward(losses.ptr, static_cast<const bf16*>(x), t, w, N, V, Vp);
            } else {
                if (dt == DType::F32) PLW_CUDA_CALL(cuda::weighted_cross_entropy_forward(losses.ptr, static_cast<const float*>(x), t, w, N, V, Vp));
                else PLW_CUDA_CALL(cuda::weighted_cross_entropy_forward(losses.ptr, static_cast<const bf16*>(x), t, w, N, V, Vp));
            }
            reduce(d, sums.get(), losses.ptr, w, N);
        }, [sums](Napi::Env env) { return sums_to_js(env, *sums); });
        job->use(logits, false, "logits");
        lock_rows(job, r);
        job->Queue();
        return job->promise();
    });
}

Napi::Value WeightedCrossEntropyBackward(const Napi::CallbackInfo& info) {
    return guarded(info, "weightedCrossEntropyBackward", [&]() -> Napi::Value {
        Args a(info);
        Tensor* logits = a.tensor(0, "logits");
        expect_float(logits, "logits");
        expect_rank(logits, "logits", 2, "[N, V]");
        expect_device_usable(logits, "logits");
        const int N = static_cast<int>(logits->shape()[0]);
        const int Vp = static_cast<int>(logits->shape()[1]);
        Rows r = read_rows(a, 1, 2, 6, logits, "logits", N);
        const float grad_scale = read_grad_scale(a, 3);
        Tensor* dlogits = a.tensor(4, "dlogits");
        expect_same_device(logits, "logits", dlogits, "dlogits");
        expect_same_dtype(logits, "logits", dlogits, "dlogits");
        expect_same_shape(logits, "logits", dlogits, "dlogits");
        const int V = read_vocab(a, 5, Vp);

        auto sums = std::make_shared<Sums>();
        const Device d = logits->device();
        const DType dt = logits->dtype();
        const void* x = logits->data();
        void* dx = dlogits->data();
        const int32_t* t = static_cast<const int32_t*>(r.targets->data());
        const float* w = static_cast<const float*>(r.weights->data());
        Tensor* losses_t = r.losses;
        auto* job = new Job(info.Env(), "weightedCrossEntropyBackward", [=] {
            check_targets(d, t, w, N, V);
            LossBuffer losses(d, losses_t, N);
            if (d == Device::CPU) {
                if (dt == DType::F32) cpu::weighted_cross_entropy_backward(static_cast<float*>(dx), losses.ptr, static_cast<const float*>(x), t, w, grad_scale, N, V, Vp);
                else cpu::weighted_cross_entropy_backward(static_cast<bf16*>(dx), losses.ptr, static_cast<const bf16*>(x), t, w, grad_scale, N, V, Vp);
            } else {
                if (dt == DType::F32) PLW_CUDA_CALL(cuda::weighted_cross_entropy_backward(static_cast<float*>(dx), losses.ptr, static_cast<const float*>(x), t, w, grad_scale, N, V, Vp));
                else PLW_CUDA_CALL(cuda::weighted_cross_entropy_backward(static_cast<bf16*>(dx), losses.ptr, static_cast<const bf16*>(x), t, w, grad_scale, N, V, Vp));
            }
            reduce(d, sums.get(), losses.ptr, w, N);
        }, [sums](Napi::Env env) { return sums_to_js(env, *sums); });
        job->use(logits, false, "logits");
        job->use(dlogits, true, "dlogits");
        lock_rows(job, r);
        job->Queue();
        return job->promise();
    });
}

namespace {

struct HeadArgs {
    Tensor* hidden;
    Tensor* wte;
    int N, C, V, chunk;
};

HeadArgs read_head(const Args& a, size_t i_vocab, size_t i_chunk) {
    HeadArgs h{a.tensor(0, "hidden"), a.tensor(1, "wte"), 0, 0, 0, 0};
    expect_float(h.hidden, "hidden");
    expect_rank(h.hidden, "hidden", 2, "[N, C]");
    expect_device_usable(h.hidden, "hidden");
    expect_rank(h.wte, "wte", 2, "[V, C]");
    expect_same_device(h.hidden, "hidden", h.wte, "wte");
    expect_same_dtype(h.hidden, "hidden", h.wte, "wte");
    h.N = static_cast<int>(h.hidden->shape()[0]);
    h.C = static_cast<int>(h.hidden->shape()[1]);
    expect_dim(h.wte, "wte", 1, h.C, "channels, as hidden");
    if (h.hidden->device() == Device::CPU) expect_dtype(h.hidden, "hidden", DType::F32);
    h.V = read_vocab(a, i_vocab, h.wte->shape()[0]);
    const int fallback = h.hidden->device() == Device::CPU ? kDefaultChunkCpu : kDefaultChunkCuda;
    h.chunk = static_cast<int>(a.optional_integer(i_chunk, "chunk", fallback, 1, 1 << 20));
    return h;
}

}  // namespace

Napi::Value FusedHeadCrossEntropyForward(const Napi::CallbackInfo& info) {
    return guarded(info, "fusedHeadCrossEntropyForward", [&]() -> Napi::Value {
        Args a(info);
        HeadArgs h = read_head(a, 4, 5);
        Rows r = read_rows(a, 2, 3, 6, h.hidden, "hidden", h.N);
        auto sums = std::make_shared<Sums>();
        const Device d = h.hidden->device();
        const DType dt = h.hidden->dtype();
        const void* hid = h.hidden->data();
        const void* wte = h.wte->data();
        const int32_t* t = static_cast<const int32_t*>(r.targets->data());
        const float* w = static_cast<const float*>(r.weights->data());
        Tensor* losses_t = r.losses;
        auto* job = new Job(info.Env(), "fusedHeadCrossEntropyForward", [=] {
            check_targets(d, t, w, h.N, h.V);
            LossBuffer losses(d, losses_t, h.N);
            const int chunk = std::max(1, std::min(h.chunk, h.N));
            if (d == Device::CPU) {
                HostScratch scratch(sizeof(float) * cpu::fused_head_scratch_floats(chunk, h.V));
                cpu::fused_head_cross_entropy_forward(losses.ptr, scratch.as<float>(), static_cast<const float*>(hid),
                                                      static_cast<const float*>(wte), t, w, h.N, h.C, h.V, chunk);
            } else {
                const size_t es = dtype_size(dt);
                cuda::ScratchBuffer scratch(PLW_CUDA_CALL(cuda::fused_head_scratch_bytes(chunk, h.V, es)));
                if (dt == DType::F32)
                    PLW_CUDA_CALL(cuda::fused_head_cross_entropy_forward(losses.ptr, scratch.data(), static_cast<const float*>(hid),
                                  static_cast<const float*>(wte), t, w, h.N, h.C, h.V, chunk));
                else
                    PLW_CUDA_CALL(cuda::fused_head_cross_entropy_forward(losses.ptr, scratch.data(), static_cast<const bf16*>(hid),
                                  static_cast<const bf16*>(wte), t, w, h.N, h.C, h.V, chunk));
            }
            reduce(d, sums.get(), losses.ptr, w, h.N);
        }, [sums](Napi::Env env) { return sums_to_js(env, *sums); });
        job->use(h.hidden, false, "hidden");
        job->use(h.wte, false, "wte");
        lock_rows(job, r);
        job->Queue();
        return job->promise();
    });
}

Napi::Value FusedHeadCrossEntropyBackward(const Napi::CallbackInfo& info) {
    return guarded(info, "fusedHeadCrossEntropyBackward", [&]() -> Napi::Value {
        Args a(info);
        HeadArgs h = read_head(a, 7, 8);
        Rows r = read_rows(a, 2, 3, 9, h.hidden, "hidden", h.N);
        const float grad_scale = read_grad_scale(a, 4);
        Tensor* dhidden = a.tensor(5, "dhidden");
        Tensor* dwte = a.tensor(6, "dwte");
        expect_dtype(dhidden, "dhidden", DType::F32);
        expect_dtype(dwte, "dwte", DType::F32);
        expect_same_device(h.hidden, "hidden", dhidden, "dhidden");
        expect_same_device(h.hidden, "hidden", dwte, "dwte");
        expect_rank(dhidden, "dhidden", 2, "[N, C]");
        expect_dim(dhidden, "dhidden", 0, h.N, "rows, as hidden");
        expect_dim(dhidden, "dhidden", 1, h.C, "channels, as hidden");
        expect_rank(dwte, "dwte", 2, "[V, C]");
        expect_dim(dwte, "dwte", 0, h.wte->shape()[0], "rows, as wte");
        expect_dim(dwte, "dwte", 1, h.C, "channels, as wte");

        auto sums = std::make_shared<Sums>();
        const Device d = h.hidden->device();
        const DType dt = h.hidden->dtype();
        const void* hid = h.hidden->data();
        const void* wte = h.wte->data();
        float* dh = static_cast<float*>(dhidden->data());
        float* dw = static_cast<float*>(dwte->data());
        const int32_t* t = static_cast<const int32_t*>(r.targets->data());
        const float* w = static_cast<const float*>(r.weights->data());
        Tensor* losses_t = r.losses;
        auto* job = new Job(info.Env(), "fusedHeadCrossEntropyBackward", [=] {
            check_targets(d, t, w, h.N, h.V);
            LossBuffer losses(d, losses_t, h.N);
            const int chunk = std::max(1, std::min(h.chunk, h.N));
            if (d == Device::CPU) {
                HostScratch scratch(sizeof(float) * cpu::fused_head_scratch_floats(chunk, h.V));
                cpu::fused_head_cross_entropy_backward(losses.ptr, dh, dw, scratch.as<float>(), static_cast<const float*>(hid),
                                                       static_cast<const float*>(wte), t, w, grad_scale, h.N, h.C, h.V, chunk);
            } else {
                const size_t es = dtype_size(dt);
                cuda::ScratchBuffer scratch(PLW_CUDA_CALL(cuda::fused_head_scratch_bytes(chunk, h.V, es)));
                if (dt == DType::F32)
                    PLW_CUDA_CALL(cuda::fused_head_cross_entropy_backward(losses.ptr, dh, dw, scratch.data(), static_cast<const float*>(hid),
                                  static_cast<const float*>(wte), t, w, grad_scale, h.N, h.C, h.V, chunk));
                else
                    PLW_CUDA_CALL(cuda::fused_head_cross_entropy_backward(losses.ptr, dh, dw, scratch.data(), static_cast<const bf16*>(hid),
                                  static_cast<const bf16*>(wte), t, w, grad_scale, h.N, h.C, h.V, chunk));
            }
            reduce(d, sums.get(), losses.ptr, w, h.N);
        }, [sums](Napi::Env env) { return sums_to_js(env, *sums); });
        job->use(h.hidden, false, "hidden");
        job->use(h.wte, false, "wte");
        job->use(dhidden, true, "dhidden");
        job->use(dwte, true, "dwte");
        lock_rows(job, r);
        job->Queue();
        return job->promise();
    });
}

}  // namespace plw::binding
