// JS entry points of the fused (flash) attention kernels, for benchmarks and tests of the op
// alone (the engine calls the kernels itself):
//   flashAttentionForward(out [B,T,NH*hs], lse [B,NH,T] f32, q [B,T,NH*hs], k [B,T,NKV*hs],
//                         v [B,T,NKV*hs], nHeads, nKvHeads, segments? [B,T] i32)
//   flashAttentionBackward(dq, dk, dv, dout, out, lse, q, k, v, nHeads, nKvHeads, segments?)
//                         (dq, dk, dv accumulate, shapes of q, k, v)
// Causal, with the packed-segment mask when segments are given; GQA when nKvHeads < nHeads.
// q, k, v, out and the gradients share one dtype: f32 on the CPU, f32 or bf16 on CUDA. The head
// size hs = the last dimension / nHeads: any on the CPU, 64, 80, 96 or 128 on CUDA.
#include "../cpu/flash_attention.h"
#include "../cuda/flash_attention.h"
#include "args.h"
#include "cuda_guard.h"
#include "job.h"
#include "ops.h"

namespace plw::binding {

namespace {

struct AttentionShape {
    int B, T, NH, NKV, hs;
    Device device;
    DType dtype;
};

// Checks q, k, v, lse, segments and the tensors shaped like q (`same_as_q`) or like k
// (`same_as_kv`); derives the shape.
AttentionShape read_shape(Tensor* q, Tensor* k, Tensor* v, Tensor* lse, Tensor* segments, int NH, int NKV,
                          std::initializer_list<std::pair<Tensor*, const char*>> same_as_q,
                          std::initializer_list<std::pair<Tensor*, const char*>> same_as_kv) {
    expect_device_usable(q, "q");
    expect_rank(q, "q", 3, "[B, T, nHeads * headSize]");
    const int B = static_cast<int>(q->shape()[0]), T = static_cast<int>(q->shape()[1]);
    const int64_t width = q->shape()[2];
    if (NKV < 1 || NH % NKV != 0)
        throw ArgError("Expected nKvHeads to divide nHeads (" + std::to_string(NH) + ") but received " +
                       std::to_string(NKV));
    if (width % NH != 0)
        throw ArgError("Expected the last dimension of q (" + std::to_string(width) + ") to be a multiple of nHeads (" +
                       std::to_string(NH) + ")");
    const int hs = static_cast<int>(width / NH);
    // The CPU kernels take any head size; the CUDA ones those of flash_attention_supports().
    if (q->device() == Device::CUDA && hs != 64 && hs != 80 && hs != 96 && hs != 128)
        throw ArgError("Expected a head size the CUDA fused kernels take (64, 80, 96, 128) but received " +
                       std::to_string(hs));
    const DType dt = q->dtype();
    if (dt != DType::F32 && !(dt == DType::BF16 && q->device() == Device::CUDA))
        throw ArgError("Expected float32 tensors (or bfloat16 on cuda) but q is " + q->describe());
    for (auto [t, name] : {std::pair<Tensor*, const char*>{k, "k"}, {v, "v"}}) {
        expect_same_device(q, "q", t, name);
        expect_dtype(t, name, dt);
        expect_rank(t, name, 3, "[B, T, nKvHeads * headSize]");
        expect_dim(t, name, 0, B, "B of q");
        expect_dim(t, name, 1, T, "T of q");
        expect_dim(t, name, 2, static_cast<int64_t>(NKV) * hs, "nKvHeads * headSize");
    }
    for (auto [t, name] : same_as_q) {
        expect_same_device(q, "q", t, name);
        expect_dtype(t, name, dt);
        expect_same_shape(q, "q", t, name);
    }
    for (auto [t, name] : same_as_kv) {
        expect_same_device(q, "q", t, name);
        expect_dtype(t, name, dt);
        expect_same_shape(k, "k", t, name);
    }
    expect_same_device(q, "q", lse, "lse");
    expect_dtype(lse, "lse", DType::F32);
    expect_rank(lse, "lse", 3, "[B, nHeads, T]");
    expect_dim(lse, "lse", 0, B, "B of q");
    expect_dim(lse, "lse", 1, NH, "nHeads");
    expect_dim(lse, "lse", 2, T, "T of q");
    if (segments) {
        expect_same_device(q, "q", segments, "segments");
        expect_dtype(segments, "segments", DType::I32);
        expect_rank(segments, "segments", 2, "[B, T]");
        expect_dim(segments, "segments", 0, B, "B of q");
        expect_dim(segments, "segments", 1, T, "T of q");
    }
    return {B, T, NH, NKV, hs, q->device(), dt};
}

template <typename E>
E* ptr(Tensor* t) {
    return static_cast<E*>(t->data());
}

}  // namespace

Napi::Value FlashAttentionForward(const Napi::CallbackInfo& info) {
    return guarded(info, "flashAttentionForward", [&]() -> Napi::Value {
        Args a(info);
        Tensor* out = a.tensor(0, "out");
        Tensor* lse = a.tensor(1, "lse");
        Tensor *q = a.tensor(2, "q"), *k = a.tensor(3, "k"), *v = a.tensor(4, "v");
        const int NH = static_cast<int>(a.integer(5, "nHeads", 1, 1 << 16));
        const int NKV = static_cast<int>(a.integer(6, "nKvHeads", 1, 1 << 16));
        Tensor* segments = a.optional_tensor(7, "segments");
        const AttentionShape s = read_shape(q, k, v, lse, segments, NH, NKV, {{out, "out"}}, {});
        const int32_t* seg = segments ? ptr<const int32_t>(segments) : nullptr;
        const int qs = s.NH * s.hs, kvs = s.NKV * s.hs;
        auto* job = new Job(info.Env(), "flashAttentionForward", [=] {
            float* l = ptr<float>(lse);
            if (s.device == Device::CPU) {
                cpu::flash_attention_forward(ptr<float>(out), l, ptr<const float>(q), ptr<const float>(k),
                                             ptr<const float>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs, qs, kvs);
            } else if (s.dtype == DType::F32) {
                PLW_CUDA_CALL(cuda::flash_attention_forward(ptr<float>(out), l, ptr<const float>(q), ptr<const float>(k),
                                                            ptr<const float>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs, qs,
                                                            kvs));
            } else {
                PLW_CUDA_CALL(cuda::flash_attention_forward(ptr<bf16>(out), l, ptr<const bf16>(q), ptr<const bf16>(k),
                                                            ptr<const bf16>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs, qs,
                                                            kvs));
            }
        }, nullptr);
        job->use(out, true, "out");
        job->use(lse, true, "lse");
        job->use(q, false, "q");
        job->use(k, false, "k");
        job->use(v, false, "v");
        if (segments) job->use(segments, false, "segments");
        job->Queue();
        return job->promise();
    });
}

Napi::Value FlashAttentionBackward(const Napi::CallbackInfo& info) {
    return guarded(info, "flashAttentionBackward", [&]() -> Napi::Value {
        Args a(info);
        Tensor *dq = a.tensor(0, "dq"), *dk = a.tensor(1, "dk"), *dv = a.tensor(2, "dv");
        Tensor *dout = a.tensor(3, "dout"), *out = a.tensor(4, "out"), *lse = a.tensor(5, "lse");
        Tensor *q = a.tensor(6, "q"), *k = a.tensor(7, "k"), *v = a.tensor(8, "v");
        const int NH = static_cast<int>(a.integer(9, "nHeads", 1, 1 << 16));
        const int NKV = static_cast<int>(a.integer(10, "nKvHeads", 1, 1 << 16));
        Tensor* segments = a.optional_tensor(11, "segments");
        const AttentionShape s = read_shape(q, k, v, lse, segments, NH, NKV,
                                            {{dq, "dq"}, {dout, "dout"}, {out, "out"}}, {{dk, "dk"}, {dv, "dv"}});
        const int32_t* seg = segments ? ptr<const int32_t>(segments) : nullptr;
        const int qs = s.NH * s.hs, kvs = s.NKV * s.hs;
        auto* job = new Job(info.Env(), "flashAttentionBackward", [=] {
            const float* l = ptr<const float>(lse);
            if (s.device == Device::CPU) {
                cpu::flash_attention_backward(ptr<float>(dq), ptr<float>(dk), ptr<float>(dv), ptr<const float>(dout),
                                              ptr<const float>(out), l, ptr<const float>(q), ptr<const float>(k),
                                              ptr<const float>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs, qs, kvs);
            } else if (s.dtype == DType::F32) {
                PLW_CUDA_CALL(cuda::flash_attention_backward(
                    ptr<float>(dq), ptr<float>(dk), ptr<float>(dv), ptr<const float>(dout), ptr<const float>(out), l,
                    ptr<const float>(q), ptr<const float>(k), ptr<const float>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs,
                    qs, kvs));
            } else {
                PLW_CUDA_CALL(cuda::flash_attention_backward(
                    ptr<bf16>(dq), ptr<bf16>(dk), ptr<bf16>(dv), ptr<const bf16>(dout), ptr<const bf16>(out), l,
                    ptr<const bf16>(q), ptr<const bf16>(k), ptr<const bf16>(v), seg, s.B, s.T, s.NH, s.NKV, s.hs, qs,
                    kvs));
            }
        }, nullptr);
        job->use(dq, true, "dq");
        job->use(dk, true, "dk");
        job->use(dv, true, "dv");
        job->use(dout, false, "dout");
        job->use(out, false, "out");
        job->use(lse, false, "lse");
        job->use(q, false, "q");
        job->use(k, false, "k");
        job->use(v, false, "v");
        if (segments) job->use(segments, false, "segments");
        job->Queue();
        return job->promise();
    });
}

}  // namespace plw::binding
