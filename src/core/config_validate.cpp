// validate_config: ranges and the rules that tie fields together (choices such
// as model.norm are already enums: the parser checked their names).
// Every message starts with "config: " and names the fields with their values.
#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/config.h"
#include "qianjun/error.h"

namespace qj {
namespace {

// "model.hidden=768", "train.lr=0.0003", "data.valid='data/brown/valid'".
std::string show(const std::string& field, int value) { return field + "=" + std::to_string(value); }
std::string show(const std::string& field, double value) {
  return field + "=" + nlohmann::json(value).dump();  // shortest text that round-trips
}
std::string show(const std::string& field, const std::string& value) {
  return field + "='" + value + "'";
}

void require(bool ok, const std::string& message) {
  if (!ok) throw Error("config: " + message);
}

void at_least(const std::string& field, int value, int minimum) {
  require(value >= minimum, show(field, value) + " must be >= " + std::to_string(minimum));
}

void at_least(const std::string& field, double value, double minimum) {
  require(std::isfinite(value) && value >= minimum,
          show(field, value) + " must be >= " + nlohmann::json(minimum).dump());
}

void positive(const std::string& field, double value) {
  require(std::isfinite(value) && value > 0, show(field, value) + " must be > 0");
}

void divides(const std::string& divisor_field, int divisor, const std::string& field, int value) {
  require(divisor > 0 && value % divisor == 0,
          show(field, value) + " is not divisible by " + show(divisor_field, divisor));
}

void validate_model(const ModelConfig& m) {
  at_least("model.layers", m.layers, 1);
  at_least("model.hidden", m.hidden, 1);
  at_least("model.heads", m.heads, 1);
  at_least("model.kv_heads", m.kv_heads, 0);
  at_least("model.ffn_hidden", m.ffn_hidden, 0);
  at_least("model.vocab", m.vocab, 2);
  at_least("model.vocab_pad_to", m.vocab_pad_to, 1);
  at_least("model.seq_len", m.seq_len, 1);
  // The padded vocabulary is an int, the parameter count an int64 (the
  // default ffn_hidden is checked where it is computed, default_ffn_hidden).
  require(int64_t(m.vocab) + m.vocab_pad_to - 1 <= INT_MAX,
          show("model.vocab", m.vocab) + " padded to a multiple of " +
              show("model.vocab_pad_to", m.vocab_pad_to) + " exceeds 2^31 - 1");
  require(m.parameter_count_approx() < 0x1p62,
          "the model has about " + nlohmann::json(m.parameter_count_approx()).dump() +
              " parameters, more than 2^62 (model.hidden, model.layers, model.vocab)");
  positive("model.rope_theta", m.rope_theta);
  positive("model.norm_eps", m.norm_eps);
  positive("model.init_std", m.init_std);

  // Sizes derived from these fields are ints too: they must not wrap around.
  const int64_t padded_vocab =
      (int64_t(m.vocab) + m.vocab_pad_to - 1) / m.vocab_pad_to * m.vocab_pad_to;
  require(padded_vocab <= INT_MAX, show("model.vocab", m.vocab) + " padded to a multiple of " +
                                       show("model.vocab_pad_to", m.vocab_pad_to) + " is " +
                                       std::to_string(padded_vocab) + " rows, more than 2^31-1");
  require(m.ffn_hidden > 0 || 4 * int64_t(m.hidden) <= INT_MAX,
          show("model.hidden", m.hidden) + " is too large for the default model.ffn_hidden " +
              "(4 x hidden must be below 2^31): set model.ffn_hidden");

  divides("model.heads", m.heads, "model.hidden", m.hidden);
  ModelConfig resolved = m;
  fill_derived_defaults(resolved);
  divides("model.kv_heads", resolved.kv_heads, "model.heads", m.heads);
  positive("model.ffn_hidden (after defaults)", resolved.ffn_hidden);
  if (m.position == Position::Rope) {
    // RoPE rotates pairs of channels, so each head needs an even width.
    require(m.head_dim() % 2 == 0, "model.position='rope' needs an even head dimension, but " +
                                       show("model.hidden", m.hidden) + " / " +
                                       show("model.heads", m.heads) + " = " +
                                       std::to_string(m.head_dim()));
  }
}

// The moe_* keys: a mixture of experts when model.moe_experts > 0, and then
// nothing else may contradict it; on a dense model they must keep their defaults.
void validate_moe(const ModelConfig& m) {
  at_least("model.moe_experts", m.moe_experts, 0);
  if (!m.is_moe()) {
    const ModelConfig dense = model_preset(m.preset);
    std::vector<std::string> set;
    if (m.moe_top_k != dense.moe_top_k) set.push_back(show("model.moe_top_k", m.moe_top_k));
    if (m.moe_ffn_hidden != dense.moe_ffn_hidden)
      set.push_back(show("model.moe_ffn_hidden", m.moe_ffn_hidden));
    if (m.moe_shared_experts != dense.moe_shared_experts)
      set.push_back(show("model.moe_shared_experts", m.moe_shared_experts));
    if (m.moe_first_dense_layers != dense.moe_first_dense_layers)
      set.push_back(show("model.moe_first_dense_layers", m.moe_first_dense_layers));
    if (m.moe_router != dense.moe_router)
      set.push_back(show("model.moe_router", to_string(m.moe_router)));
    if (m.moe_norm_topk != dense.moe_norm_topk) set.push_back("model.moe_norm_topk=false");
    if (m.moe_aux_loss_coef != dense.moe_aux_loss_coef)
      set.push_back(show("model.moe_aux_loss_coef", m.moe_aux_loss_coef));
    if (m.moe_bias_balancing != dense.moe_bias_balancing)
      set.push_back("model.moe_bias_balancing=true");
    if (m.moe_bias_update_rate != dense.moe_bias_update_rate)
      set.push_back(show("model.moe_bias_update_rate", m.moe_bias_update_rate));
    std::string list;
    for (const std::string& s : set) list += (list.empty() ? "" : ", ") + s;
    require(set.empty(), list + " configure experts, but model.moe_experts=0 makes a dense " +
                             "model: set model.moe_experts, or remove the moe_* keys");
    return;
  }
  at_least("model.moe_top_k", m.moe_top_k, 1);
  require(m.moe_top_k <= m.moe_experts, show("model.moe_top_k", m.moe_top_k) +
                                            " is larger than " +
                                            show("model.moe_experts", m.moe_experts) +
                                            ": a token cannot use more experts than exist");
  at_least("model.moe_ffn_hidden", m.moe_ffn_hidden, 0);
  at_least("model.moe_shared_experts", m.moe_shared_experts, 0);
  at_least("model.moe_first_dense_layers", m.moe_first_dense_layers, 0);
  require(m.moe_first_dense_layers < m.layers,
          show("model.moe_first_dense_layers", m.moe_first_dense_layers) +
              " leaves no mixture-of-experts layer among " + show("model.layers", m.layers));
  at_least("model.moe_aux_loss_coef", m.moe_aux_loss_coef, 0.0);
  at_least("model.moe_bias_update_rate", m.moe_bias_update_rate, 0.0);
  ModelConfig r = m;
  fill_derived_defaults(r);
  require(int64_t(r.moe_shared_experts) * r.moe_ffn_hidden <= INT_MAX,
          show("model.moe_shared_experts", m.moe_shared_experts) + " x " +
              show("model.moe_ffn_hidden", r.moe_ffn_hidden) + " exceeds 2^31 - 1");
}

// One backend per pipeline stage, each a name the registry may know (whether
// a plugin loads, or cuda is built in, is found when the stage's ranks start).
void validate_stage_backends(const ParallelConfig& p) {
  if (p.stage_backends.empty()) return;
  require(int(p.stage_backends.size()) == p.pp,
          "parallel.stage_backends lists " + std::to_string(p.stage_backends.size()) +
              " backends, but " + show("parallel.pp", p.pp) + ": give one per pipeline stage");
  for (size_t i = 0; i < p.stage_backends.size(); ++i) {
    const std::string& name = p.stage_backends[i];
    const std::string field = "parallel.stage_backends[" + std::to_string(i) + "]";
    const bool plugin = name.starts_with("plugin:") && name.size() > 7;
    require(name == "cpu" || name == "cuda" || plugin,
            show(field, name) + " (pipeline stage " + std::to_string(i) +
                ") is not a backend: cpu, cuda or plugin:PATH");
  }
}

void validate_parallel(const ParallelConfig& p, const ModelConfig& m) {
  at_least("parallel.tp", p.tp, 1);
  at_least("parallel.pp", p.pp, 1);
  validate_stage_backends(p);
  at_least("parallel.dp", p.dp, 0);
  at_least("parallel.virtual_stages", p.virtual_stages, 1);
  at_least("parallel.ep", p.ep, 1);
  require(p.expert_tp == 1 || p.expert_tp == p.tp,
          show("parallel.expert_tp", p.expert_tp) + " must be 1 (experts whole on every tp rank) "
              "or equal to " + show("parallel.tp", p.tp));
  positive("parallel.bucket_mb", p.bucket_mb);
  require(p.virtual_stages == 1 || p.schedule == PipeSchedule::Interleaved,
          show("parallel.virtual_stages", p.virtual_stages) + " needs " +
              show("parallel.schedule", to_string(PipeSchedule::Interleaved)) + ", not " +
              show("parallel.schedule", to_string(p.schedule)));

  positive("parallel.timeout_s", p.timeout_s);
  require(p.virtual_stages == 1 || p.pp > 1,
          show("parallel.virtual_stages", p.virtual_stages) +
              " needs parallel.pp > 1: one stage gains nothing from interleaving");

  // Megatron's splits: heads, kv groups and the MLP column-wise, the vocabulary
  // row-wise; each tp rank needs a whole share.
  ModelConfig r = m;
  fill_derived_defaults(r);
  divides("parallel.tp", p.tp, "model.heads", r.heads);
  divides("parallel.tp", p.tp, "model.kv_heads", r.kv_heads);
  divides("parallel.tp", p.tp, "model.ffn_hidden", r.ffn_hidden);
  // Routed experts are whole on every tp rank unless expert_tp splits them; the
  // shared experts are a dense MLP, split like one.
  if (p.expert_tp > 1) {
    require(r.is_moe(), show("parallel.expert_tp", p.expert_tp) +
                            " splits the routed experts, but model.moe_experts=0 makes a dense "
                            "model: set model.moe_experts, or parallel.expert_tp=1");
    require(r.moe_ffn_hidden % p.tp == 0,
            show("parallel.expert_tp", p.expert_tp) + " splits each expert over " +
                show("parallel.tp", p.tp) + ", which does not divide " +
                show("model.moe_ffn_hidden", r.moe_ffn_hidden));
  }
  if (r.is_moe() && r.moe_shared_experts > 0)
    divides("parallel.tp", p.tp, "model.moe_shared_experts x model.moe_ffn_hidden",
            r.moe_shared_experts * r.moe_ffn_hidden);
  if (p.sequence_parallel) divides("parallel.tp", p.tp, "model.seq_len", r.seq_len);
  if (p.ep > 1) {
    require(r.is_moe(), show("parallel.ep", p.ep) +
                            " splits the routed experts, but model.moe_experts=0 makes a dense "
                            "model: set model.moe_experts, or parallel.ep=1");
    divides("parallel.ep", p.ep, "model.moe_experts", r.moe_experts);
    if (p.dp > 0) divides("parallel.ep", p.ep, "parallel.dp", p.dp);
  }
  require(int64_t(p.pp) * p.virtual_stages <= r.layers,
          show("model.layers", r.layers) + " is fewer than " + show("parallel.pp", p.pp) +
              " x " + show("parallel.virtual_stages", p.virtual_stages) + " model chunks");
}

void validate_train(const TrainConfig& t, const ParallelConfig& p, const ModelConfig& m) {
  at_least("train.steps", t.steps, 0);
  at_least("train.global_batch", t.global_batch, 1);
  at_least("train.micro_batch", t.micro_batch, 1);
  divides("train.micro_batch", t.micro_batch, "train.global_batch", t.global_batch);
  // A step's tokens are counted (and its schedule's micro-batches listed) in ints.
  const int64_t step_tokens = int64_t(t.global_batch) * m.seq_len;
  require(step_tokens <= INT_MAX, show("train.global_batch", t.global_batch) + " x " +
                                      show("model.seq_len", m.seq_len) + " = " +
                                      std::to_string(step_tokens) +
                                      " tokens per step, more than 2^31-1");
  if (p.dp > 0) {
    require(t.global_batch % (int64_t(t.micro_batch) * p.dp) == 0,
            show("train.global_batch", t.global_batch) + " is not divisible by " +
                show("train.micro_batch", t.micro_batch) + " x " + show("parallel.dp", p.dp));
  }
  at_least("train.lr", t.lr, 0.0);
  at_least("train.min_lr", t.min_lr, 0.0);
  require(t.min_lr <= t.lr, show("train.min_lr", t.min_lr) + " must be <= " + show("train.lr", t.lr));
  at_least("train.warmup_steps", t.warmup_steps, 0);
  require(t.warmup_steps <= t.steps, show("train.warmup_steps", t.warmup_steps) +
                                         " must be <= " + show("train.steps", t.steps));
  at_least("train.grad_clip", t.grad_clip, 0.0);
  at_least("train.eval_every", t.eval_every, 0);
  at_least("train.eval_batches", t.eval_batches, t.eval_every > 0 ? 1 : 0);
  at_least("train.log_every", t.log_every, 1);
  at_least("train.max_bad_steps", t.max_bad_steps, 0);
}

void validate_optim(const OptimConfig& o) {
  for (auto [field, beta] : {std::pair{"optim.beta1", o.beta1}, std::pair{"optim.beta2", o.beta2}}) {
    require(beta >= 0 && beta < 1, show(field, beta) + " must be in [0, 1)");
  }
  positive("optim.eps", o.eps);
  at_least("optim.weight_decay", o.weight_decay, 0.0);
  require(o.zero == 0 || o.zero == 1, show("optim.zero", o.zero) + " must be 0 or 1 (ZeRO-1)");
}

void validate_io(const Config& c) {
  require(!c.data.train.empty(), "data.train must name a dataset (prefix of .bin/.idx)");
  require(c.data.valid_fraction >= 0 && c.data.valid_fraction < 1,
          show("data.valid_fraction", c.data.valid_fraction) + " must be in [0, 1)");
  require(c.data.valid_fraction == 0 || c.data.valid.empty(),
          show("data.valid_fraction", c.data.valid_fraction) + " holds out part of data.train, but " +
              show("data.valid", c.data.valid) + " names a validation set: set one of them, " +
              "data.valid='' to hold out");
  at_least("checkpoint.every", c.checkpoint.every, 0);
  at_least("checkpoint.keep", c.checkpoint.keep, 1);
  require(c.checkpoint.every == 0 || !c.checkpoint.dir.empty(),
          show("checkpoint.every", c.checkpoint.every) + " needs checkpoint.dir");
  require(!c.checkpoint.resume.empty(),
          "checkpoint.resume must be auto, never or the path of a checkpoint");
  require(c.checkpoint.encryption == Encryption::None || !c.checkpoint.dir.empty(),
          show("checkpoint.encryption", to_string(c.checkpoint.encryption)) +
              " needs checkpoint.dir");
  require(!c.checkpoint.async || !c.checkpoint.dir.empty(), "checkpoint.async=true needs checkpoint.dir");
  require(!c.backend.device.empty(), "backend.device must not be empty (cpu, cuda or a plugin)");
  const std::string& collectives = c.backend.collectives;
  require(collectives == "mpi" || (collectives.rfind("plugin:", 0) == 0 && collectives.size() > 7),
          show("backend.collectives", collectives) +
              " must be \"mpi\" or \"plugin:PATH\" (a collective plugin library, or a name "
              "found in QJ_PLUGIN_PATH)");
  at_least("backend.threads", c.backend.threads, 0);
}

}  // namespace

void validate_config(const Config& config) {
  validate_model(config.model);
  validate_moe(config.model);
  validate_parallel(config.parallel, config.model);
  validate_train(config.train, config.parallel, config.model);
  validate_optim(config.optim);
  validate_io(config);
}

}  // namespace qj
