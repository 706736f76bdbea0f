#pragma once
// Hugging Face names of mixture-of-experts layers. A 3-D expert parameter
// [E, R, K] is seen as its 2-D flattening [E * R, K], so each expert's rows
// become HF tensors of their own:
//
//   ours (after layers.{i}.)   Mixtral (block_sparse_moe.)  Qwen2/3-MoE (mlp.)          GPT-2 names (h.{i}.mlp.)
//   moe.router.weight [E, C]   gate.weight                  gate.weight                 gate.weight [C, E]
//   moe.router.expert_bias     gate.e_score_correction_bias (DeepSeek-V3's name, under each family's gate)
//   moe.experts.fc.weight      experts.{j}.w1 (gate),       experts.{j}.gate_proj,      experts.{j}.c_fc [C, 2Fe | Fe]
//     [E, 2Fe | Fe, C]           w3 (up)                      up_proj
//   moe.experts.proj.weight    experts.{j}.w2               experts.{j}.down_proj       experts.{j}.c_proj [Fe, C]
//     [E, C, Fe]
//   mlp.fc / mlp.proj          (none: Mixtral has no        shared_expert.gate_proj,    shared_expert.c_fc,
//     (shared experts)           shared experts)              up_proj, down_proj          c_proj
//
// A GELU expert has no gate: its one input projection is Mixtral's w1 (the
// activated one in Mixtral's act(w1 x) * w3 x) and Qwen's up_proj (as for a dense
// GELU MLP with Llama names). GPT-2 names store every matrix (in, out), as
// GPT-2's Conv1D does, the router included. Dense layers of a MoE model keep
// their dense names.
#include <string>
#include <vector>

#include "checkpoint/hf_names.h"

namespace qj {

// The HF tensors of the router or expert parameter `ours` ("moe.router.weight",
// ...) of MoE layer `layer`. Throws qj::Error for a shape the config does not explain.
std::vector<HfPiece> moe_pieces(const ModelConfig& config, const std::string& name, int layer,
                                const std::string& ours, const Tensor& param, HfMoeNames names);

// A dense-MLP tensor name relative to the layer ("mlp.c_fc.weight",
// "mlp.down_proj.weight") as the shared experts' ("mlp.shared_expert.c_fc.weight").
std::string shared_expert_name(const std::string& relative);

}  // namespace qj
