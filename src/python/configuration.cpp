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
      {"proxy_logger", &configuration.proxy_logger},
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

// Sets ``target`` to module.name; false with an exception set when either is missing.
bool import_attribute(PyRef& target, const char* module, const char* name) {
  PyRef imported(PyImport_ImportModule(module));
  if (imported) target = PyRef(PyObject_GetAttrString(imported.get(), name));
  return static_cast<bool>(target);
}

}  // namespace

int init_configuration(PyObject* module) {
  // The package's own defaults: the package's submodules import only the standard library, so
  // they import on their own while theframework/__init__.py is still running.
  const bool imported =
      import_attribute(configuration.json_loads, "json", "loads") &&
      import_attribute(configuration.json_dumps, "json", "dumps") &&
      import_attribute(configuration.http_error, "theframework.errors", "HTTPError") &&
      import_attribute(configuration.websocket_closed, "theframework.errors", "WebSocketClosed") &&
      import_attribute(configuration.headers_factory, "theframework.datastructures", "Headers") &&
      import_attribute(configuration.query_factory, "theframework.datastructures", "QueryParams");
  if (!imported) return -1;
  PyRef logging(PyImport_ImportModule("logging"));
  if (!logging) return -1;
  configuration.logger =
      PyRef(PyObject_CallMethod(logging.get(), "getLogger", "s", "theframework.error"));
  if (!configuration.logger) return -1;
  configuration.proxy_logger =
      PyRef(PyObject_CallMethod(logging.get(), "getLogger", "s", "theframework.proxy"));
  if (!configuration.proxy_logger) return -1;
  return PyModule_AddFunctions(module, functions);
}

void print_exception(PyObject* exception) {
  PyErr_Clear();
  PyRef module(PyImport_ImportModule("traceback"));
  PyRef printed;
  if (module && exception != nullptr) {
    printed = PyRef(PyObject_CallMethod(module.get(), "print_exception", "O", exception));
  }
  if (!printed) PyErr_Clear();
}

void log_exception(PyObject* arguments, PyObject* exception) {
  PyObject* logger = configuration.logger.get();
  PyRef logged;
  if (logger != nullptr && arguments != nullptr) {
    PyRef error_method(PyObject_GetAttrString(logger, "error"));
    PyRef keywords(Py_BuildValue("{s:O}", "exc_info", exception));
    if (error_method && keywords) {
      logged = PyRef(PyObject_Call(error_method.get(), arguments, keywords.get()));
    }
  }
  if (!logged) print_exception(exception);
}

void log_proxy_debug(const char* format, std::string_view text, std::string_view detail) {
  PyObject* logger = configuration.proxy_logger.get();
  if (logger == nullptr) return;
  PyRef enabled(PyObject_CallMethod(logger, "isEnabledFor", "i", 10));  // logging.DEBUG
  if (enabled && PyObject_IsTrue(enabled.get()) == 1) {
    PyObject* text_object =
        PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
    PyObject* detail_object =
        PyUnicode_DecodeLatin1(detail.data(), static_cast<Py_ssize_t>(detail.size()), nullptr);
    if (text_object != nullptr && detail_object != nullptr) {
      PyRef logged(PyObject_CallMethod(logger, "debug", "sNN", format, text_object, detail_object));
    } else {
      Py_XDECREF(text_object);
      Py_XDECREF(detail_object);
    }
  }
  PyErr_Clear();
}

}  // namespace tf::py
