// The greenlet C API (greenlet.h), imported once and shared by every translation unit of _core.
// greenlet.h keeps its function table in a per-file static, so only greenlet_api.cpp includes it.
#pragma once

#include <Python.h>

namespace tf::py::greenlet {

struct Api {
  PyTypeObject* type = nullptr;
  PyObject* exit_type = nullptr;                                   // greenlet.GreenletExit
  PyObject* error_type = nullptr;                                  // greenlet.error
  PyObject* (*create)(PyObject* run, PyObject* parent) = nullptr;  // new reference
  PyObject* (*current)() = nullptr;                                // new reference
  PyObject* (*switch_to)(PyObject* target, PyObject* args, PyObject* kwargs) = nullptr;
  PyObject* (*throw_into)(PyObject* target, PyObject* type, PyObject* value,
                          PyObject* traceback) = nullptr;
  int (*started)(PyObject* target) = nullptr;
  int (*active)(PyObject* target) = nullptr;
};

// Filled by import_api(); read-only afterwards.
extern Api api;

// Imports greenlet's C API capsule. Returns 0, or -1 with a Python exception set.
int import_api();

inline bool is_greenlet(PyObject* object) noexcept {
  return object != nullptr && PyObject_TypeCheck(object, api.type);
}
// A greenlet that finished (started and no longer active).
inline bool is_dead(PyObject* g) noexcept {
  return api.started(g) && !api.active(g);
}

}  // namespace tf::py::greenlet
