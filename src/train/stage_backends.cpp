#include "train/stage_backends.h"

#include <vector>

#include "backends/op_coverage.h"
#include "comm/collective_errors.h"
#include "comm/text_collectives.h"

namespace qj {

const std::string& stage_backend_name(const Config& config, int stage) {
  const std::vector<std::string>& stages = config.parallel.stage_backends;
  if (stages.empty()) return config.backend.device;
  QJ_CHECK(stage >= 0 && stage < int(stages.size()),
           "pipeline stage " + std::to_string(stage) + " has no parallel.stage_backends entry");
  return stages[size_t(stage)];
}

const Backend& backend_of_rank(const Config& config, int world_size, int rank) {
  if (!mixed_backends(config)) {
    try {
      return get_backend(config.backend.device);
    } catch (const Error& e) {
      throw Error("backend.device='" + config.backend.device + "': " + e.what());
    }
  }
  const int stage = pipeline_stage_of(resolve_mesh(config.parallel, world_size), rank);
  const std::string& name = stage_backend_name(config, stage);
  try {
    return get_backend(name);
  } catch (const Error& e) {
    throw Error("parallel.stage_backends[" + std::to_string(stage) + "]='" + name +
                "' (pipeline stage " + std::to_string(stage) + ", rank " + std::to_string(rank) +
                "): " + e.what());
  }
}

void agree_on_stage_check(const Config& config, Communicator* world,
                          const std::function<void()>& check) {
  if (world && mixed_backends(config)) agree_on_failure(*world, check);
  else check();
}

std::string stage_coverage_reports(Communicator& world, const MeshShape& shape,
                                   const Backend& backend, const ModelConfig& model) {
  const int per_stage = shape.tp * shape.dp;
  const bool first_of_stage = world.rank() % per_stage == 0;
  const std::vector<std::string> reports =
      all_gather_text(world, first_of_stage ? coverage_report(backend, model) : std::string());
  if (world.rank() != 0) return "";
  std::string text;
  for (int stage = 0; stage < shape.pp; ++stage) {
    const int first = stage * per_stage, last = first + per_stage - 1;
    const std::string ranks = first == last ? "rank " + std::to_string(first)
                                            : "ranks " + std::to_string(first) + "-" +
                                                  std::to_string(last);
    text += (stage ? "\n" : "") + std::string("pipeline stage ") + std::to_string(stage) + " (" +
            ranks + "): " + reports[size_t(first)];
  }
  return text;
}

double job_peak_flops(Communicator& world, const Backend& backend) {
  float peak = float(backend.peak_flops());  // fp32 holds a sum of peaks to 1e-7
  world.all_reduce(Tensor(&peak, DType::F32, {1}), ReduceOp::Sum);
  return double(peak);
}

}  // namespace qj
