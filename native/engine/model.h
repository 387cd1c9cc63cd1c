// The engine's face to the binding: a model of any supported architecture (spec.h) on one
// device that owns its parameters, gradients, AdamW moments and activations, and runs a whole
// optimizer step (every micro-batch's forward + backward, then AdamW) per call. No per-op
// round trips cross into JS.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spec.h"

namespace plw::engine {

// One micro-batch, in host memory, B*T of each (row-major (B,T)).
struct StepBatch {
    int B = 0, T = 0;
    const int32_t* tokens = nullptr;     // input ids
    const int32_t* targets = nullptr;    // next-token ids (any value where the weight is 0)
    const float* weights = nullptr;      // loss weight per target: lambda, 1 or 0
    const uint8_t* kinds = nullptr;      // per target: 0 padding, 1 prompt, 2 completion
    const int32_t* positions = nullptr;  // position ids (restart per packed example); null = 0..T-1
    const int32_t* segments = nullptr;   // packed example id per token; null = one per row
};

// Sums over a micro-batch; the caller divides by the step's normalizer or by the counts.
struct LossReport {
    double loss_sum = 0;        // sum of w * CE
    double weight_sum = 0;      // sum of w
    double completion_sum = 0;  // sum of CE over completion targets
    int64_t completion_count = 0;
    double prompt_sum = 0;  // sum of CE over prompt targets (in a training step: those with w > 0)
    int64_t prompt_count = 0;
};

struct OptimizerSettings {
    double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
    float max_grad_norm = 0.0f;  // 0 = no clipping
};

struct StepResult {
    double grad_norm = 0;
    float clip_coefficient = 1;
    int step = 0;  // AdamW's t after this step
};

struct ParamInfo {
    std::string name;            // Hugging Face key, e.g. "h.0.attn.c_attn.weight"
    std::vector<int64_t> shape;  // Hugging Face shape (real vocabulary)
    bool decay;                  // weight decay applies (>= 2-D weights)
    bool trainable = true;       // has a gradient and AdamW moments (frozen: neither)
    bool adapter = false;        // a LoRA adapter (lora_A / lora_B), not part of the base model
};

// One optimizer step: the sum of its micro-batches' reports, and AdamW's outcome.
struct TrainStepResult {
    LossReport report;
    StepResult step;
    bool skipped = false;  // the loss was not finite: gradients dropped, no update
};

struct MemoryReport {
    size_t parameters = 0, gradients = 0, optimizer = 0, activations = 0, scratch = 0;
    size_t total() const { return parameters + gradients + optimizer + activations + scratch; }
};

enum class Buffer { Param, Grad, AdamM, AdamV };

// Arithmetic of the activations. F32: everything in f32 (TF32 matmuls on CUDA). BF16 (CUDA
// only): mixed precision — f32 master weights, gradients and AdamW moments; bf16 activations,
// activation gradients and a bf16 working copy of the weights that the GEMMs read (bf16
// tensor cores, f32 accumulation). See docs/precision.md.
enum class Precision { F32, BF16 };
inline const char* precision_name(Precision p) { return p == Precision::BF16 ? "bf16" : "f32"; }

struct GenerateOptions {
    int max_new_tokens = 32;
    float temperature = 0.0f;  // 0: greedy
    int top_k = 0;             // 0: off
    float top_p = 1.0f;        // 1: off
    uint64_t seed = 0;
    std::vector<int32_t> stop_ids;  // generation ends at the first of these (not included)
    bool use_cache = true;          // false recomputes the whole sequence each step (for tests)
    // Keep what the KV cache holds of the last call's prompt and tokens when this prompt starts
    // with them (a chat's next turn). Off, a call is a function of its prompt alone; on, the kept
    // rows were computed by another path (decode rows, not the batched prefill), so a near-tie
    // may come out differently.
    bool reuse_cache = false;
    // Called on the computing thread after each new token (index in the new tokens, id);
    // returning false ends generation there with stop_reason "cancelled". Empty: no calls.
    std::function<bool(int index, int32_t token)> on_token;
};

struct GenerateResult {
    std::vector<int32_t> tokens;  // the new tokens only
    std::string stop_reason;      // "stop", "max_tokens", "length" (n_positions reached) or "cancelled"
    int reused = 0;               // prompt tokens whose keys and values the KV cache held from the last call
};

class Model {
public:
    virtual ~Model() = default;
    virtual const ModelSpec& spec() const = 0;
    virtual const char* device() const = 0;
    virtual Precision precision() const = 0;
    virtual BatchShape max_batch() const = 0;
    virtual std::vector<ParamInfo> parameters() const = 0;
    virtual MemoryReport memory() const = 0;

    // Whole tensors by Hugging Face key, in HF shape (copies to/from host float32).
    virtual void read(Buffer which, const std::string& name, float* out, size_t n) const = 0;
    virtual void write(Buffer which, const std::string& name, const float* in, size_t n) = 0;
    virtual int adam_step() const = 0;
    virtual void set_adam_step(int t) = 0;

    // The architecture's initialization (GPT-2: N(0, 0.02), residual projections
    // N(0, 0.02/sqrt(2L)); Llama: N(0, 0.02) as transformers' initializer_range), biases 0,
    // norm weights 1. Deterministic for a seed.
    virtual void init_random(uint64_t seed) = 0;
    // The LoRA adapters' initialization only (A Kaiming-uniform, B zeros), from their own
    // stream: for adapters on a loaded base model. Throws on a model without adapters.
    virtual void init_adapters(uint64_t seed) = 0;

    // Forward + backward, gradients accumulated (+=) with grad scale 1/normalizer.
    virtual LossReport accumulate(const StepBatch& batch, double normalizer) = 0;
    // Global-norm clipping + AdamW over the trainable parameters, then zeroes the gradients.
    virtual StepResult optimizer_step(const OptimizerSettings& opt) = 0;
    // One optimizer step: accumulate() over every micro-batch with the step's normalizer,
    // then optimizer_step(); a non-finite loss skips the update (gradients zeroed).
    virtual TrainStepResult train_step(const std::vector<StepBatch>& micro_batches, double normalizer,
                                       const OptimizerSettings& opt) = 0;
    virtual void zero_grad() = 0;
    // Forward only; every non-padding target's CE is measured, whatever its weight. When
    // token_losses is given (B*T host floats), it receives -log p(target) per position (0 at
    // padding).
    virtual LossReport evaluate(const StepBatch& batch, float* token_losses = nullptr) = 0;
    // Logits (B, T, V) into host memory.
    virtual void logits(const StepBatch& batch, float* out) = 0;
    // Continues one sequence; with the KV cache, each new token costs one row's forward.
    virtual GenerateResult generate(const std::vector<int32_t>& prompt, const GenerateOptions& opts) = 0;
};

// Throws plw::Error when the spec is invalid, the device is unavailable or the model does not fit.
std::unique_ptr<Model> create_model(const ModelSpec& spec, const std::string& device, BatchShape max_batch,
                                    Precision precision = Precision::F32);

// The memory bill create_model would allocate, computed without allocating (nor needing the
// device: a CUDA build can plan for a GPU it does not have).
MemoryReport plan_memory(const ModelSpec& spec, const std::string& device, BatchShape max_batch,
                         Precision precision = Precision::F32);

}  // namespace plw::engine
