// The generic engine: everything about a model that does not depend on its architecture.
// Engine<Arch> owns the parameter table (param_table.h), the batch inputs on the device, the
// fused LM head + weighted loss, the training step, evaluation and generation (KV cache and
// sampling); the architecture (arch/gpt2.h, arch/llama.h) owns its parameter entries, its
// activations and the forward / backward / decode-step orchestration.
//
// An architecture class A<BK, Act> provides:
//   A(const ModelSpec&, ParamTable&, LoraSet&)   registers its entries, attaching adapters
//                                        to its linear layers (validate() first)
//   static void validate(const ModelSpec&)   throws on a spec it cannot run
//   void carve(Arena&, BatchShape)       its activation buffers (dry run or real)
//   void carve_decode(Arena&)            its decode buffers (kDecodeRows rows)
//   void forward(const Inputs&, KvCache* = nullptr)   -> hidden(): the final norm's output (N, C);
//                                        with a cache (one row), each layer's K/V of rows 0..T-1 into it
//   void backward(const Inputs&, const Act* dhidden)   parameter gradients +=
//   int head_entry() const               the table entry whose rows are the LM head (V, C)
//   void decode_rows(const DecodeInputs&, KvCache&, float* out)   in.n tokens over the cache;
//                                        out (C) = the last row's final norm, f32
//   int kv_width() const                 NKV * hs, a cache row
//   std::string describe() const         for messages ("Llama (16 layers, 2048 channels)")
//
// Precision: Act is the element type of activations (float, or bf16 for mixed precision on
// CUDA); parameters, gradients and moments are f32 (docs/precision.md). Generation decodes in
// f32 on the masters whatever the precision.
//
// LoRA (spec.lora.r > 0): the table freezes every base entry and the LoraSet adds the
// adapters; AdamW and clipping see the adapters only (lora.h).
#pragma once
#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/check.h"
#include "arena.h"
#include "backend.h"
#include "model.h"
#include "lora.h"
#include "param_table.h"
#include "sampling.h"

namespace plw::engine {

// One micro-batch on the device.
struct Inputs {
    int B, T, N;
    const int32_t* tokens;     // (N)
    const int32_t* positions;  // (N) position ids, restarting per packed example
    const int32_t* segments;   // (N) packed example ids, or null: one example per row
};

// The tokens fed through the KV cache in one decode_rows call: up to kDecodeRows (spec.h) of
// them, at positions pos, pos + 1, ... (a new token while generating, or a prompt's rows after
// the part the cache already holds). Each attends to the cache up to itself.
struct DecodeInputs {
    const int32_t* token;     // (n) device
    const int32_t* position;  // (n) device: pos, pos + 1, ...
    int pos;                  // the first row's position
    int n;                    // rows, 1..kDecodeRows
};

// f32 keys and values of every layer for up to S positions: layer l's rows (S, width).
struct KvCache {
    float* k = nullptr;
    float* v = nullptr;
    int S = 0, width = 0;
    float* k_layer(int l) const { return k + static_cast<size_t>(l) * S * width; }
    float* v_layer(int l) const { return v + static_cast<size_t>(l) * S * width; }
};

// Device Act -> device f32 (a copy when Act is float).
template <typename BK, typename Act>
void device_to_f32(float* dst, const Act* src, size_t n) {
    if constexpr (std::is_same_v<Act, float>) BK::copy(dst, src, n * sizeof(float));
    else BK::convert(dst, src, n);
}

inline std::string mib(size_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

template <typename BK, typename Act, template <typename, typename> class ArchT>
class Engine final : public Model {
    static constexpr bool kMixed = !std::is_same_v<Act, float>;
    using Arch = ArchT<BK, Act>;

public:
    // plan_only: count the memory bill (memory()) without allocating anything.
    Engine(const ModelSpec& spec, BatchShape max, bool plan_only = false)
        : spec_(spec), max_(max), table_(spec.lora.r > 0), lora_(spec.lora, table_),
          arch_((Arch::validate(spec), spec), table_, lora_) {
        lora_.check_targets();
        PLW_CHECK(max.B > 0 && max.T > 0 && max.T <= spec.max_positions,
                  "max batch needs B > 0 and 0 < T <= the model's maximum positions (" << spec.max_positions
                                                                                        << "), got B=" << max.B << " T=" << max.T);
        PLW_CHECK(spec.sliding_window <= 0 || max.T <= spec.sliding_window,
                  "sequences of " << max.T << " tokens exceed the model's sliding_window (" << spec.sliding_window
                                  << "): plwtune's attention does not implement the sliding window, so such a run "
                                     "would not match the model; use a maximum length of at most "
                                  << spec.sliding_window);
        if (plan_only) plan(&mem_);
        else allocate();
    }

    const ModelSpec& spec() const override { return spec_; }
    const char* device() const override { return BK::name; }
    Precision precision() const override { return kMixed ? Precision::BF16 : Precision::F32; }
    BatchShape max_batch() const override { return max_; }
    MemoryReport memory() const override { return mem_; }
    std::vector<ParamInfo> parameters() const override { return table_.infos(); }

    void read(Buffer which, const std::string& name, float* out, size_t n) const override { table_.read(which, name, out, n); }
    void write(Buffer which, const std::string& name, const float* in, size_t n) override { table_.write(which, name, in, n); }
    int adam_step() const override { return table_.adam_step(); }
    void set_adam_step(int t) override { table_.set_adam_step(t); }
    void init_random(uint64_t seed) override { table_.init_random(seed); }
    void init_adapters(uint64_t seed) override {
        PLW_CHECK(lora_.enabled(), "this model has no LoRA adapters to initialize");
        table_.init_adapters(seed);
    }
    // Drops the accumulated gradients: the optimizer step starts over (its dropout masks too).
    void zero_grad() override {
        table_.zero_grad();
        micro_ = 0;
    }
    StepResult optimizer_step(const OptimizerSettings& opt) override {
        micro_ = 0;
        return table_.adamw(opt);
    }

    LossReport accumulate(const StepBatch& batch, double normalizer) override {
        PLW_CHECK(normalizer > 0 && std::isfinite(normalizer),
                  "the normalizer (sum of weights over the optimizer step) must be positive and finite, got " << normalizer);
        const Inputs in = upload_batch(batch, /*eval=*/false);
        lora_.begin_pass(/*training=*/true, mix_seed(mix_seed(spec_.lora.seed, static_cast<uint64_t>(table_.adam_step())),
                                                     static_cast<uint64_t>(micro_++)));
        arch_.forward(in);
        const int head = arch_.head_entry();
        BK::fused_head_cross_entropy_backward(losses_, dhidden_, table_.grad(head), scratch(), arch_.hidden(), table_.work(head),
                                              targets_, weights_, static_cast<float>(1.0 / normalizer), in.N, spec_.hidden,
                                              spec_.vocab_size, chunk_);
        arch_.backward(in, dhidden_);
        return report(batch, in.N, /*training=*/true);
    }

    TrainStepResult train_step(const std::vector<StepBatch>& micro_batches, double normalizer,
                               const OptimizerSettings& opt) override {
        PLW_CHECK(!micro_batches.empty(), "a training step needs at least one micro-batch");
        TrainStepResult r;
        for (const StepBatch& b : micro_batches) add(&r.report, accumulate(b, normalizer));
        if (!std::isfinite(r.report.loss_sum)) {
            table_.zero_grad();
            micro_ = 0;
            r.skipped = true;
            r.step.step = table_.adam_step();
            r.step.grad_norm = NAN;
            return r;
        }
        r.step = table_.adamw(opt);
        micro_ = 0;
        return r;
    }

    LossReport evaluate(const StepBatch& batch, float* token_losses) override {
        const Inputs in = upload_batch(batch, /*eval=*/true);
        forward_eval(in);
        const int head = arch_.head_entry();
        BK::fused_head_cross_entropy_forward(losses_, scratch(), arch_.hidden(), table_.work(head), targets_, eval_weights_,
                                             in.N, spec_.hidden, spec_.vocab_size, chunk_);
        return report(batch, in.N, /*training=*/false, token_losses);
    }

    // Logits (N, V) from the final hidden states and the f32 master head, row by row with the
    // decode step's f32 kernel (no TF32: the same numbers on every backend up to summation
    // order). A test path: scoring uses evaluate()'s per-token losses and never moves (N, V).
    void logits(const StepBatch& batch, float* out) override {
        const Inputs in = upload_batch(batch, /*eval=*/true);
        forward_eval(in);
        const int N = in.N, C = spec_.hidden, V = spec_.vocab_size;
        const size_t hidden_bytes = sizeof(float) * N * C, logits_bytes = sizeof(float) * N * V;
        float* hidden = static_cast<float*>(BK::alloc(hidden_bytes + logits_bytes));
        try {
            float* logits = hidden + static_cast<size_t>(N) * C;
            to_f32(hidden, arch_.hidden(), static_cast<size_t>(N) * C);
            const float* head = table_.param(arch_.head_entry());
            for (int i = 0; i < N; i++)
                BK::head_logits_forward(logits + static_cast<size_t>(i) * V, hidden + static_cast<size_t>(i) * C, head, C, V);
            BK::download(out, logits, logits_bytes);
        } catch (...) {
            BK::release(hidden);
            throw;
        }
        BK::release(hidden);
    }

    GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& o) override {
        const int V = spec_.vocab_size, S = generation_limit();
        PLW_CHECK(!prompt.empty(), "generate needs a prompt of at least one token");
        PLW_CHECK(static_cast<int>(prompt.size()) < S,
                  "the prompt has " << prompt.size() << " tokens; the model's " << S << " positions leave no room to generate");
        for (size_t i = 0; i < prompt.size(); i++)
            PLW_CHECK(prompt[i] >= 0 && prompt[i] < V,
                      "prompt[" << i << "] = " << prompt[i] << " is outside the vocabulary [0, " << V << ")");
        PLW_CHECK(o.max_new_tokens >= 0, "max_new_tokens must be >= 0");
        // The KV-cache step decodes in f32 on the masters; a bf16 LoRA model's frozen base has
        // none, so it generates by recomputation over the sequence (bf16 forward, f32 head).
        const bool use_cache = o.use_cache && table_.all_masters();
        std::vector<int32_t> seq = prompt;
        std::vector<float> logits(V);
        std::mt19937_64 rng(o.seed);
        GenerateResult r;
        r.stop_reason = "max_tokens";
        if (o.max_new_tokens == 0) return r;
        if (use_cache) r.reused = feed_prompt(seq, o.reuse_cache, logits.data());
        else full_logits(seq, logits.data());
        while (true) {
            const int32_t tok = sample_token(logits, o, rng);
            if (std::find(o.stop_ids.begin(), o.stop_ids.end(), tok) != o.stop_ids.end()) {
                r.stop_reason = "stop";
                break;
            }
            r.tokens.push_back(tok);
            seq.push_back(tok);
            if (o.on_token && !o.on_token(static_cast<int>(r.tokens.size()) - 1, tok)) {
                r.stop_reason = "cancelled";
                break;
            }
            if (static_cast<int>(r.tokens.size()) >= o.max_new_tokens) break;
            if (static_cast<int>(seq.size()) >= S) {
                r.stop_reason = "length";
                break;
            }
            if (use_cache) {
                decode(&tok, 1, static_cast<int>(seq.size()) - 1, logits.data());
                cached_.push_back(tok);
            } else {
                full_logits(seq, logits.data());
            }
        }
        return r;
    }

private:
    // A forward without dropout (evaluation, scoring, generation's prefill).
    void forward_eval(const Inputs& in, KvCache* cache = nullptr) {
        lora_.begin_pass(/*training=*/false, 0);
        arch_.forward(in, cache);
    }

    static void add(LossReport* a, const LossReport& b) {
        a->loss_sum += b.loss_sum;
        a->weight_sum += b.weight_sum;
        a->completion_sum += b.completion_sum;
        a->completion_count += b.completion_count;
        a->prompt_sum += b.prompt_sum;
        a->prompt_count += b.prompt_count;
    }

    // Positions generation may reach: the model's, and no further than a sliding window.
    int generation_limit() const {
        return spec_.sliding_window > 0 ? std::min(spec_.max_positions, spec_.sliding_window) : spec_.max_positions;
    }

    // ------------------------------------------------------------------ memory
    void carve(Arena<BK>& a) {
        const size_t N = static_cast<size_t>(max_.B) * max_.T, C = spec_.hidden;
        table_.carve(a);
        arch_.carve(a, max_);
        lora_.carve(a, max_);
        constexpr auto act = &MemoryReport::activations;
        losses_ = a.template take<float>(N, act);
        dhidden_ = a.template take<Act>(N * C, act);
        tokens_ = a.template take<int32_t>(N, act);
        positions_ = a.template take<int32_t>(N, act);
        segments_ = a.template take<int32_t>(N, act);
        targets_ = a.template take<int32_t>(N, act);
        weights_ = a.template take<float>(N, act);
        eval_weights_ = a.template take<float>(N, act);
        head_scratch_ = a.template take<uint8_t>(BK::fused_head_scratch_bytes(chunk_, spec_.vocab_size, sizeof(Act)),
                                                 &MemoryReport::scratch);
        // Held by the attention op itself (the CUDA scratch pool), but part of the bill.
        bill_->scratch += BK::attention_scratch_bytes(max_.B, max_.T, spec_.heads, spec_.head_dim, sizeof(Act),
                                                      arch_.fused_attention());
    }

    void plan(MemoryReport* bill) {
        chunk_ = std::min(BK::default_head_chunk(), max_.B * max_.T);
        bill_ = bill;
        arena_.begin(/*dry=*/true, bill);
        carve(arena_);
    }

    void allocate() {
        MemoryReport plan;
        this->plan(&plan);
        const size_t free = BK::free_memory();
        // Checked up front: on Linux a host allocation past the available memory can succeed
        // and the process then dies to the OOM killer when the pages are touched.
        const bool fits = free == 0 || plan.total() <= free;
        try {
            if (!fits) throw Error("only " + mib(free) + " is free");
            bill_ = &mem_;
            arena_.begin(/*dry=*/false, &mem_);
            carve(arena_);
        } catch (const std::exception& e) {
            arena_.release_all();
            throw Error(arch_.describe() + " with batch B=" + std::to_string(max_.B) + " T=" + std::to_string(max_.T) +
                        " does not fit on " + BK::name + ": it needs about " + mib(plan.total()) + " (parameters " +
                        mib(plan.parameters) + ", gradients " + mib(plan.gradients) + ", AdamW " + mib(plan.optimizer) +
                        ", activations " + mib(plan.activations) + ", loss scratch " + mib(plan.scratch) + ")" +
                        lora_note() + recompute_note() + "; use a smaller batch or sequence length" +
                        (spec_.recompute != Recompute::Block ? ", or recomputation (recompute 'block')" : "") + ". (" +
                        e.what() + ")");
        }
    }

    // For the refusal: what LoRA already saved, so the user does not look for it there.
    std::string lora_note() const {
        if (!lora_.enabled()) return "";
        return " with LoRA r=" + std::to_string(spec_.lora.r) + ": the base is frozen" +
               (kMixed ? " and held in bf16 only" : "") + ", gradients and AdamW cover the " +
               std::to_string(table_.trainable_count()) + " adapter parameters only";
    }

    // For the refusal: how the activations were already traded for compute.
    std::string recompute_note() const {
        const char* attention = arch_.fused_attention() ? "fused attention (no T x T probabilities)" : "attention probabilities kept";
        return std::string("; recompute ") + recompute_name(spec_.recompute) + ": " + attention +
               (spec_.recompute == Recompute::Block ? ", one layer's activations and each layer's output kept" : "");
    }

    // ------------------------------------------------------------------ batches
    // Validates the batch on the host and copies it to the device.
    Inputs upload_batch(const StepBatch& b, bool eval) {
        PLW_CHECK(b.B > 0 && b.T > 0 && b.B <= max_.B && b.T <= max_.T,
                  "batch B=" << b.B << " T=" << b.T << " exceeds the model's batch capacity B=" << max_.B << " T=" << max_.T
                             << " set when it was created");
        PLW_CHECK(b.tokens && b.targets && b.weights, "a batch needs tokens, targets and weights");
        const int N = b.B * b.T, V = spec_.vocab_size;
        std::vector<int32_t> pos(N);
        std::vector<float> ew(N);
        for (int i = 0; i < N; i++) {
            PLW_CHECK(b.tokens[i] >= 0 && b.tokens[i] < V,
                      "tokens[" << i << "] = " << b.tokens[i] << " is outside the vocabulary [0, " << V << ")");
            pos[i] = b.positions ? b.positions[i] : i % b.T;
            PLW_CHECK(pos[i] >= 0 && pos[i] < spec_.max_positions,
                      "positions[" << i << "] = " << pos[i] << " is outside [0, " << spec_.max_positions << ")");
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
        return {b.B, b.T, N, tokens_, positions_, b.segments ? segments_ : nullptr};
    }

    LossReport report(const StepBatch& b, int N, bool training, float* token_losses = nullptr) {
        std::vector<float> losses(N);
        BK::download(losses.data(), losses_, N * sizeof(float));
        LossReport r;
        for (int i = 0; i < N; i++) {
            const float w = b.weights[i];
            const int kind = b.kinds ? b.kinds[i] : (w != 0.0f ? 2 : 0);
            const bool measured = training ? w != 0.0f : kind != 0;
            if (token_losses) token_losses[i] = measured ? losses[i] : 0.0f;
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

    // ------------------------------------------------------------------ generation
    // Allocated on the first generate() call and kept: the training arenas are sized for
    // batches. The cache holds L x S rows of NKV * hs floats each for K and V.
    void ensure_decode_arena() {
        if (dec_hidden_) return;
        const size_t L = spec_.layers, S = generation_limit(), W = arch_.kv_width();
        bill_ = &mem_;
        decode_arena_.begin(/*dry=*/false, &mem_);
        constexpr auto act = &MemoryReport::activations;
        arch_.carve_decode(decode_arena_);
        lora_.carve_decode(decode_arena_);
        dec_hidden_ = decode_arena_.template take<float>(spec_.hidden, act);
        dec_logits_ = decode_arena_.template take<float>(spec_.vocab_size, act);
        dec_token_ = decode_arena_.template take<int32_t>(kDecodeRows, act);
        dec_pos_ = decode_arena_.template take<int32_t>(kDecodeRows, act);
        cache_.S = static_cast<int>(S);
        cache_.width = static_cast<int>(W);
        cache_.k = decode_arena_.template take<float>(L * S * W, act);
        cache_.v = decode_arena_.template take<float>(L * S * W, act);
    }

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

    // Logits of the last position from the hidden state `dec_hidden_` (f32, C).
    void head_logits(float* out) {
        BK::head_logits_forward(dec_logits_, dec_hidden_, table_.param(arch_.head_entry()), spec_.hidden, spec_.vocab_size);
        BK::download(out, dec_logits_, sizeof(float) * spec_.vocab_size);
    }

    // Logits of the last position by a full forward of the sequence; with `cache`, each layer's
    // K and V of the sequence go into it (the batched prefill). Without one, this is generation
    // without the KV cache, which recomputes the sequence for every token.
    void full_logits(const std::vector<int32_t>& seq, float* out, KvCache* cache = nullptr) {
        PLW_CHECK(static_cast<int>(seq.size()) <= max_.T,
                  "generation without the KV cache needs the sequence (" << seq.size()
                      << " tokens) to fit the model's maxSeqLen (" << max_.T << ")");
        ensure_decode_arena();
        std::vector<int32_t> zeros;
        std::vector<float> w;
        const Inputs in = upload_batch(single_row(seq, &zeros, &w), /*eval=*/true);
        forward_eval(in, cache);
        to_f32(dec_hidden_, arch_.hidden() + static_cast<size_t>(in.N - 1) * spec_.hidden, spec_.hidden);
        head_logits(out);
    }

    // Puts the prompt's keys and values into the KV cache and returns the logits of its last
    // position. With `reuse`, the tokens the cache already holds from the last generate()
    // (cached_: its prompt and the tokens it decoded; none once the weights moved on) are kept
    // as far as the prompt starts with them, when that is at least as long as the rest: a chat's
    // next turn then feeds only the new messages, through decode_rows in chunks of kDecodeRows.
    // Otherwise one batched forward fills the cache (or, past the activations' maxSeqLen, chunks
    // from the start). Returns the tokens kept.
    int feed_prompt(const std::vector<int32_t>& seq, bool reuse, float* out) {
        ensure_decode_arena();
        const int T = static_cast<int>(seq.size());
        if (cached_version_ != table_.weights_version()) cached_.clear();  // computed from other weights
        int keep = 0;
        const int limit = reuse ? std::min(static_cast<int>(cached_.size()), T - 1) : 0;  // the last token is always fed
        while (keep < limit && cached_[keep] == seq[keep]) keep++;
        if (keep < T - keep && T <= max_.T) keep = 0;  // one batched forward costs less than the chunks
        cached_.clear();  // until the cache holds seq: an exception on the way leaves nothing to reuse
        if (keep == 0 && T <= max_.T) {
            full_logits(seq, out, &cache_);
        } else {
            for (int t = keep; t < T; t += kDecodeRows) {
                const int n = std::min(kDecodeRows, T - t);
                decode(seq.data() + t, n, t, t + n == T ? out : nullptr);  // the head only after the last chunk
            }
        }
        cached_ = seq;
        cached_version_ = table_.weights_version();
        return keep;
    }

    // n (<= kDecodeRows) new tokens at positions pos.. over the cache; their K and V join it,
    // out (unless null) = the logits of the last one.
    void decode(const int32_t* tokens, int n, int pos, float* out) {
        int32_t positions[kDecodeRows];
        for (int i = 0; i < n; i++) positions[i] = pos + i;
        BK::upload(dec_token_, tokens, sizeof(int32_t) * n);
        BK::upload(dec_pos_, positions, sizeof(int32_t) * n);
        arch_.decode_rows(DecodeInputs{dec_token_, dec_pos_, pos, n}, cache_, dec_hidden_);
        if (out) head_logits(out);
    }

    // ------------------------------------------------------------------ helpers
    float* scratch() const { return reinterpret_cast<float*>(head_scratch_); }

    void to_f32(float* dst, const Act* src, size_t n) { device_to_f32<BK>(dst, src, n); }

    ModelSpec spec_;
    BatchShape max_;
    // Declared before arch_: the architecture registers its entries in the table on construction.
    ParamTable<BK, Act> table_;
    LoraSet<BK, Act> lora_;
    Arch arch_;
    int micro_ = 0;  // micro-batches accumulated since the last optimizer step (the dropout stream)
    Arena<BK> arena_, decode_arena_;
    MemoryReport mem_;
    MemoryReport* bill_ = nullptr;
    int chunk_ = 1;
    float* losses_ = nullptr;  // (N) CE per target, where scored
    Act* dhidden_ = nullptr;   // (N, C) the head's gradient w.r.t. the final norm's output
    int32_t *tokens_ = nullptr, *positions_ = nullptr, *segments_ = nullptr, *targets_ = nullptr;
    float *weights_ = nullptr, *eval_weights_ = nullptr;
    uint8_t* head_scratch_ = nullptr;
    // generation
    float *dec_hidden_ = nullptr, *dec_logits_ = nullptr;
    int32_t *dec_token_ = nullptr, *dec_pos_ = nullptr;  // (kDecodeRows)
    KvCache cache_;
    std::vector<int32_t> cached_;  // the tokens whose keys and values cache_ holds, positions 0..
    uint64_t cached_version_ = 0;  // the table's weights_version() they were computed with
};

}  // namespace plw::engine
