// GPT-2 on one backend: the arenas and the forward / backward / optimizer orchestration.
// Written once as a template over the backend (backend.h), instantiated for the CPU and,
// when built, for CUDA. Activation shapes use B (batch), T (time), C (channels),
// NH (heads), V (real vocabulary), Vp (rows of the stored token table), N = B*T.
//
// Precision: the template's Act is the element type of activations and activation gradients:
// float, or bf16 for mixed precision on CUDA. Parameters, gradients and AdamW moments are f32
// in both (the master copy); with bf16, a bf16 working copy of every parameter (wlp_, written
// by AdamW in the same pass) feeds the GEMMs, while LayerNorm and the embedding read the f32
// masters. Generation (decode) runs in f32 on the masters whatever the precision.
//
// Conventions (llm.c's): every parameter gradient accumulates (+=) across micro-batches until
// the optimizer step zeroes it; activation gradients live in a few reused buffers that are
// zeroed right before the op that accumulates into them; the residual-stream gradient is one
// buffer (dres) that flows backward through the layers, each op adding into it.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <type_traits>

#include "../common/check.h"
#include "backend.h"
#include "model.h"

namespace plw::engine {

namespace {

struct Entry {
    ParamInfo info;
    size_t offset;       // into the parameter arena (floats)
    size_t hf_numel;     // elements in the Hugging Face tensor
    size_t stored;       // elements stored (wte keeps Vp >= V rows)
};

struct LayerOffsets {
    size_t ln1w, ln1b, qkvw, qkvb, attprojw, attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb;
};

// Per-layer activations kept for the backward (mean and rstd stay f32).
template <typename Act>
struct LayerActs {
    Act *ln1, *qkv, *atty, *att, *attproj, *res2, *ln2, *fch, *fch_gelu, *fcproj, *res3;
    float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;
};

std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

template <typename BK, typename Act>
class GPT2 final : public Model {
    static constexpr bool kMixed = !std::is_same_v<Act, float>;

public:
    GPT2(const GPT2Config& cfg, BatchShape max) : cfg_(cfg), max_(max) {
        const int C = cfg.channels, L = cfg.num_layers;
        PLW_CHECK(C > 0 && L > 0 && cfg.num_heads > 0 && cfg.vocab_size > 0 && cfg.max_seq_len > 0,
                  "GPT-2 config needs positive n_embd, n_layer, n_head, vocab_size and n_positions");
        PLW_CHECK(C % cfg.num_heads == 0,
                  "n_embd (" << C << ") must be a multiple of n_head (" << cfg.num_heads << ")");
        PLW_CHECK(max.B > 0 && max.T > 0 && max.T <= cfg.max_seq_len,
                  "max batch needs B > 0 and 0 < T <= n_positions (" << cfg.max_seq_len << "), got B="
                                                                        << max.B << " T=" << max.T);
        // The CUDA kernels like rows of 128 floats; the CPU gains nothing from padding.
        Vp_ = std::string(BK::name) == "cuda" ? (cfg.vocab_size + 127) / 128 * 128 : cfg.vocab_size;
        build_layout();
        allocate();
    }

    ~GPT2() override {
        for (void* p : allocations_) BK::release(p);
    }

    const GPT2Config& config() const override { return cfg_; }
    const char* device() const override { return BK::name; }
    Precision precision() const override { return kMixed ? Precision::BF16 : Precision::F32; }
    BatchShape max_batch() const override { return max_; }
    MemoryReport memory() const override { return mem_; }

    std::vector<ParamInfo> parameters() const override {
        std::vector<ParamInfo> out;
        for (const Entry& e : entries_) out.push_back(e.info);
        return out;
    }

    void read(Buffer which, const std::string& name, float* out, size_t n) const override {
        const Entry& e = entry(name, n);
        BK::download(out, buffer(which) + e.offset, n * sizeof(float));
    }

    void write(Buffer which, const std::string& name, const float* in, size_t n) override {
        const Entry& e = entry(name, n);
        BK::upload(buffer(which) + e.offset, in, n * sizeof(float));
        if (which == Buffer::Param) refresh_working_copy(e);
    }

    int adam_step() const override { return adam_t_; }
    void set_adam_step(int t) override {
        PLW_CHECK(t >= 0, "AdamW step must be >= 0, got " << t);
        adam_t_ = t;
    }

    void init_random(uint64_t seed) override {
        std::mt19937_64 rng(seed);
        const double proj_std = 0.02 / std::sqrt(2.0 * cfg_.num_layers);
        for (const Entry& e : entries_) {
            const std::string& n = e.info.name;
            std::vector<float> host(e.hf_numel);
            const bool is_bias = ends_with(n, ".bias");
            const bool is_ln_weight = ends_with(n, "ln_1.weight") || ends_with(n, "ln_2.weight") || n == "ln_f.weight";
            if (is_bias) {
                std::fill(host.begin(), host.end(), 0.0f);
            } else if (is_ln_weight) {
                std::fill(host.begin(), host.end(), 1.0f);
            } else {
                const bool proj = ends_with(n, "attn.c_proj.weight") || ends_with(n, "mlp.c_proj.weight");
                fill_normal(host, proj ? proj_std : 0.02, rng);
            }
            BK::upload(params_ + e.offset, host.data(), host.size() * sizeof(float));
            refresh_working_copy(e);
        }
    }

    LossReport accumulate(const StepBatch& batch, double normalizer) override {
        PLW_CHECK(normalizer > 0 && std::isfinite(normalizer),
                  "the normalizer (sum of weights over the optimizer step) must be positive and finite, got "
                      << normalizer);
        Inputs in = upload_batch(batch, /*eval=*/false);
        forward(in);
        const int N = in.N, C = cfg_.channels, V = cfg_.vocab_size;
        BK::fused_head_cross_entropy_backward(losses_, dlnf_, grads_ + wte_, scratch(), lnf_,
                                              wlp_ + wte_, targets_, weights_,
                                              static_cast<float>(1.0 / normalizer), N, C, V, chunk_);
        backward(in);
        return report(batch, in.N, /*training=*/true);
    }

    StepResult optimizer_step(const OptimizerSettings& opt) override {
        const double norm = std::sqrt(BK::grad_sum_squares(grads_, num_params_));
        cpu::AdamWParams hp{};
        hp.lr = opt.lr;
        hp.beta1 = opt.beta1;
        hp.beta2 = opt.beta2;
        hp.eps = opt.eps;
        hp.step = ++adam_t_;
        hp.grad_scale = cpu::clip_coefficient(norm, opt.max_grad_norm);
        for (const Entry& e : entries_) {
            hp.weight_decay = e.info.decay ? opt.weight_decay : 0.0;
            if constexpr (kMixed) {
                BK::adamw_update(params_ + e.offset, m_ + e.offset, v_ + e.offset, grads_ + e.offset, e.stored, hp,
                                 wlp_ + e.offset);
            } else {
                BK::adamw_update(params_ + e.offset, m_ + e.offset, v_ + e.offset, grads_ + e.offset, e.stored, hp);
            }
        }
        zero_grad();
        BK::sync();
        return {norm, hp.grad_scale, adam_t_};
    }

    void zero_grad() override { BK::zero(grads_, num_params_ * sizeof(float)); }

    GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& o) override {
        const int V = cfg_.vocab_size, S = cfg_.max_seq_len;
        PLW_CHECK(!prompt.empty(), "generate needs a prompt of at least one token");
        PLW_CHECK(static_cast<int>(prompt.size()) < S,
                  "the prompt has " << prompt.size() << " tokens; n_positions (" << S << ") leaves no room to generate");
        for (size_t i = 0; i < prompt.size(); i++)
            PLW_CHECK(prompt[i] >= 0 && prompt[i] < V, "prompt[" << i << "] = " << prompt[i] << " is outside the vocabulary [0, " << V << ")");
        PLW_CHECK(o.max_new_tokens >= 0, "max_new_tokens must be >= 0");
        std::vector<int32_t> seq = prompt;
        std::vector<float> logits(V);
        std::mt19937_64 rng(o.seed);
        GenerateResult r;
        r.stop_reason = "max_tokens";
        if (o.max_new_tokens == 0) return r;
        if (o.use_cache) prefill(seq, logits.data());
        else full_logits(seq, logits.data());
        while (true) {
            const int32_t tok = sample(logits, o, rng);
            if (std::find(o.stop_ids.begin(), o.stop_ids.end(), tok) != o.stop_ids.end()) {
                r.stop_reason = "stop";
                break;
            }
            r.tokens.push_back(tok);
            seq.push_back(tok);
            if (static_cast<int>(r.tokens.size()) >= o.max_new_tokens) break;
            if (static_cast<int>(seq.size()) >= S) {
                r.stop_reason = "length";
                break;
            }
            if (o.use_cache) decode_step(tok, static_cast<int>(seq.size()) - 1, logits.data());
            else full_logits(seq, logits.data());
        }
        return r;
    }



    LossReport evaluate(const StepBatch& batch) override {
        Inputs in = upload_batch(batch, /*eval=*/true);
        forward(in);
        BK::fused_head_cross_entropy_forward(losses_, scratch(), lnf_, wlp_ + wte_, targets_,
                                             eval_weights_, in.N, cfg_.channels, cfg_.vocab_size, chunk_);
        return report(batch, in.N, /*training=*/false);
    }

    void logits(const StepBatch& batch, float* out) override {
        Inputs in = upload_batch(batch, /*eval=*/true);
        forward(in);
        const int N = in.N, C = cfg_.channels, V = cfg_.vocab_size;
        // logits (N,V) = lnf (N,C) . wte[:V]^T, on the host (a test and scoring path), with the
        // f32 master wte.
        std::vector<float> lnf(static_cast<size_t>(N) * C), wte(static_cast<size_t>(V) * C);
        download_f32(lnf.data(), lnf_, lnf.size());
        BK::download(wte.data(), params_ + wte_, wte.size() * sizeof(float));
        cpu::sgemm(false, true, N, V, C, 1.0f, lnf.data(), C, wte.data(), C, 0.0f, out, V);
    }

private:
    // ------------------------------------------------------------------ generation
    // Single-row buffers and the KV cache (L x n_positions x C each for K and V), allocated
    // on the first generate() call and kept: the training arenas are sized for batches.
    struct DecodeArena {
        float *x = nullptr, *ln = nullptr, *mean = nullptr, *rstd = nullptr, *qkv = nullptr, *atty = nullptr,
              *tmp = nullptr, *res = nullptr, *fch = nullptr, *fch_gelu = nullptr, *logits = nullptr;
        float *kcache = nullptr, *vcache = nullptr;
        int32_t *tok = nullptr, *pos = nullptr;
    };

    void ensure_decode_arena() {
        if (dec_.x) return;
        const size_t C = cfg_.channels, L = cfg_.num_layers, S = cfg_.max_seq_len, V = cfg_.vocab_size;
        size_t* bucket = &mem_.activations;
        dec_.x = take<float>(C, bucket, false);
        dec_.ln = take<float>(C, bucket, false);
        dec_.mean = take<float>(1, bucket, false);
        dec_.rstd = take<float>(1, bucket, false);
        dec_.qkv = take<float>(3 * C, bucket, false);
        dec_.atty = take<float>(C, bucket, false);
        dec_.tmp = take<float>(C, bucket, false);
        dec_.res = take<float>(C, bucket, false);
        dec_.fch = take<float>(4 * C, bucket, false);
        dec_.fch_gelu = take<float>(4 * C, bucket, false);
        dec_.logits = take<float>(V, bucket, false);
        dec_.kcache = take<float>(L * S * C, bucket, false);
        dec_.vcache = take<float>(L * S * C, bucket, false);
        dec_.tok = take<int32_t>(1, bucket, false);
        dec_.pos = take<int32_t>(1, bucket, false);
    }

    float* kc(int l) const { return dec_.kcache + static_cast<size_t>(l) * cfg_.max_seq_len * cfg_.channels; }
    float* vc(int l) const { return dec_.vcache + static_cast<size_t>(l) * cfg_.max_seq_len * cfg_.channels; }

    static StepBatch single_row(const std::vector<int32_t>& seq, std::vector<int32_t>* zeros, std::vector<float>* w) {
        zeros->assign(seq.size(), 0);
        w->assign(seq.size(), 0.0f);
        StepBatch b;
        b.B = 1;
        b.T = static_cast<int>(seq.size());
        b.tokens = seq.data();
        b.targets = zeros->data();
        b.weights = w->data();
        return b;
    }

    // Logits of the last position by a full forward of the sequence (no cache).
    void full_logits(const std::vector<int32_t>& seq, float* out) {
        PLW_CHECK(static_cast<int>(seq.size()) <= max_.T,
                  "generation without the KV cache needs the sequence (" << seq.size()
                      << " tokens) to fit the model's maxSeqLen (" << max_.T << ")");
        ensure_decode_arena();
        std::vector<int32_t> zeros;
        std::vector<float> w;
        Inputs in = upload_batch(single_row(seq, &zeros, &w), /*eval=*/true);
        forward(in);
        const size_t last = static_cast<size_t>(in.N - 1) * cfg_.channels;
        to_f32(dec_.ln, lnf_ + last, cfg_.channels);
        BK::head_logits_forward(dec_.logits, dec_.ln, params_ + wte_, cfg_.channels, cfg_.vocab_size);
        BK::download(out, dec_.logits, sizeof(float) * cfg_.vocab_size);
    }

    // Fills the KV cache with the prompt and returns the logits of its last position: one
    // batched forward when the prompt fits the activation arena, else token by token.
    void prefill(const std::vector<int32_t>& seq, float* out) {
        ensure_decode_arena();
        const int T = static_cast<int>(seq.size()), C = cfg_.channels;
        if (T > max_.T) {
            for (int t = 0; t < T; t++) decode_step(seq[t], t, out);
            return;
        }
        std::vector<int32_t> zeros;
        std::vector<float> w;
        Inputs in = upload_batch(single_row(seq, &zeros, &w), /*eval=*/true);
        forward(in);
        for (int l = 0; l < cfg_.num_layers; l++) {
            for (int t = 0; t < T; t++) {  // qkv rows are [q | k | v]
                const Act* row = acts_[l].qkv + static_cast<size_t>(t) * 3 * C;
                to_f32(kc(l) + static_cast<size_t>(t) * C, row + C, C);
                to_f32(vc(l) + static_cast<size_t>(t) * C, row + 2 * C, C);
            }
        }
        to_f32(dec_.ln, lnf_ + static_cast<size_t>(T - 1) * C, C);
        BK::head_logits_forward(dec_.logits, dec_.ln, params_ + wte_, C, cfg_.vocab_size);
        BK::download(out, dec_.logits, sizeof(float) * cfg_.vocab_size);
    }

    // The forward of one new token at position pos, attending over the cache; its K and V
    // join the cache. Mirrors forward() op for op with N = 1.
    void decode_step(int32_t token, int pos, float* out) {
        const int C = cfg_.channels, NH = cfg_.num_heads;
        float* p = params_;
        DecodeArena& d = dec_;
        BK::upload(d.tok, &token, sizeof token);
        BK::upload(d.pos, &pos, sizeof pos);
        BK::embedding_forward(d.x, d.tok, d.pos, p + wte_, p + wpe_, 1, C);
        for (int l = 0; l < cfg_.num_layers; l++) {
            const LayerOffsets& o = layers_[l];
            BK::layernorm_forward(d.ln, d.mean, d.rstd, d.x, p + o.ln1w, p + o.ln1b, 1, C);
            BK::linear_forward(d.qkv, d.ln, p + o.qkvw, p + o.qkvb, 1, C, 3 * C);
            BK::copy(kc(l) + static_cast<size_t>(pos) * C, d.qkv + C, sizeof(float) * C);
            BK::copy(vc(l) + static_cast<size_t>(pos) * C, d.qkv + 2 * C, sizeof(float) * C);
            BK::attention_decode_forward(d.atty, d.qkv, kc(l), vc(l), pos + 1, C, NH);
            BK::linear_forward(d.tmp, d.atty, p + o.attprojw, p + o.attprojb, 1, C, C);
            BK::residual_forward(d.res, d.x, d.tmp, C);
            BK::layernorm_forward(d.ln, d.mean, d.rstd, d.res, p + o.ln2w, p + o.ln2b, 1, C);
            BK::linear_forward(d.fch, d.ln, p + o.fcw, p + o.fcb, 1, C, 4 * C);
            BK::gelu_forward(d.fch_gelu, d.fch, static_cast<size_t>(4) * C);
            BK::linear_forward(d.tmp, d.fch_gelu, p + o.fcprojw, p + o.fcprojb, 1, 4 * C, C);
            BK::residual_forward(d.x, d.res, d.tmp, C);
        }
        BK::layernorm_forward(d.ln, d.mean, d.rstd, d.x, p + lnfw_, p + lnfb_, 1, C);
        BK::head_logits_forward(d.logits, d.ln, p + wte_, C, cfg_.vocab_size);
        BK::download(out, d.logits, sizeof(float) * cfg_.vocab_size);
    }

    // Greedy (temperature 0, ties to the lowest id), or temperature + top-k + top-p sampling
    // with a uniform from the seeded 64-bit stream.
    static int32_t sample(const std::vector<float>& logits, const GenerateOptions& o, std::mt19937_64& rng) {
        const int V = static_cast<int>(logits.size());
        if (!(o.temperature > 0.0f)) {
            return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        }
        std::vector<int32_t> ids(V);
        for (int i = 0; i < V; i++) ids[i] = i;
        std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
        int keep = o.top_k > 0 ? std::min(o.top_k, V) : V;
        std::vector<double> prob(keep);
        const double m = logits[ids[0]];
        double z = 0;
        for (int i = 0; i < keep; i++) z += prob[i] = std::exp((logits[ids[i]] - m) / o.temperature);
        if (o.top_p < 1.0f) {
            double cum = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) {
                cum += prob[i] / z;
                if (cum >= o.top_p) {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
            z = 0;
            for (int i = 0; i < keep; i++) z += prob[i];
        }
        const double u = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0) * z;
        double acc = 0;
        for (int i = 0; i < keep; i++) {
            acc += prob[i];
            if (u < acc) return ids[i];
        }
        return ids[keep - 1];
    }

    float* scratch() const { return reinterpret_cast<float*>(head_scratch_); }

    // The bf16 working copy follows the f32 master after every write that is not AdamW's.
    void refresh_working_copy(const Entry& e) {
        if constexpr (kMixed) BK::convert(wlp_ + e.offset, params_ + e.offset, e.stored);
    }

    // Device Act -> device f32 (a copy when Act is float).
    void to_f32(float* dst, const Act* src, size_t n) {
        if constexpr (kMixed) BK::convert(dst, src, n);
        else BK::copy(dst, src, n * sizeof(float));
    }

    // Device Act -> host f32.
    void download_f32(float* dst, const Act* src, size_t n) {
        if constexpr (kMixed) {
            std::vector<Act> tmp(n);
            BK::download(tmp.data(), src, n * sizeof(Act));
            cpu::convert(dst, tmp.data(), n);
        } else {
            BK::download(dst, src, n * sizeof(float));
        }
    }

    struct Inputs {
        int B, T, N;
        const int32_t* segments;  // device pointer or null
    };

    static bool ends_with(const std::string& s, const char* suffix) {
        const size_t n = std::char_traits<char>::length(suffix);
        return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
    }

    static void fill_normal(std::vector<float>& out, double std, std::mt19937_64& rng) {
        // Box-Muller on the raw 64-bit stream: the same numbers on every platform
        // (std::normal_distribution is implementation-defined).
        const double two_pi = 6.283185307179586;
        for (size_t i = 0; i < out.size(); i += 2) {
            const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
            const double u2 = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
            const double r = std::sqrt(-2.0 * std::log(u1)) * std;
            out[i] = static_cast<float>(r * std::cos(two_pi * u2));
            if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(two_pi * u2));
        }
    }

    float* buffer(Buffer which) const {
        switch (which) {
            case Buffer::Param: return params_;
            case Buffer::Grad: return grads_;
            case Buffer::AdamM: return m_;
            case Buffer::AdamV: return v_;
        }
        return params_;
    }

    const Entry& entry(const std::string& name, size_t n) const {
        auto it = index_.find(name);
        PLW_CHECK(it != index_.end(), "no parameter named '" << name << "' in this GPT-2");
        const Entry& e = entries_[it->second];
        PLW_CHECK(n == e.hf_numel, "parameter '" << name << "' has " << e.hf_numel << " elements, got " << n);
        return e;
    }

    void add(const std::string& name, std::vector<int64_t> shape, bool decay, size_t stored = 0) {
        size_t numel = 1;
        for (int64_t d : shape) numel *= static_cast<size_t>(d);
        if (stored == 0) stored = numel;
        index_[name] = entries_.size();
        entries_.push_back({{name, std::move(shape), decay}, num_params_, numel, stored});
        // Keep every tensor 64-byte aligned (16 floats): vector loads on both backends.
        num_params_ += (stored + 15) / 16 * 16;
    }

    void build_layout() {
        const int64_t C = cfg_.channels, V = cfg_.vocab_size, T = cfg_.max_seq_len;
        add("wte.weight", {V, C}, true, static_cast<size_t>(Vp_) * C);
        add("wpe.weight", {T, C}, true);
        for (int l = 0; l < cfg_.num_layers; l++) {
            const std::string h = "h." + std::to_string(l) + ".";
            LayerOffsets o{};
            auto at = [&](const std::string& n, std::vector<int64_t> s, bool decay) {
                add(h + n, std::move(s), decay);
                return entries_.back().offset;
            };
            o.ln1w = at("ln_1.weight", {C}, false);
            o.ln1b = at("ln_1.bias", {C}, false);
            o.qkvw = at("attn.c_attn.weight", {C, 3 * C}, true);
            o.qkvb = at("attn.c_attn.bias", {3 * C}, false);
            o.attprojw = at("attn.c_proj.weight", {C, C}, true);
            o.attprojb = at("attn.c_proj.bias", {C}, false);
            o.ln2w = at("ln_2.weight", {C}, false);
            o.ln2b = at("ln_2.bias", {C}, false);
            o.fcw = at("mlp.c_fc.weight", {C, 4 * C}, true);
            o.fcb = at("mlp.c_fc.bias", {4 * C}, false);
            o.fcprojw = at("mlp.c_proj.weight", {4 * C, C}, true);
            o.fcprojb = at("mlp.c_proj.bias", {C}, false);
            layers_.push_back(o);
        }
        add("ln_f.weight", {C}, false);
        add("ln_f.bias", {C}, false);
        wte_ = entries_[index_.at("wte.weight")].offset;
        wpe_ = entries_[index_.at("wpe.weight")].offset;
        lnfw_ = entries_[index_.at("ln_f.weight")].offset;
        lnfb_ = entries_[index_.at("ln_f.bias")].offset;
    }

    // One list of every buffer, walked twice: a dry run that only adds up the bytes (so a
    // model that cannot fit is reported with the whole bill before anything is allocated),
    // then the real allocation.
    template <typename T>
    T* take(size_t count, size_t* bucket, bool dry) {
        const size_t bytes = (count * sizeof(T) + 63) / 64 * 64;
        *bucket += bytes;
        if (dry) return nullptr;
        void* p = BK::alloc(bytes);
        allocations_.push_back(p);
        BK::zero(p, bytes);
        return static_cast<T*>(p);
    }

    void carve(bool dry, MemoryReport* r) {
        const size_t C = cfg_.channels, NH = cfg_.num_heads, L = cfg_.num_layers;
        const size_t B = max_.B, T = max_.T, N = B * T;
        size_t* act = &r->activations;
        params_ = take<float>(num_params_, &r->parameters, dry);
        if constexpr (kMixed) wlp_ = take<Act>(num_params_, &r->parameters, dry);
        else wlp_ = params_;
        grads_ = take<float>(num_params_, &r->gradients, dry);
        m_ = take<float>(num_params_, &r->optimizer, dry);
        v_ = take<float>(num_params_, &r->optimizer, dry);
        encoded_ = take<Act>(N * C, act, dry);
        acts_.clear();
        for (size_t l = 0; l < L; l++) {
            LayerActs<Act> a{};
            a.ln1 = take<Act>(N * C, act, dry);
            a.ln1_mean = take<float>(N, act, dry);
            a.ln1_rstd = take<float>(N, act, dry);
            a.qkv = take<Act>(N * 3 * C, act, dry);
            a.atty = take<Act>(N * C, act, dry);
            a.att = take<Act>(B * NH * T * T, act, dry);
            a.attproj = take<Act>(N * C, act, dry);
            a.res2 = take<Act>(N * C, act, dry);
            a.ln2 = take<Act>(N * C, act, dry);
            a.ln2_mean = take<float>(N, act, dry);
            a.ln2_rstd = take<float>(N, act, dry);
            a.fch = take<Act>(N * 4 * C, act, dry);
            a.fch_gelu = take<Act>(N * 4 * C, act, dry);
            a.fcproj = take<Act>(N * C, act, dry);
            a.res3 = take<Act>(N * C, act, dry);
            acts_.push_back(a);
        }
        lnf_ = take<Act>(N * C, act, dry);
        lnf_mean_ = take<float>(N, act, dry);
        lnf_rstd_ = take<float>(N, act, dry);
        losses_ = take<float>(N, act, dry);
        dres_ = take<Act>(N * C, act, dry);
        dlnf_ = take<Act>(N * C, act, dry);
        dbuf_ = take<Act>(N * C, act, dry);
        dqkv_ = take<Act>(N * 3 * C, act, dry);
        dfch_ = take<Act>(N * 4 * C, act, dry);
        dfch_gelu_ = take<Act>(N * 4 * C, act, dry);
        tokens_ = take<int32_t>(N, act, dry);
        positions_ = take<int32_t>(N, act, dry);
        segments_ = take<int32_t>(N, act, dry);
        targets_ = take<int32_t>(N, act, dry);
        weights_ = take<float>(N, act, dry);
        eval_weights_ = take<float>(N, act, dry);
        head_scratch_ = take<uint8_t>(BK::fused_head_scratch_bytes(chunk_, cfg_.vocab_size, sizeof(Act)), &r->scratch, dry);
        // Held by the attention op itself (the CUDA scratch pool), but part of the bill.
        r->scratch += BK::attention_scratch_bytes(static_cast<int>(T), static_cast<int>(NH), sizeof(Act));
    }

    void allocate() {
        chunk_ = std::min(BK::default_head_chunk(), max_.B * max_.T);
        MemoryReport plan;
        carve(/*dry=*/true, &plan);
        const size_t free = BK::free_memory();
        // Checked up front: on Linux a host allocation past the available memory can succeed
        // and the process then dies to the OOM killer when the pages are touched.
        const bool fits = free == 0 || plan.total() <= free;
        try {
            if (!fits) throw Error("only " + mib(free) + " is free");
            carve(/*dry=*/false, &mem_);
        } catch (const std::exception& e) {
            for (void* p : allocations_) BK::release(p);
            allocations_.clear();
            throw Error("GPT-2 (" + std::to_string(cfg_.num_layers) + " layers, " + std::to_string(cfg_.channels) +
                        " channels) with batch B=" + std::to_string(max_.B) + " T=" + std::to_string(max_.T) +
                        " does not fit on " + BK::name + ": it needs about " + mib(plan.total()) + " (parameters " +
                        mib(plan.parameters) + ", gradients " + mib(plan.gradients) + ", AdamW " + mib(plan.optimizer) +
                        ", activations " + mib(plan.activations) + ", loss scratch " + mib(plan.scratch) +
                        "); use a smaller batch or sequence length. (" + e.what() + ")");
        }
    }

    // Validates the batch on the host and copies it to the device.
    Inputs upload_batch(const StepBatch& b, bool eval) {
        PLW_CHECK(b.B > 0 && b.T > 0 && b.B <= max_.B && b.T <= max_.T,
                  "batch B=" << b.B << " T=" << b.T << " exceeds the model's batch capacity B=" << max_.B
                             << " T=" << max_.T << " set when it was created");
        PLW_CHECK(b.tokens && b.targets && b.weights, "a batch needs tokens, targets and weights");
        const int N = b.B * b.T, V = cfg_.vocab_size;
        std::vector<int32_t> pos(N);
        std::vector<float> ew(N);
        for (int i = 0; i < N; i++) {
            PLW_CHECK(b.tokens[i] >= 0 && b.tokens[i] < V,
                      "tokens[" << i << "] = " << b.tokens[i] << " is outside the vocabulary [0, " << V << ")");
            pos[i] = b.positions ? b.positions[i] : i % b.T;
            PLW_CHECK(pos[i] >= 0 && pos[i] < cfg_.max_seq_len,
                      "positions[" << i << "] = " << pos[i] << " is outside [0, n_positions = " << cfg_.max_seq_len << ")");
            const int kind = b.kinds ? b.kinds[i] : (b.weights[i] != 0.0f ? 2 : 0);
            PLW_CHECK(kind <= 2, "kinds[" << i << "] = " << kind << " (expected 0 padding, 1 prompt, 2 completion)");
            PLW_CHECK(b.weights[i] >= 0.0f && std::isfinite(b.weights[i]),
                      "weights[" << i << "] = " << b.weights[i] << " (expected a finite weight >= 0)");
            PLW_CHECK(kind != 0 || b.weights[i] == 0.0f,
                      "weights[" << i << "] = " << b.weights[i] << " on a padding target (kind 0)");
            ew[i] = kind != 0 ? 1.0f : 0.0f;
            const bool scored = eval ? kind != 0 : b.weights[i] != 0.0f;
            PLW_CHECK(!scored || (b.targets[i] >= 0 && b.targets[i] < V),
                      "targets[" << i << "] = " << b.targets[i] << " is outside the vocabulary [0, " << V
                                 << ") but is scored (weight " << b.weights[i] << ", kind " << kind << ")");
        }
        BK::upload(tokens_, b.tokens, N * sizeof(int32_t));
        BK::upload(positions_, pos.data(), N * sizeof(int32_t));
        BK::upload(targets_, b.targets, N * sizeof(int32_t));
        BK::upload(weights_, b.weights, N * sizeof(float));
        BK::upload(eval_weights_, ew.data(), N * sizeof(float));
        if (b.segments) BK::upload(segments_, b.segments, N * sizeof(int32_t));
        return {b.B, b.T, N, b.segments ? segments_ : nullptr};
    }

    void forward(const Inputs& in) {
        const int B = in.B, T = in.T, N = in.N, C = cfg_.channels, NH = cfg_.num_heads;
        const float* p = params_;  // f32 masters: embedding, LayerNorm
        const Act* w = wlp_;       // GEMM operands (the masters themselves in f32)
        BK::embedding_forward(encoded_, tokens_, positions_, p + wte_, p + wpe_, N, C);
        const Act* x = encoded_;
        for (int l = 0; l < cfg_.num_layers; l++) {
            const LayerOffsets& o = layers_[l];
            const LayerActs<Act>& a = acts_[l];
            BK::layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, p + o.ln1w, p + o.ln1b, N, C);
            BK::linear_forward(a.qkv, a.ln1, w + o.qkvw, w + o.qkvb, N, C, 3 * C);
            BK::attention_forward(a.atty, a.att, a.qkv, in.segments, B, T, C, NH);
            BK::linear_forward(a.attproj, a.atty, w + o.attprojw, w + o.attprojb, N, C, C);
            BK::residual_forward(a.res2, x, a.attproj, static_cast<size_t>(N) * C);
            BK::layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.res2, p + o.ln2w, p + o.ln2b, N, C);
            BK::linear_forward(a.fch, a.ln2, w + o.fcw, w + o.fcb, N, C, 4 * C);
            BK::gelu_forward(a.fch_gelu, a.fch, static_cast<size_t>(N) * 4 * C);
            BK::linear_forward(a.fcproj, a.fch_gelu, w + o.fcprojw, w + o.fcprojb, N, 4 * C, C);
            BK::residual_forward(a.res3, a.res2, a.fcproj, static_cast<size_t>(N) * C);
            x = a.res3;
        }
        BK::layernorm_forward(lnf_, lnf_mean_, lnf_rstd_, x, p + lnfw_, p + lnfb_, N, C);
    }

    // Expects dlnf_ (the head's gradient w.r.t. the final LayerNorm's output).
    void backward(const Inputs& in) {
        const int B = in.B, T = in.T, N = in.N, C = cfg_.channels, NH = cfg_.num_heads;
        const size_t NC = static_cast<size_t>(N) * C;
        const float* p = params_;
        const Act* w = wlp_;
        float* g = grads_;
        const Act* x_last = acts_.back().res3;
        BK::zero(dres_, NC * sizeof(Act));
        BK::layernorm_backward(dres_, g + lnfw_, g + lnfb_, dlnf_, x_last, p + lnfw_, lnf_mean_, lnf_rstd_, N, C);
        for (int l = cfg_.num_layers - 1; l >= 0; l--) {
            const LayerOffsets& o = layers_[l];
            const LayerActs<Act>& a = acts_[l];
            const Act* x_in = l == 0 ? encoded_ : acts_[l - 1].res3;
            // res3 = res2 + fcproj: dres is d(fcproj) and flows on to res2.
            BK::zero(dfch_gelu_, 4 * NC * sizeof(Act));
            BK::linear_backward(dfch_gelu_, g + o.fcprojw, g + o.fcprojb, dres_, a.fch_gelu, w + o.fcprojw, N, 4 * C, C);
            BK::zero(dfch_, 4 * NC * sizeof(Act));
            BK::gelu_backward(dfch_, a.fch, dfch_gelu_, 4 * NC);
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln2)
            BK::linear_backward(dbuf_, g + o.fcw, g + o.fcb, dfch_, a.ln2, w + o.fcw, N, C, 4 * C);
            BK::layernorm_backward(dres_, g + o.ln2w, g + o.ln2b, dbuf_, a.res2, p + o.ln2w, a.ln2_mean, a.ln2_rstd, N, C);
            // res2 = x_in + attproj: dres is now d(res2) = d(attproj), and flows on to x_in.
            BK::zero(dbuf_, NC * sizeof(Act));  // d(atty)
            BK::linear_backward(dbuf_, g + o.attprojw, g + o.attprojb, dres_, a.atty, w + o.attprojw, N, C, C);
            BK::zero(dqkv_, 3 * NC * sizeof(Act));
            BK::attention_backward(dqkv_, dbuf_, a.qkv, a.att, in.segments, B, T, C, NH);
            BK::zero(dbuf_, NC * sizeof(Act));  // d(ln1)
            BK::linear_backward(dbuf_, g + o.qkvw, g + o.qkvb, dqkv_, a.ln1, w + o.qkvw, N, C, 3 * C);
            BK::layernorm_backward(dres_, g + o.ln1w, g + o.ln1b, dbuf_, x_in, p + o.ln1w, a.ln1_mean, a.ln1_rstd, N, C);
        }
        BK::embedding_backward(g + wte_, g + wpe_, dres_, tokens_, positions_, N, C);
    }

    LossReport report(const StepBatch& b, int N, bool training) {
        std::vector<float> losses(N);
        BK::download(losses.data(), losses_, N * sizeof(float));
        LossReport r;
        for (int i = 0; i < N; i++) {
            const float w = b.weights[i];
            const int kind = b.kinds ? b.kinds[i] : (w != 0.0f ? 2 : 0);
            const bool measured = training ? w != 0.0f : kind != 0;
            if (!measured) continue;
            r.loss_sum += static_cast<double>(w) * losses[i];
            r.weight_sum += w;
            if (kind == 2) {
                r.completion_sum += losses[i];
                r.completion_count++;
            } else if (kind == 1) {
                r.prompt_sum += losses[i];
                r.prompt_count++;
            }
        }
        return r;
    }

    GPT2Config cfg_;
    BatchShape max_;
    int Vp_ = 0;
    int chunk_ = 1;
    int adam_t_ = 0;
    std::vector<Entry> entries_;
    std::map<std::string, size_t> index_;
    std::vector<LayerOffsets> layers_;
    size_t num_params_ = 0;
    size_t wte_ = 0, wpe_ = 0, lnfw_ = 0, lnfb_ = 0;
    MemoryReport mem_;
    std::vector<void*> allocations_;
    float *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr;
    Act* wlp_ = nullptr;  // the GEMMs' weights: a bf16 working copy, or params_ itself
    Act* encoded_ = nullptr;
    std::vector<LayerActs<Act>> acts_;
    Act* lnf_ = nullptr;
    float *lnf_mean_ = nullptr, *lnf_rstd_ = nullptr, *losses_ = nullptr;
    Act *dres_ = nullptr, *dlnf_ = nullptr, *dbuf_ = nullptr, *dqkv_ = nullptr, *dfch_ = nullptr,
        *dfch_gelu_ = nullptr;
    int32_t *tokens_ = nullptr, *positions_ = nullptr, *segments_ = nullptr, *targets_ = nullptr;
    float *weights_ = nullptr, *eval_weights_ = nullptr;
    uint8_t* head_scratch_ = nullptr;
    DecodeArena dec_;
};

}  // namespace

std::unique_ptr<Model> create_gpt2(const GPT2Config& config, const std::string& device,
                                   BatchShape max_batch, Precision precision) {
    if (device == "cpu") {
        PLW_CHECK(precision == Precision::F32,
                  "bf16 mixed precision runs on CUDA only; the CPU engine computes in f32 (use precision 'f32')");
        return std::make_unique<GPT2<CpuBackend, float>>(config, max_batch);
    }
    if (device == "cuda") {
        std::string reason;
        if (!cuda::available(&reason)) throw Error("CUDA backend unavailable: " + reason);
#if PLW_WITH_CUDA
        if (precision == Precision::BF16) return std::make_unique<GPT2<CudaBackend, bf16>>(config, max_batch);
        return std::make_unique<GPT2<CudaBackend, float>>(config, max_batch);
#endif
    }
    throw Error("unknown device '" + device + "' (expected 'cpu' or 'cuda')");
}

}  // namespace plw::engine
