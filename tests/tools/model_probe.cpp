// qj-model-probe: runs the model on given weights and one batch, for comparison
// with an independent implementation (tests/python/test_model_vs_torch.py).
//
//   qj-model-probe --model model.json --micro-batch B --weights w.safetensors
//                  --batch batch.json --out DIR [--adamw-steps K --lr LR --weight-decay WD]
//
// model.json: the "model" section of a config. batch.json: {"tokens": [B*T ints],
// "targets": [B*T ints, -100 = ignored]}. Weights use Hugging Face names.
//
// Default mode: one forward and backward with dloss = 1/valid tokens (and the
// load-balancing loss of mixture-of-experts layers at scale 1); writes
//   DIR/result.json         {"loss": L, "aux_loss": A, "expert_load": [...],
//                            "valid_tokens": n, "logits_shape": [N, V]}
//                           (A: load-balancing loss summed over MoE layers;
//                           expert_load: assignments per expert, layer by layer)
//   DIR/logits.f32          logits [N, V] (unpadded vocab), raw little-endian fp32
//   DIR/grads.safetensors   every parameter's gradient under its HF name
// --adamw-steps K: K steps of forward, backward and AdamW (constant lr, betas
// 0.9/0.95, eps 1e-8, decay only where ParamRef::weight_decay) on the same batch;
// prints {"losses": [K values]} (loss before each update) and writes the final
// weights to DIR/weights.safetensors. With model.moe_bias_balancing the experts'
// biases move after each update by that step's load (Model::update_expert_bias).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint/hf_weights.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "model/model.h"
#include "qianjun/backend.h"

namespace {

using nlohmann::json;

struct Args {
  std::string model_path, weights_path, batch_path, out_dir;
  int micro_batch = 1;
  int adamw_steps = 0;
  float lr = 1e-3f;
  float weight_decay = 0.0f;
};

Args parse_args(int argc, char** argv) {
  std::map<std::string, std::string> kv;
  for (int i = 1; i < argc; i += 2) {
    const std::string key = argv[i];
    if (key.rfind("--", 0) != 0 || i + 1 >= argc)
      throw qj::Error("qj-model-probe: expected '--name value' pairs, got '" + key + "'");
    kv[key.substr(2)] = argv[i + 1];
  }
  auto need = [&](const char* name) {
    if (!kv.count(name)) throw qj::Error(std::string("qj-model-probe: --") + name + " is required");
    return kv[name];
  };
  Args a;
  a.model_path = need("model");
  a.weights_path = need("weights");
  a.batch_path = need("batch");
  a.out_dir = need("out");
  a.micro_batch = std::stoi(need("micro-batch"));
  if (kv.count("adamw-steps")) a.adamw_steps = std::stoi(kv["adamw-steps"]);
  if (kv.count("lr")) a.lr = std::stof(kv["lr"]);
  if (kv.count("weight-decay")) a.weight_decay = std::stof(kv["weight-decay"]);
  return a;
}

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw qj::Error("qj-model-probe: cannot open '" + path + "'");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

// The model section goes through the real config parser (presets, defaults, validation).
qj::ModelConfig read_model_config(const std::string& path) {
  const std::string text = "{\"model\": " + read_text(path) + "}";
  return qj::parse_config(text, {}, path).model;
}

struct Batch {
  std::vector<int32_t> tokens, targets;
};

Batch read_batch(const std::string& path, size_t expected) {
  const json doc = json::parse(read_text(path));
  Batch b{doc.at("tokens").get<std::vector<int32_t>>(), doc.at("targets").get<std::vector<int32_t>>()};
  if (b.tokens.size() != expected || b.targets.size() != expected)
    throw qj::Error("qj-model-probe: " + path + " must hold " + std::to_string(expected) +
                    " tokens and targets (micro_batch x seq_len)");
  return b;
}

// The logits without the padded vocabulary columns.
std::vector<float> unpadded_logits(const qj::Model& model, const qj::Backend& be) {
  const qj::Tensor logits = model.logits();
  const int64_t rows = logits.dim(0), width = logits.dim(1), vocab = model.config().vocab;
  std::vector<float> padded(size_t(rows * width)), out(size_t(rows * vocab));
  be.copy_to_host(padded.data(), logits.data, logits.nbytes());
  for (int64_t r = 0; r < rows; ++r)
    std::copy_n(padded.begin() + r * width, vocab, out.begin() + r * vocab);
  return out;
}

void write_forward_backward(qj::Model& model, const qj::Backend& be, const Batch& batch,
                            const Args& args) {
  model.reset_moe_stats();
  const float loss = model.forward(batch.tokens.data(), batch.targets.data());
  const std::vector<float> logits = unpadded_logits(model, be);  // before backward overwrites them
  model.backward(1.f / float(model.valid_targets()));
  be.synchronize();

  std::ofstream(args.out_dir + "/logits.f32", std::ios::binary)
      .write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * 4));
  qj::export_hf_safetensors(args.out_dir + "/grads.safetensors", model.config(), model.params(), be,
                            /*export_grads=*/true);
  const json result = {{"loss", loss},
                       {"aux_loss", model.moe_aux_loss_sum()},
                       {"expert_load", model.moe_expert_load()},
                       {"valid_tokens", model.valid_targets()},
                       {"logits_shape", {model.tokens_per_micro_batch(), model.config().vocab}}};
  std::ofstream(args.out_dir + "/result.json") << result.dump() << "\n";
}

// AdamW moments, planned like any other buffer.
void plan_adamw_state(qj::MemoryPlan& plan) {
  for (const qj::PlannedBuffer& b : std::vector<qj::PlannedBuffer>(plan.buffers()))
    if (b.arena == qj::ArenaKind::Params) {
      plan.add(qj::ArenaKind::Optimizer, "adamw.m." + b.name, qj::DType::F32, b.shape);
      plan.add(qj::ArenaKind::Optimizer, "adamw.v." + b.name, qj::DType::F32, b.shape);
    }
}

void run_adamw(qj::Model& model, const qj::Backend& be, const qj::Arenas& arenas,
               const Batch& batch, const Args& args) {
  for (const qj::ParamRef& p : model.params()) {
    be.fill(arenas.tensor("adamw.m." + p.name), 0.f);
    be.fill(arenas.tensor("adamw.v." + p.name), 0.f);
  }
  std::vector<float> losses;
  std::vector<double> aux_losses;
  for (int step = 1; step <= args.adamw_steps; ++step) {
    model.zero_grads();
    model.reset_moe_stats();
    losses.push_back(model.forward(batch.tokens.data(), batch.targets.data()));
    aux_losses.push_back(model.moe_aux_loss_sum());
    model.backward(1.f / float(model.valid_targets()));
    for (const qj::ParamRef& p : model.params())
      be.adamw_update(p.value, p.grad, arenas.tensor("adamw.m." + p.name),
                      arenas.tensor("adamw.v." + p.name), args.lr, 0.9f, 0.95f, 1e-8f,
                      p.weight_decay ? args.weight_decay : 0.f, step, 1.f);
    model.update_expert_bias(model.moe_expert_load());  // no-op without bias balancing
  }
  be.synchronize();
  qj::export_hf_safetensors(args.out_dir + "/weights.safetensors", model.config(), model.params(), be);
  std::printf("%s\n", json{{"losses", losses}, {"aux_losses", aux_losses}}.dump().c_str());
}

int run(const Args& args) {
  const qj::ModelConfig config = read_model_config(args.model_path);
  const qj::Backend& be = qj::get_backend("cpu");
  qj::MemoryPlan plan;
  qj::Model::plan(config, args.micro_batch, plan);
  if (args.adamw_steps > 0) plan_adamw_state(plan);
  qj::Arenas arenas(plan, be);
  qj::Model model(config, args.micro_batch, be, arenas);
  for (const qj::ParamRef& p : model.params()) be.fill(p.value, 0.f);  // padded rows stay 0
  qj::import_hf_safetensors(args.weights_path, config, model.params(), be);
  const Batch batch = read_batch(args.batch_path, size_t(model.tokens_per_micro_batch()));
  if (args.adamw_steps > 0) run_adamw(model, be, arenas, batch, args);
  else write_forward_backward(model, be, batch, args);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qj-model-probe: %s\n", e.what());
    return 1;
  }
}
