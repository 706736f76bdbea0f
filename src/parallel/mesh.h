#pragma once
// The process mesh: world = pp x dp x tp ranks, tp fastest, then dp, then pp
// (Megatron's order, so tensor-parallel peers are neighbours), one communicator
// per axis. The embedding group joins the first and the last pipeline stage of
// the same (tp, dp) position: with tied embeddings both hold wte.
#include <memory>

#include "core/config.h"
#include "qianjun/comm.h"

namespace qj {

struct MeshShape {
  int tp = 1, pp = 1, dp = 1;
  int world() const { return tp * pp * dp; }
};

// tp, pp and dp of a run on `world_size` ranks (parallel.dp 0: what is left).
// Throws qj::Error naming the parallel.* fields when they do not fit.
MeshShape resolve_mesh(const ParallelConfig& parallel, int world_size);

class Mesh {
 public:
  Mesh(Communicator& world, MeshShape shape);

  const MeshShape& shape() const { return shape_; }
  int tp_rank() const { return tp_rank_; }
  int dp_rank() const { return dp_rank_; }
  int stage() const { return stage_; }
  bool first_stage() const { return stage_ == 0; }
  bool last_stage() const { return stage_ == shape_.pp - 1; }

  Communicator& world() const { return world_; }
  Communicator& tp() const { return *tp_; }
  Communicator& dp() const { return *dp_; }
  Communicator& pp() const { return *pp_; }
  // First and last stage only (nullptr elsewhere, and when pp == 1).
  Communicator* embedding() const { return embedding_.get(); }

 private:
  Communicator& world_;
  MeshShape shape_;
  int tp_rank_, dp_rank_, stage_;
  std::unique_ptr<Communicator> tp_, dp_, pp_, embedding_;
};

}  // namespace qj
