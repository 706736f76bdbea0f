// Our mixture-of-experts parameters <-> Mixtral, Qwen2/3-MoE and GPT-2-style names.
#include "checkpoint/hf_moe_names.h"

#include "checkpoint/hf_weights.h"
#include "qianjun/error.h"

namespace qj {

namespace {

[[noreturn]] void bad_shape(const std::string& name, const Tensor& param,
                            const std::string& expected) {
  throw Error("parameter '" + name + "' has shape " + param.shape_string() +
              " but the model config implies " + expected);
}

// The layer's MoE prefix and the names of an expert's projections in one family.
struct MoeFamily {
  std::string prefix;                // "model.layers.3.block_sparse_moe."
  const char* gate;                  // SwiGLU's gate
  const char* up;                    // SwiGLU's up, or a GELU expert's one input projection
  const char* down;
};

MoeFamily family_of(const ModelConfig& config, int layer, HfMoeNames names) {
  const std::string i = std::to_string(layer);
  if (uses_gpt2_names(config)) return {"h." + i + ".mlp.", "c_fc", "c_fc", "c_proj"};
  if (names == HfMoeNames::Mixtral) {
    const bool swiglu = config.activation == Activation::SwiGlu;
    return {"model.layers." + i + ".block_sparse_moe.", "w1", swiglu ? "w3" : "w1", "w2"};
  }
  return {"model.layers." + i + ".mlp.", "gate_proj", "up_proj", "down_proj"};
}

std::string expert_prefix(const MoeFamily& f, int64_t expert) {
  return f.prefix + "experts." + std::to_string(expert) + ".";
}

// [E, R, K] with E = moe_experts, else an error naming the parameter.
void check_experts(const ModelConfig& config, const std::string& name, const Tensor& param,
                   int ndim) {
  if (param.ndim != ndim || param.shape[0] != config.moe_experts)
    bad_shape(name, param,
              std::to_string(ndim) + " dimensions, the first moe_experts = " +
                  std::to_string(config.moe_experts));
}

// fc [E, 2Fe | Fe, C]: per expert the gate then the up rows (SwiGLU), or one
// projection (GELU); GPT-2 names keep each expert's rows together as one c_fc.
std::vector<HfPiece> expert_fc_pieces(const ModelConfig& config, const std::string& name,
                                      const Tensor& param, const MoeFamily& f) {
  check_experts(config, name, param, 3);
  const int64_t rows = param.shape[1];
  const bool gpt2 = uses_gpt2_names(config), swiglu = config.activation == Activation::SwiGlu;
  if (swiglu && rows % 2 != 0) bad_shape(name, param, "an even number of rows per expert (gate then up)");
  std::vector<HfPiece> pieces;
  for (int64_t j = 0; j < param.shape[0]; ++j) {
    const std::string p = expert_prefix(f, j);
    const int64_t first = j * rows;
    if (gpt2) {
      HfPiece piece{p + f.up + std::string(".weight"), first, first + rows};
      piece.transposed = true;
      pieces.push_back(piece);
    } else if (swiglu) {
      pieces.push_back({p + f.gate + std::string(".weight"), first, first + rows / 2});
      pieces.push_back({p + f.up + std::string(".weight"), first + rows / 2, first + rows});
    } else {
      pieces.push_back({p + f.up + std::string(".weight"), first, first + rows});
    }
  }
  return pieces;
}

// proj [E, C, Fe]: expert j's down projection is rows [j C, (j + 1) C).
std::vector<HfPiece> expert_proj_pieces(const ModelConfig& config, const std::string& name,
                                        const Tensor& param, const MoeFamily& f) {
  check_experts(config, name, param, 3);
  if (param.shape[1] != config.hidden)
    bad_shape(name, param, "hidden = " + std::to_string(config.hidden) + " rows per expert");
  std::vector<HfPiece> pieces;
  const int64_t rows = param.shape[1];
  for (int64_t j = 0; j < param.shape[0]; ++j) {
    HfPiece piece{expert_prefix(f, j) + f.down + ".weight", j * rows, (j + 1) * rows};
    piece.transposed = uses_gpt2_names(config);
    pieces.push_back(piece);
  }
  return pieces;
}

}  // namespace

std::vector<HfPiece> moe_pieces(const ModelConfig& config, const std::string& name, int layer,
                                const std::string& ours, const Tensor& param, HfMoeNames names) {
  const MoeFamily f = family_of(config, layer, names);
  if (ours == "moe.router.weight") {
    check_experts(config, name, param, 2);
    HfPiece piece{f.prefix + "gate.weight", 0, param.shape[0]};
    piece.transposed = uses_gpt2_names(config);
    return {piece};
  }
  if (ours == "moe.router.expert_bias") {
    check_experts(config, name, param, 1);
    return {HfPiece{f.prefix + "gate.e_score_correction_bias", 0, param.shape[0]}};
  }
  if (ours == "moe.experts.fc.weight") return expert_fc_pieces(config, name, param, f);
  if (ours == "moe.experts.proj.weight") return expert_proj_pieces(config, name, param, f);
  throw Error("parameter '" + name + "' has no Hugging Face name");
}

std::string shared_expert_name(const std::string& relative) {
  const std::string mlp = "mlp.";
  return relative.rfind(mlp, 0) == 0 ? mlp + "shared_expert." + relative.substr(mlp.size())
                                     : relative;
}

}  // namespace qj
