#include "parallel/mesh.h"

#include <string>

namespace qj {

MeshShape resolve_mesh(const ParallelConfig& parallel, int world_size) {
  // In 64 bits: tp x pp x dp of a config can pass int's range.
  const int64_t tp = parallel.tp, pp = parallel.pp;
  const std::string layout = "parallel.tp=" + std::to_string(tp) + " x parallel.pp=" +
                             std::to_string(pp);
  if (world_size < 1) throw Error("the world needs at least one rank, got " + std::to_string(world_size));
  if (world_size % (tp * pp) != 0)
    throw Error(layout + " = " + std::to_string(tp * pp) + " ranks does not divide the world of " +
                std::to_string(world_size) + " ranks (mpirun -np)");
  const int64_t dp = parallel.dp == 0 ? world_size / (tp * pp) : parallel.dp;
  if (tp * pp * dp != world_size)
    throw Error(layout + " x parallel.dp=" + std::to_string(dp) + " needs " +
                std::to_string(tp * pp * dp) + " ranks, but the world has " +
                std::to_string(world_size) + " (mpirun -np; or set parallel.dp=0 to derive it)");
  if (parallel.ep < 1 || dp % parallel.ep != 0)
    throw Error("parallel.ep=" + std::to_string(parallel.ep) + " does not divide the " +
                std::to_string(dp) + " data-parallel ranks (" + layout + " on " +
                std::to_string(world_size) + " ranks): expert-parallel groups are carved out of them");
  return {int(tp), int(pp), int(dp), parallel.ep};
}

Mesh::Mesh(Communicator& world, MeshShape shape) : world_(world), shape_(shape) {
  QJ_CHECK(world.size() == shape.world(), "mesh: the world has " + std::to_string(world.size()) +
                                              " ranks, the mesh " + std::to_string(shape.world()));
  const int rank = world.rank();
  tp_rank_ = rank % shape.tp;
  dp_rank_ = rank / shape.tp % shape.dp;
  stage_ = rank / (shape.tp * shape.dp);
  // Groups share the coordinates of the other two axes; key = position on the axis.
  tp_ = world.split(stage_ * shape.dp + dp_rank_, tp_rank_, "tp");
  dp_ = world.split(stage_ * shape.tp + tp_rank_, dp_rank_, "dp");
  pp_ = world.split(dp_rank_ * shape.tp + tp_rank_, stage_, "pp");
  const bool end_stage = shape.pp > 1 && (first_stage() || last_stage());
  const int position = dp_rank_ * shape.tp + tp_rank_;
  // Every rank takes part in the split; the middle stages get a group they never use.
  auto group = world.split(end_stage ? position : shape.dp * shape.tp + rank, stage_, "embedding");
  if (end_stage) embedding_ = std::move(group);
  if (shape.ep > 1) {
    QJ_CHECK(shape.dp % shape.ep == 0, "mesh: ep " + std::to_string(shape.ep) +
                                           " does not divide dp " + std::to_string(shape.dp));
    const int blocks = shape.dp / shape.ep, position_in_stage = stage_ * shape.tp + tp_rank_;
    ep_ = world.split(position_in_stage * blocks + expert_dp_rank(), ep_rank(), "ep");
    expert_dp_ = world.split(position_in_stage * shape.ep + ep_rank(), expert_dp_rank(), "expert_dp");
  } else {
    ep_ = make_single_rank_communicator("ep");
  }
}

}  // namespace qj
