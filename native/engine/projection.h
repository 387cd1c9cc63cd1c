// A linear layer as the architectures use it: the base weight, an optional bias and an
// optional LoRA adapter (lora.h), forward, backward and the one-row decode, so that every
// projection of gpt2.h and llama.h is one call whatever is trained:
//   forward   out = in . W + b  [+ adapter(in)]                       (working copy: bf16 or f32)
//   backward  din += dout . W^T [+ the adapter's part]; dW, db += unless frozen; dA, dB +=
//   decode    out = in . W + b  [+ adapter(in)], a few rows in f32 on the masters
#pragma once
#include "../common/layout.h"
#include "lora.h"
#include "param_table.h"

namespace plw::engine {

struct Proj {
    int w = -1;     // weight entry
    int b = -1;     // bias entry, or -1
    int lora = -1;  // adapter index in the LoraSet, or -1
};

template <typename BK, typename Act>
struct Projector {
    ParamTable<BK, Act>& t;
    LoraSet<BK, Act>& lora;
    WeightLayout layout;

    // Registers module.weight (and module.bias) with the given init, and attaches an adapter.
    Proj add(const std::string& module, int IC, int OC, double std, bool bias) {
        Proj p;
        const std::vector<int64_t> shape = layout == WeightLayout::InOut ? std::vector<int64_t>{IC, OC}
                                                                          : std::vector<int64_t>{OC, IC};
        p.w = t.add({module + ".weight", shape, true, Init::Normal, std});
        if (bias) p.b = t.add({module + ".bias", {OC}, false, Init::Zeros});
        p.lora = lora.attach(module, IC, OC);
        return p;
    }

    void forward(Act* out, const Act* in, const Proj& p, int N, int IC, int OC) const {
        BK::linear_forward(out, in, t.work(p.w), p.b < 0 ? nullptr : t.work(p.b), N, IC, OC, layout);
        lora.forward(p.lora, out, in, N);
    }

    void backward(Act* din, const Act* dout, const Act* in, const Proj& p, int N, int IC, int OC) const {
        BK::linear_backward(din, t.grad(p.w), p.b < 0 ? nullptr : t.grad(p.b), dout, in, t.work(p.w), N, IC, OC, layout);
        lora.backward(p.lora, din, dout, in, N);
    }

    void decode(float* out, const float* in, const Proj& p, int N, int IC, int OC) const {
        BK::linear_forward(out, in, t.param(p.w), p.b < 0 ? nullptr : t.param(p.b), N, IC, OC, layout);
        lora.decode(p.lora, out, in, N);
    }
};

}  // namespace plw::engine
