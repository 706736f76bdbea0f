// The transformer model on the CPU backend: its memory plan, its init, that the
// training step allocates nothing, and its gradients against finite differences.
// (tests/python/test_model_vs_torch.py compares it with PyTorch.)
#include <cmath>
#include <memory>
#include <vector>

#include <catch2/catch.hpp>

#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model.h"
#include "model/normal_rng.h"
#include "qianjun/backend.h"
#include "unit/allocation_counter.h"

namespace {

using qj::Model;
using qj::ModelConfig;

ModelConfig gpt2_config() {
  ModelConfig c;  // the struct's defaults are GPT-2's
  c.layers = 2, c.hidden = 16, c.heads = 2, c.kv_heads = 2, c.ffn_hidden = 64;
  c.vocab = 23, c.vocab_pad_to = 8, c.seq_len = 6;
  return c;
}

ModelConfig llama_config() {
  ModelConfig c;
  c.preset = qj::Preset::Llama, c.norm = qj::Norm::RmsNorm;
  c.activation = qj::Activation::SwiGlu, c.position = qj::Position::Rope;
  c.bias = false, c.tied_embeddings = false;
  c.layers = 2, c.hidden = 16, c.heads = 4, c.kv_heads = 2, c.ffn_hidden = 24;
  c.vocab = 23, c.vocab_pad_to = 8, c.seq_len = 6;
  return c;
}

// Mixtures of experts where every token uses every expert (top_k = experts),
// so the loss is smooth for finite differences; the choice of k < E experts
// is tested in test_moe_routing.cpp and against PyTorch.
ModelConfig gpt2_moe_config() {
  ModelConfig c = gpt2_config();
  c.moe_experts = 3, c.moe_top_k = 3, c.moe_ffn_hidden = 8;
  return c;
}

ModelConfig llama_moe_config() {
  ModelConfig c = llama_config();
  c.moe_experts = 3, c.moe_top_k = 3, c.moe_ffn_hidden = 8, c.moe_router = qj::MoeRouter::Sigmoid;
  c.moe_norm_topk = false, c.moe_shared_experts = 2, c.moe_first_dense_layers = 1;
  c.moe_bias_balancing = true;
  return c;
}

// A model with its own plan and arenas on the CPU backend.
struct TestModel {
  const qj::Backend& backend = qj::get_backend("cpu");
  qj::MemoryPlan plan;
  std::unique_ptr<qj::Arenas> arenas;
  std::unique_ptr<Model> model;

  TestModel(const ModelConfig& config, int micro_batch) {
    Model::plan(config, micro_batch, plan);
    arenas = std::make_unique<qj::Arenas>(plan, backend);
    model = std::make_unique<Model>(config, micro_batch, backend, *arenas);
  }
};

std::vector<int32_t> random_ids(size_t n, int vocab, uint64_t seed) {
  qj::NormalRng rng(seed);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = int32_t(rng.next() % uint64_t(vocab));
  return ids;
}

// Weights large enough that every path through the model matters; norm weights
// away from 1 and biases non-zero so their gradients are exercised too.
void randomize_weights(Model& model, uint64_t seed) {
  qj::NormalRng rng(seed);
  for (const qj::ParamRef& p : model.params()) {
    float* v = p.value.f32();
    const bool norm = p.name.find("norm") != std::string::npos;
    for (int64_t i = 0; i < p.value.numel(); ++i)
      v[i] = float(norm && p.name.ends_with("weight") ? 1.0 + 0.2 * rng.normal() : 0.3 * rng.normal());
  }
}

double dot(const qj::Tensor& a, const std::vector<double>& b) {
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += double(a.f32()[i]) * b[size_t(i)];
  return s;
}

}  // namespace

TEST_CASE("plan registers every parameter, its gradient, and only the config's tensors") {
  for (const ModelConfig& config : {gpt2_config(), llama_config()}) {
    qj::MemoryPlan plan;
    Model::plan(config, 3, plan);
    int64_t param_elements = 0, grad_elements = 0;
    for (const qj::PlannedBuffer& b : plan.buffers()) {
      int64_t n = 1;
      for (int64_t d : b.shape) n *= d;
      if (b.arena == qj::ArenaKind::Params) param_elements += n;
      if (b.arena == qj::ArenaKind::Grads) grad_elements += n;
    }
    const int64_t padding_rows = config.padded_vocab() - config.vocab;
    const int64_t padded = padding_rows * config.hidden * (config.tied_embeddings ? 1 : 2);
    CHECK(param_elements == config.parameter_count() + padded);
    CHECK(grad_elements == param_elements);
    CHECK(plan.contains("wpe") == (config.position == qj::Position::Learned));
    CHECK(plan.contains("lm_head.weight") == !config.tied_embeddings);
    CHECK(plan.contains("layers.1.attn.qkv.bias") == config.bias);
    CHECK(plan.contains("layers.0.norm2.bias") == config.norm_has_bias());
    CHECK(plan.contains("rope.cos") == (config.position == qj::Position::Rope));
    const int64_t qkv_rows = int64_t(config.heads + 2 * config.kv_heads) * config.head_dim();
    CHECK(plan.buffer("layers.1.attn.qkv.weight").shape == std::vector<int64_t>{qkv_rows, config.hidden});
    CHECK(plan.buffer("act.c0.s0.layers.1.qkv").shape == std::vector<int64_t>{3 * config.seq_len, qkv_rows});
    CHECK(plan.buffer("grad.wte").shape == std::vector<int64_t>{config.padded_vocab(), config.hidden});
  }
}

TEST_CASE("the model binds every buffer its plan holds, and only those") {
  for (const ModelConfig& base : {gpt2_config(), llama_config()})
    for (qj::Recompute recompute : {qj::Recompute::None, qj::Recompute::Selective, qj::Recompute::Full}) {
      ModelConfig config = base;
      config.recompute = recompute;
      TestModel m(config, 2);
      INFO(qj::to_string(config.preset) << ", recompute " << qj::to_string(recompute));
      CHECK(m.arenas->never_bound().empty());
    }
  // A buffer the binder does not know (a misspelt name) is reported.
  qj::MemoryPlan plan;
  Model::plan(gpt2_config(), 2, plan);
  plan.add(qj::ArenaKind::Activations, "act.grad.nrom_out", qj::DType::F32, {4});
  qj::Arenas arenas(plan, qj::get_backend("cpu"));
  Model model(gpt2_config(), 2, qj::get_backend("cpu"), arenas);
  CHECK(arenas.never_bound() == std::vector<std::string>{"act.grad.nrom_out"});
}

TEST_CASE("plan rejects unresolved config fields") {
  qj::MemoryPlan plan;
  ModelConfig config = gpt2_config();
  config.kv_heads = 0;
  REQUIRE_THROWS_AS(Model::plan(config, 2, plan), qj::Error);
}

TEST_CASE("params() lists weights in the documented order with the decay mask") {
  TestModel t(gpt2_config(), 1);
  const auto& params = t.model->params();
  REQUIRE(params.size() == 2 + 2 * 12 + 2);
  CHECK(params[0].name == "wte");
  CHECK(params[1].name == "wpe");
  CHECK(params[2].name == "layers.0.norm1.weight");
  CHECK(params[4].name == "layers.0.attn.qkv.weight");
  CHECK(params[13].name == "layers.0.mlp.proj.bias");
  CHECK(params.back().name == "norm_f.bias");
  for (const auto& p : params) {
    const bool matrix = p.value.ndim == 2;
    INFO(p.name);
    CHECK(p.weight_decay == matrix);
    CHECK(p.grad.numel() == p.value.numel());
  }
}

TEST_CASE("init_weights follows GPT-2's recipe and depends only on the seed") {
  ModelConfig config = gpt2_config();
  config.hidden = 64, config.heads = 4, config.ffn_hidden = 256, config.vocab = 1000,
  config.vocab_pad_to = 128;
  TestModel t(config, 1);
  t.model->init_weights(7);
  auto find = [&](const std::string& name) {
    for (const auto& p : t.model->params())
      if (p.name == name) return p.value;
    FAIL("no parameter " << name);
    return qj::Tensor{};
  };
  auto stddev = [](const float* x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
    return std::sqrt(s / double(n));
  };
  const qj::Tensor wte = find("wte");
  const int64_t real = int64_t(config.vocab) * config.hidden;
  CHECK(stddev(wte.f32(), real) == Approx(0.02).epsilon(0.02));
  for (int64_t i = real; i < wte.numel(); ++i) REQUIRE(wte.f32()[i] == 0.f);
  const qj::Tensor proj = find("layers.1.mlp.proj.weight");
  CHECK(stddev(proj.f32(), proj.numel()) == Approx(0.02 / 2.0).epsilon(0.03));  // 1/sqrt(2*2 layers)
  CHECK(find("layers.0.norm2.weight").f32()[5] == 1.f);
  CHECK(find("layers.0.attn.qkv.bias").f32()[5] == 0.f);
  const float first = find("layers.0.attn.qkv.weight").f32()[3];
  t.model->init_weights(7);
  CHECK(find("layers.0.attn.qkv.weight").f32()[3] == first);
  t.model->init_weights(8);
  CHECK(find("layers.0.attn.qkv.weight").f32()[3] != first);
}

TEST_CASE("the loss at a small init is log(vocab)") {
  for (ModelConfig config : {gpt2_config(), llama_config()}) {
    config.init_std = 1e-3;
    TestModel t(config, 2);
    t.model->init_weights(1);
    const auto tokens = random_ids(12, config.vocab, 1);
    auto targets = random_ids(12, config.vocab, 2);
    targets[3] = Model::kIgnoreIndex;
    const float loss = t.model->forward(tokens.data(), targets.data());
    CHECK(t.model->valid_targets() == 11);
    CHECK(loss == Approx(std::log(double(config.vocab))).margin(1e-3));
  }
}

TEST_CASE("forward, backward and zero_grads allocate nothing") {
  for (const ModelConfig& config :
       {gpt2_config(), llama_config(), gpt2_moe_config(), llama_moe_config()}) {
    TestModel t(config, 2);
    t.model->init_weights(3);
    const auto tokens = random_ids(12, config.vocab, 3);
    const auto targets = random_ids(12, config.vocab, 4);
    const qj::test::AllocationCounter counter;
    t.model->forward(tokens.data(), targets.data());
    t.model->backward(1.f / 12);
    t.model->zero_grads();
    t.model->forward(tokens.data(), nullptr);
    const long allocations = counter.count();  // read before Catch allocates
    CHECK(allocations == 0);
  }
}

TEST_CASE("gradients accumulate over micro-batches and zero_grads clears them") {
  TestModel t(llama_config(), 1);
  randomize_weights(*t.model, 5);
  const auto tokens = random_ids(6, 23, 5), targets = random_ids(6, 23, 6);
  t.model->forward(tokens.data(), targets.data());
  t.model->backward(0.5f);
  const qj::Tensor g = t.model->params()[3].grad;
  std::vector<float> once(g.f32(), g.f32() + g.numel());
  t.model->forward(tokens.data(), targets.data());
  t.model->backward(0.5f);
  for (int64_t i = 0; i < g.numel(); ++i) REQUIRE(g.f32()[i] == Approx(2 * once[size_t(i)]).margin(1e-7));
  t.model->zero_grads();
  for (const auto& p : t.model->params())
    for (int64_t i = 0; i < p.grad.numel(); ++i) REQUIRE(p.grad.f32()[i] == 0.f);
}

// Each parameter tensor's gradient, projected on a random direction, against a
// fourth-order central difference of the whole model's loss along it.
TEST_CASE("every parameter's gradient matches finite differences of the loss") {
  std::vector<std::pair<std::string, ModelConfig>> configs = {{"gpt2", gpt2_config()},
                                                              {"llama", llama_config()}};
  // Each feature switched alone on GPT-2, so a failure names it.
  auto variant = [&](const char* name, auto change) {
    ModelConfig c = gpt2_config();
    change(c);
    configs.emplace_back(name, c);
  };
  variant("gpt2-untied", [](ModelConfig& c) { c.tied_embeddings = false; });
  variant("gpt2-nobias", [](ModelConfig& c) { c.bias = false; });
  variant("gpt2-rmsnorm", [](ModelConfig& c) { c.norm = qj::Norm::RmsNorm; });
  variant("gpt2-swiglu", [](ModelConfig& c) { c.activation = qj::Activation::SwiGlu; });
  variant("gpt2-rope-mqa", [](ModelConfig& c) { c.position = qj::Position::Rope, c.kv_heads = 1; });
  configs.emplace_back("gpt2-moe", gpt2_moe_config());
  configs.emplace_back("llama-moe-sigmoid-shared-dense-first", llama_moe_config());
  for (const auto& [label, config] : configs) {
    const int micro_batch = 2;
    const size_t n = size_t(micro_batch * config.seq_len);
    TestModel t(config, micro_batch);
    Model& model = *t.model;
    randomize_weights(model, 11);
    const auto tokens = random_ids(n, config.vocab, 12);
    auto targets = random_ids(n, config.vocab, 13);
    targets[1] = Model::kIgnoreIndex;
    model.forward(tokens.data(), targets.data());
    model.backward(1.f / float(model.valid_targets()));

    qj::NormalRng rng(14);
    for (const qj::ParamRef& p : model.params()) {
      INFO(label << " " << p.name);
      std::vector<double> direction(size_t(p.value.numel()));
      double norm = 0;
      for (double& d : direction) {
        d = rng.normal();
        norm += d * d;
      }
      for (double& d : direction) d /= std::sqrt(norm);
      const double analytic = dot(p.grad, direction);

      std::vector<float> original(p.value.f32(), p.value.f32() + p.value.numel());
      auto loss_at = [&](double step) {  // with the load-balancing loss, which backward includes
        for (size_t i = 0; i < original.size(); ++i)
          p.value.f32()[i] = float(original[i] + step * direction[i]);
        model.reset_moe_stats();
        const double loss = model.forward(tokens.data(), targets.data());
        return loss + model.moe_aux_loss_sum();
      };
      const double h = 3e-2;
      const double numeric =
          (8 * (loss_at(h) - loss_at(-h)) - (loss_at(2 * h) - loss_at(-2 * h))) / (12 * h);
      std::copy(original.begin(), original.end(), p.value.f32());
      // Measured: at most 1.2e-3 relative (1.2e-5 absolute), the fp32 noise of the
      // differences; a wrong gradient is off by O(1).
      CHECK(analytic == Approx(numeric).margin(3e-5).epsilon(3e-3));
    }
  }
}

// Routing skew: with a zero router every logit ties, so every token goes to
// experts 0 and 1 (ties go to the lower index). The dropless buffers hold it;
// the two busy experts get every token's gradient, the idle ones none, and the
// gradients still match finite differences (the router cannot move: its logits
// stay 0 whatever the other weights do).
TEST_CASE("every token routed to the same experts fits the plan and trains") {
  ModelConfig config = gpt2_config();
  config.moe_experts = 4, config.moe_top_k = 2, config.moe_ffn_hidden = 8;
  const int micro_batch = 2;
  const size_t n = size_t(micro_batch * config.seq_len);
  TestModel t(config, micro_batch);
  Model& model = *t.model;
  randomize_weights(model, 21);
  for (const qj::ParamRef& p : model.params())
    if (p.name.ends_with("moe.router.weight")) std::fill_n(p.value.f32(), p.value.numel(), 0.f);
  const auto tokens = random_ids(n, config.vocab, 22), targets = random_ids(n, config.vocab, 23);
  model.reset_moe_stats();
  model.forward(tokens.data(), targets.data());
  const std::vector<double> load = model.moe_expert_load();
  REQUIRE(load.size() == 2 * 4);
  for (int layer = 0; layer < 2; ++layer) {
    CHECK(load[size_t(layer * 4 + 0)] == double(n));
    CHECK(load[size_t(layer * 4 + 1)] == double(n));
    CHECK(load[size_t(layer * 4 + 2)] == 0);
    CHECK(load[size_t(layer * 4 + 3)] == 0);
  }
  model.backward(1.f / float(model.valid_targets()));
  for (const qj::ParamRef& p : model.params()) {
    if (!p.name.ends_with("moe.experts.fc.weight")) continue;
    const int64_t per_expert = p.grad.numel() / 4;
    auto grad_norm = [&](int e) {
      double s = 0;
      for (int64_t i = e * per_expert; i < (e + 1) * per_expert; ++i) s += std::fabs(p.grad.f32()[i]);
      return s;
    };
    CHECK(grad_norm(0) > 0);
    CHECK(grad_norm(1) > 0);
    CHECK(grad_norm(2) == 0);
    CHECK(grad_norm(3) == 0);
    // The busy experts' gradient against a central difference along one entry.
    const int64_t i = per_expert / 2;
    const float original = p.value.f32()[i];
    auto loss_at = [&](float step) {
      p.value.f32()[i] = original + step;
      model.reset_moe_stats();
      return double(model.forward(tokens.data(), targets.data())) + model.moe_aux_loss_sum();
    };
    const float h = 1e-2f;
    const double numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    p.value.f32()[i] = original;
    INFO(p.name);
    CHECK(double(p.grad.f32()[i]) == Approx(numeric).margin(2e-5).epsilon(5e-3));
  }
}
