// C++ errors as Python exceptions: qj::Error -> qianjun.Error, a configuration
// error -> qianjun.ConfigError (also a ValueError), with the C++ message.
#include <pybind11/pybind11.h>

#include "bindings.h"

namespace py = pybind11;

namespace qj::python {

void bind_errors(py::module_& m) {
  // Never destroyed: the interpreter may be gone when static objects are.
  static py::exception<Error>& error = *new py::exception<Error>(m, "Error");
  error.attr("__doc__") = "An error from Qianjun's C++ core; the message names the field, file or rank.";
  py::object bases = py::make_tuple(error, py::reinterpret_borrow<py::object>(PyExc_ValueError));
  static PyObject* config_error = (
      PyErr_NewExceptionWithDoc("qianjun._core.ConfigError",
                                "A configuration error: an unknown key, a wrong type or value, a "
                                "layout that does not fit, an unreadable config file.",
                                bases.ptr(), nullptr));
  if (!config_error) throw py::error_already_set();
  m.attr("ConfigError") = py::handle(config_error);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ConfigError& e) {
      PyErr_SetString(config_error, e.what());
    } catch (const Error& e) {
      PyErr_SetString(error.ptr(), e.what());
    }
  });
}

}  // namespace qj::python
