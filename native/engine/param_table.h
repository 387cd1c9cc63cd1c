// The parameter table: every tensor of a model by its Hugging Face name, and the memory that
// goes with it. Each architecture (arch/) lists its entries, LoRA (lora.h) its adapters; the
// table owns
//   params  f32 masters                                    (parameters bucket)
//   work    the GEMMs' copy: bf16 under mixed precision, else params itself
//   grads, m, v   f32, for trainable entries only          (gradients / optimizer buckets)
// and does what is the same for every architecture: read/write by name, initialization, the
// global gradient norm and AdamW.
//
// Frozen entries (the base model under LoRA) have no gradient and no moments. Under mixed
// precision a frozen matrix is held once, in its bf16 working copy, with no f32 master: only
// entries the forward reads in f32 (norm weights and other vectors, the embedding tables:
// ParamSpec::master_read) keep one. param() of an entry without a master is null; read()
// and write() convert through bf16 on the host. Ops that always produce a weight gradient
// (the norms) write a frozen entry's into a discard buffer (discard()).
//
// Layout: entries are packed in the order they are added, each 64-byte aligned (16 floats)
// for vector loads on both backends. A tensor may be stored with more rows than its Hugging
// Face shape (the token table keeps Vp >= V rows); read/write move the HF part only.
#pragma once
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "../common/bf16.h"
#include "../common/check.h"
#include "arena.h"
#include "backend.h"
#include "model.h"

namespace plw::engine {

enum class Init { Zeros, Ones, Normal, Uniform };

struct ParamSpec {
    std::string name;            // Hugging Face key
    std::vector<int64_t> shape;  // Hugging Face shape
    bool decay = false;          // AdamW weight decay applies
    Init init = Init::Zeros;
    double std = 0;      // Init::Normal's standard deviation; Init::Uniform's bound (U(-std, std))
    size_t stored = 0;   // elements stored, >= numel (0: numel)
    bool trainable = true;
    bool master_read = false;  // the forward reads the f32 master (embedding tables)
    bool adapter = false;      // a LoRA adapter: stays trainable when the base is frozen
};

template <typename BK, typename Act>
class ParamTable {
    static constexpr bool kMixed = !std::is_same_v<Act, float>;
    static constexpr size_t kNone = static_cast<size_t>(-1);

    struct Entry {
        ParamSpec spec;
        size_t numel;        // elements of the Hugging Face tensor
        size_t master;       // into params (floats), kNone without an f32 master
        size_t work;         // into work (Acts); = master when Act is float
        size_t grad_offset;  // into grads / m / v, kNone when frozen
    };

public:
    // freeze_base: every entry but the adapters is frozen (LoRA).
    explicit ParamTable(bool freeze_base = false) : freeze_base_(freeze_base) {}

    // Registers a tensor; returns its index for param()/work()/grad().
    int add(ParamSpec s) {
        PLW_CHECK(!index_.count(s.name), "parameter '" << s.name << "' listed twice");
        size_t numel = 1;
        for (int64_t d : s.shape) numel *= static_cast<size_t>(d);
        if (s.stored == 0) s.stored = numel;
        if (freeze_base_ && !s.adapter) s.trainable = false;
        const bool master = !kMixed || s.trainable || s.master_read || s.shape.size() == 1;
        Entry e{s, numel, kNone, kNone, kNone};
        if (master) {
            e.master = num_masters_;
            num_masters_ += align16(s.stored);
        }
        if constexpr (kMixed) {
            e.work = num_work_;
            num_work_ += align16(s.stored);
        } else {
            e.work = e.master;
        }
        if (s.trainable) {
            e.grad_offset = num_trainable_;
            num_trainable_ += align16(s.stored);
        } else if (s.shape.size() == 1) {
            discard_len_ = std::max(discard_len_, align16(s.stored));
        }
        index_[s.name] = entries_.size();
        entries_.push_back(std::move(e));
        return static_cast<int>(entries_.size()) - 1;
    }

    void carve(Arena<BK>& arena) {
        params_ = arena.template take<float>(num_masters_, &MemoryReport::parameters);
        if constexpr (kMixed) work_ = arena.template take<Act>(num_work_, &MemoryReport::parameters);
        else work_ = params_;
        grads_ = arena.template take<float>(num_trainable_, &MemoryReport::gradients);
        m_ = arena.template take<float>(num_trainable_, &MemoryReport::optimizer);
        v_ = arena.template take<float>(num_trainable_, &MemoryReport::optimizer);
        discard_ = arena.template take<float>(2 * discard_len_, &MemoryReport::gradients);
    }

    // The f32 master of entry i, or nullptr where a frozen entry has none (mixed precision).
    float* param(int i) const {
        const Entry& e = entries_[i];
        return e.master == kNone ? nullptr : params_ + e.master;
    }
    Act* work(int i) const { return work_ + entries_[i].work; }
    // The gradient of entry i, or nullptr for a frozen entry (ops then skip that gradient).
    float* grad(int i) const {
        const Entry& e = entries_[i];
        return e.grad_offset == kNone ? nullptr : grads_ + e.grad_offset;
    }
    // For ops that always write a weight gradient (the norms): entry i's gradient, or for a
    // frozen vector one of two discard rows (slot 0 or 1: a layernorm's weight and bias).
    float* grad_or_discard(int i, int slot = 0) const {
        float* g = grad(i);
        if (g) return g;
        PLW_CHECK(entries_[i].spec.shape.size() == 1 && slot >= 0 && slot < 2,
                  "no discard row for frozen parameter '" << entries_[i].spec.name << "'");
        return discard_ + slot * discard_len_;
    }
    // Whether every entry has its f32 master (generation decodes on the masters).
    bool all_masters() const {
        for (const Entry& e : entries_)
            if (e.master == kNone) return false;
        return true;
    }
    size_t trainable_count() const {
        size_t n = 0;
        for (const Entry& e : entries_)
            if (e.grad_offset != kNone) n += e.numel;
        return n;
    }
    bool has(const std::string& name) const { return index_.count(name) != 0; }
    int find(const std::string& name) const {
        auto it = index_.find(name);
        PLW_CHECK(it != index_.end(), "no parameter named '" << name << "' in this model");
        return static_cast<int>(it->second);
    }

    std::vector<ParamInfo> infos() const {
        std::vector<ParamInfo> out;
        for (const Entry& e : entries_) out.push_back({e.spec.name, e.spec.shape, e.spec.decay, e.spec.trainable, e.spec.adapter});
        return out;
    }

    void read(Buffer which, const std::string& name, float* out, size_t n) const {
        const Entry& e = checked(name, n);
        if (which == Buffer::Param && e.master == kNone) return read_work(e, out);
        BK::download(out, buffer(which, e), n * sizeof(float));
    }

    void write(Buffer which, const std::string& name, const float* in, size_t n) {
        const Entry& e = checked(name, n);
        if (which == Buffer::Param) ++weights_version_;
        if (which == Buffer::Param && e.master == kNone) return write_work(e, in);
        BK::upload(buffer(which, e), in, n * sizeof(float));
        if (which == Buffer::Param) refresh_work(e);
    }

    // Each entry's init in order, from one 64-bit stream (Box-Muller on raw draws: the same
    // numbers on every platform; std::normal_distribution is implementation-defined).
    // Init::Uniform draws 24-bit uniforms from the same stream.
    void init_random(uint64_t seed) {
        ++weights_version_;
        std::mt19937_64 rng(seed);
        for (const Entry& e : entries_) init_entry(e, rng);
    }

    // Only the adapters' init, from their own stream (LoRA on a loaded base model).
    void init_adapters(uint64_t seed) {
        ++weights_version_;
        std::mt19937_64 rng(seed);
        for (const Entry& e : entries_)
            if (e.spec.adapter) init_entry(e, rng);
    }

    // Global-norm clipping + AdamW over the trainable entries, then zeroed gradients.
    StepResult adamw(const OptimizerSettings& opt) {
        const double norm = std::sqrt(BK::grad_sum_squares(grads_, num_trainable_));
        cpu::AdamWParams hp{};
        hp.lr = opt.lr;
        hp.beta1 = opt.beta1;
        hp.beta2 = opt.beta2;
        hp.eps = opt.eps;
        hp.step = ++adam_t_;
        ++weights_version_;
        hp.grad_scale = cpu::clip_coefficient(norm, opt.max_grad_norm);
        for (const Entry& e : entries_) {
            if (e.grad_offset == kNone) continue;
            hp.weight_decay = e.spec.decay ? opt.weight_decay : 0.0;
            float *p = params_ + e.master, *g = grads_ + e.grad_offset, *m = m_ + e.grad_offset, *v = v_ + e.grad_offset;
            if constexpr (kMixed) BK::adamw_update(p, m, v, g, e.spec.stored, hp, work_ + e.work);
            else BK::adamw_update(p, m, v, g, e.spec.stored, hp);
        }
        zero_grad();
        BK::sync();
        return {norm, hp.grad_scale, adam_t_};
    }

    void zero_grad() { BK::zero(grads_, num_trainable_ * sizeof(float)); }
    int adam_step() const { return adam_t_; }
    // Moves on with every change to the weights (a write to them, an init, an AdamW step): what
    // was computed from the weights (generation's kept KV cache) is stale once it moved.
    uint64_t weights_version() const { return weights_version_; }
    void set_adam_step(int t) {
        PLW_CHECK(t >= 0, "AdamW step must be >= 0, got " << t);
        adam_t_ = t;
    }

private:
    static size_t align16(size_t n) { return (n + 15) / 16 * 16; }

    // The bf16 working copy follows the f32 master after every write that is not AdamW's.
    void refresh_work(const Entry& e) {
        if constexpr (kMixed) BK::convert(work_ + e.work, params_ + e.master, e.spec.stored);
    }

    void init_entry(const Entry& e, std::mt19937_64& rng) {
        std::vector<float> host(e.numel, e.spec.init == Init::Ones ? 1.0f : 0.0f);
        if (e.spec.init == Init::Normal) fill_normal(host, e.spec.std, rng);
        if (e.spec.init == Init::Uniform) fill_uniform(host, e.spec.std, rng);
        if (e.master == kNone) return write_work(e, host.data());
        BK::upload(params_ + e.master, host.data(), host.size() * sizeof(float));
        refresh_work(e);
    }

    // An entry held only in its working copy (Act is bf16 then): through bf16 on the host,
    // rounded to nearest even as the device's convert does.
    void write_work(const Entry& e, const float* in) {
        std::vector<bf16> host(e.numel);
        for (size_t i = 0; i < e.numel; i++) host[i] = f32_to_bf16(in[i]);
        BK::upload(work_ + e.work, host.data(), e.numel * sizeof(bf16));
    }
    void read_work(const Entry& e, float* out) const {
        std::vector<bf16> host(e.numel);
        BK::download(host.data(), work_ + e.work, e.numel * sizeof(bf16));
        for (size_t i = 0; i < e.numel; i++) out[i] = bf16_to_f32(host[i]);
    }

    float* buffer(Buffer which, const Entry& e) const {
        if (which == Buffer::Param) return params_ + e.master;
        PLW_CHECK(e.grad_offset != kNone, "parameter '" << e.spec.name << "' is frozen: it has no gradient or AdamW moments");
        switch (which) {
            case Buffer::Grad: return grads_ + e.grad_offset;
            case Buffer::AdamM: return m_ + e.grad_offset;
            case Buffer::AdamV: return v_ + e.grad_offset;
            default: return params_ + e.master;
        }
    }

    const Entry& checked(const std::string& name, size_t n) const {
        const Entry& e = entries_[find(name)];
        PLW_CHECK(n == e.numel, "parameter '" << name << "' has " << e.numel << " elements, got " << n);
        return e;
    }

    static void fill_normal(std::vector<float>& out, double std, std::mt19937_64& rng) {
        const double two_pi = 6.283185307179586;
        for (size_t i = 0; i < out.size(); i += 2) {
            const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * (1.0 / 9007199254740993.0);
            const double u2 = static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
            const double r = std::sqrt(-2.0 * std::log(u1)) * std;
            out[i] = static_cast<float>(r * std::cos(two_pi * u2));
            if (i + 1 < out.size()) out[i + 1] = static_cast<float>(r * std::sin(two_pi * u2));
        }
    }

    // U(-bound, bound) from the top 24 bits of each draw (exact in f32, platform independent).
    static void fill_uniform(std::vector<float>& out, double bound, std::mt19937_64& rng) {
        for (float& x : out) {
            const double u = static_cast<double>(rng() >> 40) * (1.0 / 16777216.0);
            x = static_cast<float>((2.0 * u - 1.0) * bound);
        }
    }

    bool freeze_base_ = false;
    std::vector<Entry> entries_;
    std::map<std::string, size_t> index_;
    size_t num_masters_ = 0, num_work_ = 0, num_trainable_ = 0, discard_len_ = 0;
    int adam_t_ = 0;
    uint64_t weights_version_ = 0;
    float *params_ = nullptr, *grads_ = nullptr, *m_ = nullptr, *v_ = nullptr, *discard_ = nullptr;
    Act* work_ = nullptr;
};

}  // namespace plw::engine
