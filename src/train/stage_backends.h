#pragma once
// Mixed backends in one job: with parallel.stage_backends each pipeline stage
// trains on its own backend (stage 0 on the cpu, stage 1 on a plugin, ...).
// A rank's backend follows from its stage in the mesh (rank = (stage*dp +
// dp_rank)*tp + tp_rank), so it is known before any collective runs. Tensors
// crossing a stage boundary, and collectives spanning stages, go through host
// memory on every rank whose backend is not the host's (staged_comm.h).
#include <functional>
#include <string>

#include "core/config.h"
#include "parallel/mesh.h"
#include "qianjun/backend.h"
#include "qianjun/comm.h"

namespace qj {

// True when the config puts pipeline stages on different backends.
inline bool mixed_backends(const Config& config) { return !config.parallel.stage_backends.empty(); }

// The pipeline stage of world rank `rank`.
inline int pipeline_stage_of(const MeshShape& shape, int rank) { return rank / (shape.tp * shape.dp); }

// The registry name of stage `stage`'s backend: its parallel.stage_backends
// entry, or backend.device when the list is empty.
const std::string& stage_backend_name(const Config& config, int stage);

// The backend world rank `rank` of `world_size` trains on. Throws qj::Error
// naming the config key, the stage and the plugin when it cannot be created.
const Backend& backend_of_rank(const Config& config, int world_size, int rank);

// With mixed backends a check that depends on the rank's backend (loading it,
// its op coverage, whether the plan fits its memory) can fail on some stages
// only: collective over `world`, every rank then throws the failing rank's
// error (agree_on_failure) instead of the others waiting in the next
// collective. Without mixed backends every rank meets the same result and
// `check` simply runs.
void agree_on_stage_check(const Config& config, Communicator* world,
                          const std::function<void()>& check);

// Collective over `world`: the start-up coverage report of every stage, each
// from the first rank of its stage ("pipeline stage 1 (ranks 2-3): backend
// plugin:...: 31 ops native"). The text on world rank 0, empty elsewhere.
std::string stage_coverage_reports(Communicator& world, const MeshShape& shape,
                                   const Backend& backend, const ModelConfig& model);

// Collective over `world`: the sum of every rank's backend peak FLOP/s.
double job_peak_flops(Communicator& world, const Backend& backend);

}  // namespace qj
