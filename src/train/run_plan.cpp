#include "train/run_plan.h"

#include <string>

#include "model/model_plan.h"
#include "parallel/mesh.h"
#include "qianjun/error.h"
#include "train/checkpoint_state.h"

namespace qj {

MemoryPlan plan_training_run(const Config& config, int world_size, int rank) {
  const MeshShape mesh = resolve_mesh(config.parallel, world_size);
  MemoryPlan plan;
  const StagePlan stage = plan_stage(config, mesh, rank % mesh.tp, rank / mesh.tp % mesh.dp,
                                     rank / (mesh.tp * mesh.dp), plan);
  add_checkpoint_staging(config, stage, plan);
  return plan;
}

int ranks_asked(const ParallelConfig& par) {
  const int64_t ranks = int64_t(par.tp) * par.pp * (par.dp == 0 ? 1 : par.dp);
  if (ranks > kMaxPlannedWorld)
    throw Error("parallel.tp=" + std::to_string(par.tp) + " x parallel.pp=" + std::to_string(par.pp) +
                " x parallel.dp=" + std::to_string(par.dp) + " needs " + std::to_string(ranks) +
                " ranks, more than qj-plan plans (" + std::to_string(kMaxPlannedWorld) + ")");
  return int(ranks);
}

StagePlans plan_every_stage(const Config& config, int world_size) {
  StagePlans plans;
  plans.world = world_size > 0 ? world_size : ranks_asked(config.parallel);
  plans.mesh = resolve_mesh(config.parallel, plans.world);
  for (int stage = 0; stage < plans.mesh.pp; ++stage) {
    plans.stages.push_back(plan_training_run(config, plans.world, stage * plans.mesh.tp * plans.mesh.dp));
    if (plans.stages.back().total_bytes() > plans.stages[size_t(plans.largest)].total_bytes())
      plans.largest = stage;
  }
  return plans;
}

double training_flops_per_token(const ModelConfig& m) {
  const double C = m.hidden;
  const double qkv = C * double(m.heads + 2 * m.kv_heads) * m.head_dim();
  const double up = m.activation == Activation::SwiGlu ? 2.0 : 1.0;
  auto mlp = [&](double F) { return up * C * F + F * C; };
  double matmul_weights = double(m.padded_vocab()) * C;  // the head
  for (int i = 0; i < m.layers; ++i) {
    matmul_weights += qkv + C * C + mlp(m.dense_ffn_hidden(i));
    // A token runs through its top_k experts and the router.
    if (m.is_moe_layer(i)) matmul_weights += m.moe_top_k * mlp(m.moe_ffn_hidden) + m.moe_experts * C;
  }
  return 6.0 * matmul_weights + 6.0 * double(m.layers) * m.seq_len * C;
}

double all_to_all_bytes_per_step(const Config& config, const MeshShape& mesh) {
  const ModelConfig& m = config.model;
  if (mesh.ep <= 1 || !m.is_moe()) return 0;
  int moe_layers = 0;
  for (int i = 0; i < m.layers; ++i) moe_layers += m.is_moe_layer(i) ? 1 : 0;
  const double rows = double(config.train.global_batch) * m.seq_len * m.moe_top_k * moe_layers *
                      double(mesh.ep - 1) / mesh.ep;
  const double crossings = m.recompute == Recompute::Full ? 6 : 4;
  // Each tp rank sends its own rows, all of them unless sequence parallelism
  // splits the tokens and the experts are whole.
  const bool split_tokens = config.parallel.sequence_parallel && config.parallel.expert_tp == 1;
  const double copies = split_tokens ? 1 : mesh.tp;
  return rows * crossings * copies * double(m.hidden) *
         double(dtype_size(compute_dtype(config.train.precision)));
}

}  // namespace qj
