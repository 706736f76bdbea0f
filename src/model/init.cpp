// GPT-2 weight initialisation (Model::init_weights).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/normal_rng.h"
#include "model/param_shard.h"

namespace qj {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Each tensor gets its own stream, seeded from the run seed and its name, so a
// tensor's values do not depend on which other tensors exist (useful once the
// model is split over ranks).
uint64_t tensor_seed(uint64_t seed, const std::string& name) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 0x100000001B3ull;
  return NormalRng(seed ^ h).next();
}

bool is_norm_weight(const std::string& name) {
  return ends_with(name, "norm1.weight") || ends_with(name, "norm2.weight") ||
         name == "norm_f.weight";
}

bool is_residual_projection(const std::string& name) {
  return ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.proj.weight") ||
         ends_with(name, "experts.proj.weight");
}

bool has_padded_vocab_rows(const std::string& name) { return name == "wte" || name == "lm_head.weight"; }

}  // namespace

void Model::init_weights(uint64_t seed) {
  std::vector<float> global;
  for (size_t i = 0; i < params_.size(); ++i) {
    const ParamRef& p = params_[i];
    const ParamSpec& spec = specs_[i];
    global.assign(size_t(numel(spec.global_shape)), 0.f);
    if (is_norm_weight(p.name)) {
      global.assign(global.size(), 1.f);
    } else if (p.weight_decay) {  // matrices and embeddings
      double stddev = config_.init_std;
      if (is_residual_projection(p.name)) stddev /= std::sqrt(2.0 * config_.layers);
      NormalRng rng(tensor_seed(seed, p.name));
      for (float& x : global) x = float(stddev * rng.normal());
      if (has_padded_vocab_rows(p.name))  // rows vocab..Vp never see a token: keep them 0
        std::fill(global.begin() + int64_t(config_.vocab) * config_.hidden, global.end(), 0.f);
    }  // biases stay 0
    const std::vector<float> local = take_shard(spec, shard_.tp_size, shard_.tp_rank, global);
    be_.copy_to_device(p.value.data, local.data(), p.value.nbytes());
  }
  refresh_weights(be_, params_);
}

}  // namespace qj
