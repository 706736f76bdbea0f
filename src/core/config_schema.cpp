#include "core/config_schema.h"

#include <limits>

#include "qianjun/error.h"

namespace qj::config_schema {

using nlohmann::json;

const SectionSchema<ModelConfig>& model_section() {
  using M = ModelConfig;
  static const SectionSchema<M> schema{
      "model", &Config::model,
      {{"preset", &M::preset}, {"layers", &M::layers}, {"hidden", &M::hidden},
       {"heads", &M::heads}, {"kv_heads", &M::kv_heads}, {"ffn_hidden", &M::ffn_hidden},
       {"vocab", &M::vocab}, {"vocab_pad_to", &M::vocab_pad_to}, {"seq_len", &M::seq_len},
       {"norm", &M::norm}, {"activation", &M::activation}, {"position", &M::position},
       {"rope_theta", &M::rope_theta}, {"bias", &M::bias},
       {"tied_embeddings", &M::tied_embeddings}, {"norm_eps", &M::norm_eps},
       {"recompute", &M::recompute}, {"init_std", &M::init_std},
       {"moe_experts", &M::moe_experts}, {"moe_top_k", &M::moe_top_k},
       {"moe_ffn_hidden", &M::moe_ffn_hidden}, {"moe_shared_experts", &M::moe_shared_experts},
       {"moe_first_dense_layers", &M::moe_first_dense_layers}, {"moe_router", &M::moe_router},
       {"moe_norm_topk", &M::moe_norm_topk}, {"moe_aux_loss_coef", &M::moe_aux_loss_coef},
       {"moe_bias_balancing", &M::moe_bias_balancing},
       {"moe_bias_update_rate", &M::moe_bias_update_rate}}};
  return schema;
}

const SectionSchema<ParallelConfig>& parallel_section() {
  using P = ParallelConfig;
  static const SectionSchema<P> schema{
      "parallel", &Config::parallel,
      {{"tp", &P::tp}, {"pp", &P::pp}, {"dp", &P::dp},
       {"sequence_parallel", &P::sequence_parallel}, {"ep", &P::ep},
       {"expert_tp", &P::expert_tp}, {"schedule", &P::schedule},
       {"virtual_stages", &P::virtual_stages}, {"bucket_mb", &P::bucket_mb},
       {"overlap_grad_reduce", &P::overlap_grad_reduce}, {"timeout_s", &P::timeout_s},
       {"stage_backends", &P::stage_backends}}};
  return schema;
}

const SectionSchema<TrainConfig>& train_section() {
  using T = TrainConfig;
  static const SectionSchema<T> schema{
      "train", &Config::train,
      {{"steps", &T::steps}, {"global_batch", &T::global_batch},
       {"micro_batch", &T::micro_batch}, {"lr", &T::lr}, {"min_lr", &T::min_lr},
       {"warmup_steps", &T::warmup_steps}, {"grad_clip", &T::grad_clip}, {"seed", &T::seed},
       {"precision", &T::precision}, {"eval_every", &T::eval_every},
       {"eval_batches", &T::eval_batches}, {"log_every", &T::log_every},
       {"max_bad_steps", &T::max_bad_steps}, {"export_path", &T::export_path}, {"init_from", &T::init_from}}};
  return schema;
}

const SectionSchema<OptimConfig>& optim_section() {
  using O = OptimConfig;
  static const SectionSchema<O> schema{
      "optim", &Config::optim,
      {{"name", &O::name}, {"beta1", &O::beta1}, {"beta2", &O::beta2}, {"eps", &O::eps},
       {"weight_decay", &O::weight_decay}, {"zero", &O::zero}}};
  return schema;
}

const SectionSchema<DataConfig>& data_section() {
  using D = DataConfig;
  static const SectionSchema<D> schema{
      "data", &Config::data,
      {{"train", &D::train}, {"valid", &D::valid}, {"shuffle", &D::shuffle},
       {"valid_fraction", &D::valid_fraction}}};
  return schema;
}

const SectionSchema<TokenizerConfig>& tokenizer_section() {
  using T = TokenizerConfig;
  static const SectionSchema<T> schema{
      "tokenizer", &Config::tokenizer, {{"encoder", &T::encoder}, {"vocab", &T::vocab}}};
  return schema;
}

const SectionSchema<CheckpointConfig>& checkpoint_section() {
  using C = CheckpointConfig;
  static const SectionSchema<C> schema{
      "checkpoint", &Config::checkpoint,
      {{"dir", &C::dir}, {"every", &C::every}, {"keep", &C::keep}, {"resume", &C::resume},
       {"async", &C::async}, {"encryption", &C::encryption}, {"key_file", &C::key_file}}};
  return schema;
}

const SectionSchema<BackendConfig>& backend_section() {
  using B = BackendConfig;
  static const SectionSchema<B> schema{
      "backend", &Config::backend,
      {{"device", &B::device}, {"collectives", &B::collectives}, {"threads", &B::threads},
       {"strict", &B::strict}}};
  return schema;
}

std::vector<std::string> section_names() {
  std::vector<std::string> names;
  for_each_section([&](const auto& schema) { names.push_back(schema.name); });
  return names;
}

std::vector<std::string> keys_of(const std::string& section) {
  std::vector<std::string> keys;
  for_each_section([&](const auto& schema) {
    if (section != schema.name) return;
    for (const auto& field : schema.fields) keys.push_back(field.name);
  });
  return keys;
}

namespace {

// `"768" (string)`: the offending value, shortened, and its JSON type.
std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text + " (" + value.type_name() + ")";
}

[[noreturn]] void wrong_type(const json& value, const std::string& field, const char* expected) {
  throw Error("config: " + field + " must be " + expected + ", got " + describe(value));
}

}  // namespace

void read_value(const json& value, int& out, const std::string& field) {
  if (!value.is_number_integer()) wrong_type(value, field, "an integer");
  const bool fits = value.is_number_unsigned()
                        ? value.get<uint64_t>() <= uint64_t(std::numeric_limits<int>::max())
                        : value.get<int64_t>() >= std::numeric_limits<int>::min() &&
                              value.get<int64_t>() <= std::numeric_limits<int>::max();
  if (!fits) wrong_type(value, field, "an integer that fits in 32 bits");
  out = value.get<int>();
}

void read_value(const json& value, double& out, const std::string& field) {
  if (!value.is_number()) wrong_type(value, field, "a number");
  out = value.get<double>();
}

void read_value(const json& value, bool& out, const std::string& field) {
  if (!value.is_boolean()) wrong_type(value, field, "a boolean (true or false)");
  out = value.get<bool>();
}

void read_value(const json& value, std::string& out, const std::string& field) {
  if (!value.is_string()) wrong_type(value, field, "a string");
  out = value.get<std::string>();
}

void read_value(const json& value, uint64_t& out, const std::string& field) {
  if (!value.is_number_unsigned()) wrong_type(value, field, "a non-negative integer");
  out = value.get<uint64_t>();
}

void read_value(const json& value, std::vector<std::string>& out, const std::string& field) {
  if (!value.is_array()) wrong_type(value, field, "a list of strings");
  out.clear();
  for (size_t i = 0; i < value.size(); ++i)
    read_value(value[i], out.emplace_back(), field + "[" + std::to_string(i) + "]");
}

void check_value_type(const std::string& section, const std::string& key, const json& value) {
  for_each_section([&](const auto& schema) {
    if (section != schema.name) return;
    auto scratch = Config{}.*schema.member;  // a throwaway section to read into
    for (const auto& field : schema.fields) {
      if (key == field.name) read_field(field, value, scratch, section + "." + key);
    }
  });
}

}  // namespace qj::config_schema
