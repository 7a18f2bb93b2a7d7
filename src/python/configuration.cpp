#include "python/configuration.hpp"

#include <cstring>

namespace tf::py {

// Never destroyed: its references must not be released after the interpreter is gone.
Configuration& configuration = *new Configuration();

namespace {

// _core._configure(**hooks): sets the objects the package provides (see configuration.hpp).
// Unknown names raise TypeError; None clears a hook.
PyObject* configure(PyObject*, PyObject* args, PyObject* kwargs) {
  if (PyTuple_GET_SIZE(args) != 0) {
    PyErr_SetString(PyExc_TypeError, "_configure() takes keyword arguments only");
    return nullptr;
  }
  if (kwargs == nullptr) Py_RETURN_NONE;
  struct Entry {
    const char* name;
    PyRef* target;
  };
  const Entry entries[] = {
      {"error_handler", &configuration.error_handler},
      {"http_error", &configuration.http_error},
      {"headers_factory", &configuration.headers_factory},
      {"query_factory", &configuration.query_factory},
      {"json_loads", &configuration.json_loads},
      {"json_dumps", &configuration.json_dumps},
      {"logger", &configuration.logger},
  };
  PyObject* key;
  PyObject* value;
  Py_ssize_t position = 0;
  while (PyDict_Next(kwargs, &position, &key, &value)) {
    const char* name = PyUnicode_AsUTF8(key);
    if (name == nullptr) return nullptr;
    PyRef* target = nullptr;
    for (const Entry& entry : entries) {
      if (std::strcmp(entry.name, name) == 0) target = entry.target;
    }
    if (target == nullptr) {
      PyErr_Format(PyExc_TypeError, "_configure() got an unknown hook '%s'", name);
      return nullptr;
    }
    target->reset(value == Py_None ? nullptr : Py_NewRef(value));
  }
  Py_RETURN_NONE;
}

PyMethodDef functions[] = {
    {"_configure", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&configure)),
     METH_VARARGS | METH_KEYWORDS, "Sets the package's hooks (internal)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

int init_configuration(PyObject* module) {
  PyRef json(PyImport_ImportModule("json"));
  if (!json) return -1;
  configuration.json_loads = PyRef(PyObject_GetAttrString(json.get(), "loads"));
  configuration.json_dumps = PyRef(PyObject_GetAttrString(json.get(), "dumps"));
  if (!configuration.json_loads || !configuration.json_dumps) return -1;
  // The package's own defaults. _core is imported by theframework/__init__.py, so the package is
  // already in sys.modules (partly initialized) and these submodules import on their own.
  PyRef errors(PyImport_ImportModule("theframework.errors"));
  if (!errors) return -1;
  configuration.http_error = PyRef(PyObject_GetAttrString(errors.get(), "HTTPError"));
  if (!configuration.http_error) return -1;
  PyRef datastructures(PyImport_ImportModule("theframework.datastructures"));
  if (!datastructures) return -1;
  configuration.headers_factory = PyRef(PyObject_GetAttrString(datastructures.get(), "Headers"));
  configuration.query_factory = PyRef(PyObject_GetAttrString(datastructures.get(), "QueryParams"));
  if (!configuration.headers_factory || !configuration.query_factory) return -1;
  PyRef logging(PyImport_ImportModule("logging"));
  if (!logging) return -1;
  configuration.logger =
      PyRef(PyObject_CallMethod(logging.get(), "getLogger", "s", "theframework.error"));
  if (!configuration.logger) return -1;
  return PyModule_AddFunctions(module, functions);
}

}  // namespace tf::py
