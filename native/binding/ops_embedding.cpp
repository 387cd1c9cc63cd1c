// JS entry points of the embedding kernels.
//   embeddingForward(out [N,C] f32, tokens [N] i32, positions [N] i32, wte [V,C], wpe [T,C])
//   embeddingBackward(dwte [V,C], dwpe [T,C], dout [N,C], tokens, positions)   (accumulates)
// tokens/positions may have any shape with N elements (e.g. [B,T]); out/dout then hold
// N*C elements with C last.
#include "../cpu/embedding.h"
#include "../cuda/embedding.h"
#include "../cuda/runtime.h"
#include "args.h"
#include "cuda_guard.h"
#include "job.h"
#include "ops.h"

namespace plw::binding {

namespace {

struct EmbeddingArgs {
    Tensor *rows, *tokens, *positions, *wte, *wpe;  // rows = out or dout
    int N, C, V, T;
};

// Indices of the arguments differ between forward and backward; the checks do not.
EmbeddingArgs read_embedding(const Args& a, size_t i_rows, const char* rows_name, size_t i_tok,
                             size_t i_pos, size_t i_wte, const char* wte_name, size_t i_wpe,
                             const char* wpe_name) {
    EmbeddingArgs e{a.tensor(i_rows, rows_name), a.tensor(i_tok, "tokens"), a.tensor(i_pos, "positions"),
                    a.tensor(i_wte, wte_name), a.tensor(i_wpe, wpe_name), 0, 0, 0, 0};
    using Named = std::pair<Tensor*, const char*>;
    for (auto [t, name] : std::initializer_list<Named>{{e.rows, rows_name}, {e.wte, wte_name}, {e.wpe, wpe_name}}) {
        expect_dtype(t, name, DType::F32);
        expect_same_device(e.wte, wte_name, t, name);
    }
    expect_device_usable(e.wte, wte_name);
    expect_rank(e.wte, wte_name, 2, "[V, C]");
    expect_rank(e.wpe, wpe_name, 2, "[T, C]");
    e.V = static_cast<int>(e.wte->shape()[0]);
    e.C = static_cast<int>(e.wte->shape()[1]);
    e.T = static_cast<int>(e.wpe->shape()[0]);
    expect_dim(e.wpe, wpe_name, 1, e.C, "channels, as the token table");
    expect_dtype(e.tokens, "tokens", DType::I32);
    expect_dtype(e.positions, "positions", DType::I32);
    expect_same_device(e.wte, wte_name, e.tokens, "tokens");
    expect_same_device(e.wte, wte_name, e.positions, "positions");
    expect_same_shape(e.tokens, "tokens", e.positions, "positions");
    e.N = static_cast<int>(e.tokens->numel());
    const auto& rs = e.rows->shape();
    if (rs.empty() || rs.back() != e.C || e.rows->numel() != static_cast<int64_t>(e.N) * e.C)
        throw ArgError(std::string("Expected ") + std::to_string(e.N) + " x " + std::to_string(e.C) +
                       " elements with channels last (one row per token) for " + rows_name + " but received " +
                       e.rows->describe());
    return e;
}

void check_ids(Device d, const int32_t* ids, int64_t n, int32_t limit, const char* name, const char* table) {
    const int64_t bad = d == Device::CPU ? cpu::find_out_of_range(ids, n, limit)
                                         : PLW_CUDA_CALL(cuda::find_out_of_range(ids, n, limit));
    if (bad < 0) return;
    int32_t id = 0;
    if (d == Device::CPU) id = ids[bad];
    else PLW_CUDA_CALL(cuda::copy_to_host(&id, ids + bad, sizeof id));
    throw ValueError(std::string("Expected every id of ") + name + " to be in [0, " + std::to_string(limit) +
                     ") (rows of " + table + ") but " + name + "[" + std::to_string(bad) + "] = " + std::to_string(id));
}

}  // namespace

Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
    return guarded(info, "embeddingForward", [&]() -> Napi::Value {
        Args a(info);
        EmbeddingArgs e = read_embedding(a, 0, "out", 1, 2, 3, "wte", 4, "wpe");
        const Device d = e.wte->device();
        float* out = static_cast<float*>(e.rows->data());
        const int32_t* tok = static_cast<const int32_t*>(e.tokens->data());
        const int32_t* pos = static_cast<const int32_t*>(e.positions->data());
        const float* wte = static_cast<const float*>(e.wte->data());
        const float* wpe = static_cast<const float*>(e.wpe->data());
        auto* job = new Job(info.Env(), "embeddingForward", [=] {
            check_ids(d, tok, e.N, e.V, "tokens", "wte");
            check_ids(d, pos, e.N, e.T, "positions", "wpe");
            if (d == Device::CPU) cpu::embedding_forward(out, tok, pos, wte, wpe, e.N, e.C);
            else PLW_CUDA_CALL(cuda::embedding_forward(out, tok, pos, wte, wpe, e.N, e.C));
        }, nullptr);
        job->use(e.rows, true, "out");
        job->use(e.tokens, false, "tokens");
        job->use(e.positions, false, "positions");
        job->use(e.wte, false, "wte");
        job->use(e.wpe, false, "wpe");
        job->Queue();
        return job->promise();
    });
}

Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
    return guarded(info, "embeddingBackward", [&]() -> Napi::Value {
        Args a(info);
        EmbeddingArgs e = read_embedding(a, 2, "dout", 3, 4, 0, "dwte", 1, "dwpe");
        const Device d = e.wte->device();
        const float* dout = static_cast<const float*>(e.rows->data());
        const int32_t* tok = static_cast<const int32_t*>(e.tokens->data());
        const int32_t* pos = static_cast<const int32_t*>(e.positions->data());
        float* dwte = static_cast<float*>(e.wte->data());
        float* dwpe = static_cast<float*>(e.wpe->data());
        auto* job = new Job(info.Env(), "embeddingBackward", [=] {
            check_ids(d, tok, e.N, e.V, "tokens", "dwte");
            check_ids(d, pos, e.N, e.T, "positions", "dwpe");
            if (d == Device::CPU) cpu::embedding_backward(dwte, dwpe, dout, tok, pos, e.N, e.C);
            else PLW_CUDA_CALL(cuda::embedding_backward(dwte, dwpe, dout, tok, pos, e.N, e.C));
        }, nullptr);
        job->use(e.wte, true, "dwte");
        job->use(e.wpe, true, "dwpe");
        job->use(e.rows, false, "dout");
        job->use(e.tokens, false, "tokens");
        job->use(e.positions, false, "positions");
        job->Queue();
        return job->promise();
    });
}

}  // namespace plw::binding
