// The Llama family (LlamaForCausalLM: Llama 2/3.x, TinyLlama, SmolLM2; Qwen2ForCausalLM;
// Qwen3ForCausalLM; MistralForCausalLM), as transformers computes it:
//   x = embed_tokens[ids]
//   per layer:  h = x + o_proj(attention(rope(q_proj(n1)), rope(k_proj(n1)), v_proj(n1)))
//                   with n1 = input_layernorm(x)        (Qwen3: q, k RMS-normed per head first)
//               x = h + down_proj(silu(gate_proj(n2)) * up_proj(n2)),  n2 = post_attention_layernorm(h)
//   hidden = norm(x); logits = hidden . lm_head^T  (lm_head = embed_tokens when tied)
// RMSNorm in f32 then times its weight; rotate-half RoPE with per-example positions
// (inv_freq = 1/theta^(2i/hs), optionally the "llama3" rescaling); grouped-query attention
// (KV head j serves query heads j*n_rep .. (j+1)*n_rep - 1), scale hs^-0.5; nn.Linear
// weights stored (out, in); optional q/k/v, o and MLP biases.
// Shapes: B batch, T time, N = B*T, C hidden, NH heads, NKV kv heads, hs head_dim,
// Q = NH*hs, KV = NKV*hs, F intermediate, V vocabulary, L layers.
//
// Conventions as in gpt2.h: parameter gradients +=; activation gradients in reused buffers
// zeroed before the op that accumulates into them; dres carries the residual gradient down.
// Norms and the embedding read the f32 masters (P); the GEMMs read the working copy. Every
// linear layer is a Proj (projection.h): base weight, optional bias, a LoRA adapter if targeted.
// Recomputation (spec.recompute) as in gpt2.h: fused attention keeps lse instead of att;
// Block keeps each layer's res3 and shares one set of the other activations.
#pragma once
#include <cmath>
#include <string>
#include <vector>

#include "../engine.h"
#include "../projection.h"

namespace plw::engine {

// RoPE's inverse frequencies (hs/2) in f32 as transformers forms them: 1/theta^(2i/hs), and
// with "llama3" scaling: wavelengths longer than original/low_freq_factor divided by factor,
// shorter than original/high_freq_factor kept, those between interpolated smoothly.
inline std::vector<float> rope_inv_freq(const ModelSpec& s) {
    const int half = s.head_dim / 2;
    std::vector<float> f(half);
    for (int i = 0; i < half; i++) {
        const float expo = static_cast<float>(2 * i) / static_cast<float>(s.head_dim);
        f[i] = 1.0f / std::pow(static_cast<float>(s.rope_theta), expo);
    }
    const RopeScaling& r = s.rope_scaling;
    if (!r.llama3) return f;
    const float factor = static_cast<float>(r.factor), low = static_cast<float>(r.low_freq_factor),
                high = static_cast<float>(r.high_freq_factor), old_len = static_cast<float>(r.original_max_positions);
    const float low_wavelen = old_len / low, high_wavelen = old_len / high;
    for (int i = 0; i < half; i++) {
        const float wavelen = 2.0f * static_cast<float>(M_PI) / f[i];
        if (wavelen > low_wavelen) {
            f[i] = f[i] / factor;
        } else if (wavelen >= high_wavelen) {
            const float smooth = (old_len / wavelen - low) / (high - low);
            f[i] = (1.0f - smooth) * f[i] / factor + smooth * f[i];
        }
    }
    return f;
}

template <typename BK, typename Act>
class Llama {
    using Table = ParamTable<BK, Act>;
    static constexpr WeightLayout kLinear = WeightLayout::OutIn;
    static constexpr int kNone = -1;

    struct Layer {  // table entries; kNone where the family has no such tensor
        int ln1, qnorm, knorm, ln2;
        Proj q, k, v, o, gate, up, down;
    };
    struct Acts {  // kept for the backward
        Act* ln1;        // (N, C)  input_layernorm(x)
        float* ln1_rstd; // (N)
        Act* q_lin;      // (N, Q)  q_proj output before the per-head norm (qk_norm only)
        Act* k_lin;      // (N, KV) (qk_norm only)
        float* q_rstd;   // (N*NH)  (qk_norm only)
        float* k_rstd;   // (N*NKV) (qk_norm only)
        Act* q;          // (N, Q)  after norm and RoPE: the attention's input
        Act* k;          // (N, KV)
        Act* v;          // (N, KV)
        Act* att;        // (B, NH, T, T) probabilities (unfused attention only)
        float* lse;      // (B, NH, T)    log-sum-exp of each query row (fused attention only)
        Act* atty;       // (N, Q)
        Act* attproj;    // (N, C)  o_proj output
        Act* res2;       // (N, C)  x + attention
        Act* ln2;        // (N, C)  post_attention_layernorm(res2)
        float* ln2_rstd; // (N)
        Act* gate;       // (N, F)
        Act* up;         // (N, F)
        Act* act;        // (N, F)  silu(gate) * up
        Act* mlp;        // (N, C)  down_proj output
        Act* res3;       // (N, C)  the block's output
    };

public:
    static void validate(const ModelSpec& s) {
        PLW_CHECK(s.hidden > 0 && s.layers > 0 && s.heads > 0 && s.kv_heads > 0 && s.head_dim > 0 && s.intermediate > 0 &&
                      s.vocab_size > 0 && s.max_positions > 0,
                  "a Llama-family config needs positive hidden_size, num_hidden_layers, num_attention_heads, "
                  "num_key_value_heads, head_dim, intermediate_size, vocab_size and max_position_embeddings");
        PLW_CHECK(s.heads % s.kv_heads == 0, "num_attention_heads (" << s.heads << ") must be a multiple of num_key_value_heads ("
                                                                     << s.kv_heads << ")");
        PLW_CHECK(s.head_dim % 2 == 0, "head_dim (" << s.head_dim << ") must be even for rotary embeddings");
        PLW_CHECK(s.norm_eps > 0 && s.rope_theta > 0, "rms_norm_eps and rope_theta must be positive");
        if (s.rope_scaling.llama3)
            PLW_CHECK(s.rope_scaling.factor > 0 && s.rope_scaling.high_freq_factor > s.rope_scaling.low_freq_factor &&
                          s.rope_scaling.original_max_positions > 0,
                      "llama3 rope_scaling needs factor > 0, high_freq_factor > low_freq_factor and original_max_position_embeddings > 0");
    }

    Llama(const ModelSpec& s, Table& t, LoraSet<BK, Act>& lora) : s_(s), t_(t), lin_{t, lora, kLinear} {
        const int64_t C = s.hidden, V = s.vocab_size, hs = s.head_dim;
        const int c = s.hidden, q = s.heads * s.head_dim, kv = s.kv_heads * s.head_dim, f = s.intermediate;
        // The token table keeps an f32 master even when frozen (the embedding reads it); so
        // does an untied head, which generation reads in f32.
        auto table = [&](std::string n, std::vector<int64_t> shape, size_t stored) {
            return t.add({std::move(n), std::move(shape), true, Init::Normal, 0.02, stored, true, true});
        };
        auto vec = [&](std::string n, int64_t len, Init init) { return t.add({std::move(n), {len}, false, init}); };
        const size_t stored_vocab = static_cast<size_t>(BK::padded_vocab(s.vocab_size)) * C;
        embed_ = table("model.embed_tokens.weight", {V, C}, stored_vocab);
        for (int l = 0; l < s.layers; l++) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            Layer o;
            o.ln1 = vec(p + "input_layernorm.weight", C, Init::Ones);
            o.q = lin_.add(p + "self_attn.q_proj", c, q, 0.02, s.qkv_bias);
            o.k = lin_.add(p + "self_attn.k_proj", c, kv, 0.02, s.qkv_bias);
            o.v = lin_.add(p + "self_attn.v_proj", c, kv, 0.02, s.qkv_bias);
            o.o = lin_.add(p + "self_attn.o_proj", q, c, 0.02, s.o_bias);
            o.qnorm = s.qk_norm ? vec(p + "self_attn.q_norm.weight", hs, Init::Ones) : kNone;
            o.knorm = s.qk_norm ? vec(p + "self_attn.k_norm.weight", hs, Init::Ones) : kNone;
            o.ln2 = vec(p + "post_attention_layernorm.weight", C, Init::Ones);
            o.gate = lin_.add(p + "mlp.gate_proj", c, f, 0.02, s.mlp_bias);
            o.up = lin_.add(p + "mlp.up_proj", c, f, 0.02, s.mlp_bias);
            o.down = lin_.add(p + "mlp.down_proj", f, c, 0.02, s.mlp_bias);
            layers_.push_back(o);
        }
        norm_ = vec("model.norm.weight", C, Init::Ones);
        head_ = s.tied_head ? embed_ : table("lm_head.weight", {V, C}, stored_vocab);
    }

    std::string describe() const {
        return "Llama-family model (" + std::to_string(s_.layers) + " layers, " + std::to_string(s_.hidden) + " hidden)";
    }
    int head_entry() const { return head_; }
    int kv_width() const { return s_.kv_heads * s_.head_dim; }
    const Act* hidden() const { return norm_out_; }

    // Whether attention runs fused (keeps lse, not att) for this spec and backend.
    bool fused_attention() const { return s_.recompute != Recompute::None && BK::fused_attention_supported(s_.head_dim); }

    void carve(Arena<BK>& a, BatchShape max) {
        const size_t B = max.B, T = max.T, N = B * T, C = s_.hidden, NH = s_.heads, NKV = s_.kv_heads,
                     Q = NH * s_.head_dim, KV = NKV * s_.head_dim, F = s_.intermediate;
        constexpr auto act = &MemoryReport::activations;
        fused_ = fused_attention();
        block_ = s_.recompute == Recompute::Block;
        embedded_ = a.template take<Act>(N * C, act);
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
            x.ln1_rstd = a.template take<float>(N, act);
            if (s_.qk_norm) {
                x.q_lin = a.template take<Act>(N * Q, act);
                x.k_lin = a.template take<Act>(N * KV, act);
                x.q_rstd = a.template take<float>(N * NH, act);
                x.k_rstd = a.template take<float>(N * NKV, act);
            }
            x.q = a.template take<Act>(N * Q, act);
            x.k = a.template take<Act>(N * KV, act);
            x.v = a.template take<Act>(N * KV, act);
            if (fused_) x.lse = a.template take<float>(B * NH * T, act);
            else x.att = a.template take<Act>(B * NH * T * T, act);
            x.atty = a.template take<Act>(N * Q, act);
            x.attproj = a.template take<Act>(N * C, act);
            x.res2 = a.template take<Act>(N * C, act);
            x.ln2 = a.template take<Act>(N * C, act);
            x.ln2_rstd = a.template take<float>(N, act);
            x.gate = a.template take<Act>(N * F, act);
            x.up = a.template take<Act>(N * F, act);
            x.act = a.template take<Act>(N * F, act);
            x.mlp = a.template take<Act>(N * C, act);
            x.res3 = a.template take<Act>(N * C, act);
            acts_.push_back(x);
        }
        norm_out_ = a.template take<Act>(N * C, act);
        norm_rstd_ = a.template take<float>(N, act);
        dres_ = a.template take<Act>(N * C, act);
        dbuf_ = a.template take<Act>(N * C, act);
        datty_ = a.template take<Act>(N * Q, act);
        dq_ = a.template take<Act>(N * Q, act);
        dk_ = a.template take<Act>(N * KV, act);
        dv_ = a.template take<Act>(N * KV, act);
        if (s_.qk_norm) {
            dq_lin_ = a.template take<Act>(N * Q, act);
            dk_lin_ = a.template take<Act>(N * KV, act);
        }
        dact_ = a.template take<Act>(N * F, act);
        dgate_ = a.template take<Act>(N * F, act);
        dup_ = a.template take<Act>(N * F, act);
        inv_freq_ = a.template take<float>(s_.head_dim / 2, act);
        if (inv_freq_) {
            const std::vector<float> f = rope_inv_freq(s_);
            BK::upload(inv_freq_, f.data(), f.size() * sizeof(float));
        }
    }

    // cache: when given (generation's prefill, one row), each layer's K (after RoPE) and V go
    // into it as the layer is computed (with Block recomputation the next layer overwrites them).
    void forward(const Inputs& in, KvCache* cache = nullptr) {
        const int N = in.N, C = s_.hidden;
        const float eps = static_cast<float>(s_.norm_eps);
        BK::embedding_forward(embedded_, in.tokens, nullptr, P(embed_), nullptr, N, C);
        const Act* x = embedded_;
        for (int l = 0; l < s_.layers; l++) {
            forward_layer(in, l, x);
            if (cache) store_kv(l, in.T, *cache);
            x = acts_[l].res3;
        }
        BK::rmsnorm_forward(norm_out_, norm_rstd_, x, P(norm_), N, C, eps);
    }

    // dnorm: the head's gradient w.r.t. the final norm's output (N, C).
    void backward(const Inputs& in, const Act* dnorm) {
        const int B = in.B, T = in.T, N = in.N, C = s_.hidden, NH = s_.heads, NKV = s_.kv_heads, hs = s_.head_dim,
                  Q = NH * hs, KV = NKV * hs, F = s_.intermediate;
        const size_t NC = static_cast<size_t>(N) * C, NF = static_cast<size_t>(N) * F, NQ = static_cast<size_t>(N) * Q,
                     NKVs = static_cast<size_t>(N) * KV;
        BK::zero(dres_, NC * sizeof(Act));
        BK::rmsnorm_backward(dres_, GD(norm_), dnorm, acts_.back().res3, P(norm_), norm_rstd_, N, C);
        for (int l = s_.layers - 1; l >= 0; l--) {
            const Layer& o = layers_[l];
            const Acts& a = acts_[l];
            const Act* x_in = l == 0 ? embedded_ : acts_[l - 1].res3;
            if (block_ && l != s_.layers - 1) forward_layer(in, l, x_in);  // the shared set holds the last layer's
            // res3 = res2 + mlp: dres is d(mlp) and flows on to res2.
            BK::zero(dact_, NF * sizeof(Act));
            lin_.backward(dact_, dres_, a.act, o.down, N, F, C);
            BK::zero(dgate_, NF * sizeof(Act));
            BK::zero(dup_, NF * sizeof(Act));
            BK::swiglu_backward(dgate_, dup_, dact_, a.gate, a.up, NF);
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln2), from both projections
            lin_.backward(dbuf_, dgate_, a.ln2, o.gate, N, C, F);
            lin_.backward(dbuf_, dup_, a.ln2, o.up, N, C, F);
            BK::rmsnorm_backward(dres_, GD(o.ln2), dbuf_, a.res2, P(o.ln2), a.ln2_rstd, N, C);
            // res2 = x_in + attproj: dres is now d(attproj), and flows on to x_in.
            BK::zero(datty_, NQ * sizeof(Act));
            lin_.backward(datty_, dres_, a.atty, o.o, N, Q, C);
            BK::zero(dq_, NQ * sizeof(Act));
            BK::zero(dk_, NKVs * sizeof(Act));
            BK::zero(dv_, NKVs * sizeof(Act));
            if (fused_) {
                BK::flash_attention_backward(dq_, dk_, dv_, datty_, a.atty, a.lse, a.q, a.k, a.v, in.segments, B, T, NH, NKV, hs,
                                             Q, KV);
            } else {
                BK::attention_backward(dq_, dk_, dv_, datty_, a.q, a.k, a.v, a.att, in.segments, B, T, NH, NKV, hs, Q, KV);
            }
            BK::rope_backward(dq_, in.positions, inv_freq_, N, NH, hs);
            BK::rope_backward(dk_, in.positions, inv_freq_, N, NKV, hs);
            const Act* dq = dq_;
            const Act* dk = dk_;
            if (s_.qk_norm) {
                BK::zero(dq_lin_, NQ * sizeof(Act));
                BK::zero(dk_lin_, NKVs * sizeof(Act));
                BK::rmsnorm_backward(dq_lin_, GD(o.qnorm), dq_, a.q_lin, P(o.qnorm), a.q_rstd, N * NH, hs);
                BK::rmsnorm_backward(dk_lin_, GD(o.knorm), dk_, a.k_lin, P(o.knorm), a.k_rstd, N * NKV, hs);
                dq = dq_lin_;
                dk = dk_lin_;
            }
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln1), from the three projections
            lin_.backward(dbuf_, dq, a.ln1, o.q, N, C, Q);
            lin_.backward(dbuf_, dk, a.ln1, o.k, N, C, KV);
            lin_.backward(dbuf_, dv_, a.ln1, o.v, N, C, KV);
            BK::rmsnorm_backward(dres_, GD(o.ln1), dbuf_, x_in, P(o.ln1), a.ln1_rstd, N, C);
        }
        if (G(embed_)) BK::embedding_backward(G(embed_), nullptr, dres_, in.tokens, nullptr, N, C);  // frozen under LoRA
    }

    // ------------------------------------------------------------------ generation (f32, masters)
    void carve_decode(Arena<BK>& a) {
        const size_t R = kDecodeRows, C = s_.hidden, NH = s_.heads, Q = NH * s_.head_dim, KV = kv_width(),
                     F = s_.intermediate;
        constexpr auto act = &MemoryReport::activations;
        d_.x = a.template take<float>(R * C, act);
        d_.ln = a.template take<float>(R * C, act);
        d_.rstd = a.template take<float>(R * NH, act);
        d_.q_lin = a.template take<float>(R * Q, act);
        d_.k_lin = a.template take<float>(R * KV, act);
        d_.q = a.template take<float>(R * Q, act);
        d_.atty = a.template take<float>(R * Q, act);
        d_.tmp = a.template take<float>(R * C, act);
        d_.res = a.template take<float>(R * C, act);
        d_.gate = a.template take<float>(R * F, act);
        d_.up = a.template take<float>(R * F, act);
        d_.act = a.template take<float>(R * F, act);
    }

    // The forward of in.n new tokens over the cache: their K and V join it at rows in.pos..,
    // each row attends to the cache up to itself; out (C) = the final norm of the last row.
    // Mirrors forward() op for op, in f32 on the masters.
    void decode_rows(const DecodeInputs& in, KvCache& cache, float* out) {
        const int n = in.n, C = s_.hidden, NH = s_.heads, NKV = s_.kv_heads, hs = s_.head_dim, Q = NH * hs,
                  KV = NKV * hs, F = s_.intermediate;
        const float eps = static_cast<float>(s_.norm_eps);
        Dec& d = d_;
        BK::embedding_forward(d.x, in.token, nullptr, P(embed_), nullptr, n, C);
        for (int l = 0; l < s_.layers; l++) {
            const Layer& o = layers_[l];
            float* kc = cache.k_layer(l);
            float* vc = cache.v_layer(l);
            float* krows = kc + static_cast<size_t>(in.pos) * KV;
            BK::rmsnorm_forward(d.ln, d.rstd, d.x, P(o.ln1), n, C, eps);
            if (s_.qk_norm) {
                lin_.decode(d.q_lin, d.ln, o.q, n, C, Q);
                lin_.decode(d.k_lin, d.ln, o.k, n, C, KV);
                BK::rmsnorm_forward(d.q, d.rstd, d.q_lin, P(o.qnorm), n * NH, hs, eps);
                BK::rmsnorm_forward(krows, d.rstd, d.k_lin, P(o.knorm), n * NKV, hs, eps);
            } else {
                lin_.decode(d.q, d.ln, o.q, n, C, Q);
                lin_.decode(krows, d.ln, o.k, n, C, KV);
            }
            lin_.decode(vc + static_cast<size_t>(in.pos) * KV, d.ln, o.v, n, C, KV);
            BK::rope_forward(d.q, in.position, inv_freq_, n, NH, hs);
            BK::rope_forward(krows, in.position, inv_freq_, n, NKV, hs);
            for (int i = 0; i < n; i++)  // row i sees the cache up to its own position
                BK::attention_decode_forward(d.atty + static_cast<size_t>(i) * Q, d.q + static_cast<size_t>(i) * Q, kc,
                                             vc, in.pos + i + 1, NH, NKV, hs);
            lin_.decode(d.tmp, d.atty, o.o, n, Q, C);
            BK::residual_forward(d.res, d.x, d.tmp, static_cast<size_t>(n) * C);
            BK::rmsnorm_forward(d.ln, d.rstd, d.res, P(o.ln2), n, C, eps);
            lin_.decode(d.gate, d.ln, o.gate, n, C, F);
            lin_.decode(d.up, d.ln, o.up, n, C, F);
            BK::swiglu_forward(d.act, d.gate, d.up, static_cast<size_t>(n) * F);
            lin_.decode(d.tmp, d.act, o.down, n, F, C);
            BK::residual_forward(d.x, d.res, d.tmp, static_cast<size_t>(n) * C);
        }
        BK::rmsnorm_forward(out, d.rstd, d.x + static_cast<size_t>(n - 1) * C, P(norm_), 1, C, eps);
    }

private:
    // Layer l's forward from its input x into acts_[l] (the shared set under Block).
    void forward_layer(const Inputs& in, int l, const Act* x) {
        const int B = in.B, T = in.T, N = in.N, C = s_.hidden, NH = s_.heads, NKV = s_.kv_heads, hs = s_.head_dim,
                  Q = NH * hs, KV = NKV * hs, F = s_.intermediate;
        const float eps = static_cast<float>(s_.norm_eps);
        const Layer& o = layers_[l];
        const Acts& a = acts_[l];
        BK::rmsnorm_forward(a.ln1, a.ln1_rstd, x, P(o.ln1), N, C, eps);
        if (s_.qk_norm) {
            lin_.forward(a.q_lin, a.ln1, o.q, N, C, Q);
            lin_.forward(a.k_lin, a.ln1, o.k, N, C, KV);
            BK::rmsnorm_forward(a.q, a.q_rstd, a.q_lin, P(o.qnorm), N * NH, hs, eps);
            BK::rmsnorm_forward(a.k, a.k_rstd, a.k_lin, P(o.knorm), N * NKV, hs, eps);
        } else {
            lin_.forward(a.q, a.ln1, o.q, N, C, Q);
            lin_.forward(a.k, a.ln1, o.k, N, C, KV);
        }
        lin_.forward(a.v, a.ln1, o.v, N, C, KV);
        BK::rope_forward(a.q, in.positions, inv_freq_, N, NH, hs);
        BK::rope_forward(a.k, in.positions, inv_freq_, N, NKV, hs);
        if (fused_) BK::flash_attention_forward(a.atty, a.lse, a.q, a.k, a.v, in.segments, B, T, NH, NKV, hs, Q, KV);
        else BK::attention_forward(a.atty, a.att, a.q, a.k, a.v, in.segments, B, T, NH, NKV, hs, Q, KV);
        lin_.forward(a.attproj, a.atty, o.o, N, Q, C);
        BK::residual_forward(a.res2, x, a.attproj, static_cast<size_t>(N) * C);
        BK::rmsnorm_forward(a.ln2, a.ln2_rstd, a.res2, P(o.ln2), N, C, eps);
        lin_.forward(a.gate, a.ln2, o.gate, N, C, F);
        lin_.forward(a.up, a.ln2, o.up, N, C, F);
        BK::swiglu_forward(a.act, a.gate, a.up, static_cast<size_t>(N) * F);
        lin_.forward(a.mlp, a.act, o.down, N, F, C);
        BK::residual_forward(a.res3, a.res2, a.mlp, static_cast<size_t>(N) * C);
    }

    // Layer l's K and V of rows 0..T-1 (one batch row) into the cache.
    void store_kv(int l, int T, KvCache& cache) {
        const size_t n = static_cast<size_t>(T) * kv_width();
        to_f32(cache.k_layer(l), acts_[l].k, n);
        to_f32(cache.v_layer(l), acts_[l].v, n);
    }

    float* P(int e) const { return t_.param(e); }
    float* G(int e) const { return t_.grad(e); }
    float* GD(int e) const { return t_.grad_or_discard(e); }  // the norms always write a weight gradient

    void to_f32(float* dst, const Act* src, size_t n) { device_to_f32<BK>(dst, src, n); }

    struct Dec {  // decode buffers for kDecodeRows rows, f32
        float *x, *ln, *rstd, *q_lin, *k_lin, *q, *atty, *tmp, *res, *gate, *up, *act;
    };

    ModelSpec s_;
    Table& t_;
    Projector<BK, Act> lin_;
    int embed_ = 0, norm_ = 0, head_ = 0;
    std::vector<Layer> layers_;
    Act* embedded_ = nullptr;  // (N, C)
    std::vector<Acts> acts_;
    Act* norm_out_ = nullptr;     // (N, C) the final norm's output
    float* norm_rstd_ = nullptr;  // (N)
    Act *dres_ = nullptr, *dbuf_ = nullptr;                  // (N, C)
    Act *datty_ = nullptr, *dq_ = nullptr, *dq_lin_ = nullptr;  // (N, Q)
    Act *dk_ = nullptr, *dv_ = nullptr, *dk_lin_ = nullptr;     // (N, KV)
    Act *dact_ = nullptr, *dgate_ = nullptr, *dup_ = nullptr;   // (N, F)
    float* inv_freq_ = nullptr;                                 // (hs/2) RoPE inverse frequencies
    bool fused_ = false;  // attention fused (lse kept, not att)
    bool block_ = false;  // Block recomputation: one shared activation set
    Dec d_{};
};

}  // namespace plw::engine
