// Python objects of the package that the native module uses. init_configuration sets the defaults
// when _core is imported (theframework.errors, theframework.datastructures, json, logging; those
// modules import only the standard library); _core._configure(...) replaces them.
#pragma once

#include <Python.h>

#include <string_view>

#include "python/pyref.hpp"

namespace tf::py {

struct Configuration {
  PyRef error_handler;     // callable(exception) for errors escaping a greenlet; null: log them
  PyRef http_error;        // theframework.errors.HTTPError
  PyRef websocket_closed;  // theframework.errors.WebSocketClosed
  PyRef headers_factory;   // callable(list[tuple[str, str]]) -> Headers
  PyRef query_factory;     // callable(str) -> QueryParams
  PyRef json_loads;        // json.loads
  PyRef json_dumps;        // json.dumps
  PyRef logger;            // logging.getLogger("theframework.error"): handler and greenlet errors
  PyRef proxy_logger;      // logging.getLogger("theframework.proxy"): refused PROXY headers,
                           // ignored forwarding headers (debug)
};

// Defaults at import, then _core._configure; read by the hub and the HTTP server.
extern Configuration& configuration;

// Sets the defaults (importing the modules above) and registers _core._configure on the module.
// 0 or -1 with an exception set.
int init_configuration(PyObject* module);

// Prints ``exception`` with traceback.print_exception (never through sys.excepthook, whose
// sys.last_* would keep the traceback's frames, and their sockets, alive). Never raises.
void print_exception(PyObject* exception);

// configuration.logger.error(*arguments, exc_info=exception); prints the exception instead when
// there is no logger or the call fails. Never raises (clears any error it causes).
void log_exception(PyObject* arguments, PyObject* exception);

// configuration.proxy_logger.debug(format, text, detail) when that logger is enabled for DEBUG;
// costs one isEnabledFor call otherwise. Never raises (clears any error it causes).
void log_proxy_debug(const char* format, std::string_view text, std::string_view detail);

}  // namespace tf::py
