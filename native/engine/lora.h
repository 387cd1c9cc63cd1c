// LoRA adapters on an architecture's linear layers (PEFT's LoRA, spec.h's LoraSpec).
// The architecture calls attach() for each linear layer as it registers it; a layer whose
// module name ends in a target gets two table entries,
//   <module>.lora_A.weight (r, IC)   Kaiming-uniform, a = sqrt(5): U(-1/sqrt(IC), 1/sqrt(IC))
//   <module>.lora_B.weight (OC, r)   zeros, so step 0 is the base model
// both trainable while the table freezes the base (param_table.h). Each layer's projection
// then adds scaling * (dropout(x) . A^T) . B^T to the base output (forward), and the
// adapter's gradients and its part of dx (backward), composed from the base GEMM and the
// lora ops (cpu/lora.h, cuda/lora.h): two thin GEMMs of rank r next to the base's.
//
// Dropout masks are not stored: each adapter's mask comes from a seed folded from the run's
// seed, the optimizer step, the micro-batch and the adapter's index (common/dropout_mask.h),
// regenerated in the backward pass and on resume. Evaluation and generation use no dropout.
//
// Memory: per adapter xs (N, r) kept for the backward; shared dxs (N, r) and, with dropout,
// the dropped input and its gradient (N, max IC) regenerated per layer.
#pragma once
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../common/check.h"
#include "../common/dropout_mask.h"
#include "arena.h"
#include "backend.h"
#include "param_table.h"
#include "spec.h"

namespace plw::engine {

template <typename BK, typename Act>
class LoraSet {
    struct Adapter {
        std::string module;
        int a, b;    // table entries
        int IC, OC;
        Act* xs;     // (N, r) scaling * dropout(x) . A^T, kept for the backward
    };

public:
    static void validate(const LoraSpec& s) {
        if (s.r == 0) return;
        PLW_CHECK(s.r > 0, "lora r must be positive, got " << s.r);
        PLW_CHECK(std::isfinite(s.alpha) && s.alpha > 0, "lora_alpha must be positive, got " << s.alpha);
        PLW_CHECK(s.dropout >= 0 && s.dropout < 1, "lora_dropout must be in [0, 1), got " << s.dropout);
        PLW_CHECK(!s.targets.empty(), "LoRA needs at least one target module");
    }

    LoraSet(const LoraSpec& s, ParamTable<BK, Act>& t) : s_((validate(s), s)), t_(t) {}

    bool enabled() const { return s_.r > 0; }
    float scaling() const { return static_cast<float>(s_.scaling()); }

    // Registers an adapter on the linear layer `module` (its Hugging Face name without
    // ".weight") when the module's last name part is a target; returns its index, else -1.
    int attach(const std::string& module, int IC, int OC) {
        const std::string leaf = module.substr(module.rfind('.') + 1);
        if (!enabled()) return -1;
        seen_.push_back(leaf);
        if (std::find(s_.targets.begin(), s_.targets.end(), leaf) == s_.targets.end()) return -1;
        const int64_t r = s_.r;
        Adapter ad{module, 0, 0, IC, OC, nullptr};
        ad.a = t_.add({module + ".lora_A.weight", {r, IC}, true, Init::Uniform, 1.0 / std::sqrt(static_cast<double>(IC)),
                       0, true, false, true});
        ad.b = t_.add({module + ".lora_B.weight", {OC, r}, true, Init::Zeros, 0, 0, true, false, true});
        adapters_.push_back(ad);
        return static_cast<int>(adapters_.size()) - 1;
    }

    // After the architecture attached its layers: a target that matched nothing is an error.
    void check_targets() const {
        if (!enabled()) return;
        for (const std::string& target : s_.targets) {
            if (std::find(seen_.begin(), seen_.end(), target) != seen_.end()) continue;
            std::vector<std::string> names = seen_;
            std::sort(names.begin(), names.end());
            names.erase(std::unique(names.begin(), names.end()), names.end());
            std::string list;
            for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
            throw Error("LoRA target '" + target + "' matches no linear layer of this model (its linear layers: " + list + ")");
        }
    }

    void carve(Arena<BK>& a, BatchShape max) {
        if (!enabled()) return;
        const size_t N = static_cast<size_t>(max.B) * max.T, r = s_.r;
        constexpr auto act = &MemoryReport::activations;
        size_t max_in = 0;
        for (Adapter& ad : adapters_) {
            ad.xs = a.template take<Act>(N * r, act);
            max_in = std::max(max_in, static_cast<size_t>(ad.IC));
        }
        dxs_ = a.template take<Act>(N * r, act);
        if (s_.dropout > 0) {
            dropped_ = a.template take<Act>(N * max_in, act);
            ddropped_ = a.template take<Act>(N * max_in, act);
        }
    }

    void carve_decode(Arena<BK>& a) {
        if (enabled()) dec_xs_ = a.template take<float>(static_cast<size_t>(kDecodeRows) * s_.r, &MemoryReport::activations);
    }

    // Before each forward: dropout on (a training micro-batch, with its stream) or off.
    void begin_pass(bool training, uint64_t stream) {
        dropout_on_ = training && s_.dropout > 0;
        stream_ = stream;
    }

    // out (N, OC) += scaling * (dropout(inp) . A^T) . B^T; nothing for id < 0.
    void forward(int id, Act* out, const Act* inp, int N) {
        if (id < 0) return;
        const Adapter& ad = adapters_[id];
        const Act* x = dropped_input(id, inp, N);
        BK::lora_forward(out, ad.xs, x, t_.work(ad.a), t_.work(ad.b), N, ad.IC, ad.OC, s_.r, scaling());
    }

    // dA, dB += and dinp (N, IC) += the adapter's part, for the dout (N, OC) of the layer.
    void backward(int id, Act* dinp, const Act* dout, const Act* inp, int N) {
        if (id < 0) return;
        const Adapter& ad = adapters_[id];
        const Act* x = dropped_input(id, inp, N);
        const size_t n = static_cast<size_t>(N) * ad.IC;
        Act* dx = dinp;
        if (dropout_on_) {
            dx = ddropped_;
            BK::zero(dx, n * sizeof(Act));
        }
        BK::lora_backward(dx, t_.grad(ad.a), t_.grad(ad.b), dxs_, dout, x, ad.xs, t_.work(ad.a), t_.work(ad.b), N, ad.IC,
                          ad.OC, s_.r, scaling());
        if (dropout_on_) BK::dropout_backward(dinp, dx, n, static_cast<float>(s_.dropout), seed(id));
    }

    // Generation, N <= kDecodeRows rows in f32 on the masters: out (N, OC) += the adapter of inp (N, IC).
    void decode(int id, float* out, const float* inp, int N) {
        if (id < 0) return;
        const Adapter& ad = adapters_[id];
        BK::lora_forward(out, dec_xs_, inp, t_.param(ad.a), t_.param(ad.b), N, ad.IC, ad.OC, s_.r, scaling());
    }

private:
    uint64_t seed(int id) const { return mix_seed(stream_, static_cast<uint64_t>(id)); }

    // The adapter's input: inp itself, or its dropped copy (regenerated identically in the backward).
    const Act* dropped_input(int id, const Act* inp, int N) {
        if (!dropout_on_) return inp;
        const size_t n = static_cast<size_t>(N) * adapters_[id].IC;
        BK::dropout_forward(dropped_, inp, n, static_cast<float>(s_.dropout), seed(id));
        return dropped_;
    }

    LoraSpec s_;
    ParamTable<BK, Act>& t_;
    std::vector<Adapter> adapters_;
    std::vector<std::string> seen_;  // every linear layer's leaf name, for check_targets()
    Act* dxs_ = nullptr;             // (N, r)
    Act *dropped_ = nullptr, *ddropped_ = nullptr;  // (N, max IC), with dropout
    float* dec_xs_ = nullptr;        // (kDecodeRows, r) decode
    bool dropout_on_ = false;
    uint64_t stream_ = 0;
};

}  // namespace plw::engine
