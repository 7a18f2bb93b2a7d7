#include "python/greenlet_api.hpp"

#include <greenlet.h>

namespace tf::py::greenlet {

Api api;

int import_api() {
  PyGreenlet_Import();
  if (_PyGreenlet_API == nullptr) return -1;
  api.type = &PyGreenlet_Type;
  api.exit_type = PyExc_GreenletExit;
  api.error_type = PyExc_GreenletError;
  api.create = [](PyObject* run, PyObject* parent) -> PyObject* {
    return reinterpret_cast<PyObject*>(PyGreenlet_New(run, reinterpret_cast<PyGreenlet*>(parent)));
  };
  api.current = []() -> PyObject* { return reinterpret_cast<PyObject*>(PyGreenlet_GetCurrent()); };
  api.switch_to = [](PyObject* target, PyObject* args, PyObject* kwargs) -> PyObject* {
    return PyGreenlet_Switch(reinterpret_cast<PyGreenlet*>(target), args, kwargs);
  };
  api.throw_into = [](PyObject* target, PyObject* type, PyObject* value,
                      PyObject* traceback) -> PyObject* {
    return PyGreenlet_Throw(reinterpret_cast<PyGreenlet*>(target), type, value, traceback);
  };
  api.started = [](PyObject* target) -> int {
    return PyGreenlet_STARTED(reinterpret_cast<PyGreenlet*>(target));
  };
  api.active = [](PyObject* target) -> int {
    return PyGreenlet_ACTIVE(reinterpret_cast<PyGreenlet*>(target));
  };
  return 0;
}

}  // namespace tf::py::greenlet
