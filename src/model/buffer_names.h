#pragma once
// The names of the model's planned buffers, spelled once. The planner
// (model_plan.cpp) registers them and the binder (model.cpp) looks them up,
// so a misspelt optional name can no longer drop its tensor without a word;
// Arenas::never_bound() then catches a buffer planned but never bound.
// Parameter names are also checkpoint and safetensors names: never rename one.
namespace qj::buffer_names {

// ---- parameters of layer i, after layer_prefix(i) ("layers.{i}."); a
// parameter's gradient is "grad." + its name, its bf16 copy weight_name() ----
inline constexpr const char* kNorm1 = "norm1";  // + kWeight / kBias
inline constexpr const char* kNorm2 = "norm2";
inline constexpr const char* kWeight = ".weight";
inline constexpr const char* kBias = ".bias";
inline constexpr const char* kQkvWeight = "attn.qkv.weight";
inline constexpr const char* kQkvBias = "attn.qkv.bias";
inline constexpr const char* kAttnProjWeight = "attn.proj.weight";
inline constexpr const char* kAttnProjBias = "attn.proj.bias";
inline constexpr const char* kFcWeight = "mlp.fc.weight";
inline constexpr const char* kFcBias = "mlp.fc.bias";
inline constexpr const char* kMlpProjWeight = "mlp.proj.weight";
inline constexpr const char* kMlpProjBias = "mlp.proj.bias";
// Mixture-of-experts layers (README, "Mixture of experts"); their shared experts are the
// dense MLP's names above, as wide as all shared experts side by side.
inline constexpr const char* kRouterWeight = "moe.router.weight";      // [E, C]
inline constexpr const char* kExpertBias = "moe.router.expert_bias";   // [E], balancing only
inline constexpr const char* kExpertsFcWeight = "moe.experts.fc.weight";      // [E, F or 2F, C]
inline constexpr const char* kExpertsProjWeight = "moe.experts.proj.weight";  // [E, C, F]
// ---- parameters outside the layers ----
inline constexpr const char* kTokenEmbedding = "wte";
inline constexpr const char* kPositionEmbedding = "wpe";
inline constexpr const char* kFinalNorm = "norm_f";  // + kWeight / kBias
inline constexpr const char* kHeadWeight = "lm_head.weight";  // untied output head
inline constexpr const char* kGradPrefix = "grad.";

// ---- activations of layer i, after slot_prefix(chunk, slot) + layer_prefix(i),
// or shared by all layers after kRecomputePrefix when recomputed ----
// Norm outputs are named by the norm (kNorm1, kNorm2, kFinalNorm); their
// statistics add kMeanSuffix (LayerNorm only) and kRstdSuffix.
inline constexpr const char* kMeanSuffix = "_mean";
inline constexpr const char* kRstdSuffix = "_rstd";
inline constexpr const char* kQkv = "qkv";
inline constexpr const char* kAttnLse = "attn_lse";
inline constexpr const char* kAttnOut = "attn_out";
inline constexpr const char* kResidualMid = "residual_mid";
inline constexpr const char* kFc = "fc";
inline constexpr const char* kFcAct = "fc_act";
inline constexpr const char* kResidualOut = "residual_out";
inline constexpr const char* kMoeRowToken = "moe_row_token";
inline constexpr const char* kMoeRowWeight = "moe_row_weight";
inline constexpr const char* kMoePosition = "moe_position";
inline constexpr const char* kMoeWeight = "moe_weight";
inline constexpr const char* kMoeOffsets = "moe_offsets";
inline constexpr const char* kMoeH = "moe_h";
inline constexpr const char* kMoeAct = "moe_act";
inline constexpr const char* kMoeY = "moe_y";
// Expert parallelism only: the received rows in expert-major order and the two
// row permutations between it and the received (source-major) order.
inline constexpr const char* kMoeExpertRows = "moe_expert_rows";
inline constexpr const char* kMoeToExpertMajor = "moe_to_expert_major";
inline constexpr const char* kMoeToSourceMajor = "moe_to_source_major";
inline constexpr const char* kRecomputePrefix = "act.recompute.";

// ---- per micro-batch slot, after slot_prefix(chunk, slot) ----
inline constexpr const char* kTokens = "tokens";
inline constexpr const char* kEncoded = "encoded";        // embedding output
inline constexpr const char* kInput = "input";            // from the previous stage
inline constexpr const char* kGradInput = "grad_input";   // to the previous stage
inline constexpr const char* kTargets = "targets";
inline constexpr const char* kLogits = "logits";
inline constexpr const char* kLse = "lse";

// ---- per chunk, after chunk_prefix(chunk) ("act.c{chunk}.") ----
inline constexpr const char* kLossStats = "loss_stats";
inline constexpr const char* kLossStatsAll = "loss_stats_all";

// ---- shared by every layer, slot and chunk of a rank ----
inline constexpr const char* kRopeCos = "rope.cos";
inline constexpr const char* kRopeSin = "rope.sin";
inline constexpr const char* kGradResidual = "act.grad.residual";
inline constexpr const char* kGradNormOut = "act.grad.norm_out";
inline constexpr const char* kGradNormIn = "act.grad.norm_in";
inline constexpr const char* kGradAttnOut = "act.grad.attn_out";
inline constexpr const char* kGradQkv = "act.grad.qkv";
inline constexpr const char* kGradFcAct = "act.grad.fc_act";
inline constexpr const char* kGradFc = "act.grad.fc";
inline constexpr const char* kMoeLogits = "act.moe.logits";
inline constexpr const char* kMoeRows = "act.moe.rows";
inline constexpr const char* kMoeOut = "act.moe.out";
inline constexpr const char* kMoeStats = "act.moe.stats";
inline constexpr const char* kMoeRowDot = "act.moe.row_dot";
inline constexpr const char* kGradMoeRows = "act.grad.moe_rows";
inline constexpr const char* kGradMoeAct = "act.grad.moe_act";
inline constexpr const char* kGradMoeH = "act.grad.moe_h";
inline constexpr const char* kMoeReceived = "act.moe.received";      // expert parallelism:
inline constexpr const char* kMoeExpertOut = "act.moe.expert_out";  // source- / expert-major
// Expert tensor parallelism with sequence parallelism: every token gathered
// over tp (the input, then the output gradient), and the rank's reduced rows.
inline constexpr const char* kMoeTokens = "act.moe.tokens";
inline constexpr const char* kMoeGradTokens = "act.moe.grad_tokens";
inline constexpr const char* kMoeLocalOut = "act.moe.local_out";
inline constexpr const char* kTpFull = "act.tp.full";        // before a reduce-scatter
inline constexpr const char* kTpReduced = "act.tp.reduced";  // after it

// ---- the optimizer (parallel/stage_plan.cpp plans them) ----
inline constexpr const char* kBf16CopyPrefix = "bf16.";  // mixed precision: weight_name()
inline constexpr const char* kAdamMPrefix = "adam_m.";    // + parameter name, without ZeRO
inline constexpr const char* kAdamVPrefix = "adam_v.";
inline constexpr const char* kZeroGradShard = "zero.grad_shard";  // ZeRO-1: this rank's share
inline constexpr const char* kZeroAdamM = "zero.adam_m";
inline constexpr const char* kZeroAdamV = "zero.adam_v";
inline constexpr const char* kGradSumSquares = "optim.grad_sum_squares";

// ---- outside the model ----
inline constexpr const char* kCheckpointStaging = "checkpoint.staging";

}  // namespace qj::buffer_names
