// Configs and plans: the config loader with the same keys, overrides and checks
// as qj-train's --config and --set, and qj-plan's plans as data.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings.h"
#include "core/config.h"
#include "core/memory_plan.h"
#include "train/run_plan.h"

namespace py = pybind11;

namespace qj::python {

namespace {

py::dict plan_as_dict(const MemoryPlan& plan) {
  py::dict arenas;
  for (int a = 0; a < int(ArenaKind::Count); ++a)
    arenas[arena_name(ArenaKind(a))] = plan.arena_bytes(ArenaKind(a));
  py::dict d;
  d["total_bytes"] = plan.total_bytes();
  d["arenas"] = arenas;
  d["report"] = plan.report();
  return d;
}

py::dict plan_run(const Config& config, int world_size) {
  if (world_size < 0 || world_size > kMaxPlannedWorld)
    throw ConfigError("plan: world=" + std::to_string(world_size) + " is not a number of ranks (1 to " +
                      std::to_string(kMaxPlannedWorld) + ")");
  const StagePlans plans = as_config_error([&] {
    py::gil_scoped_release nogil;
    return plan_every_stage(config, world_size);
  });
  const MeshShape& mesh = plans.mesh;
  py::list stages;
  for (int s = 0; s < mesh.pp; ++s) {
    py::dict stage = plan_as_dict(plans.stages[size_t(s)]);
    stage["stage"] = s;
    stage["rank"] = s * mesh.tp * mesh.dp;
    stages.append(stage);
  }
  py::dict d;
  d["parameters"] = config.model.parameter_count();
  d["micro_batch"] = config.train.micro_batch;
  d["seq_len"] = config.model.seq_len;
  d["world"] = plans.world;
  d["tp"] = mesh.tp;
  d["pp"] = mesh.pp;
  d["dp"] = mesh.dp;
  d["stages"] = stages;
  d["largest_stage"] = plans.largest;
  d["bytes_per_rank"] = plans.stages[size_t(plans.largest)].total_bytes();
  return d;
}

}  // namespace

void bind_config(py::module_& m) {
  py::class_<Config>(m, "NativeConfig", "A validated config (qianjun.Config holds one).")
      .def("to_json", &config_to_json, "The config as JSON text: every key, after presets.");
  m.def("read_config_file", [](const std::string& path) { return as_config_error([&] { return read_config_file(path); }); },
        py::arg("path"), "The text of a config file (ConfigError if it cannot be read).");
  m.def("parse_config",
        [](const std::string& text, const std::vector<std::string>& overrides, const std::string& source) {
          return as_config_error([&] { return parse_config(text, overrides, source); });
        },
        py::arg("text"), py::arg("overrides"), py::arg("source_name"),
        "Parses JSON config text, applies 'section.key=value' overrides (as --set does) and "
        "validates; ConfigError names the offending field.");
  m.def("plan", &plan_run, py::arg("config"), py::arg("world"),
        "qj-plan's plans of every pipeline stage as a dict (world 0: the ranks the config asks for).");
}

}  // namespace qj::python
