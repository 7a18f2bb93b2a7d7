// theframework._core: the native module. Each part registers itself from its own init function.
#include <Python.h>

#include "python/configuration.hpp"
#include "python/http/server.hpp"
#include "python/hub.hpp"

namespace tf::py {
// parser_debug.cpp: _core._parse_request / _decode_chunked, for the differential tests.
int init_parser_debug(PyObject* module);
}  // namespace tf::py

namespace {

PyModuleDef core_module = {
    PyModuleDef_HEAD_INIT,
    "theframework._core",
    "The engine of theframework: a greenlet hub over io_uring or epoll, and the HTTP/1.1 server.",
    -1,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__core() {
  PyObject* module = PyModule_Create(&core_module);
  if (module == nullptr) return nullptr;
  if (tf::py::init_configuration(module) < 0 || tf::py::init_hub(module) < 0 ||
      tf::py::init_http(module) < 0 || tf::py::init_parser_debug(module) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
