// The process mesh on 1..4 ranks: for every (tp, pp, dp) that fills the world,
// each rank's coordinates (tp fastest, then dp, then pp), the members and order
// of every axis communicator and of the embedding group, found by reductions
// over them and compared with sets computed here from the coordinates; and the
// errors of resolve_mesh.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "mpi_test_helpers.h"
#include "parallel/mesh.h"

using namespace qj;
using namespace qj::test;
using Catch::Matchers::Contains;

namespace {

Communicator& comm() { return world().comm(); }

struct Coord {
  int tp, dp, stage;
};

// Every shape whose product is the world size.
std::vector<MeshShape> shapes_of(int world_size) {
  std::vector<MeshShape> shapes;
  for (int tp = 1; tp <= world_size; ++tp)
    for (int pp = 1; pp <= world_size; ++pp)
      for (int dp = 1; dp <= world_size; ++dp)
        if (tp * pp * dp == world_size) shapes.push_back({tp, pp, dp});
  return shapes;
}

// The world rank of each coordinate, listed by walking the mesh in Megatron's
// order: stage outermost, then dp, then tp fastest.
std::vector<Coord> coords_by_world_rank(const MeshShape& m) {
  std::vector<Coord> coords;
  for (int s = 0; s < m.pp; ++s)
    for (int d = 0; d < m.dp; ++d)
      for (int t = 0; t < m.tp; ++t) coords.push_back({t, d, s});
  return coords;
}

// Sums, over a communicator, a world-sized vector in which each member writes
// (its rank in the communicator + 1) at its world rank: the result lists the
// members and their order.
std::vector<int32_t> membership(Communicator& group, int world_rank, int world_size) {
  std::vector<int32_t> v(size_t(world_size), 0);
  v[size_t(world_rank)] = group.rank() + 1;
  group.all_reduce(view(v), ReduceOp::Sum);
  return v;
}

int32_t sum_of_world_ranks(Communicator& group, int world_rank) {
  int32_t x = world_rank;
  group.all_reduce(Tensor(&x, DType::I32, {1}), ReduceOp::Sum);
  return x;
}

std::string describe(const MeshShape& m) {
  return "tp=" + std::to_string(m.tp) + " pp=" + std::to_string(m.pp) + " dp=" + std::to_string(m.dp);
}

}  // namespace

TEST_CASE("every mesh that fills the world: coordinates and axis groups") {
  const int size = comm().size(), rank = comm().rank();
  const std::vector<MeshShape> shapes = shapes_of(size);
  CHECK(shapes.size() == (size == 1 ? 1u : size == 3 ? 3u : 6u));
  for (const MeshShape& shape : shapes) {
    INFO(describe(shape) << " rank " << rank);
    const Mesh mesh(comm(), shape);
    const std::vector<Coord> coords = coords_by_world_rank(shape);
    const Coord me = coords[size_t(rank)];
    CHECK(mesh.tp_rank() == me.tp);
    CHECK(mesh.dp_rank() == me.dp);
    CHECK(mesh.stage() == me.stage);
    CHECK(rank == mesh.tp_rank() + shape.tp * (mesh.dp_rank() + shape.dp * mesh.stage()));
    CHECK(mesh.first_stage() == (me.stage == 0));
    CHECK(mesh.last_stage() == (me.stage == shape.pp - 1));
    CHECK(&mesh.world() == &comm());

    CHECK(mesh.tp().size() == shape.tp);
    CHECK(mesh.tp().rank() == me.tp);
    CHECK(mesh.dp().size() == shape.dp);
    CHECK(mesh.dp().rank() == me.dp);
    CHECK(mesh.pp().size() == shape.pp);
    CHECK(mesh.pp().rank() == me.stage);

    // Expected members: the ranks that share the other two coordinates, each at
    // its position on the axis.
    const size_t n = static_cast<size_t>(size);
    std::vector<int32_t> tp_members(n, 0), dp_members(n, 0), pp_members(n, 0);
    int32_t tp_sum = 0, dp_sum = 0, pp_sum = 0;
    for (int w = 0; w < size; ++w) {
      const Coord c = coords[size_t(w)];
      if (c.dp == me.dp && c.stage == me.stage) tp_members[size_t(w)] = c.tp + 1, tp_sum += w;
      if (c.tp == me.tp && c.stage == me.stage) dp_members[size_t(w)] = c.dp + 1, dp_sum += w;
      if (c.tp == me.tp && c.dp == me.dp) pp_members[size_t(w)] = c.stage + 1, pp_sum += w;
    }
    CHECK(membership(mesh.tp(), rank, size) == tp_members);
    CHECK(membership(mesh.dp(), rank, size) == dp_members);
    CHECK(membership(mesh.pp(), rank, size) == pp_members);
    CHECK(sum_of_world_ranks(mesh.tp(), rank) == tp_sum);
    CHECK(sum_of_world_ranks(mesh.dp(), rank) == dp_sum);
    CHECK(sum_of_world_ranks(mesh.pp(), rank) == pp_sum);

    // The embedding group: first and last stage of the same (tp, dp) position.
    const bool end_stage = shape.pp > 1 && (me.stage == 0 || me.stage == shape.pp - 1);
    CHECK((mesh.embedding() != nullptr) == end_stage);
    if (mesh.embedding() != nullptr) {
      Communicator& group = *mesh.embedding();
      CHECK(group.size() == 2);
      CHECK(group.rank() == (me.stage == 0 ? 0 : 1));
      std::vector<int32_t> expected(size_t(size), 0);
      int32_t expected_sum = 0;
      for (int w = 0; w < size; ++w) {
        const Coord c = coords[size_t(w)];
        if (c.tp != me.tp || c.dp != me.dp) continue;
        if (c.stage == 0) expected[size_t(w)] = 1, expected_sum += w;
        if (c.stage == shape.pp - 1) expected[size_t(w)] = 2, expected_sum += w;
      }
      CHECK(membership(group, rank, size) == expected);
      CHECK(sum_of_world_ranks(group, rank) == expected_sum);
    }
    comm().barrier();
  }
}

TEST_CASE("a mesh that does not fill the world is refused") {
  const int size = comm().size();
  CHECK_THROWS_AS(Mesh(comm(), MeshShape{size + 1, 1, 1}), Error);
}

TEST_CASE("resolve_mesh derives dp and names the fields that do not fit") {
  const int size = comm().size();
  ParallelConfig p;
  p.tp = 1, p.pp = 1, p.dp = 0;
  const MeshShape all_dp = resolve_mesh(p, size);
  CHECK(all_dp.tp == 1);
  CHECK(all_dp.pp == 1);
  CHECK(all_dp.dp == size);

  // Pure functions of their arguments: any world size can be asked about.
  p.tp = 2, p.pp = 1, p.dp = 0;
  CHECK(resolve_mesh(p, 4).dp == 2);
  p.tp = 1, p.pp = 3;
  CHECK(resolve_mesh(p, 12).dp == 4);
  p.tp = 2, p.pp = 3, p.dp = 2;
  const MeshShape full = resolve_mesh(p, 12);
  CHECK((full.tp == 2 && full.pp == 3 && full.dp == 2));
  CHECK(full.world() == 12);

  // tp x pp does not divide the world.
  p.tp = 2, p.pp = 1, p.dp = 0;
  CHECK_THROWS_WITH(resolve_mesh(p, 3),
                    Contains("parallel.tp=2") && Contains("parallel.pp=1") && Contains("3"));
  p.tp = 1, p.pp = 4;
  CHECK_THROWS_WITH(resolve_mesh(p, 6),
                    Contains("parallel.tp=1") && Contains("parallel.pp=4") && Contains("6"));
  // An explicit dp that does not make the world.
  p.tp = 1, p.pp = 1, p.dp = 2;
  CHECK_THROWS_WITH(resolve_mesh(p, 3), Contains("parallel.dp=2") && Contains("3"));
  p.tp = 2, p.pp = 2, p.dp = 2;
  CHECK_THROWS_WITH(resolve_mesh(p, 4),
                    Contains("parallel.dp=2") && Contains("8") && Contains("4"));
}
