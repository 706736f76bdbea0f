// qianjun._core: the C++ core as a Python extension. Python converts arguments
// and results (python/qianjun/); every decision stays in the C++ it calls.
#include "bindings.h"

namespace qj::python {

World& world() {
  // MPI may read and change the program's arguments: give it a name of its own.
  static int argc = 1;
  static char name[] = "python3";
  static char* args[] = {name, nullptr};
  static char** argv = args;
  return World::init(argc, argv);
}

}  // namespace qj::python

PYBIND11_MODULE(_core, m) {
  m.doc() = "The C++ core of Qianjun (use the package qianjun, which wraps it).";
  qj::python::bind_errors(m);
  qj::python::bind_config(m);
  qj::python::bind_trainer(m);
  qj::python::bind_data(m);
}
