#pragma once
// What the parts of the module qianjun._core share: the exceptions C++ errors
// become, the process's World, and the functions that bind each part.
#include <pybind11/pybind11.h>

#include "comm/world.h"
#include "qianjun/error.h"

namespace qj::python {

// A configuration error (reading, validating or laying out a config): raised in
// Python as qianjun.ConfigError, a subclass of qianjun.Error and ValueError.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// Runs `body`, turning a qj::Error it throws into ConfigError (same message).
template <typename Body>
auto as_config_error(Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
}

// The process's World (MPI when launched by mpirun or srun), created on first use.
World& world();

void bind_errors(pybind11::module_& m);
void bind_config(pybind11::module_& m);
void bind_trainer(pybind11::module_& m);
void bind_data(pybind11::module_& m);

}  // namespace qj::python
