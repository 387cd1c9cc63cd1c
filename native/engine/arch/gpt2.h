// GPT-2 (GPT2LMHeadModel): learned positions, pre-LayerNorm blocks, Conv1D weights stored
// (in, out), fused q|k|v projection, GELU (tanh), the LM head tied to the token table.
// Shapes: B batch, T time, N = B*T, C channels, NH heads, hs = C/NH, V vocabulary,
// Vp rows of the stored token table (>= V, a backend trait), L layers.
//
// Conventions (llm.c's): every parameter gradient accumulates (+=) across micro-batches until
// the optimizer step zeroes it; activation gradients live in a few reused buffers that are
// zeroed right before the op that accumulates into them; the residual-stream gradient is one
// buffer (dres) that flows backward through the layers, each op adding into it.
// LayerNorm and the embedding read the f32 masters (p); the GEMMs read the working copy (w).
// Every linear layer is a Proj (projection.h): base weight, bias, and a LoRA adapter if targeted.
// Recomputation (spec.recompute, spec.h): fused attention keeps lse instead of att; Block
// keeps each layer's res3 only, all other activations are one set shared by the layers that
// the backward refills by running the layer's forward again.
#pragma once
#include <string>
#include <vector>

#include "../engine.h"
#include "../projection.h"

namespace plw::engine {

template <typename BK, typename Act>
class Gpt2 {
    using Table = ParamTable<BK, Act>;
    static constexpr WeightLayout kConv1D = WeightLayout::InOut;

    struct Layer {  // table entries
        int ln1w, ln1b, ln2w, ln2b;
        Proj qkv, attproj, fc, fcproj;
    };
    struct Acts {  // kept for the backward (mean and rstd stay f32)
        Act* ln1;       // (N, C)
        float* ln1_mean;  // (N)
        float* ln1_rstd;  // (N)
        Act* qkv;       // (N, 3C)  rows [q | k | v]
        Act* atty;      // (N, C)
        Act* att;       // (B, NH, T, T)  probabilities (unfused attention only)
        float* lse;     // (B, NH, T)     log-sum-exp of each query row (fused attention only)
        Act* attproj;   // (N, C)
        Act* res2;      // (N, C)
        Act* ln2;       // (N, C)
        float* ln2_mean;  // (N)
        float* ln2_rstd;  // (N)
        Act* fch;       // (N, 4C)
        Act* fch_gelu;  // (N, 4C)
        Act* fcproj;    // (N, C)
        Act* res3;      // (N, C)  the block's output
    };

public:
    static void validate(const ModelSpec& s) {
        PLW_CHECK(s.hidden > 0 && s.layers > 0 && s.heads > 0 && s.vocab_size > 0 && s.max_positions > 0,
                  "GPT-2 config needs positive n_embd, n_layer, n_head, vocab_size and n_positions");
        PLW_CHECK(s.hidden % s.heads == 0, "n_embd (" << s.hidden << ") must be a multiple of n_head (" << s.heads << ")");
        PLW_CHECK(s.kv_heads == s.heads && s.head_dim == s.hidden / s.heads && s.intermediate == 4 * s.hidden,
                  "GPT-2 has kv_heads = n_head, head_dim = n_embd / n_head and a 4 n_embd MLP");
    }

    Gpt2(const ModelSpec& s, Table& t, LoraSet<BK, Act>& lora) : s_(s), t_(t), lin_{t, lora, kConv1D} {
        const int64_t C = s.hidden, V = s.vocab_size;
        const int c = s.hidden;
        const double proj_std = 0.02 / std::sqrt(2.0 * s.layers);
        // The embedding tables keep an f32 master even when frozen: the embedding reads it.
        auto weight = [&](std::string n, std::vector<int64_t> shape, double std = 0.02, size_t stored = 0) {
            return t.add({std::move(n), std::move(shape), true, Init::Normal, std, stored, true, true});
        };
        auto vec = [&](std::string n, int64_t len, Init init) { return t.add({std::move(n), {len}, false, init}); };
        wte_ = weight("wte.weight", {V, C}, 0.02, static_cast<size_t>(BK::padded_vocab(s.vocab_size)) * C);
        wpe_ = weight("wpe.weight", {s.max_positions, C});
        for (int l = 0; l < s.layers; l++) {
            const std::string h = "h." + std::to_string(l) + ".";
            Layer o;
            o.ln1w = vec(h + "ln_1.weight", C, Init::Ones);
            o.ln1b = vec(h + "ln_1.bias", C, Init::Zeros);
            o.qkv = lin_.add(h + "attn.c_attn", c, 3 * c, 0.02, true);
            o.attproj = lin_.add(h + "attn.c_proj", c, c, proj_std, true);
            o.ln2w = vec(h + "ln_2.weight", C, Init::Ones);
            o.ln2b = vec(h + "ln_2.bias", C, Init::Zeros);
            o.fc = lin_.add(h + "mlp.c_fc", c, 4 * c, 0.02, true);
            o.fcproj = lin_.add(h + "mlp.c_proj", 4 * c, c, proj_std, true);
            layers_.push_back(o);
        }
        lnfw_ = vec("ln_f.weight", C, Init::Ones);
        lnfb_ = vec("ln_f.bias", C, Init::Zeros);
    }

    std::string describe() const {
        return "GPT-2 (" + std::to_string(s_.layers) + " layers, " + std::to_string(s_.hidden) + " channels)";
    }
    int head_entry() const { return wte_; }
    int kv_width() const { return s_.hidden; }
    const Act* hidden() const { return lnf_; }

    // Whether attention runs fused (keeps lse, not att) for this spec and backend.
    bool fused_attention() const {
        return s_.recompute != Recompute::None && BK::fused_attention_supported(s_.hidden / s_.heads);
    }

    void carve(Arena<BK>& a, BatchShape max) {
        const size_t C = s_.hidden, NH = s_.heads, B = max.B, T = max.T, N = B * T;
        constexpr auto act = &MemoryReport::activations;
        fused_ = fused_attention();
        block_ = s_.recompute == Recompute::Block;
        encoded_ = a.template take<Act>(N * C, act);
        acts_.clear();
        for (int l = 0; l < s_.layers; l++) {
            if (block_ && l > 0) {  // layer 0's set, shared; only the block's output is its own
                Acts x = acts_[0];
                x.res3 = a.template take<Act>(N * C, act);
                acts_.push_back(x);
                continue;
            }
            Acts x{};
            x.ln1 = a.template take<Act>(N * C, act);
            x.ln1_mean = a.template take<float>(N, act);
            x.ln1_rstd = a.template take<float>(N, act);
            x.qkv = a.template take<Act>(N * 3 * C, act);
            x.atty = a.template take<Act>(N * C, act);
            if (fused_) x.lse = a.template take<float>(B * NH * T, act);
            else x.att = a.template take<Act>(B * NH * T * T, act);
            x.attproj = a.template take<Act>(N * C, act);
            x.res2 = a.template take<Act>(N * C, act);
            x.ln2 = a.template take<Act>(N * C, act);
            x.ln2_mean = a.template take<float>(N, act);
            x.ln2_rstd = a.template take<float>(N, act);
            x.fch = a.template take<Act>(N * 4 * C, act);
            x.fch_gelu = a.template take<Act>(N * 4 * C, act);
            x.fcproj = a.template take<Act>(N * C, act);
            x.res3 = a.template take<Act>(N * C, act);
            acts_.push_back(x);
        }
        lnf_ = a.template take<Act>(N * C, act);
        lnf_mean_ = a.template take<float>(N, act);
        lnf_rstd_ = a.template take<float>(N, act);
        dres_ = a.template take<Act>(N * C, act);
        dbuf_ = a.template take<Act>(N * C, act);
        dqkv_ = a.template take<Act>(N * 3 * C, act);
        dfch_ = a.template take<Act>(N * 4 * C, act);
        dfch_gelu_ = a.template take<Act>(N * 4 * C, act);
    }

    // cache: when given (generation's prefill, one row), each layer's K and V go into it as the
    // layer is computed (with Block recomputation its qkv is overwritten by the next layer).
    void forward(const Inputs& in, KvCache* cache = nullptr) {
        const int N = in.N, C = s_.hidden;
        BK::embedding_forward(encoded_, in.tokens, in.positions, P(wte_), P(wpe_), N, C);
        const Act* x = encoded_;
        for (int l = 0; l < s_.layers; l++) {
            forward_layer(in, l, x);
            if (cache) store_kv(l, in.T, *cache);
            x = acts_[l].res3;
        }
        BK::layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, x, P(lnfw_), P(lnfb_), N, C);
    }

    // dlnf: the head's gradient w.r.t. the final LayerNorm's output (N, C).
    void backward(const Inputs& in, const Act* dlnf) {
        const int B = in.B, T = in.T, N = in.N, C = s_.hidden, NH = s_.heads, hs = C / NH;
        const size_t NC = static_cast<size_t>(N) * C;
        BK::zero(dres_, NC * sizeof(Act));
        BK::layernorm_backward(dres_, GD(lnfw_, 0), GD(lnfb_, 1), dlnf, acts_.back().res3, P(lnfw_), lnf_mean_, lnf_rstd_, N, C);
        for (int l = s_.layers - 1; l >= 0; l--) {
            const Layer& o = layers_[l];
            const Acts& a = acts_[l];
            const Act* x_in = l == 0 ? encoded_ : acts_[l - 1].res3;
            if (block_ && l != s_.layers - 1) forward_layer(in, l, x_in);  // the shared set holds the last layer's
            // res3 = res2 + fcproj: dres is d(fcproj) and flows on to res2.
            BK::zero(dfch_gelu_, 4 * NC * sizeof(Act));
            lin_.backward(dfch_gelu_, dres_, a.fch_gelu, o.fcproj, N, 4 * C, C);
            BK::zero(dfch_, 4 * NC * sizeof(Act));
            BK::gelu_backward(dfch_, a.fch, dfch_gelu_, 4 * NC);
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln2)
            lin_.backward(dbuf_, dfch_, a.ln2, o.fc, N, C, 4 * C);
            BK::layernorm_backward(dres_, GD(o.ln2w, 0), GD(o.ln2b, 1), dbuf_, a.res2, P(o.ln2w), a.ln2_mean, a.ln2_rstd, N, C);
            // res2 = x_in + attproj: dres is now d(res2) = d(attproj), and flows on to x_in.
            BK::zero(dbuf_, NC * sizeof(Act));  // d(atty)
            lin_.backward(dbuf_, dres_, a.atty, o.attproj, N, C, C);
            BK::zero(dqkv_, 3 * NC * sizeof(Act));
            if (fused_) {
                BK::flash_attention_backward(dqkv_, dqkv_ + C, dqkv_ + 2 * C, dbuf_, a.atty, a.lse, a.qkv, a.qkv + C, a.qkv + 2 * C,
                                             in.segments, B, T, NH, NH, hs, 3 * C, 3 * C);
            } else {
                BK::attention_backward(dqkv_, dqkv_ + C, dqkv_ + 2 * C, dbuf_, a.qkv, a.qkv + C, a.qkv + 2 * C, a.att,
                                       in.segments, B, T, NH, NH, hs, 3 * C, 3 * C);
            }
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln1)
            lin_.backward(dbuf_, dqkv_, a.ln1, o.qkv, N, C, 3 * C);
            BK::layernorm_backward(dres_, GD(o.ln1w, 0), GD(o.ln1b, 1), dbuf_, x_in, P(o.ln1w), a.ln1_mean, a.ln1_rstd, N, C);
        }
        if (G(wte_)) BK::embedding_backward(G(wte_), G(wpe_), dres_, in.tokens, in.positions, N, C);  // frozen under LoRA
    }

    // ------------------------------------------------------------------ generation (f32, masters)
    void carve_decode(Arena<BK>& a) {
        const size_t R = kDecodeRows, C = s_.hidden;
        constexpr auto act = &MemoryReport::activations;
        d_.x = a.template take<float>(R * C, act);
        d_.ln = a.template take<float>(R * C, act);
        d_.mean = a.template take<float>(R, act);
        d_.rstd = a.template take<float>(R, act);
        d_.qkv = a.template take<float>(R * 3 * C, act);
        d_.atty = a.template take<float>(R * C, act);
        d_.tmp = a.template take<float>(R * C, act);
        d_.res = a.template take<float>(R * C, act);
        d_.fch = a.template take<float>(R * 4 * C, act);
        d_.fch_gelu = a.template take<float>(R * 4 * C, act);
    }

    // The forward of in.n new tokens over the cache: their K and V join it at rows in.pos..,
    // each row attends to the cache up to itself; out (C) = the final norm of the last row.
    // Mirrors forward() op for op, in f32 on the masters.
    void decode_rows(const DecodeInputs& in, KvCache& cache, float* out) {
        const int n = in.n, C = s_.hidden, NH = s_.heads, hs = C / NH;
        Dec& d = d_;
        BK::embedding_forward(d.x, in.token, in.position, P(wte_), P(wpe_), n, C);
        for (int l = 0; l < s_.layers; l++) {
            const Layer& o = layers_[l];
            float* kc = cache.k_layer(l);
            float* vc = cache.v_layer(l);
            BK::layernorm_forward(d.ln, d.mean, d.rstd, d.x, P(o.ln1w), P(o.ln1b), n, C);
            lin_.decode(d.qkv, d.ln, o.qkv, n, C, 3 * C);
            for (int i = 0; i < n; i++) {  // each row's K and V (parts 1 and 2 of its qkv row) into the cache
                const float* row = d.qkv + static_cast<size_t>(i) * 3 * C;
                BK::copy(kc + static_cast<size_t>(in.pos + i) * C, row + C, sizeof(float) * C);
                BK::copy(vc + static_cast<size_t>(in.pos + i) * C, row + 2 * C, sizeof(float) * C);
            }
            for (int i = 0; i < n; i++)  // row i sees the cache up to its own position
                BK::attention_decode_forward(d.atty + static_cast<size_t>(i) * C, d.qkv + static_cast<size_t>(i) * 3 * C,
                                             kc, vc, in.pos + i + 1, NH, NH, hs);
            lin_.decode(d.tmp, d.atty, o.attproj, n, C, C);
            BK::residual_forward(d.res, d.x, d.tmp, static_cast<size_t>(n) * C);
            BK::layernorm_forward(d.ln, d.mean, d.rstd, d.res, P(o.ln2w), P(o.ln2b), n, C);
            lin_.decode(d.fch, d.ln, o.fc, n, C, 4 * C);
            BK::gelu_forward(d.fch_gelu, d.fch, static_cast<size_t>(n) * 4 * C);
            lin_.decode(d.tmp, d.fch_gelu, o.fcproj, n, 4 * C, C);
            BK::residual_forward(d.x, d.res, d.tmp, static_cast<size_t>(n) * C);
        }
        BK::layernorm_forward(out, d.mean, d.rstd, d.x + static_cast<size_t>(n - 1) * C, P(lnfw_), P(lnfb_), 1, C);
    }

private:
    // Layer l's forward from its input x into acts_[l] (the shared set under Block).
    void forward_layer(const Inputs& in, int l, const Act* x) {
        const int B = in.B, T = in.T, N = in.N, C = s_.hidden, NH = s_.heads, hs = C / NH;
        const Layer& o = layers_[l];
        const Acts& a = acts_[l];
        BK::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, P(o.ln1w), P(o.ln1b), N, C);
        lin_.forward(a.qkv, a.ln1, o.qkv, N, C, 3 * C);
        if (fused_) {
            BK::flash_attention_forward(a.atty, a.lse, a.qkv, a.qkv + C, a.qkv + 2 * C, in.segments, B, T, NH, NH, hs, 3 * C, 3 * C);
        } else {
            BK::attention_forward(a.atty, a.att, a.qkv, a.qkv + C, a.qkv + 2 * C, in.segments, B, T, NH, NH, hs, 3 * C, 3 * C);
        }
        lin_.forward(a.attproj, a.atty, o.attproj, N, C, C);
        BK::residual_forward(a.res2, x, a.attproj, static_cast<size_t>(N) * C);
        BK::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, P(o.ln2w), P(o.ln2b), N, C);
        lin_.forward(a.fch, a.ln2, o.fc, N, C, 4 * C);
        BK::gelu_forward(a.fch_gelu, a.fch, static_cast<size_t>(N) * 4 * C);
        lin_.forward(a.fcproj, a.fch_gelu, o.fcproj, N, 4 * C, C);
        BK::residual_forward(a.res3, a.res2, a.fcproj, static_cast<size_t>(N) * C);
    }

    // Layer l's K and V of rows 0..T-1 (one batch row) into the cache; qkv rows are [q | k | v].
    void store_kv(int l, int T, KvCache& cache) {
        const int C = s_.hidden;
        for (int t = 0; t < T; t++) {
            const Act* row = acts_[l].qkv + static_cast<size_t>(t) * 3 * C;
            to_f32(cache.k_layer(l) + static_cast<size_t>(t) * C, row + C, C);
            to_f32(cache.v_layer(l) + static_cast<size_t>(t) * C, row + 2 * C, C);
        }
    }

    float* P(int e) const { return t_.param(e); }
    float* G(int e) const { return t_.grad(e); }
    float* GD(int e, int slot) const { return t_.grad_or_discard(e, slot); }  // norms always write a gradient

    void to_f32(float* dst, const Act* src, size_t n) { device_to_f32<BK>(dst, src, n); }

    struct Dec {  // decode buffers for kDecodeRows rows, f32
        float *x, *ln, *mean, *rstd, *qkv, *atty, *tmp, *res, *fch, *fch_gelu;
    };

    ModelSpec s_;
    Table& t_;
    Projector<BK, Act> lin_;
    int wte_ = 0, wpe_ = 0, lnfw_ = 0, lnfb_ = 0;
    std::vector<Layer> layers_;
    Act* encoded_ = nullptr;  // (N, C) token + position embedding
    std::vector<Acts> acts_;
    Act* lnf_ = nullptr;  // (N, C)
    float *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr;  // (N)
    Act *dres_ = nullptr, *dbuf_ = nullptr;            // (N, C)
    Act* dqkv_ = nullptr;                              // (N, 3C)
    Act *dfch_ = nullptr, *dfch_gelu_ = nullptr;       // (N, 4C)
    bool fused_ = false;  // attention fused (lse kept, not att)
    bool block_ = false;  // Block recomputation: one shared activation set
    Dec d_{};
};

}  // namespace plw::engine
