// Python objects the package hands to the native module once, with _core._configure(...).
#pragma once

#include <Python.h>

#include "python/pyref.hpp"

namespace tf::py {

struct Configuration {
  PyRef error_handler;    // callable(exception) for errors escaping a greenlet; null: print
  PyRef http_error;       // theframework.errors.HTTPError
  PyRef headers_factory;  // callable(list[tuple[str, str]]) -> Headers
  PyRef query_factory;    // callable(str) -> QueryParams
  PyRef json_loads;       // json.loads
  PyRef json_dumps;       // json.dumps
  PyRef logger;           // logging.Logger for tracebacks of failing handlers
};

// Filled by _core._configure (and defaults at import); read by the hub and the HTTP server.
extern Configuration& configuration;

// Registers _core._configure on the module. 0 or -1 with an exception set.
int init_configuration(PyObject* module);

}  // namespace tf::py
