#include "train/run_plan.h"

#include "parallel/mesh.h"
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

double training_flops_per_token(const ModelConfig& m) {
  const double C = m.hidden, F = m.ffn_hidden, L = m.layers;
  const double qkv = C * double(m.heads + 2 * m.kv_heads) * m.head_dim();
  const double mlp_in = (m.activation == Activation::SwiGlu ? 2.0 : 1.0) * C * F;
  const double per_layer = qkv + C * C + mlp_in + F * C;
  const double head = double(m.padded_vocab()) * C;
  const double matmul_weights = L * per_layer + head;
  return 6.0 * matmul_weights + 6.0 * L * m.seq_len * C;
}

}  // namespace qj
