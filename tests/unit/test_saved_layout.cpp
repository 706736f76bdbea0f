// Where a rank's tensor elements live in a checkpoint (saved_layout.h), checked
// against an independent route: the one-device model exported to Hugging Face
// safetensors (hf_weights.h) is the saved layout by definition, and each tp
// rank's tensor is take_shard of the one-device tensor (param_shard.h). Every
// rank's boxes, for any split of its elements into ranges, must hold exactly
// the file's elements, and scattering the file's boxes back must rebuild the
// rank's tensor (vocabulary padding rows left zero).
#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "checkpoint/hf_weights.h"
#include "checkpoint/safetensors.h"
#include "checkpoint/saved_layout.h"
#include "core/config.h"
#include "model/model_plan.h"
#include "model/param_ref.h"
#include "model/param_shard.h"
#include "qianjun/backend.h"

using namespace qj;

namespace {

ModelConfig tiny(const std::string& preset) {
  ModelConfig c = model_preset(from_string<Preset>(preset).value());
  c.layers = 2, c.hidden = 32, c.heads = 4, c.kv_heads = 2, c.vocab = 37, c.vocab_pad_to = 4;
  c.seq_len = 8;
  c.ffn_hidden = preset == "llama" ? 48 : 0;
  fill_derived_defaults(c);
  return c;
}

// One-device values (padding rows zero), and the file they export to.
struct OneDevice {
  std::vector<ParamSpec> specs;
  std::vector<std::vector<float>> values;
  std::string file;

  OneDevice(const ModelConfig& config, const std::string& path) : specs(parameter_specs(config)), file(path) {
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<ParamRef> refs;
    for (const ParamSpec& s : specs) {
      values.emplace_back(size_t(numel(s.shape)));
      const int64_t width = s.shape.size() > 1 ? s.shape[1] : 1;
      for (size_t i = 0; i < values.back().size(); ++i)
        values.back()[i] = (s.name == "wte" || s.name == "lm_head.weight") && int64_t(i) / width >= config.vocab
                               ? 0.f : u(rng);
      float* d = values.back().data();
      const Tensor t(d, DType::F32, s.shape);
      refs.push_back({s.name, t, t, t, s.weight_decay});
    }
    export_hf_safetensors(path, config, refs, get_backend("cpu"));
  }
  const std::vector<float>& value(const std::string& name) const {
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].name == name) return values[i];
    throw Error("no " + name);
  }
};

// The global tensor of a tp layout: the one-device values with its (larger) padding.
std::vector<float> padded(std::vector<float> v, const ParamSpec& spec) {
  v.resize(size_t(numel(spec.global_shape)), 0.f);
  return v;
}

// Every element of the file's box `s`, row-major.
std::vector<float> file_box(const SafetensorsFile& file, const SavedSegment& s) {
  std::vector<float> whole(size_t(numel(s.tensor_shape)));
  file.read_f32(s.tensor, whole.data(), whole.size());
  const int64_t width = s.tensor_shape.size() > 1 ? s.tensor_shape[1] : 1;
  const int64_t rows = s.shape[0], cols = s.shape.size() > 1 ? s.shape[1] : 1;
  const int64_t row0 = s.offset[0], col0 = s.offset.size() > 1 ? s.offset[1] : 0;
  std::vector<float> box(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) box[size_t(r * cols + c)] = whole[size_t((row0 + r) * width + col0 + c)];
  return box;
}

// Routed experts (Mixtral names for llama, Qwen-style shared experts for both).
ModelConfig tiny_moe(const std::string& preset) {
  ModelConfig c = tiny(preset);
  c.moe_experts = 4, c.moe_top_k = 2, c.moe_ffn_hidden = 8, c.moe_shared_experts = 1;
  c.moe_first_dense_layers = preset == "llama" ? 1 : 0;
  fill_derived_defaults(c);
  return c;
}

// ep > 1 or expert_tp: the experts split over ep ranks, and over tp ranks.
void check_layout(const ModelConfig& config, const std::string& name, int tp, int pieces,
                  int ep = 1, bool expert_tp = false) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("qj_saved_layout_" + name + ".safetensors")).string();
  const OneDevice one(config, path);
  const SafetensorsFile file = SafetensorsFile::open(path);
  std::mt19937 rng(uint32_t(tp * 10 + pieces));
  for (int rank = 0; rank < tp * ep; ++rank) {
    ModelShard shard;
    shard.tp_size = tp, shard.tp_rank = rank % tp;
    shard.ep_size = ep, shard.ep_rank = rank / tp, shard.expert_tp = expert_tp;
    for (const ParamSpec& spec : parameter_specs(config, shard)) {
      const std::vector<float> local =
          take_shard(spec, tp, shard.tp_rank, padded(one.value(spec.name), spec));
      const int64_t n = int64_t(local.size());
      // Cut [0, n) into `pieces` ranges at random points.
      std::vector<int64_t> cuts = {0, n};
      for (int i = 1; i < pieces; ++i) cuts.push_back(int64_t(rng() % uint32_t(n + 1)));
      std::sort(cuts.begin(), cuts.end());
      std::vector<float> rebuilt(local.size(), 0.f);
      for (size_t c = 0; c + 1 < cuts.size(); ++c) {
        const int64_t begin = cuts[c], count = cuts[c + 1] - begin;
        for (const LocalRect& rect : rects_of_range(spec, begin, count)) {
          for (const SavedSegment& s : saved_segments(config, spec, shard.tp_rank, rect)) {
            INFO(name << " tp " << tp << " rank " << rank << " " << spec.name << " -> " << s.tensor);
            std::vector<float> box(size_t(numel(s.shape)));
            gather_segment(s, local.data() + begin, begin, local_width(spec), box.data());
            REQUIRE(box == file_box(file, s));
            scatter_segment(s, box.data(), rebuilt.data() + begin, begin, local_width(spec));
          }
        }
      }
      INFO(name << " tp " << tp << " rank " << rank << " " << spec.name);
      REQUIRE(rebuilt == local);
    }
  }
  std::filesystem::remove(path);
}

}  // namespace

TEST_CASE("every tp rank's elements land on the Hugging Face file's elements, in any split") {
  for (const char* preset : {"gpt2", "llama"})
    for (int tp : {1, 2, 4})
      for (int pieces : {1, 3, 7}) check_layout(tiny(preset), preset, tp, pieces);
}

TEST_CASE("expert_tp and ep ranks' expert elements land on the Hugging Face file's elements") {
  for (const char* preset : {"gpt2", "llama"})
    for (int tp : {1, 2, 4})
      for (int ep : {1, 2})
        for (int pieces : {1, 5})
          check_layout(tiny_moe(preset), std::string(preset) + "_moe", tp, pieces, ep, tp > 1);
}

TEST_CASE("rects_of_range: a partial row, whole rows, a partial row, covering the range once") {
  ParamSpec spec;
  spec.shape = {5, 4};
  const auto rects = rects_of_range(spec, 2, 13);  // elements 2..14
  REQUIRE(rects.size() == 3);
  CHECK((rects[0].row == 0 && rects[0].col == 2 && rects[0].rows == 1 && rects[0].cols == 2));
  CHECK((rects[1].row == 1 && rects[1].col == 0 && rects[1].rows == 2 && rects[1].cols == 4));
  CHECK((rects[2].row == 3 && rects[2].col == 0 && rects[2].rows == 1 && rects[2].cols == 3));
  CHECK(rects_of_range(spec, 5, 2).size() == 1);  // inside one row
  CHECK(rects_of_range(spec, 4, 8).size() == 1);  // whole rows only
}

TEST_CASE("saved shapes hold the real vocabulary, not the tensor-parallel padding") {
  const ModelConfig config = tiny("gpt2");
  const auto shapes = saved_weight_shapes(config);
  CHECK(shapes.at("wte.weight") == std::vector<int64_t>{37, 32});
  CHECK(shapes.at("h.1.attn.c_attn.weight") == std::vector<int64_t>{32, 64});  // Conv1D: (in, q+k+v)
  const auto llama = saved_weight_shapes(tiny("llama"));
  CHECK(llama.at("model.layers.0.self_attn.k_proj.weight") == std::vector<int64_t>{16, 32});
  CHECK(llama.at("lm_head.weight") == std::vector<int64_t>{37, 32});
}
