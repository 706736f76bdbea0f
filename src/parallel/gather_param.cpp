#include "parallel/gather_param.h"

#include "model/param_shard.h"

namespace qj {

namespace {

Tensor host_tensor(std::vector<float>& v) { return Tensor(v.data(), DType::F32, {int64_t(v.size())}); }

}  // namespace

std::vector<float> gather_param(const Mesh& mesh, const ParamSpec& spec, std::vector<float> local) {
  QJ_CHECK(int64_t(local.size()) == numel(spec.shape),
           "gather_param: " + spec.name + " has " + std::to_string(numel(spec.shape)) +
               " elements on this rank, got " + std::to_string(local.size()));
  std::vector<float> parts(local.size() * size_t(mesh.tp().size()));
  mesh.tp().all_gather(host_tensor(local), host_tensor(parts));
  std::vector<float> joined = join_shards(spec, mesh.tp().size(), parts);
  if (!spec.expert_parallel) return joined;
  // The ep ranks (same tp rank) hold consecutive experts.
  std::vector<float> global(joined.size() * size_t(mesh.ep().size()));
  mesh.ep().all_gather(host_tensor(joined), host_tensor(global));
  return global;
}

}  // namespace qj
