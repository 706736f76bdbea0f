// The trainer, driven from Python one step at a time. Every call that the ranks
// make together runs without the GIL; errors every rank agrees on are raised on
// every rank, while an error only one rank may know about ends the whole run as
// qj-train does (the other ranks may be waiting for it inside a collective).
// A signal (Ctrl-C) is looked at between steps: the step finishes, then
// KeyboardInterrupt is raised.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "bindings.h"
#include "comm/collective_errors.h"
#include "parallel/mesh.h"
#include "train/trainer.h"

namespace py = pybind11;

namespace qj::python {

namespace {

bool world_created = false;
// Ranks may be out of step: one of them raised KeyboardInterrupt between steps.
bool ranks_diverged = false;

World& run_world() {
  World& w = world();
  world_created = true;
  return w;
}

// This rank alone failed inside a collective call: report it, end every rank.
[[noreturn]] void fail_alone(World& w, const std::string& message) {
  std::fflush(stdout);
  std::fprintf(stderr, "error: rank %d: %s\n", w.rank(), message.c_str());
  std::fflush(stderr);
  w.abort(kExitBadInput, message);
}

// Runs a call every rank makes together, without the GIL (see the file comment).
template <typename Body>
auto collective(Body&& body) -> decltype(body()) {
  World& w = run_world();
  try {
    py::gil_scoped_release nogil;
    return body();
  } catch (const RankedError& e) {
    if (e.group_size() != w.size()) fail_alone(w, e.message());
    throw;
  } catch (const std::exception& e) {
    if (w.size() > 1) fail_alone(w, e.what());
    throw;
  }
}

py::array_t<float> to_numpy(HfTensor&& t) {
  auto* values = new std::vector<float>(std::move(t.values));
  py::capsule owner(values, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
  return py::array_t<float>(shape, values->data(), owner);
}

class PyTrainer;
std::set<PyTrainer*>& live_trainers() {
  static auto* trainers = new std::set<PyTrainer*>;
  return *trainers;
}

class PyTrainer {
 public:
  PyTrainer(Config config, const std::optional<std::string>& init_from, const std::string& metrics_jsonl) {
    if (init_from) config.train.init_from = *init_from;  // what qj-train --init-from sets
    TrainerOptions options;
    options.metrics_jsonl = metrics_jsonl;
    World& w = run_world();
    as_config_error([&] {
      py::gil_scoped_release nogil;
      agree_on_failure(w.comm(), [&] {
        w.set_comm_timeout(config.parallel.timeout_s);
        w.set_fault_report_dir(fault_report_dir(config, options));
        trainer_ = std::make_unique<Trainer>(config, options, &w.comm());
      });
    });
    live_trainers().insert(this);
  }
  ~PyTrainer() { live_trainers().erase(this); }

  Trainer& trainer() {
    if (!trainer_) throw Error("the trainer was closed (the interpreter is shutting down)");
    return *trainer_;
  }
  void close() { trainer_.reset(); }

  py::dict step() {
    Trainer& t = trainer();
    // Past the end: next_step() throws the same error on every rank before any collective.
    if (t.finished()) t.next_step();
    const Trainer::StepReport r = collective([&] { return t.next_step(); });
    if (PyErr_CheckSignals() != 0) {
      ranks_diverged = world().size() > 1;
      throw py::error_already_set();
    }
    py::dict d;
    d["step"] = r.stats.step;
    d["loss"] = r.stats.loss;
    if (r.stats.moe) d["aux_loss"] = r.stats.aux_loss;
    d["lr"] = r.stats.lr;
    d["grad_norm"] = r.stats.grad_norm;
    d["ms"] = r.stats.seconds * 1e3;
    d["tokens_per_s"] = r.tokens_per_s;
    d["mfu"] = r.mfu;
    d["skipped"] = r.stats.skipped;
    if (r.evaluated) d["valid_loss"] = r.valid_loss;
    return d;
  }

  float evaluate() {
    Trainer& t = trainer();
    return collective([&] { return t.evaluate(); });
  }

  void export_weights(const std::string& path) {
    Trainer& t = trainer();
    collective([&] { t.export_weights_to(path); });
  }

  void save_checkpoint() {
    Trainer& t = trainer();
    // Without checkpoint.dir this throws on every rank alike, before any collective.
    if (t.config().checkpoint.dir.empty()) t.save_checkpoint(t.steps_done());
    collective([&] { t.save_checkpoint(t.steps_done()); });
  }

  py::dict state_dict() {
    Trainer& t = trainer();
    std::vector<HfTensor> tensors = collective([&] { return t.weights_by_hf_name(); });
    py::dict d;
    for (HfTensor& tensor : tensors) {
      const std::string name = tensor.name;
      d[py::str(name)] = to_numpy(std::move(tensor));
    }
    return d;
  }

  py::dict mesh() {
    const Mesh& mesh = trainer().mesh();
    py::dict d;
    d["tp"] = mesh.tp_rank();
    d["pp"] = mesh.stage();
    d["dp"] = mesh.dp_rank();
    d["tp_size"] = mesh.shape().tp;
    d["pp_size"] = mesh.shape().pp;
    d["dp_size"] = mesh.shape().dp;
    return d;
  }

 private:
  std::unique_ptr<Trainer> trainer_;
};

// At interpreter exit (qianjun registers it with atexit): trainers are freed
// while MPI is up, then MPI is finalised, or, when a rank stopped out of step
// with the others (an uncaught exception, Ctrl-C) on a multi-rank run, the run
// is ended on every rank so that none waits forever.
void shutdown(int abort_code) {
  for (PyTrainer* t : std::set<PyTrainer*>(live_trainers())) t->close();
  if (!world_created) return;
  World& w = world();
  if (w.size() > 1 && (abort_code != 0 || ranks_diverged)) {
    std::fflush(stdout);
    std::fprintf(stderr, "qianjun: rank %d stopped out of step with the others: ending every rank\n",
                 w.rank());
    w.stop_out_of_step(abort_code != 0 ? abort_code : 130,
                       abort_code != 0 ? "its Python program ended on an uncaught exception"
                                       : "its Python program stopped between steps (Ctrl-C)");
  }
  w.finalize();
}

}  // namespace

void bind_trainer(py::module_& m) {
  py::class_<PyTrainer>(m, "Trainer", "One rank's trainer (qianjun.Trainer wraps it).")
      .def(py::init<Config, const std::optional<std::string>&, const std::string&>(), py::arg("config"),
           py::arg("init_from"), py::arg("metrics_jsonl"))
      .def("step", &PyTrainer::step)
      .def("evaluate", &PyTrainer::evaluate)
      .def("export", &PyTrainer::export_weights, py::arg("path"))
      .def("save_checkpoint", &PyTrainer::save_checkpoint)
      .def("state_dict", &PyTrainer::state_dict)
      .def("close", &PyTrainer::close)
      .def_property_readonly("mesh", &PyTrainer::mesh)
      .def_property_readonly("finished", [](PyTrainer& t) { return t.trainer().finished(); })
      .def_property_readonly("steps_done", [](PyTrainer& t) { return t.trainer().steps_done(); })
      .def_property_readonly("total_steps", [](PyTrainer& t) { return t.trainer().config().train.steps; })
      .def_property_readonly("config_json",
                             [](PyTrainer& t) { return config_to_json(t.trainer().config()); });
  m.def("world_rank", [] { return run_world().rank(); }, "This process's rank (0 without a launcher).");
  m.def("world_size", [] { return run_world().size(); }, "The number of ranks (1 without a launcher).");
  m.def("_shutdown", &shutdown, py::arg("abort_code") = 0);
}

}  // namespace qj::python
