#include "train/distributed_weights.h"

#include <algorithm>
#include <map>

#include "checkpoint/hf_weights.h"
#include "model/param_shard.h"
#include "parallel/gather_param.h"

namespace qj {

namespace {

// The whole model in host memory, one-device layout: what the safetensors
// functions read and write (with the cpu backend, whose memory is the host's).
struct HostModel {
  std::vector<ParamSpec> specs;
  std::vector<std::vector<float>> values;
  std::vector<ParamRef> refs;

  explicit HostModel(const ModelConfig& config) : specs(parameter_specs(config)) {
    values.reserve(specs.size());
    for (const ParamSpec& s : specs) {
      values.emplace_back(size_t(numel(s.shape)), 0.f);
      float* data = values.back().data();
      const Tensor t(data, DType::F32, s.shape);
      refs.push_back({s.name, t, t, t, s.weight_decay});
    }
  }
  std::vector<float>& value(const std::string& name) {
    for (size_t i = 0; i < specs.size(); ++i)
      if (specs[i].name == name) return values[i];
    throw Error("weights: no parameter '" + name + "' in the one-device model");
  }
  // A global tensor of a shard's layout: the same values, up to the rows of
  // vocabulary padding, which are zero. (Copied: refs point into values.)
  void store(const std::string& name, const std::vector<float>& global) {
    std::vector<float>& target = value(name);
    std::copy_n(global.begin(), std::min(global.size(), target.size()), target.begin());
  }
};

// The global tensor of a shard's layout (its vocabulary padded for tp) from the
// one-device one, or back: the rows differ only in zero padding.
std::vector<float> resize_rows(std::vector<float> v, const std::vector<int64_t>& shape) {
  v.resize(size_t(numel(shape)), 0.f);
  return v;
}

std::vector<float> to_host(const Backend& backend, const Tensor& t) {
  std::vector<float> host(size_t(t.numel()));
  backend.copy_to_host(host.data(), t.data, t.nbytes());
  return host;
}

bool is_tied_copy(const Model& chunk, const ParamRef& p) {
  return p.name == "wte" && !chunk.shard().embedding;
}

}  // namespace

void import_weights(const std::string& path, const Config& config,
                    const std::vector<std::unique_ptr<Model>>& chunks, const Backend& backend) {
  HostModel whole(config.model);
  import_hf_safetensors(path, config.model, whole.refs, get_backend("cpu"));
  for (const auto& chunk : chunks) {
    const ModelShard& shard = chunk->shard();
    for (size_t i = 0; i < chunk->params().size(); ++i) {
      const ParamSpec& spec = chunk->param_specs()[i];
      const std::vector<float> global = resize_rows(whole.value(spec.name), spec.global_shape);
      const std::vector<float> local = take_shard(spec, shard.tp_size, shard.tp_rank, global);
      backend.copy_to_device(chunk->params()[i].value.data, local.data(), local.size() * 4);
    }
    refresh_weights(backend, chunk->params());
  }
}

namespace {

// Collective over the world: the whole model on world rank 0 (nullptr elsewhere).
std::unique_ptr<HostModel> gather_model(const Config& config, const Mesh& mesh,
                                        const std::vector<std::unique_ptr<Model>>& chunks,
                                        const Backend& backend) {
  const MeshShape& shape = mesh.shape();
  const bool stage_leader = mesh.tp_rank() == 0 && mesh.dp_rank() == 0;
  const bool writer = mesh.world().rank() == 0;
  std::unique_ptr<HostModel> whole;
  if (writer) whole = std::make_unique<HostModel>(config.model);
  // Every stage's leader sends its parameters, gathered over tp, in its order; rank
  // 0 knows that order from the stage's plan. The tied copy of wte stays home.
  for (int stage = 0; stage < shape.pp; ++stage) {
    const int leader = stage * shape.tp * shape.dp;
    // The tp group of the leader, and its ep group (which holds every expert).
    if (mesh.stage() == stage && mesh.expert_dp_rank() == 0) {
      for (const auto& chunk : chunks) {
        for (size_t i = 0; i < chunk->params().size(); ++i) {
          const ParamRef& p = chunk->params()[i];
          if (is_tied_copy(*chunk, p)) continue;
          std::vector<float> global =
              gather_param(mesh, chunk->param_specs()[i], to_host(backend, p.value));
          if (!stage_leader) continue;
          if (writer) {
            whole->store(p.name, global);
          } else {
            mesh.world().send(Tensor(global.data(), DType::F32, {int64_t(global.size())}), 0, 2);
          }
        }
      }
    }
    if (writer && leader != 0) {
      MemoryPlan unused;
      const StagePlan plan = plan_stage(config, shape, 0, 0, stage, unused);
      for (const ParamSpec& spec : plan.params) {
        if (spec.name == "wte" && stage != 0) continue;  // the tied copy
        std::vector<float> global(size_t(numel(spec.global_shape)));
        mesh.world().recv(Tensor(global.data(), DType::F32, {int64_t(global.size())}), leader, 2);
        whole->store(spec.name, global);
      }
    }
  }
  return whole;
}

}  // namespace

std::vector<HfTensor> gather_hf_tensors(const Config& config, const Mesh& mesh,
                                        const std::vector<std::unique_ptr<Model>>& chunks,
                                        const Backend& backend) {
  const std::unique_ptr<HostModel> whole = gather_model(config, mesh, chunks, backend);
  if (!whole) return {};
  return hf_tensors(config.model, whole->refs, get_backend("cpu"));
}

void export_weights(const std::string& path, const Config& config, const Mesh& mesh,
                    const std::vector<std::unique_ptr<Model>>& chunks, const Backend& backend) {
  const std::unique_ptr<HostModel> whole = gather_model(config, mesh, chunks, backend);
  if (whole) export_hf_safetensors(path, config.model, whole->refs, get_backend("cpu"));
  mesh.world().barrier();
}

}  // namespace qj
