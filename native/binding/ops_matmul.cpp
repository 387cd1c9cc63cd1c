// JS entry point of the CPU SGEMM (the CUDA matmul comes with the engine's cuBLASLt path).
//   matmul(out [M,N], a, b, transA, transB, alpha, beta): out = alpha * op(a) . op(b) + beta * out
// a is [M,K] (or [K,M] with transA), b is [K,N] (or [N,K] with transB); all float32.
#include "../cpu/matmul.h"
#include "args.h"
#include "job.h"
#include "ops.h"

namespace plw::binding {

Napi::Value Matmul(const Napi::CallbackInfo& info) {
    return guarded(info, "matmul", [&]() -> Napi::Value {
        Args a(info);
        Tensor* out = a.tensor(0, "out");
        Tensor* A = a.tensor(1, "a");
        Tensor* B = a.tensor(2, "b");
        const bool ta = a.boolean(3, "transA"), tb = a.boolean(4, "transB");
        const float alpha = static_cast<float>(a.number(5, "alpha"));
        const float beta = static_cast<float>(a.number(6, "beta"));
        for (auto [t, name] : std::initializer_list<std::pair<Tensor*, const char*>>{{out, "out"}, {A, "a"}, {B, "b"}}) {
            expect_dtype(t, name, DType::F32);
            expect_rank(t, name, 2, "(a matrix)");
            expect_same_device(out, "out", t, name);
        }
        if (out->device() != Device::CPU)
            throw ArgError("Expected tensors on cpu: matmul on cuda is not supported yet (it arrives with the engine)");
        const int M = static_cast<int>(out->shape()[0]), N = static_cast<int>(out->shape()[1]);
        const int K = static_cast<int>(ta ? A->shape()[0] : A->shape()[1]);
        expect_dim(A, "a", ta ? 1 : 0, M, "rows of out");
        expect_dim(B, "b", tb ? 1 : 0, K, "the inner dimension of a");
        expect_dim(B, "b", tb ? 0 : 1, N, "columns of out");
        const int lda = static_cast<int>(A->shape()[1]), ldb = static_cast<int>(B->shape()[1]);
        float* c = static_cast<float*>(out->data());
        const float* pa = static_cast<const float*>(A->data());
        const float* pb = static_cast<const float*>(B->data());
        auto* job = new Job(info.Env(), "matmul", [=] {
            cpu::sgemm(ta, tb, M, N, K, alpha, pa, lda, pb, ldb, beta, c, N);
        }, nullptr);
        job->use(A, false, "a");
        job->use(B, false, "b");
        job->use(out, true, "out");
        job->Queue();
        return job->promise();
    });
}

}  // namespace plw::binding
