// GPT-2 model configuration, with Hugging Face's config.json field names in comments.
#pragma once
#include <cstdint>

namespace plw::engine {

struct GPT2Config {
    int max_seq_len = 1024;  // n_positions
    int vocab_size = 50257;  // vocab_size (real; exported checkpoints have this many rows)
    int num_layers = 12;     // n_layer
    int num_heads = 12;      // n_head
    int channels = 768;      // n_embd
};

// Shapes of one optimizer micro-step's activations: B rows of T tokens.
struct BatchShape {
    int B = 1;
    int T = 1;
};

}  // namespace plw::engine
