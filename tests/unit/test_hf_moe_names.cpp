// Hugging Face names of mixture-of-experts layers: Mixtral, Qwen2-MoE (shared
// experts), Qwen3-MoE (import) and our GPT-2-style names. Each expert's rows of
// our 3-D weights land in its own HF tensor with the expected shape and values
// (checked element by element against the layout contract, written out here),
// import restores everything bit for bit, and files of the wrong family are
// refused naming the file and the tensor.
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "checkpoint/hf_names.h"
#include "checkpoint/hf_weights.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/saved_layout.h"
#include "core/config.h"
#include "unit/host_params.h"
#include "model/param_ref.h"
#include "qianjun/backend.h"

using Catch::Matchers::Contains;
using qj::ModelConfig;
using qj::ParamRef;
using qj::test::HostParams;
using qj::test::make_params;

namespace {

std::string temp_path(const std::string& name) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("qj_test_hf_moe_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

// Llama-style, 3 layers, layer 0 dense; 4 experts of width 6.
ModelConfig mixtral_config() {
  ModelConfig c;
  c.preset = qj::Preset::Llama;
  c.layers = 3, c.hidden = 8, c.heads = 4, c.kv_heads = 2, c.ffn_hidden = 12;
  c.vocab = 10, c.vocab_pad_to = 8, c.seq_len = 4;
  c.norm = qj::Norm::RmsNorm, c.activation = qj::Activation::SwiGlu;
  c.position = qj::Position::Rope;
  c.bias = false, c.tied_embeddings = false;
  c.moe_experts = 4, c.moe_top_k = 2, c.moe_ffn_hidden = 6, c.moe_first_dense_layers = 1;
  return c;
}

ModelConfig qwen2_config() {
  ModelConfig c = mixtral_config();
  c.moe_shared_experts = 2;
  c.bias = true;  // the shared experts' biases
  return c;
}

ModelConfig gpt2_config() {
  ModelConfig c;
  c.preset = qj::Preset::Gpt2;
  c.layers = 2, c.hidden = 8, c.heads = 2, c.kv_heads = 2, c.ffn_hidden = 32;
  c.vocab = 10, c.vocab_pad_to = 8, c.seq_len = 4;
  c.norm = qj::Norm::LayerNorm, c.activation = qj::Activation::Gelu;
  c.position = qj::Position::Learned;
  c.bias = true, c.tied_embeddings = true;
  c.moe_experts = 3, c.moe_top_k = 1, c.moe_ffn_hidden = 5, c.moe_shared_experts = 1;
  c.moe_bias_balancing = true;
  return c;
}

const qj::Backend& cpu() { return qj::get_backend("cpu"); }

std::map<std::string, qj::HfTensor> exported(const ModelConfig& c, const HostParams& p) {
  std::map<std::string, qj::HfTensor> out;
  for (qj::HfTensor& t : qj::hf_tensors(c, p.params, cpu())) out[t.name] = std::move(t);
  return out;
}

// Expert j's rows [first, first + rows) of a 3-D weight [E, R, K] as the HF
// tensor holds them ((in, out) when transposed).
void require_expert_rows(const qj::HfTensor& t, const ParamRef& p, int64_t expert, int64_t first,
                         int64_t rows, bool transposed) {
  INFO(t.name);
  const int64_t R = p.value.shape[1], K = p.value.shape[2];
  REQUIRE(t.shape == (transposed ? std::vector<int64_t>{K, rows} : std::vector<int64_t>{rows, K}));
  const float* w = p.value.f32() + expert * R * K;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k)
      REQUIRE(t.values[size_t(transposed ? k * rows + r : r * K + k)] == w[(first + r) * K + k]);
}

void require_same_values(const HostParams& a, const HostParams& b) {
  REQUIRE(a.params.size() == b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) {
    INFO(a.params[i].name);
    const qj::Tensor& x = a.params[i].value;
    const bool vocab_rows = a.params[i].name == "wte" || a.params[i].name == "lm_head.weight";
    const size_t n = vocab_rows ? size_t(10 * x.shape[1]) : size_t(x.numel());
    REQUIRE(std::memcmp(x.data, b.params[i].value.data, n * 4) == 0);
  }
}

// Writes `tensors` under the names `rename` gives (empty: left out), plus `extra`.
void write_renamed(const std::string& path, const std::map<std::string, qj::HfTensor>& tensors,
                   const std::function<std::string(const std::string&)>& rename,
                   const std::vector<std::string>& extra = {}) {
  qj::SafetensorsWriter writer;
  for (const auto& [name, t] : tensors) {
    const std::string renamed = rename(name);
    if (!renamed.empty()) writer.add_f32(renamed, t.shape, std::vector<float>(t.values));
  }
  for (const std::string& name : extra) writer.add_f32(name, {1, 8}, std::vector<float>(8, 1.f));
  writer.write(path);
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

// Mixtral's names -> Qwen3-MoE's.
std::string qwen3_name(const std::string& mixtral) {
  std::string s = replace_all(mixtral, ".block_sparse_moe.", ".mlp.");
  s = replace_all(s, ".w1.weight", ".gate_proj.weight");
  s = replace_all(s, ".w3.weight", ".up_proj.weight");
  return replace_all(s, ".w2.weight", ".down_proj.weight");
}

}  // namespace

TEST_CASE("Mixtral names: router, w1/w3/w2 per expert, dense first layer kept; import restores") {
  const ModelConfig c = mixtral_config();
  const HostParams ours = make_params(c, 1);
  const auto file = exported(c, ours);
  const std::string l1 = "model.layers.1.block_sparse_moe.";
  REQUIRE(file.count("model.layers.0.mlp.gate_proj.weight"));  // the dense layer
  REQUIRE(!file.count("model.layers.0.block_sparse_moe.gate.weight"));
  REQUIRE(!file.count("model.layers.1.mlp.gate_proj.weight"));
  REQUIRE(file.at(l1 + "gate.weight").shape == std::vector<int64_t>{4, 8});
  REQUIRE(file.at(l1 + "gate.weight").values ==
          std::vector<float>(ours.get("layers.1.moe.router.weight").value.f32(),
                             ours.get("layers.1.moe.router.weight").value.f32() + 32));
  const ParamRef& fc = ours.get("layers.2.moe.experts.fc.weight");
  const ParamRef& proj = ours.get("layers.2.moe.experts.proj.weight");
  for (int64_t j = 0; j < 4; ++j) {
    const std::string e = "model.layers.2.block_sparse_moe.experts." + std::to_string(j) + ".";
    require_expert_rows(file.at(e + "w1.weight"), fc, j, 0, 6, false);  // gate
    require_expert_rows(file.at(e + "w3.weight"), fc, j, 6, 6, false);  // up
    require_expert_rows(file.at(e + "w2.weight"), proj, j, 0, 8, false);
  }
  // Per MoE layer: gate + 4 x 3; per layer 7 others (2 norms, q, k, v, o; the dense MLP's 3 on layer 0).
  REQUIRE(file.size() == 3 + 3 * 6 + 3 + 2 * 13);

  const std::string path = temp_path("mixtral.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());
  HostParams fresh = make_params(c, 2);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh);
}

TEST_CASE("Qwen2-MoE names with shared experts and their biases; import restores") {
  const ModelConfig c = qwen2_config();
  const HostParams ours = make_params(c, 3);
  const auto file = exported(c, ours);
  const std::string m = "model.layers.1.mlp.";
  REQUIRE(file.at(m + "gate.weight").shape == std::vector<int64_t>{4, 8});
  REQUIRE(file.at(m + "shared_expert.gate_proj.weight").shape == std::vector<int64_t>{12, 8});
  REQUIRE(file.at(m + "shared_expert.up_proj.bias").shape == std::vector<int64_t>{12});
  REQUIRE(file.at(m + "shared_expert.down_proj.weight").shape == std::vector<int64_t>{8, 12});
  REQUIRE(file.count(m + "shared_expert.down_proj.bias"));
  REQUIRE(!file.count(m + "gate_proj.weight"));
  const ParamRef& fc = ours.get("layers.1.moe.experts.fc.weight");
  const ParamRef& proj = ours.get("layers.1.moe.experts.proj.weight");
  for (int64_t j = 0; j < 4; ++j) {
    const std::string e = m + "experts." + std::to_string(j) + ".";
    require_expert_rows(file.at(e + "gate_proj.weight"), fc, j, 0, 6, false);
    require_expert_rows(file.at(e + "up_proj.weight"), fc, j, 6, 6, false);
    require_expert_rows(file.at(e + "down_proj.weight"), proj, j, 0, 8, false);
    REQUIRE(!file.count(e + "up_proj.bias"));  // routed experts have no biases
  }
  const std::string path = temp_path("qwen2.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());
  HostParams fresh = make_params(c, 4);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh);
}

TEST_CASE("a Qwen3-MoE-named file imports into a model without shared experts") {
  const ModelConfig c = mixtral_config();
  const HostParams ours = make_params(c, 5);
  const std::string path = temp_path("qwen3.safetensors");
  write_renamed(path, exported(c, ours), qwen3_name);
  HostParams fresh = make_params(c, 6);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh);
}

TEST_CASE("GPT-2-style MoE names: Conv1D (in, out) router and experts, shared expert, bias") {
  const ModelConfig c = gpt2_config();
  const HostParams ours = make_params(c, 7);
  const auto file = exported(c, ours);
  REQUIRE(file.at("h.0.mlp.gate.weight").shape == std::vector<int64_t>{8, 3});
  REQUIRE(file.at("h.0.mlp.gate.e_score_correction_bias").shape == std::vector<int64_t>{3});
  REQUIRE(file.at("h.1.mlp.shared_expert.c_fc.weight").shape == std::vector<int64_t>{8, 5});
  REQUIRE(file.at("h.1.mlp.shared_expert.c_fc.bias").shape == std::vector<int64_t>{5});
  REQUIRE(file.at("h.1.mlp.shared_expert.c_proj.weight").shape == std::vector<int64_t>{5, 8});
  const ParamRef& router = ours.get("layers.1.moe.router.weight");
  const qj::HfTensor& gate = file.at("h.1.mlp.gate.weight");
  for (int64_t e = 0; e < 3; ++e)
    for (int64_t k = 0; k < 8; ++k) REQUIRE(gate.values[size_t(k * 3 + e)] == router.value.f32()[e * 8 + k]);
  const ParamRef& fc = ours.get("layers.1.moe.experts.fc.weight");
  const ParamRef& proj = ours.get("layers.1.moe.experts.proj.weight");
  for (int64_t j = 0; j < 3; ++j) {
    const std::string e = "h.1.mlp.experts." + std::to_string(j) + ".";
    require_expert_rows(file.at(e + "c_fc.weight"), fc, j, 0, 5, true);
    require_expert_rows(file.at(e + "c_proj.weight"), proj, j, 0, 8, true);
  }
  const std::string path = temp_path("gpt2_moe.safetensors");
  qj::export_hf_safetensors(path, c, ours.params, cpu());
  HostParams fresh = make_params(c, 8);
  qj::import_hf_safetensors(path, c, fresh.params, cpu());
  require_same_values(ours, fresh);
}

TEST_CASE("GELU experts with Llama names: Mixtral's w1 or Qwen's up_proj, no gate") {
  ModelConfig c = mixtral_config();
  c.activation = qj::Activation::Gelu;
  c.moe_bias_balancing = true;
  const HostParams ours = make_params(c, 9);
  const auto file = exported(c, ours);
  const std::string e = "model.layers.1.block_sparse_moe.experts.2.";
  require_expert_rows(file.at(e + "w1.weight"), ours.get("layers.1.moe.experts.fc.weight"), 2, 0, 6,
                      false);
  REQUIRE(!file.count(e + "w3.weight"));
  REQUIRE(file.count("model.layers.1.block_sparse_moe.gate.e_score_correction_bias"));
  c.moe_shared_experts = 1;
  const auto qwen = exported(c, make_params(c, 10));
  REQUIRE(qwen.count("model.layers.1.mlp.experts.2.up_proj.weight"));
  REQUIRE(!qwen.count("model.layers.1.mlp.experts.2.gate_proj.weight"));
  REQUIRE(qwen.count("model.layers.1.mlp.shared_expert.up_proj.weight"));
  REQUIRE(qwen.count("model.layers.1.mlp.gate.e_score_correction_bias"));
}

TEST_CASE("files of the wrong MoE family, mixed families or extra tensors are refused") {
  const ModelConfig c = mixtral_config();
  const HostParams ours = make_params(c, 11);
  const auto file = exported(c, ours);
  HostParams fresh = make_params(c, 12);
  const std::string path = temp_path("bad.safetensors");

  SECTION("both families in one file") {
    write_renamed(path, file, [](const std::string& n) {
      return n.find("layers.2.") != std::string::npos ? qwen3_name(n) : n;
    });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains(path) && Contains("mixes Mixtral") && Contains("block_sparse_moe") &&
                            Contains("model.layers.2.mlp."));
  }
  SECTION("neither family: a dense file") {
    write_renamed(path, file, [](const std::string& n) {
      return n.find("block_sparse_moe") != std::string::npos ? std::string() : n;
    });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains(path) && Contains("neither Mixtral") && Contains("Qwen2/Qwen3-MoE"));
  }
  SECTION("Mixtral names for a model with shared experts") {
    const ModelConfig shared = qwen2_config();
    HostParams target = make_params(shared, 13);
    write_renamed(path, file, [](const std::string& n) { return n; });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, shared, target.params, cpu()),
                        Contains(path) && Contains("no shared experts") &&
                            Contains("moe_shared_experts = 2"));
  }
  SECTION("Qwen2-MoE's shared_expert_gate, which we do not model") {
    const ModelConfig shared = qwen2_config();
    HostParams target = make_params(shared, 14);
    write_renamed(path, exported(shared, make_params(shared, 15)),
                  [](const std::string& n) { return n; },
                  {"model.layers.1.mlp.shared_expert_gate.weight"});
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, shared, target.params, cpu()),
                        Contains(path) && Contains("'model.layers.1.mlp.shared_expert_gate.weight'") &&
                            Contains("Qwen2-MoE"));
  }
  SECTION("an expert missing") {
    write_renamed(path, file, [](const std::string& n) {
      return n == "model.layers.2.block_sparse_moe.experts.3.w2.weight" ? std::string() : n;
    });
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, c, fresh.params, cpu()),
                        Contains("missing tensor 'model.layers.2.block_sparse_moe.experts.3.w2.weight'") &&
                            Contains("[8, 6]") && Contains("layers.2.moe.experts.proj.weight"));
  }
  SECTION("an expert of the wrong width") {
    write_renamed(path, file, [](const std::string& n) { return n; });
    ModelConfig wider = c;
    wider.moe_ffn_hidden = 7;
    HostParams target = make_params(wider, 16);
    REQUIRE_THROWS_WITH(qj::import_hf_safetensors(path, wider, target.params, cpu()),
                        Contains("'model.layers.1.block_sparse_moe.experts.0.w1.weight' has shape "
                                 "[6, 8], expected [7, 8]"));
  }
}

TEST_CASE("3-D parameters other than the experts', and expert counts the config does not explain, "
          "are refused") {
  const ModelConfig c = mixtral_config();
  std::vector<float> buf(4 * 12 * 8);
  const qj::Tensor cube(buf.data(), qj::DType::F32, {4, 12, 8});
  REQUIRE_THROWS_WITH(qj::hf_pieces(c, "layers.1.mlp.fc.weight", cube),
                      Contains("'layers.1.mlp.fc.weight' has shape [4, 12, 8]"));
  REQUIRE_THROWS_WITH(qj::hf_pieces(c, "layers.0.moe.experts.fc.weight", cube),
                      Contains("'layers.0.moe.experts.fc.weight' has no Hugging Face name"));
  const qj::Tensor five(buf.data(), qj::DType::F32, {5, 12, 8});
  REQUIRE_THROWS_WITH(qj::hf_pieces(c, "layers.1.moe.experts.fc.weight", five),
                      Contains("has shape [5, 12, 8]") && Contains("moe_experts = 4"));
  const qj::Tensor odd(buf.data(), qj::DType::F32, {4, 11, 8});
  REQUIRE_THROWS_WITH(qj::hf_pieces(c, "layers.1.moe.experts.fc.weight", odd),
                      Contains("an even number of rows per expert"));
}

TEST_CASE("checkpoints save each expert of a 3-D weight as its HF tensor") {
  const ModelConfig c = mixtral_config();
  const auto shapes = qj::saved_weight_shapes(c);
  REQUIRE(shapes.at("model.layers.2.block_sparse_moe.experts.3.w3.weight") ==
          std::vector<int64_t>{6, 8});
  REQUIRE(shapes.at("model.layers.2.block_sparse_moe.experts.3.w2.weight") ==
          std::vector<int64_t>{8, 6});
  // Rows 1..2 of expert 3's fc ([4, 12, 8] flattened: rows 36 + 1, 36 + 2) are w1 rows 1..2.
  qj::ParamSpec spec;
  spec.name = "layers.2.moe.experts.fc.weight";
  spec.shape = spec.global_shape = {4, 12, 8};
  spec.shard = qj::ShardKind::Replicated;
  const auto segments = qj::saved_segments(c, spec, 0, {37, 0, 2, 8});
  REQUIRE(segments.size() == 1);
  REQUIRE(segments[0].tensor == "model.layers.2.block_sparse_moe.experts.3.w1.weight");
  REQUIRE(segments[0].offset == std::vector<int64_t>{1, 0});
  REQUIRE(segments[0].shape == std::vector<int64_t>{2, 8});
  REQUIRE(qj::local_width(spec) == 8);
}
