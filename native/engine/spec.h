// What a model is: its architecture and dimensions, as the engine sees them. The TypeScript
// layer (ts/arch/) fills this from a Hugging Face config.json; the names of config.json's
// fields are in the comments.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace plw::engine {

enum class Arch { GPT2, Llama };
inline const char* arch_name(Arch a) { return a == Arch::GPT2 ? "gpt2" : "llama"; }

// RoPE frequency scaling ("rope_scaling" in config.json). None, or Llama 3.1's "llama3" rule.
struct RopeScaling {
    bool llama3 = false;
    double factor = 1;                     // factor
    double low_freq_factor = 1;            // low_freq_factor
    double high_freq_factor = 4;           // high_freq_factor
    double original_max_positions = 8192;  // original_max_position_embeddings
};

// LoRA adapters (PEFT's LoraConfig): with r > 0 every base parameter is frozen and each
// targeted linear layer gets y += scaling * (dropout(x) . A^T) . B^T (engine/lora.h).
struct LoraSpec {
    int r = 0;                         // r; 0: no adapters, full fine-tuning
    double alpha = 8;                  // lora_alpha
    double dropout = 0;                // lora_dropout, in [0, 1)
    bool rslora = false;               // use_rslora: scaling alpha / sqrt(r) instead of alpha / r
    std::vector<std::string> targets;  // module names ("q_proj", "c_attn"), all-linear already expanded
    uint64_t seed = 0;                 // the dropout masks' stream (the run's seed)
    double scaling() const { return rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / r; }
};

// How training trades compute for memory (not part of config.json; docs/memory.md).
//   None       every activation is kept; attention keeps its (B, NH, T, T) probabilities
//   Attention  fused attention: only each query row's log-sum-exp is kept and the backward
//              recomputes the probabilities tile by tile (memory linear in T)
//   Block      fused attention, and of each block only its output is kept: the backward
//              runs the block's forward again first (the same ops: bitwise the same values)
//   Auto       resolved by create_model: Attention, or Block where Attention's bill does not
//              fit the device's free memory
// Where the backend has no fused kernel for the head size, attention stays as in None.
enum class Recompute { None, Attention, Block, Auto };
inline const char* recompute_name(Recompute r) {
    switch (r) {
        case Recompute::None: return "none";
        case Recompute::Attention: return "attention";
        case Recompute::Block: return "block";
        case Recompute::Auto: return "auto";
    }
    return "?";
}

struct ModelSpec {
    Arch arch = Arch::GPT2;
    int vocab_size = 0;     // vocab_size (real; exported checkpoints have this many rows)
    int hidden = 0;         // n_embd | hidden_size                       (C)
    int layers = 0;         // n_layer | num_hidden_layers                (L)
    int heads = 0;          // n_head | num_attention_heads               (NH)
    int kv_heads = 0;       // num_key_value_heads (GPT-2: = heads)       (NKV)
    int head_dim = 0;       // head_dim, else hidden / heads              (hs)
    int intermediate = 0;   // 4 n_embd | intermediate_size               (F)
    int max_positions = 0;  // n_positions | max_position_embeddings
    // Llama family only:
    double norm_eps = 1e-5;     // rms_norm_eps (GPT-2's LayerNorm is fixed at 1e-5)
    double rope_theta = 1e4;    // rope_theta
    RopeScaling rope_scaling;   // rope_scaling
    bool tied_head = true;      // tie_word_embeddings (GPT-2: always)
    bool qkv_bias = false;      // attention_bias (Llama, Qwen3) or always (Qwen2): q/k/v_proj bias
    bool o_bias = false;        // attention_bias (Llama, Qwen3): o_proj bias; never on Qwen2
    bool mlp_bias = false;      // mlp_bias
    bool qk_norm = false;       // Qwen3: RMSNorm of each head of q and k before RoPE
    int sliding_window = 0;     // Mistral: sliding_window (0 = none); longer sequences are refused
    LoraSpec lora;              // adapters (not part of config.json: adapter_config.json)
    Recompute recompute = Recompute::None;  // training's memory/compute trade (not part of config.json)
};

// Shapes of one optimizer micro-step's activations: B rows of T tokens.
struct BatchShape {
    int B = 1;
    int T = 1;
};

// Generation feeds tokens through the KV cache at most this many at a time (decode_rows): one
// while generating, a prompt's new rows in chunks when the cache already holds its start. The
// decode buffers (f32, a few hundred KB per row at 1B sizes) are sized for it.
constexpr int kDecodeRows = 32;

}  // namespace plw::engine
