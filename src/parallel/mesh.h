#pragma once
// The process mesh: world = pp x dp x tp ranks, tp fastest, then dp, then pp
// (Megatron's order, so tensor-parallel peers are neighbours), one communicator
// per axis. The embedding group joins the first and the last pipeline stage of
// the same (tp, dp) position: with tied embeddings both hold wte.
//
// Expert parallelism splits each dp group into dp/ep blocks of ep consecutive
// dp ranks: dp rank d has ep rank d % ep (which experts it holds) and
// expert-dp rank d / ep. The ep group (one block) exchanges tokens; the
// expert-dp group (the same ep rank in every block) holds the same experts and
// reduces their gradients.
#include <memory>

#include "core/config.h"
#include "qianjun/comm.h"

namespace qj {

struct MeshShape {
  int tp = 1, pp = 1, dp = 1;
  int ep = 1;  // divides dp
  int world() const { return tp * pp * dp; }
};

// tp, pp, dp and ep of a run on `world_size` ranks (parallel.dp 0: what is left).
// Throws qj::Error naming the parallel.* fields when they do not fit.
MeshShape resolve_mesh(const ParallelConfig& parallel, int world_size);

class Mesh {
 public:
  Mesh(Communicator& world, MeshShape shape);

  const MeshShape& shape() const { return shape_; }
  int tp_rank() const { return tp_rank_; }
  int dp_rank() const { return dp_rank_; }
  int stage() const { return stage_; }
  int ep_rank() const { return dp_rank_ % shape_.ep; }
  int expert_dp_rank() const { return dp_rank_ / shape_.ep; }
  bool first_stage() const { return stage_ == 0; }
  bool last_stage() const { return stage_ == shape_.pp - 1; }

  Communicator& world() const { return world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& pp() const { return *pp_; }
  // Expert parallelism: the ranks that exchange tokens, and those that hold the
  // same experts (the dp group itself when ep is 1).
  Communicator& ep() const { return *ep_; }
  Communicator& expert_dp() const { return expert_dp_ ? *expert_dp_ : *dp_; }
  // First and last stage only (nullptr elsewhere, and when pp == 1).
  Communicator* embedding() const { return embedding_.get(); }

 private:
  Communicator& world_;
  MeshShape shape_;
  int tp_rank_, dp_rank_, stage_;
  std::unique_ptr<Communicator> tp_, dp_, pp_, embedding_, ep_, expert_dp_;
};

}  // namespace qj
