// theframework._core.HttpServer: the Python type wrapping an HttpServer (serve, shutdown, retire,
// stats), and init_http, which registers the HTTP layer's types on the module.
#include <Python.h>

#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

namespace {

PyTypeObject HttpServerType = {PyVarObject_HEAD_INIT(nullptr, 0)};

struct HttpServerObject {
  PyObject_HEAD HttpServer* server;
};

PyObject* http_server_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"handler",
                                   "listen_fds",
                                   "max_header_size",
                                   "max_headers",
                                   "max_request_line",
                                   "max_body_size",
                                   "header_timeout",
                                   "body_timeout",
                                   "keepalive_timeout",
                                   "write_timeout",
                                   "max_connections",
                                   "access_log",
                                   "rebalance_every",
                                   "forwarded_allow_ips",
                                   "proxy_headers",
                                   "proxy_protocol",
                                   "ws_max_message_size",
                                   "ws_ping_interval",
                                   "ws_ping_timeout",
                                   "ws_compression",
                                   "ws_max_queue",
                                   nullptr};
  PyObject* handler = nullptr;
  PyObject* fds_object = nullptr;
  HttpOptions options;
  Py_ssize_t max_header_size = 32768, max_headers = 100, max_request_line = 8192;
  unsigned long long max_body_size = 1 << 20;
  Py_ssize_t max_connections = 1024;
  PyObject* access_log = Py_None;
  unsigned long long rebalance_every = 0;
  PyObject* forwarded_allow_ips = nullptr;
  int proxy_headers = 1, proxy_protocol = 0;
  const char* compression = "deflate";
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "OO|$nnnKddddnOKOppKddsI", const_cast<char**>(keywords), &handler,
          &fds_object, &max_header_size, &max_headers, &max_request_line, &max_body_size,
          &options.header_timeout, &options.body_timeout, &options.keepalive_timeout,
          &options.write_timeout, &max_connections, &access_log, &rebalance_every,
          &forwarded_allow_ips, &proxy_headers, &proxy_protocol,
          &options.websocket.max_message_size, &options.websocket.ping_interval,
          &options.websocket.ping_timeout, &compression, &options.websocket.max_queue)) {
    return nullptr;
  }
  const std::string_view compression_name(compression);
  if (compression_name != "deflate" && compression_name != "deflate-no-context" &&
      compression_name != "none") {
    PyErr_SetString(PyExc_ValueError,
                    "ws_compression must be 'deflate', 'deflate-no-context' or 'none'");
    return nullptr;
  }
  options.websocket.compression = compression_name != "none";
  options.websocket.compression_no_context = compression_name == "deflate-no-context";
  if (options.websocket.max_queue == 0) {
    PyErr_SetString(PyExc_ValueError, "ws_max_queue must be >= 1");
    return nullptr;
  }
  if (options.websocket.ping_interval < 0 || options.websocket.ping_timeout < 0) {
    PyErr_SetString(PyExc_ValueError, "ws_ping_interval and ws_ping_timeout must be >= 0");
    return nullptr;
  }
  std::string_view allow_list = "127.0.0.1,::1";
  if (forwarded_allow_ips != nullptr) {
    Py_ssize_t length = 0;
    const char* text = PyUnicode_Check(forwarded_allow_ips)
                           ? PyUnicode_AsUTF8AndSize(forwarded_allow_ips, &length)
                           : nullptr;
    if (text == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "forwarded_allow_ips must be a str");
      return nullptr;
    }
    allow_list = std::string_view(text, static_cast<size_t>(length));
  }
  std::string allow_error;
  std::optional<http::TrustedNetworks> allowed =
      http::TrustedNetworks::parse(allow_list, allow_error);
  if (!allowed) {
    PyErr_Format(PyExc_ValueError, "forwarded_allow_ips: %s", allow_error.c_str());
    return nullptr;
  }
  options.forwarded_allow = std::move(*allowed);
  options.proxy_headers = proxy_headers != 0;
  options.proxy_protocol = proxy_protocol != 0;
  if (access_log != Py_None && !PyCallable_Check(access_log)) {
    PyErr_SetString(PyExc_TypeError, "access_log must be callable or None");
    return nullptr;
  }
  if (!PyCallable_Check(handler)) {
    PyErr_SetString(PyExc_TypeError, "handler must be callable");
    return nullptr;
  }
  // An object with a Python __call__ (a Framework) is called through its bound method: calling
  // the instance would go through type slots, C frames that stay under every waiting handler
  // (an idle WebSocket keeps a copy of them).
  PyRef bound_call;
  if (!PyFunction_Check(handler) && !PyMethod_Check(handler) && !PyCFunction_Check(handler) &&
      !PyType_Check(handler)) {
    bound_call = PyRef(PyObject_GetAttrString(handler, "__call__"));
    if (bound_call && PyMethod_Check(bound_call.get())) {
      handler = bound_call.get();
    } else {
      PyErr_Clear();
    }
  }
  if (max_header_size < 64 || max_headers < 1 || max_headers > 255 || max_request_line < 16 ||
      max_connections < 1) {
    PyErr_SetString(PyExc_ValueError,
                    "limits out of range (max_header_size >= 64, 1 <= max_headers <= 255, "
                    "max_request_line >= 16, max_connections >= 1)");
    return nullptr;
  }
  options.limits.max_header_size = static_cast<size_t>(max_header_size);
  options.limits.max_headers = static_cast<size_t>(max_headers);
  options.limits.max_request_line = static_cast<size_t>(max_request_line);
  options.limits.max_body_size = max_body_size;
  options.max_connections = static_cast<size_t>(max_connections);
  options.rebalance_every = rebalance_every;
  std::vector<int> fds;
  PyRef sequence(PySequence_Fast(fds_object, "listen_fds must be a sequence of ints"));
  if (!sequence) return nullptr;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence.get()); ++i) {
    long fd = PyLong_AsLong(PySequence_Fast_GET_ITEM(sequence.get(), i));
    if (fd == -1 && PyErr_Occurred()) return nullptr;
    if (fd < 0) {
      PyErr_SetString(PyExc_ValueError, "listen_fds must be non-negative");
      return nullptr;
    }
    fds.push_back(static_cast<int>(fd));
  }
  if (fds.empty()) {
    PyErr_SetString(PyExc_ValueError, "listen_fds is empty");
    return nullptr;
  }
  PyRef self(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  reinterpret_cast<HttpServerObject*>(self.get())->server = new HttpServer(
      handler, std::move(fds), options, access_log == Py_None ? nullptr : access_log);
  return self.release();
}

void http_server_dealloc(PyObject* self) {
  HttpServer::release(reinterpret_cast<HttpServerObject*>(self)->server);
  Py_TYPE(self)->tp_free(self);
}

PyObject* http_server_serve(PyObject* self, PyObject*) {
  PyRef keep = PyRef::borrow(self);
  return reinterpret_cast<HttpServerObject*>(self)->server->serve();
}

PyObject* http_server_shutdown(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  double timeout = 30.0;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "shutdown() takes at most one argument");
    return nullptr;
  }
  if (nargs == 1) {
    timeout = timeout_from_object(args[0]);
    if (timeout == -2) return nullptr;
  }
  reinterpret_cast<HttpServerObject*>(self)->server->shutdown(timeout);
  Py_RETURN_NONE;
}

// stats() -> dict of counters (see HttpStats); histogram buckets are cumulative, Prometheus style.
PyObject* http_server_stats(PyObject* self, PyObject*) {
  HttpServer* server = reinterpret_cast<HttpServerObject*>(self)->server;
  const HttpStats& stats = server->stats();
  PyRef responses(Py_BuildValue("{sKsKsKsKsK}", "1xx", stats.responses_by_class[1], "2xx",
                                stats.responses_by_class[2], "3xx", stats.responses_by_class[3],
                                "4xx", stats.responses_by_class[4], "5xx",
                                stats.responses_by_class[5]));
  PyRef buckets(PyList_New(0));
  if (!responses || !buckets) return nullptr;
  uint64_t cumulative = 0;
  for (size_t i = 0; i < HttpStats::kBuckets; ++i) {
    cumulative += stats.duration_buckets[i];
    double bound =
        i < std::size(HttpStats::kDurationBounds) ? HttpStats::kDurationBounds[i] : Py_HUGE_VAL;
    PyRef pair(Py_BuildValue("(dK)", bound, cumulative));
    if (!pair || PyList_Append(buckets.get(), pair.get()) < 0) return nullptr;
  }
  PyRef closes(PyDict_New());
  if (!closes) return nullptr;
  for (const auto& [code, count] : stats.websocket_closes) {
    PyRef key(PyLong_FromLong(code));
    PyRef value(PyLong_FromUnsignedLongLong(count));
    if (!key || !value || PyDict_SetItem(closes.get(), key.get(), value.get()) < 0) return nullptr;
  }
  PyRef websockets(Py_BuildValue(
      "{sKsKsKsKsKsO}", "open", stats.websockets_open, "accepted", stats.websockets_accepted,
      "going_away", stats.websockets_going_away, "messages_in", stats.websocket_messages_in,
      "messages_out", stats.websocket_messages_out, "closes", closes.get()));
  if (!websockets) return nullptr;
  return Py_BuildValue(
      "{sKsKsKsnsKsnsOsKsKsOsdsO}", "connections_accepted", stats.connections_accepted,
      "accept_pauses", stats.accept_pauses, "connections_peak", stats.connections_peak,
      "connections_active", static_cast<Py_ssize_t>(server->connection_count()), "requests",
      stats.requests, "requests_in_flight", static_cast<Py_ssize_t>(server->requests_in_flight()),
      "responses", responses.get(), "bytes_in", stats.bytes_in, "bytes_out", stats.bytes_out,
      "duration_buckets", buckets.get(), "duration_sum", stats.duration_sum, "websockets",
      websockets.get());
}

// retire(take_queued=True, /): see HttpServer::retire.
PyObject* http_server_retire(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "retire() takes at most one argument");
    return nullptr;
  }
  int take_queued = 1;
  if (nargs == 1) {
    take_queued = PyObject_IsTrue(args[0]);
    if (take_queued < 0) return nullptr;
  }
  reinterpret_cast<HttpServerObject*>(self)->server->retire(take_queued != 0);
  Py_RETURN_NONE;
}

PyObject* http_server_get_connections(PyObject* self, void*) {
  return PyLong_FromSize_t(reinterpret_cast<HttpServerObject*>(self)->server->connection_count());
}

PyObject* http_server_get_in_flight(PyObject* self, void*) {
  return PyLong_FromSize_t(reinterpret_cast<HttpServerObject*>(self)->server->requests_in_flight());
}

PyMethodDef http_server_methods[] = {
    {"serve", http_server_serve, METH_NOARGS, "Serves until shutdown() completes."},
    {"retire", TF_METHOD_CAST(http_server_retire), METH_FASTCALL,
     "Stops accepting (take_queued: accepts what is queued first); each connection closes after "
     "its next response."},
    {"stats", http_server_stats, METH_NOARGS, "Counters: connections, requests, bytes, durations."},
    {"shutdown", TF_METHOD_CAST(http_server_shutdown), METH_FASTCALL,
     "Stops accepting and drains (graceful_timeout)."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef http_server_getset[] = {
    {"connections", http_server_get_connections, nullptr, "open connections", nullptr},
    {"requests_in_flight", http_server_get_in_flight, nullptr, "requests being handled", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

}  // namespace

int init_http(PyObject* module) {
  if (init_request_type(module) < 0 || init_response_type(module) < 0 ||
      init_websocket_type(module) < 0) {
    return -1;
  }
  HttpServerType.tp_name = "theframework._core.HttpServer";
  HttpServerType.tp_basicsize = sizeof(HttpServerObject);
  HttpServerType.tp_flags = Py_TPFLAGS_DEFAULT;
  HttpServerType.tp_doc = "Serves HTTP/1.1 on listening sockets (see _core.pyi).";
  HttpServerType.tp_new = http_server_new;
  HttpServerType.tp_dealloc = http_server_dealloc;
  HttpServerType.tp_methods = http_server_methods;
  HttpServerType.tp_getset = http_server_getset;
  if (PyType_Ready(&HttpServerType) < 0 ||
      PyModule_AddObjectRef(module, "HttpServer", reinterpret_cast<PyObject*>(&HttpServerType)) <
          0) {
    return -1;
  }
  return 0;
}

}  // namespace tf::py
