// theframework._core.Request: the Python type of a request (method, path, headers, query, body
// reads, JSON). The WSGI environ builder is in wsgi_environ.cpp.
#include <Python.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/http_response.hpp"
#include "python/configuration.hpp"
#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

namespace {

PyTypeObject RequestType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* version_strings[2] = {nullptr, nullptr};
PyObject* scheme_strings[2] = {nullptr, nullptr};  // "http", "https"

struct InternedMethod {
  std::string_view name;
  PyObject* object;
};
InternedMethod interned_methods[] = {
    {"GET", nullptr},    {"POST", nullptr},  {"HEAD", nullptr},    {"PUT", nullptr},
    {"DELETE", nullptr}, {"PATCH", nullptr}, {"OPTIONS", nullptr},
};

std::string_view rebase(std::string_view view, const char* old_base, const std::string& bytes) {
  if (view.empty()) return {};
  return std::string_view(bytes.data() + (view.data() - old_base), view.size());
}

void request_dealloc(PyObject* self) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  PyObject_GC_UnTrack(self);
  if (request->connection != nullptr) request->connection->release();
  Py_CLEAR(request->dict);
  Py_CLEAR(request->method);
  Py_CLEAR(request->path);
  Py_CLEAR(request->raw_path);
  Py_CLEAR(request->query_string);
  Py_CLEAR(request->params);
  Py_CLEAR(request->headers);
  Py_CLEAR(request->query_params);
  Py_CLEAR(request->body);
  Py_CLEAR(request->client);
  Py_CLEAR(request->scheme);
  Py_CLEAR(request->host);
  Py_CLEAR(request->url);
  delete request->forwarded;
  request->head_bytes.~basic_string();
  Py_TYPE(self)->tp_free(self);
}

int request_traverse(PyObject* self, visitproc visit, void* arg) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  Py_VISIT(request->dict);
  Py_VISIT(request->params);
  Py_VISIT(request->headers);
  Py_VISIT(request->query_params);
  return 0;
}

int request_clear(PyObject* self) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  Py_CLEAR(request->dict);
  Py_CLEAR(request->params);
  Py_CLEAR(request->headers);
  Py_CLEAR(request->query_params);
  return 0;
}

PyObject* request_get_path(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->path == nullptr) {
    std::string_view raw = request->head.path;
    if (raw.find('%') == std::string_view::npos) {
      request->path =
          PyUnicode_DecodeUTF8(raw.data(), static_cast<Py_ssize_t>(raw.size()), "surrogateescape");
    } else {
      std::string decoded = http::percent_decode(raw);
      request->path = PyUnicode_DecodeUTF8(decoded.data(), static_cast<Py_ssize_t>(decoded.size()),
                                           "surrogateescape");
    }
  }
  return Py_XNewRef(request->path);
}

PyObject* request_get_raw_path(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->raw_path == nullptr) request->raw_path = latin1(request->head.path);
  return Py_XNewRef(request->raw_path);
}

PyObject* request_get_params(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->params == nullptr) request->params = PyDict_New();
  return Py_XNewRef(request->params);
}

int request_set_params(PyObject* self, PyObject* value, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (value == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "params cannot be deleted");
    return -1;
  }
  Py_XSETREF(request->params, Py_NewRef(value));
  return 0;
}

PyObject* header_pairs(RequestObject* request) {
  std::vector<http::Header> storage;
  http::RequestHead head;
  parse_stored_head(request, storage, head);
  PyObject* pairs = PyList_New(static_cast<Py_ssize_t>(head.header_count));
  if (pairs == nullptr) return nullptr;
  for (size_t i = 0; i < head.header_count; ++i) {
    PyObject* pair = Py_BuildValue("(NN)", latin1(storage[i].name), latin1(storage[i].value));
    if (pair == nullptr) {
      Py_DECREF(pairs);
      return nullptr;
    }
    PyList_SET_ITEM(pairs, static_cast<Py_ssize_t>(i), pair);
  }
  return pairs;
}

PyObject* request_get_headers(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->headers == nullptr) {
    PyRef pairs(header_pairs(request));
    if (!pairs) return nullptr;
    PyObject* factory = configuration.headers_factory.get();
    request->headers = factory ? PyObject_CallOneArg(factory, pairs.get()) : pairs.release();
  }
  return Py_XNewRef(request->headers);
}

PyObject* request_get_query_params(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->query_params == nullptr) {
    PyRef query(request_get_query_string(self, nullptr));
    if (!query) return nullptr;
    PyObject* factory = configuration.query_factory.get();
    request->query_params = factory ? PyObject_CallOneArg(factory, query.get()) : query.release();
  }
  return Py_XNewRef(request->query_params);
}

PyObject* request_get_client(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->client == nullptr && request->forwarded != nullptr &&
      request->forwarded->has_client) {
    request->client = Py_BuildValue("(si)", request->forwarded->client_host.c_str(),
                                    request->forwarded->client_port);
  }
  if (request->client == nullptr) {
    if (request->connection == nullptr) Py_RETURN_NONE;
    const Endpoint& peer = request->connection->peer();
    if (!peer.valid) Py_RETURN_NONE;
    request->client = peer.is_unix ? PyUnicode_FromString("")
                                   : Py_BuildValue("(si)", peer.host.c_str(), peer.port);
  }
  return Py_XNewRef(request->client);
}

PyObject* request_get_scheme(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->scheme == nullptr) {
    request->scheme = Py_NewRef(scheme_strings[request_scheme(request) == "https" ? 1 : 0]);
  }
  return Py_NewRef(request->scheme);
}

PyObject* request_get_host(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->host == nullptr) {
    request->host = latin1(request_host(request, request_host_header(request)));
  }
  return Py_XNewRef(request->host);
}

PyObject* request_get_url(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->url == nullptr) {
    std::string url(request_scheme(request));
    url += "://";
    url += request_host(request, request_host_header(request));
    url += request->head.path;
    if (!request->head.query.empty()) {
      url += '?';
      url += request->head.query;
    }
    request->url = latin1(url);
  }
  return Py_XNewRef(request->url);
}

PyObject* request_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  Py_ssize_t size = -1;
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "read() takes at most one argument");
    return nullptr;
  }
  if (nargs == 1 && args[0] != Py_None) {
    size = PyLong_AsSsize_t(args[0]);
    if (size == -1 && PyErr_Occurred()) return nullptr;
  }
  Connection* connection = request->connection;
  if (connection == nullptr || connection->body_complete()) return PyBytes_FromStringAndSize("", 0);
  if (size == 0) return PyBytes_FromStringAndSize("", 0);
  std::string out;
  if (connection->read_body(size, out) < 0) return nullptr;
  return PyBytes_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size()));
}

PyObject* request_get_body(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->body == nullptr) {
    Connection* connection = request->connection;
    if (connection == nullptr || connection->body_complete()) {
      request->body = PyBytes_FromStringAndSize("", 0);
    } else {
      std::string out;
      if (connection->read_body(-1, out) < 0) return nullptr;
      request->body = PyBytes_FromStringAndSize(out.data(), static_cast<Py_ssize_t>(out.size()));
    }
  }
  return Py_XNewRef(request->body);
}

PyObject* request_json(PyObject* self, PyObject*) {
  PyRef body(request_get_body(self, nullptr));
  if (!body) return nullptr;
  PyObject* result = PyObject_CallOneArg(configuration.json_loads.get(), body.get());
  if (result == nullptr && PyErr_ExceptionMatches(PyExc_ValueError) && configuration.http_error) {
    PyErr_Clear();
    PyRef error(PyObject_CallFunction(configuration.http_error.get(), "is", 400,
                                      "the request body is not valid JSON"));
    if (error) PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.get())), error.get());
  }
  return result;
}

PyObject* request_repr(PyObject* self) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  std::string text = "<Request " + std::string(request->head.method) + " " +
                     std::string(request->head.target) + ">";
  return PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
}

PyGetSetDef request_getset[] = {
    {"method", request_get_method, nullptr, "the request method", nullptr},
    {"path", request_get_path, nullptr, "percent-decoded path", nullptr},
    {"raw_path", request_get_raw_path, nullptr, "path as sent", nullptr},
    {"query_string", request_get_query_string, nullptr, "query, undecoded", nullptr},
    {"version", request_get_version, nullptr, "HTTP/1.1 or HTTP/1.0", nullptr},
    {"params", request_get_params, request_set_params, "route parameters", nullptr},
    {"headers", request_get_headers, nullptr, "Headers (case-insensitive)", nullptr},
    {"query_params", request_get_query_params, nullptr, "QueryParams", nullptr},
    {"client", request_get_client, nullptr, "client address (a trusted proxy's forwarded one)",
     nullptr},
    {"scheme", request_get_scheme, nullptr, "http or https (a trusted proxy's forwarded one)",
     nullptr},
    {"host", request_get_host, nullptr, "host[:port] addressed (forwarded host, else Host)",
     nullptr},
    {"url", request_get_url, nullptr, "the reconstructed URL: scheme://host/path?query", nullptr},
    {"body", request_get_body, nullptr, "the whole body", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

// Request.websocket(subprotocols=None, origins=None): accepts the WebSocket upgrade
// (websocket.cpp).
PyObject* request_websocket(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"subprotocols", "origins", nullptr};
  PyObject* subprotocols = Py_None;
  PyObject* origins = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O$O", const_cast<char**>(keywords),
                                   &subprotocols, &origins)) {
    return nullptr;
  }
  auto* request = reinterpret_cast<RequestObject*>(self);
  Connection* connection = attached_connection(request->connection);
  if (connection == nullptr) return nullptr;
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  return websocket_accept(connection, request->head_bytes, subprotocols, origins);
}

PyMethodDef request_methods[] = {
    {"websocket", TF_METHOD_CAST(request_websocket), METH_VARARGS | METH_KEYWORDS,
     "Accepts the WebSocket upgrade and returns the WebSocket (HTTPError 400/426 if invalid)."},
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&request_read)),
     METH_FASTCALL, "Reads at most size body bytes (all when -1)."},
    {"json", request_json, METH_NOARGS, "The body parsed as JSON (HTTPError 400 if invalid)."},
    {"_wsgi_environ", request_wsgi_environ, METH_O,
     "A copy of base filled with the CGI variables of this request (WSGI adapter)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

PyObject* request_get_method(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->method == nullptr) {
    for (const InternedMethod& method : interned_methods) {
      if (method.name == request->head.method) {
        request->method = Py_NewRef(method.object);
        break;
      }
    }
    if (request->method == nullptr) request->method = latin1(request->head.method);
  }
  return Py_XNewRef(request->method);
}

PyObject* request_get_query_string(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->query_string == nullptr) request->query_string = latin1(request->head.query);
  return Py_XNewRef(request->query_string);
}

PyObject* request_get_version(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  return Py_NewRef(version_strings[request->head.version_minor ? 1 : 0]);
}

// Parses the request's stored head again (it was validated when it arrived) to list its headers;
// the headers are only needed when a handler asks, so they are not kept from the first parse.
void parse_stored_head(const RequestObject* request, std::vector<http::Header>& storage,
                       http::RequestHead& head) {
  http::Limits generous;
  generous.max_request_line = SIZE_MAX;
  generous.max_header_size = SIZE_MAX;
  generous.max_headers = 4096;
  generous.max_body_size = UINT64_MAX;
  storage.resize(request->head.header_count + 1);
  http::parse_request(request->head_bytes, generous, head, storage);
}

std::string_view request_scheme(const RequestObject* request) {
  if (request->forwarded != nullptr && !request->forwarded->scheme.empty()) {
    return request->forwarded->scheme;
  }
  return "http";
}

std::string_view request_host_header(const RequestObject* request) {
  std::vector<http::Header> storage;
  http::RequestHead head;
  parse_stored_head(request, storage, head);
  for (size_t i = 0; i < head.header_count; ++i) {
    if (http::iequals(storage[i].name, "host")) {
      // A view into the request's stored head bytes (storage only held the views).
      return storage[i].value;
    }
  }
  return {};
}

namespace {

// The listening socket's address as host[:port] ("localhost" for UNIX sockets).
std::string local_address(int fd) {
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  char text[INET6_ADDRSTRLEN] = {};
  if (fd < 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) < 0) {
    return "localhost";
  }
  if (address.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(address);
    inet_ntop(AF_INET, &in.sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(in.sin_port));
  }
  if (address.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof(text));
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(in6.sin6_port));
  }
  return "localhost";
}

}  // namespace

std::string request_host(const RequestObject* request, std::string_view host_header) {
  const http::ForwardedInfo* forwarded = request->forwarded;
  std::string host;
  if (forwarded != nullptr && !forwarded->host.empty()) {
    host = forwarded->host;
  } else if (!host_header.empty()) {
    host.assign(host_header);
  } else {
    host = local_address(request->connection != nullptr ? request->connection->fd() : -1);
  }
  if (forwarded != nullptr && forwarded->port != 0) {
    // Drop the port the host carries ("[v6]:p" or "name:p"), then add the forwarded one.
    if (host.starts_with('[')) {
      host.erase(std::min(host.size(), host.find(']') + 1));
    } else if (size_t colon = host.find(':'); colon != std::string::npos) {
      host.erase(colon);
    }
    const int default_port = request_scheme(request) == "https" ? 443 : 80;
    if (forwarded->port != default_port) host += ":" + std::to_string(forwarded->port);
  }
  return host;
}

PyObject* new_request_object(Connection* connection, std::string_view head_bytes,
                             const http::RequestHead& head,
                             std::unique_ptr<http::ForwardedInfo> forwarded) {
  auto* request = PyObject_GC_New(RequestObject, &RequestType);
  if (request == nullptr) return nullptr;
  new (&request->head_bytes) std::string(head_bytes);
  request->connection = connection;
  connection->retain();
  const char* base = head_bytes.data();
  request->head = head;
  request->head.method = rebase(head.method, base, request->head_bytes);
  request->head.target = rebase(head.target, base, request->head_bytes);
  request->head.path = rebase(head.path, base, request->head_bytes);
  request->head.query = rebase(head.query, base, request->head_bytes);
  request->dict = nullptr;
  request->method = request->path = request->raw_path = request->query_string = nullptr;
  request->params = request->headers = request->query_params = nullptr;
  request->body = request->client = nullptr;
  request->scheme = request->host = request->url = nullptr;
  request->forwarded = forwarded.release();
  PyObject_GC_Track(request);
  return reinterpret_cast<PyObject*>(request);
}

int init_request_type(PyObject* module) {
  RequestType.tp_name = "theframework._core.Request";
  RequestType.tp_basicsize = sizeof(RequestObject);
  RequestType.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  RequestType.tp_doc = "An HTTP request (see _core.pyi).";
  RequestType.tp_dealloc = request_dealloc;
  RequestType.tp_traverse = request_traverse;
  RequestType.tp_clear = request_clear;
  RequestType.tp_getset = request_getset;
  RequestType.tp_methods = request_methods;
  RequestType.tp_repr = request_repr;
  RequestType.tp_dictoffset = offsetof(RequestObject, dict);
  if (PyType_Ready(&RequestType) < 0 ||
      PyModule_AddObjectRef(module, "Request", reinterpret_cast<PyObject*>(&RequestType)) < 0) {
    return -1;
  }
  version_strings[0] = PyUnicode_InternFromString("HTTP/1.0");
  version_strings[1] = PyUnicode_InternFromString("HTTP/1.1");
  scheme_strings[0] = PyUnicode_InternFromString("http");
  scheme_strings[1] = PyUnicode_InternFromString("https");
  if (!scheme_strings[0] || !scheme_strings[1]) return -1;
  for (InternedMethod& method : interned_methods) {
    method.object = PyUnicode_InternFromString(std::string(method.name).c_str());
    if (method.object == nullptr) return -1;
  }
  if (!version_strings[0] || !version_strings[1]) return -1;
  return 0;
}

}  // namespace tf::py
