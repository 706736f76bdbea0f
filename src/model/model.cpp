#include "model/model.h"

#include <algorithm>
#include <string>

#include "model/buffer_names.h"
#include "model/vocab_parallel_loss.h"

namespace qj {

using namespace buffer_names;

struct Model::Slot {
  Tensor tokens, targets;  // device copies (embedding / head shards)
  Tensor encoded;          // embedding output [Nl, C] (embedding shard)
  Tensor input, grad_input;  // pipeline boundary (other shards)
  std::vector<BlockActivations> layers;
  std::vector<std::unique_ptr<MoeRouting>> routing;  // host side, one per MoE layer
  std::vector<std::unique_ptr<MoeDispatch>> dispatch;  // the same, expert parallelism
  NormActivations norm_f;
  Tensor logits, lse;
};

namespace {

// A buffer the plan may or may not hold (optional biases, LayerNorm means);
// the names come from buffer_names.h, as the planner's do.
Tensor optional_tensor(const Arenas& arenas, const std::string& name) {
  return arenas.plan().contains(name) ? arenas.tensor(name) : Tensor{};
}

// prefix: where forward reads the layer's weights (the bf16 copies in mixed
// precision) or its gradients; value_prefix: the fp32 values the router reads.
BlockParams bind_block_params(const Arenas& arenas, const std::string& prefix,
                              const std::string& value_prefix) {
  auto get = [&](const std::string& name) { return optional_tensor(arenas, prefix + name); };
  BlockParams p;
  p.norm1_weight = get(std::string(kNorm1) + kWeight);
  p.norm1_bias = get(std::string(kNorm1) + kBias);
  p.qkv_weight = get(kQkvWeight);
  p.qkv_bias = get(kQkvBias);
  p.attn_proj_weight = get(kAttnProjWeight);
  p.attn_proj_bias = get(kAttnProjBias);
  p.norm2_weight = get(std::string(kNorm2) + kWeight);
  p.norm2_bias = get(std::string(kNorm2) + kBias);
  p.fc_weight = get(kFcWeight);
  p.fc_bias = get(kFcBias);
  p.mlp_proj_weight = get(kMlpProjWeight);
  p.mlp_proj_bias = get(kMlpProjBias);
  p.moe.router_weight = optional_tensor(arenas, value_prefix + kRouterWeight);
  p.moe.expert_bias = optional_tensor(arenas, value_prefix + kExpertBias);
  p.moe.fc_weight = get(kExpertsFcWeight);
  p.moe.proj_weight = get(kExpertsProjWeight);
  return p;
}

// A layer's activations: kept per layer and slot under `prefix`, or the layer's
// part of the buffers every layer shares (kRecomputePrefix, see model_plan.cpp).
BlockActivations bind_block_activations(const Arenas& arenas, const std::string& prefix,
                                        const std::vector<ActivationSpec>& specs) {
  auto get = [&](const std::string& name) -> Tensor {
    for (const ActivationSpec& a : specs) {
      if (a.name != name) continue;
      if (arenas.plan().contains(prefix + name)) return arenas.tensor(prefix + name);
      return prefix_view(arenas.tensor(kRecomputePrefix + name), a.shape);
    }
    return {};  // not in this layer (LayerNorm means under RMSNorm, a dense MLP, ...)
  };
  auto norm = [&](const std::string& n) -> NormActivations {
    return {get(n), get(n + kMeanSuffix), get(n + kRstdSuffix)};
  };
  BlockActivations a;
  a.norm1 = norm(kNorm1);
  a.qkv = get(kQkv);
  a.attn_lse = get(kAttnLse);
  a.attn_out = get(kAttnOut);
  a.residual_mid = get(kResidualMid);
  a.norm2 = norm(kNorm2);
  a.fc = get(kFc);
  a.fc_act = get(kFcAct);
  a.moe = {get(kMoeRowToken), get(kMoeRowWeight), get(kMoePosition),      get(kMoeWeight),
           get(kMoeOffsets),  get(kMoeH),         get(kMoeAct),           get(kMoeY),
           get(kMoeExpertRows), get(kMoeToExpertMajor), get(kMoeToSourceMajor)};
  a.residual_out = get(kResidualOut);
  return a;
}

}  // namespace

Model::Model(const ModelConfig& config, int micro_batch, const Backend& backend,
             const Arenas& arenas)
    : Model(config, micro_batch, ModelShard{}, nullptr, make_single_rank_communicator("tp"),
            backend, arenas, nullptr) {}

Model::Model(const ModelConfig& config, int micro_batch, const ModelShard& shard,
             Communicator& tp, const Backend& backend, const Arenas& arenas, Communicator* ep)
    : Model(config, micro_batch, shard, &tp, nullptr, backend, arenas, ep) {}

Model::Model(const ModelConfig& config, int micro_batch, const ModelShard& shard,
             Communicator* tp, std::unique_ptr<Communicator> own_tp, const Backend& backend,
             const Arenas& arenas, Communicator* ep)
    : config_(config),
      micro_batch_(micro_batch),
      shard_(shard),
      be_(backend),
      own_tp_(std::move(own_tp)),
      tp_(tp ? *tp : *own_tp_, shard.sequence_parallel),
      own_ep_(ep ? nullptr : make_single_rank_communicator("ep")),
      ep_(ep ? *ep : *own_ep_) {
  check_model_config(config_, micro_batch_, shard_);
  QJ_CHECK(!config_.is_moe() || be_.has_moe_ops(),
           "model: model.moe_experts=" + std::to_string(config_.moe_experts) +
               " needs the mixture-of-experts ops (gather_rows, combine_rows, row_dot, "
               "grouped_matmul, grouped_matmul_wgrad), which backend '" + be_.name() +
               "' does not have");
  QJ_CHECK(tp_.size() == shard.tp_size && tp_.rank() == shard.tp_rank,
           "model: the tensor-parallel group has rank " + std::to_string(tp_.rank()) + " of " +
               std::to_string(tp_.size()) + ", the shard expects rank " +
               std::to_string(shard.tp_rank) + " of " + std::to_string(shard.tp_size));
  QJ_CHECK(ep_.size() == shard.ep_size && ep_.rank() == shard.ep_rank,
           "model: the expert-parallel group has rank " + std::to_string(ep_.rank()) + " of " +
               std::to_string(ep_.size()) + ", the shard expects rank " +
               std::to_string(shard.ep_rank) + " of " + std::to_string(shard.ep_size));
  const int64_t N = tokens_per_micro_batch();
  rope_ = {optional_tensor(arenas, kRopeCos), optional_tensor(arenas, kRopeSin)};
  d_residual_ = arenas.tensor(kGradResidual);
  const std::string chunk = chunk_prefix(shard_.chunk);
  loss_stats_ = optional_tensor(arenas, chunk + kLossStats);
  loss_stats_all_ = optional_tensor(arenas, chunk + kLossStatsAll);
  bind_parameters(arenas);
  bind_slots(arenas);
  bind_blocks(arenas);
  QJ_CHECK(shard_.embedding || slots_[0].input.numel() == shard_.local_tokens(N) * config_.hidden,
           "model: the memory plan was made for another micro-batch size");
  host_stats_.assign(size_t(N) * 3 * size_t(shard_.tp_size), 0.f);
  host_losses_.assign(size_t(N), 0.f);
  host_lse_.assign(size_t(N), 0.f);
  have_targets_.assign(size_t(shard_.slots), false);
  if (rope_.cos.defined()) be_.rope_tables(rope_.cos, rope_.sin, float(config_.rope_theta));
  zero_grads();
}

Model::~Model() = default;

void Model::set_aux_loss_scale(double scale) {
  for (TransformerBlock& b : blocks_)
    if (b.moe()) b.moe()->set_aux_loss_scale(scale);
}

double Model::moe_aux_loss_sum() const {
  double sum = 0;
  for (const TransformerBlock& b : blocks_)
    if (const MoeLayer* moe = b.moe()) sum += moe->aux_loss_sum();
  return sum;
}

std::vector<double> Model::moe_expert_load() const {
  std::vector<double> load;
  for (const TransformerBlock& b : blocks_)
    if (const MoeLayer* moe = b.moe())
      load.insert(load.end(), moe->step_load().begin(), moe->step_load().end());
  return load;
}

int64_t Model::moe_rows_to_peers() const {
  int64_t rows = 0;
  for (const TransformerBlock& b : blocks_)
    if (const MoeLayer* moe = b.moe()) rows += moe->rows_to_peers();
  return rows;
}

void Model::reset_moe_stats() {
  for (TransformerBlock& b : blocks_)
    if (b.moe()) b.moe()->reset_stats();
}

void Model::update_expert_bias(const std::vector<double>& load) {
  if (!config_.moe_bias_balancing) return;
  const size_t E = size_t(config_.moe_experts);
  const size_t experts = E * size_t(std::count_if(blocks_.begin(), blocks_.end(),
                                                    [](const TransformerBlock& b) { return b.moe(); }));
  QJ_CHECK(load.size() == experts, "update_expert_bias: " + std::to_string(load.size()) +
                                       " loads for " + std::to_string(experts) + " experts");
  std::vector<float> bias(E);
  size_t layer = 0;
  for (TransformerBlock& b : blocks_) {
    if (!b.moe()) continue;
    const Tensor& t = b.moe_params().expert_bias;
    be_.copy_to_host(bias.data(), t.data, t.nbytes());
    moe_update_bias(config_.moe_bias_update_rate,
                    std::vector<double>(load.begin() + int64_t(layer * E),
                                        load.begin() + int64_t((layer + 1) * E)),
                    bias.data());
    be_.copy_to_device(t.data, bias.data(), t.nbytes());
    ++layer;
  }
  // Routing reads the fp32 values; the bf16 copies are kept equal all the same.
  std::vector<ParamRef> biases;
  for (const ParamRef& p : params_)
    if (p.name.ends_with(kExpertBias)) biases.push_back(p);
  refresh_weights(be_, biases);
}

void Model::bind_parameters(const Arenas& arenas) {
  specs_ = parameter_specs(config_, shard_);
  for (const ParamSpec& spec : specs_)
    params_.push_back({spec.name, arenas.tensor(spec.name), arenas.tensor(kGradPrefix + spec.name),
                       arenas.tensor(weight_name(spec.name, shard_)), spec.weight_decay});
  auto weight = [&](const std::string& n) { return optional_tensor(arenas, weight_name(n, shard_)); };
  auto grad = [&](const std::string& n) { return optional_tensor(arenas, kGradPrefix + n); };
  wte_ = weight(kTokenEmbedding), d_wte_ = grad(kTokenEmbedding);
  wpe_ = weight(kPositionEmbedding), d_wpe_ = grad(kPositionEmbedding);
  const std::string norm_f_weight = std::string(kFinalNorm) + kWeight;
  const std::string norm_f_bias = std::string(kFinalNorm) + kBias;
  norm_f_weight_ = weight(norm_f_weight), d_norm_f_weight_ = grad(norm_f_weight);
  norm_f_bias_ = weight(norm_f_bias), d_norm_f_bias_ = grad(norm_f_bias);
  const char* head = config_.tied_embeddings ? kTokenEmbedding : kHeadWeight;
  head_weight_ = weight(head), d_head_weight_ = grad(head);

  // Backward finishes the head first, then the layers from the last, then the
  // embedding. A tied wte is finished by whichever of the two runs last here.
  layer_params_.assign(size_t(shard_.layer_count(config_)), {});
  for (size_t i = 0; i < specs_.size(); ++i) {
    const std::string& name = specs_[i].name;
    if (name.starts_with("layers.")) {
      const int layer = std::stoi(name.substr(7));
      layer_params_[size_t(layer - shard_.first_layer)].push_back(i);
    } else if (name == kPositionEmbedding || (name == kTokenEmbedding && shard_.embedding)) {
      embedding_params_.push_back(i);
    } else {
      head_params_.push_back(i);
    }
  }
}

void Model::bind_slots(const Arenas& arenas) {
  slots_.resize(size_t(shard_.slots));
  for (int k = 0; k < shard_.slots; ++k) {
    Slot& s = slots_[size_t(k)];
    const std::string p = slot_prefix(shard_.chunk, k);
    auto get = [&](const std::string& name) { return optional_tensor(arenas, p + name); };
    s.tokens = get(kTokens), s.encoded = get(kEncoded);
    s.input = get(kInput), s.grad_input = get(kGradInput);
    const int64_t B = micro_batch_, N = tokens_per_micro_batch();
    for (int i = shard_.first_layer; i < shard_.end(config_); ++i) {
      BlockActivations a = bind_block_activations(
          arenas, p + layer_prefix(i), layer_activations(config_, shard_, B, N, i));
      if (config_.is_moe_layer(i)) {
        s.routing.push_back(std::make_unique<MoeRouting>());
        const int64_t Nr = shard_.routed_tokens(N);
        s.routing.back()->reserve(Nr, config_.moe_experts, config_.moe_top_k);
        a.moe.routing = s.routing.back().get();
        if (shard_.ep_size > 1) {
          s.dispatch.push_back(std::make_unique<MoeDispatch>());
          s.dispatch.back()->reserve(shard_.ep_size, shard_.local_experts(config_),
                                     moe_expert_rows(config_, shard_, Nr));
          a.moe.dispatch = s.dispatch.back().get();
        }
      }
      s.layers.push_back(a);
    }
    s.targets = get(kTargets);
    s.norm_f = {get(kFinalNorm), get(std::string(kFinalNorm) + kMeanSuffix),
                get(std::string(kFinalNorm) + kRstdSuffix)};
    s.logits = get(kLogits), s.lse = get(kLse);
  }
}

void Model::bind_blocks(const Arenas& arenas) {
  auto get = [&](const char* name) { return optional_tensor(arenas, name); };
  scratch_ = {arenas.tensor(kGradNormOut), arenas.tensor(kGradNormIn),
              arenas.tensor(kGradAttnOut), arenas.tensor(kGradQkv),
              get(kGradFcAct),             get(kGradFc),
              get(kTpFull),                get(kTpReduced),
              {get(kMoeLogits), get(kMoeRows), get(kGradMoeRows), get(kGradMoeAct),
               get(kGradMoeH), get(kMoeRowDot), get(kMoeOut), get(kMoeStats),
               get(kMoeReceived), get(kMoeExpertOut), get(kMoeTokens), get(kMoeGradTokens),
               get(kMoeLocalOut)}};
  blocks_.reserve(size_t(shard_.layer_count(config_)));
  for (int i = shard_.first_layer; i < shard_.end(config_); ++i) {
    const std::string prefix = layer_prefix(i), grads = kGradPrefix + prefix;
    blocks_.emplace_back(config_, i, micro_batch_, shard_.heads(config_),
                         shard_.kv_heads(config_), be_, tp_, ep_, shard_.experts_split(),
                         bind_block_params(arenas, weight_name(prefix, shard_), prefix),
                         bind_block_params(arenas, grads, grads), scratch_, rope_);
  }
}

void Model::zero_grads() {
  for (const ParamRef& p : params_) be_.fill(p.grad, 0.f);
}

Tensor Model::input(int slot) const { return slots_.at(size_t(slot)).input; }
Tensor Model::grad_input(int slot) const { return slots_.at(size_t(slot)).grad_input; }
Tensor Model::logits() const { return slots_[0].logits; }

Tensor Model::output(int slot) const { return last_hidden(slots_.at(size_t(slot))); }

const Tensor& Model::layer_input(const Slot& slot, int local_layer) const {
  if (local_layer > 0) return slot.layers[size_t(local_layer - 1)].residual_out;
  return shard_.embedding ? slot.encoded : slot.input;
}

const Tensor& Model::last_hidden(const Slot& slot) const {
  return layer_input(slot, int(blocks_.size()));
}

// Vocabulary-parallel embedding: each rank looks up the tokens of its vocabulary
// rows (zero rows for the others) and the sum over tp assembles the embedding.
// Positions are added by tp rank 0 only, so the sum counts them once.
void Model::embed(Slot& slot, const int32_t* tokens) {
  QJ_CHECK(tokens, "model: the embedding shard needs tokens");
  const int64_t N = tokens_per_micro_batch();
  for (int64_t n = 0; n < N; ++n)
    QJ_CHECK(tokens[n] >= 0 && tokens[n] < config_.vocab,
             "model: token id " + std::to_string(tokens[n]) + " at position " + std::to_string(n) +
                 " is outside the vocabulary [0, " + std::to_string(config_.vocab) +
                 ") (model.vocab)");
  be_.copy_to_device(slot.tokens.data, tokens, slot.tokens.nbytes());
  const Tensor full = tp_.sequence_parallel() ? scratch_.tp_full : slot.encoded;
  be_.embedding_forward(slot.tokens, wte_, tp_.rank() == 0 ? wpe_ : Tensor{}, full,
                        config_.seq_len, shard_.vocab_start(config_));
  tp_.reduce_tokens(full, slot.encoded);
}

float Model::forward(int slot_index, const int32_t* tokens, const int32_t* targets) {
  Slot& slot = slots_.at(size_t(slot_index));
  if (shard_.embedding) embed(slot, tokens);
  for (size_t i = 0; i < blocks_.size(); ++i)
    blocks_[i].forward(layer_input(slot, int(i)), slot.layers[i]);
  have_targets_[size_t(slot_index)] = false;
  if (!shard_.head) return 0.f;
  return head_forward(slot, last_hidden(slot), targets);
}

// Final norm, the vocabulary-parallel head and cross-entropy. The loss combines
// every tp rank's row statistics (vocab_parallel_loss.h): logits never gathered.
float Model::head_forward(Slot& slot, const Tensor& x, const int32_t* targets) {
  norm_forward(be_, config_, x, norm_f_weight_, norm_f_bias_, slot.norm_f);
  const Tensor ln = tp_.gather_tokens(slot.norm_f.out, scratch_.tp_full);
  linear_forward(be_, ln, head_weight_, Tensor{}, slot.logits);
  if (!targets) return 0.f;
  have_targets_[size_t(&slot - slots_.data())] = true;

  const int64_t N = tokens_per_micro_batch();
  be_.copy_to_device(slot.targets.data, targets, slot.targets.nbytes());
  be_.cross_entropy_stats(slot.logits, slot.targets, loss_stats_, config_.vocab,
                          shard_.vocab_start(config_), kIgnoreIndex);
  const Tensor& stats = tp_.size() > 1 ? loss_stats_all_ : loss_stats_;
  if (tp_.size() > 1) tp_.comm().all_gather(loss_stats_, loss_stats_all_);
  be_.copy_to_host(host_stats_.data(), stats.data, stats.nbytes());
  combine_loss_stats(host_stats_.data(), tp_.size(), N, targets, kIgnoreIndex,
                     host_losses_.data(), host_lse_.data());
  be_.copy_to_device(slot.lse.data, host_lse_.data(), slot.lse.nbytes());
  double sum = 0;
  valid_targets_ = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] == kIgnoreIndex) continue;
    sum += host_losses_[size_t(n)];
    ++valid_targets_;
  }
  return valid_targets_ ? float(sum / double(valid_targets_)) : 0.f;
}

void Model::head_backward(Slot& slot, const Tensor& x, float dloss) {
  // Cross-entropy, in place: logits -> dlogits.
  be_.cross_entropy_backward(slot.logits, slot.targets, slot.lse, dloss, config_.vocab,
                             shard_.vocab_start(config_), kIgnoreIndex);
  // Head (tied: its gradient adds into grad.wte), then the final norm.
  const Tensor ln = tp_.gather_tokens(slot.norm_f.out, scratch_.tp_full);  // again, not kept
  linear_backward(be_, slot.logits, ln, head_weight_, scratch_.d_norm_out, d_head_weight_,
                  Tensor{});
  const Tensor d_ln = tp_.sequence_parallel() ? scratch_.tp_reduced : scratch_.d_norm_out;
  tp_.reduce_tokens(scratch_.d_norm_out, d_ln);
  norm_backward(be_, config_, d_ln, x, norm_f_weight_, slot.norm_f, d_residual_,
                d_norm_f_weight_, d_norm_f_bias_);
}

void Model::backward(int slot_index, float dloss, const GradReadyFn& on_ready) {
  Slot& slot = slots_.at(size_t(slot_index));
  auto finished = [&](const std::vector<size_t>& indices) {
    if (on_ready)
      for (size_t i : indices) on_ready(i);
  };
  if (shard_.head) {
    QJ_CHECK(have_targets_[size_t(slot_index)],
             "model: backward needs a forward with targets just before it");
    have_targets_[size_t(slot_index)] = false;  // the logits are about to become their gradient
    head_backward(slot, last_hidden(slot), dloss);
    finished(head_params_);
  }
  for (int i = int(blocks_.size()) - 1; i >= 0; --i) {
    blocks_[size_t(i)].backward(layer_input(slot, i), slot.layers[size_t(i)], d_residual_);
    finished(layer_params_[size_t(i)]);
  }
  if (shard_.embedding) {
    const Tensor d_full = tp_.gather_tokens(d_residual_, scratch_.tp_full);
    be_.embedding_backward(d_full, slot.tokens, d_wte_, d_wpe_, config_.seq_len,
                           shard_.vocab_start(config_));
    finished(embedding_params_);
  } else {
    be_.copy(d_residual_, slot.grad_input);
  }
}

}  // namespace qj
