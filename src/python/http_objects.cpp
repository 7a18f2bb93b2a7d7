// Request, Response and HttpServer: the Python types of the HTTP layer, and the request greenlet.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/io/fd.hpp"
#include "python/configuration.hpp"
#include "python/greenlet_api.hpp"
#include "python/http_server.hpp"

namespace tf::py {

namespace {

PyTypeObject RequestType = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject ResponseType = {PyVarObject_HEAD_INIT(nullptr, 0)};
PyTypeObject HttpServerType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* crlf_bytes = nullptr;        // b"\r\n"
PyObject* last_chunk_bytes = nullptr;  // b"0\r\n\r\n"
PyObject* version_strings[2] = {nullptr, nullptr};
PyObject* dumps_keywords = nullptr;  // {"separators": (",", ":")}

struct InternedMethod {
  std::string_view name;
  PyObject* object;
};
InternedMethod interned_methods[] = {
    {"GET", nullptr},    {"POST", nullptr},  {"HEAD", nullptr},    {"PUT", nullptr},
    {"DELETE", nullptr}, {"PATCH", nullptr}, {"OPTIONS", nullptr},
};

PyObject* latin1(std::string_view text) {
  return PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
}

// ---------------------------------------------------------------------------------------------
// Request

struct RequestObject {
  PyObject_HEAD Connection* connection;  // retained while attached
  std::string head_bytes;
  http::RequestHead head;
  PyObject* dict;
  PyObject* method;
  PyObject* path;
  PyObject* raw_path;
  PyObject* query_string;
  PyObject* params;
  PyObject* headers;
  PyObject* query_params;
  PyObject* body;
  PyObject* client;
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

PyObject* request_get_query_string(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (request->query_string == nullptr) request->query_string = latin1(request->head.query);
  return Py_XNewRef(request->query_string);
}

PyObject* request_get_version(PyObject* self, void*) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  return Py_NewRef(version_strings[request->head.version_minor ? 1 : 0]);
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
  if (request->client == nullptr) {
    if (request->connection == nullptr) Py_RETURN_NONE;
    const Endpoint& peer = request->connection->peer();
    if (!peer.valid) Py_RETURN_NONE;
    request->client = peer.is_unix ? PyUnicode_FromString("")
                                   : Py_BuildValue("(si)", peer.host.c_str(), peer.port);
  }
  return Py_XNewRef(request->client);
}

// Interned str objects for environ keys, by their text: the CGI names and the HTTP_* name of every
// header seen, up to kMaxEnvironKeys (later names get a fresh str per request). Saves creating,
// interning and hashing a key string for every item of every environ. Only touched with the GIL
// held; never destroyed, like the module's other constants.
constexpr size_t kMaxEnvironKeys = 256;
struct TextHash {
  using is_transparent = void;
  size_t operator()(std::string_view text) const noexcept {
    return std::hash<std::string_view>{}(text);
  }
};
std::unordered_map<std::string, PyObject*, TextHash, std::equal_to<>>* environ_keys = nullptr;

// A new reference to the key object for `text`, or null with an exception set.
PyObject* environ_key(std::string_view text) {
  if (environ_keys == nullptr) {
    environ_keys = new std::unordered_map<std::string, PyObject*, TextHash, std::equal_to<>>();
  }
  if (auto found = environ_keys->find(text); found != environ_keys->end()) {
    return Py_NewRef(found->second);
  }
  PyObject* key = PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
  if (key == nullptr) return nullptr;
  PyUnicode_InternInPlace(&key);
  if (environ_keys->size() < kMaxEnvironKeys) environ_keys->emplace(text, Py_NewRef(key));
  return key;
}

// Stores `value` (a new reference, or null after an error) under `key`. False on error.
bool set_item(PyObject* dict, std::string_view key, PyObject* value) {
  if (value == nullptr) return false;
  PyRef owned(value);
  PyRef key_object(environ_key(key));
  return key_object && PyDict_SetItem(dict, key_object.get(), value) == 0;
}

// The item under `key`, borrowed; null when absent (or, rarely, after an error: check
// PyErr_Occurred()).
PyObject* get_item(PyObject* dict, std::string_view key) {
  PyRef key_object(environ_key(key));
  return key_object ? PyDict_GetItemWithError(dict, key_object.get()) : nullptr;
}

// The CGI part of a WSGI environ (PEP 3333), filled in C++ on top of a copy of `base` (which holds
// the per-server constants and SCRIPT_NAME). Header names become HTTP_*; repeated headers are
// joined with ","; PATH_INFO is the percent-decoded path as latin-1 (the "bytes in str" rule).
PyObject* request_wsgi_environ(PyObject* self, PyObject* base) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (!PyDict_Check(base)) {
    PyErr_SetString(PyExc_TypeError, "_wsgi_environ() needs a dict");
    return nullptr;
  }
  PyRef environ(PyDict_Copy(base));
  if (!environ) return nullptr;
  PyObject* dict = environ.get();
  const http::RequestHead& head = request->head;
  if (!set_item(dict, "REQUEST_METHOD", request_get_method(self, nullptr))) return nullptr;
  std::string path = http::percent_decode(head.path);
  PyObject* script_name = get_item(dict, "SCRIPT_NAME");
  if (script_name == nullptr && PyErr_Occurred()) return nullptr;
  if (script_name != nullptr && PyUnicode_Check(script_name) &&
      PyUnicode_GET_LENGTH(script_name) > 0) {
    Py_ssize_t length = 0;
    const char* prefix = PyUnicode_AsUTF8AndSize(script_name, &length);
    if (prefix == nullptr) return nullptr;
    std::string_view root(prefix, static_cast<size_t>(length));
    if (path.starts_with(root) && (path.size() == root.size() || path[root.size()] == '/')) {
      path.erase(0, root.size());
    }
  }
  if (!set_item(dict, "PATH_INFO", latin1(path))) return nullptr;
  if (!set_item(dict, "QUERY_STRING", request_get_query_string(self, nullptr))) return nullptr;
  if (!set_item(dict, "SERVER_PROTOCOL", request_get_version(self, nullptr))) return nullptr;
  std::vector<http::Header> storage;
  http::RequestHead parsed;
  parse_stored_head(request, storage, parsed);
  // Keys this request set (a key already in base is replaced, not joined).
  std::vector<std::string> set_keys;
  auto seen = [&set_keys](const std::string& name) {
    return std::find(set_keys.begin(), set_keys.end(), name) != set_keys.end();
  };
  auto mark_seen = [&set_keys](const std::string& name) { set_keys.push_back(name); };
  std::string key;
  std::string_view host_header;
  for (size_t i = 0; i < parsed.header_count; ++i) {
    const http::Header& header = storage[i];
    // A name with "_" would be indistinguishable from its "-" spelling (spoofing behind proxies).
    if (header.name.find('_') != std::string_view::npos) continue;
    const bool is_length = http::iequals(header.name, "content-length");
    if (http::iequals(header.name, "content-type")) {
      key = "CONTENT_TYPE";
    } else if (is_length) {
      key = "CONTENT_LENGTH";
    } else {
      key = "HTTP_";
      for (char c : header.name) {
        key += c == '-' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 32 : c);
      }
      if (key == "HTTP_HOST" && host_header.empty()) host_header = header.value;
    }
    PyRef value(latin1(header.value));
    if (!value) return nullptr;
    PyObject* previous = seen(key) ? get_item(dict, key) : nullptr;
    if (previous == nullptr) {
      if (PyErr_Occurred() || !set_item(dict, key, value.release())) return nullptr;
      mark_seen(key);
    } else if (!is_length) {  // equal duplicates of Content-Length (the parser refuses others)
      if (!set_item(dict, key,
                    PyUnicode_FromFormat(key == "HTTP_COOKIE" ? "%U; %U" : "%U, %U", previous,
                                         value.get()))) {
        return nullptr;
      }
    }
  }
  Connection* connection = request->connection;
  if (connection != nullptr) {
    const Endpoint& peer = connection->peer();
    if (peer.valid && !peer.is_unix) {
      char port[16];
      const auto [end, error] = std::to_chars(port, port + sizeof port, peer.port);
      (void)error;  // cannot fail: 16 characters hold any int
      if (!set_item(dict, "REMOTE_ADDR", latin1(peer.host)) ||
          !set_item(dict, "REMOTE_PORT", latin1(std::string_view(port, end - port)))) {
        return nullptr;
      }
    }
  }
  if (!host_header.empty()) {
    // SERVER_NAME/SERVER_PORT from Host: "[v6]:port", "name:port" or "name" (the scheme's
    // default port); the name lower-cased. Without Host, base's (the listening socket's) stay.
    std::string_view name = host_header;
    std::string_view port;
    if (name.starts_with('[')) {
      size_t end = name.find(']');
      if (end != std::string_view::npos) {
        std::string_view rest = name.substr(end + 1);
        name = name.substr(1, end - 1);
        if (rest.size() > 1 && rest[0] == ':') port = rest.substr(1);
      }
    } else if (std::count(name.begin(), name.end(), ':') == 1) {
      size_t colon = name.find(':');
      port = name.substr(colon + 1);
      name = name.substr(0, colon);
    }
    if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      port = {};
    }
    std::string lowered(name);
    for (char& c : lowered) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (port.empty()) {
      // No port in Host: the scheme's default one.
      PyObject* scheme = get_item(dict, "wsgi.url_scheme");
      if (scheme == nullptr && PyErr_Occurred()) return nullptr;
      const bool https = scheme != nullptr && PyUnicode_Check(scheme) &&
                         PyUnicode_CompareWithASCIIString(scheme, "https") == 0;
      port = https ? "443" : "80";
    }
    if (!set_item(dict, "SERVER_NAME", latin1(lowered))) return nullptr;
    if (!set_item(dict, "SERVER_PORT", latin1(port))) return nullptr;
  }
  return environ.release();
}

Connection* attached_connection(Connection* connection) {
  if (connection == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the request is over: its connection is gone");
  }
  return connection;
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
    {"client", request_get_client, nullptr, "peer address", nullptr},
    {"body", request_get_body, nullptr, "the whole body", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef request_methods[] = {
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&request_read)),
     METH_FASTCALL, "Reads at most size body bytes (all when -1)."},
    {"json", request_json, METH_NOARGS, "The body parsed as JSON (HTTPError 400 if invalid)."},
    {"_wsgi_environ", request_wsgi_environ, METH_O,
     "A copy of base filled with the CGI variables of this request (WSGI adapter)."},
    {nullptr, nullptr, 0, nullptr},
};

// ---------------------------------------------------------------------------------------------
// Response

struct ResponseObject {
  PyObject_HEAD Connection* connection;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<PyObject*> body;  // strong references to bytes objects
  size_t body_length;
  int status;
  uint8_t version_minor;
  bool is_head;
  bool headers_sent;
  bool finished;
  bool chunked;          // streaming with chunked framing
  bool close_delimited;  // streaming to an HTTP/1.0 client: the body ends at close
};

void response_clear_body(ResponseObject* response) {
  for (PyObject* chunk : response->body) Py_DECREF(chunk);
  response->body.clear();
  response->body_length = 0;
}

void response_dealloc(PyObject* self) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  if (response->connection != nullptr) response->connection->release();
  response_clear_body(response);
  using HeaderList = std::vector<std::pair<std::string, std::string>>;
  using BodyList = std::vector<PyObject*>;
  response->headers.~HeaderList();
  response->body.~BodyList();
  Py_TYPE(self)->tp_free(self);
}

bool response_check_open(ResponseObject* response) {
  if (response->finished) {
    PyErr_SetString(PyExc_RuntimeError, "the response is already complete");
    return false;
  }
  return true;
}

bool response_check_unsent(ResponseObject* response) {
  if (!response_check_open(response)) return false;
  if (response->headers_sent) {
    PyErr_SetString(PyExc_RuntimeError, "the headers were already sent");
    return false;
  }
  return true;
}

PyObject* response_set_status(PyObject* self, PyObject* value) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  long status = PyLong_AsLong(value);
  if (status == -1 && PyErr_Occurred()) return nullptr;
  if (status < 100 || status > 599) {
    PyErr_Format(PyExc_ValueError, "status must be between 100 and 599, got %ld", status);
    return nullptr;
  }
  if (!response_check_unsent(response)) return nullptr;
  response->status = static_cast<int>(status);
  Py_RETURN_NONE;
}

bool header_text(PyObject* object, const char* what, std::string_view& out) {
  Py_ssize_t size = 0;
  const char* data = PyUnicode_Check(object) ? PyUnicode_AsUTF8AndSize(object, &size) : nullptr;
  if (data == nullptr) {
    if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "header %s must be str", what);
    return false;
  }
  out = std::string_view(data, static_cast<size_t>(size));
  return true;
}

bool parse_header_arguments(PyObject* const* args, Py_ssize_t nargs, std::string_view& name,
                            std::string_view& value) {
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "expected (name, value)");
    return false;
  }
  if (!header_text(args[0], "name", name) || !header_text(args[1], "value", value)) return false;
  if (!http::is_valid_header_name(name)) {
    PyErr_Format(PyExc_ValueError, "invalid header name %R", args[0]);
    return false;
  }
  if (!http::is_valid_header_value(value)) {
    PyErr_Format(PyExc_ValueError, "invalid header value %R (CR, LF, NUL and controls are refused)",
                 args[1]);
    return false;
  }
  return true;
}

PyObject* response_set_header(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  std::string_view name, value;
  if (!parse_header_arguments(args, nargs, name, value) || !response_check_unsent(response)) {
    return nullptr;
  }
  auto& headers = response->headers;
  std::erase_if(headers, [name](const auto& header) { return http::iequals(header.first, name); });
  headers.emplace_back(std::string(name), std::string(value));
  Py_RETURN_NONE;
}

PyObject* response_add_header(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  std::string_view name, value;
  if (!parse_header_arguments(args, nargs, name, value) || !response_check_unsent(response)) {
    return nullptr;
  }
  response->headers.emplace_back(std::string(name), std::string(value));
  Py_RETURN_NONE;
}

bool has_header(const ResponseObject* response, std::string_view name) {
  for (const auto& header : response->headers) {
    if (http::iequals(header.first, name)) return true;
  }
  return false;
}

// Bytes to keep for the body: bytes as they are (no copy), str as UTF-8, other buffers copied.
PyObject* body_bytes(PyObject* data) {
  if (PyBytes_CheckExact(data)) return Py_NewRef(data);
  if (PyUnicode_Check(data)) return PyUnicode_AsUTF8String(data);
  if (PyObject_CheckBuffer(data)) return PyBytes_FromObject(data);
  PyErr_Format(PyExc_TypeError, "response body must be bytes or str, not %.100s",
               Py_TYPE(data)->tp_name);
  return nullptr;
}

// Builds the status line and headers. `streaming`: the body follows in chunks (or until close).
void build_head(ResponseObject* response, bool streaming, std::string& out) {
  Connection* connection = response->connection;
  const bool allows_body = http::status_allows_body(response->status);
  bool keep_alive = connection->will_keep_alive() && !connection->server().rebalance_due();
  for (const auto& header : response->headers) {
    if (http::iequals(header.first, "connection") && http::iequals(header.second, "close")) {
      keep_alive = false;
    }
  }
  if (streaming && allows_body && !response->is_head && response->version_minor == 0) {
    response->close_delimited = true;
    keep_alive = false;
  }
  if (!keep_alive) connection->mark_close();
  out.reserve(256 + response->headers.size() * 48);
  http::append_status_line(out, response->status, response->version_minor);
  bool user_date = false;
  bool user_type = false;
  for (const auto& header : response->headers) {
    if (http::iequals(header.first, "content-length") ||
        http::iequals(header.first, "transfer-encoding") ||
        http::iequals(header.first, "connection")) {
      continue;  // framing and connection management are the server's
    }
    user_date |= http::iequals(header.first, "date");
    user_type |= http::iequals(header.first, "content-type");
    http::append_header(out, header.first, header.second);
  }
  if (!user_date) http::append_header(out, "Date", connection->server().dates().now());
  if (allows_body) {
    if (!user_type && (streaming || response->body_length > 0)) {
      http::append_header(out, "Content-Type", "text/plain; charset=utf-8");
    }
    if (!streaming) {
      out += "Content-Length: ";
      http::append_decimal(out, response->body_length);
      out += "\r\n";
    } else if (!response->close_delimited && !response->is_head) {
      out += "Transfer-Encoding: chunked\r\n";
      response->chunked = true;
    } else if (response->is_head && response->version_minor == 1) {
      out += "Transfer-Encoding: chunked\r\n";
    }
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (response->version_minor == 0) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
}

bool append_view(std::vector<Py_buffer>& views, PyObject* object) {
  views.emplace_back();
  if (PyObject_GetBuffer(object, &views.back(), PyBUF_SIMPLE) < 0) {
    views.pop_back();
    return false;
  }
  return true;
}

void release_all(std::vector<Py_buffer>& views) {
  for (Py_buffer& view : views) PyBuffer_Release(&view);
  views.clear();
}

// Sends the head (and, unless streaming, the buffered body). 0 or -1 with an exception.
int send_head(ResponseObject* response, bool streaming) {
  Connection* connection = attached_connection(response->connection);
  if (connection == nullptr) return -1;
  std::string head;
  build_head(response, streaming, head);
  response->headers_sent = true;
  PyRef head_object(PyBytes_FromStringAndSize(head.data(), static_cast<Py_ssize_t>(head.size())));
  if (!head_object) return -1;
  std::vector<Py_buffer> views;
  views.reserve(1 + response->body.size());
  if (!append_view(views, head_object.get())) return -1;
  const bool send_body = !response->is_head && http::status_allows_body(response->status);
  if (send_body) {
    for (PyObject* chunk : response->body) {
      if (PyBytes_GET_SIZE(chunk) == 0) continue;
      if (response->chunked) {
        // Bytes written before flush() go out as the first chunk.
        std::string size_line;
        http::append_chunk_size(size_line, static_cast<size_t>(PyBytes_GET_SIZE(chunk)));
        PyRef line(
            PyBytes_FromStringAndSize(size_line.data(), static_cast<Py_ssize_t>(size_line.size())));
        if (!line || !append_view(views, line.get()) || !append_view(views, chunk) ||
            !append_view(views, crlf_bytes)) {
          release_all(views);
          return -1;
        }
      } else if (!append_view(views, chunk)) {
        release_all(views);
        return -1;
      }
    }
  }
  response_clear_body(response);
  return connection->send_views(views);
}

// Sends one body piece of a streaming response.
int send_chunk(ResponseObject* response, PyObject* data) {
  if (response->is_head || !http::status_allows_body(response->status)) return 0;
  Connection* connection = attached_connection(response->connection);
  if (connection == nullptr) return -1;
  Py_ssize_t size = PyBytes_GET_SIZE(data);
  if (size == 0) return 0;
  std::vector<Py_buffer> views;
  if (response->chunked) {
    std::string size_line;
    http::append_chunk_size(size_line, static_cast<size_t>(size));
    PyRef line(
        PyBytes_FromStringAndSize(size_line.data(), static_cast<Py_ssize_t>(size_line.size())));
    if (!line || !append_view(views, line.get()) || !append_view(views, data) ||
        !append_view(views, crlf_bytes)) {
      release_all(views);
      return -1;
    }
  } else if (!append_view(views, data)) {
    return -1;
  }
  return connection->send_views(views);
}

PyObject* response_write(PyObject* self, PyObject* data) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  if (!response_check_open(response)) return nullptr;
  PyRef bytes(body_bytes(data));
  if (!bytes) return nullptr;
  if (response->headers_sent) {
    if (send_chunk(response, bytes.get()) < 0) return nullptr;
    Py_RETURN_NONE;
  }
  response->body_length += static_cast<size_t>(PyBytes_GET_SIZE(bytes.get()));
  response->body.push_back(bytes.release());
  Py_RETURN_NONE;
}

PyObject* response_json(PyObject* self, PyObject* object) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  if (!response_check_open(response)) return nullptr;
  PyRef arguments(PyTuple_Pack(1, object));
  if (!arguments) return nullptr;
  PyRef text(PyObject_Call(configuration.json_dumps.get(), arguments.get(), dumps_keywords));
  if (!text) return nullptr;
  if (!response->headers_sent && !has_header(response, "content-type")) {
    response->headers.emplace_back("Content-Type", "application/json");
  }
  return response_write(self, text.get());
}

PyObject* response_flush(PyObject* self, PyObject*) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  if (!response_check_open(response)) return nullptr;
  if (!response->headers_sent && send_head(response, true) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* response_stream(PyObject* self, PyObject* iterable) {
  PyRef iterator(PyObject_GetIter(iterable));
  if (!iterator) return nullptr;
  PyRef flushed(response_flush(self, nullptr));
  if (!flushed) return nullptr;
  while (PyRef item{PyIter_Next(iterator.get())}) {
    PyRef written(response_write(self, item.get()));
    if (!written) return nullptr;
  }
  if (PyErr_Occurred()) return nullptr;
  Py_RETURN_NONE;
}

PyObject* response_reset(PyObject* self, PyObject*) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  if (!response_check_unsent(response)) return nullptr;
  response->status = 200;
  response->headers.clear();
  response_clear_body(response);
  Py_RETURN_NONE;
}

PyObject* guess_content_type(PyObject* path) {
  PyRef mimetypes(PyImport_ImportModule("mimetypes"));
  if (!mimetypes) return nullptr;
  PyRef guess(PyObject_CallMethod(mimetypes.get(), "guess_type", "O", path));
  if (!guess) return nullptr;
  PyObject* type = PyTuple_GetItem(guess.get(), 0);
  if (type == nullptr) return nullptr;
  if (type == Py_None) return PyUnicode_FromString("application/octet-stream");
  return Py_NewRef(type);
}

PyObject* response_sendfile(PyObject* self, PyObject* args, PyObject* kwargs) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  static const char* keywords[] = {"path", "content_type", nullptr};
  PyObject* path_object = nullptr;
  PyObject* content_type = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", const_cast<char**>(keywords), &path_object,
                                   &content_type)) {
    return nullptr;
  }
  if (!response_check_unsent(response)) return nullptr;
  Connection* connection = attached_connection(response->connection);
  if (connection == nullptr) return nullptr;
  PyObject* encoded = nullptr;
  if (!PyUnicode_FSConverter(path_object, &encoded)) return nullptr;
  PyRef path_bytes(encoded);
  core::UniqueFd file(::open(PyBytes_AS_STRING(encoded), O_RDONLY | O_CLOEXEC));
  if (!file) return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_object);
  struct stat info {};
  if (::fstat(file.get(), &info) < 0) return PyErr_SetFromErrno(PyExc_OSError);
  if (!S_ISREG(info.st_mode)) {
    errno = S_ISDIR(info.st_mode) ? EISDIR : EINVAL;
    return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, path_object);
  }
  PyRef type(content_type == Py_None ? guess_content_type(path_object) : Py_NewRef(content_type));
  if (!type) return nullptr;
  std::string_view type_text;
  if (!header_text(type.get(), "value", type_text)) return nullptr;
  std::erase_if(response->headers,
                [](const auto& header) { return http::iequals(header.first, "content-type"); });
  response->headers.emplace_back("Content-Type", std::string(type_text));
  response_clear_body(response);
  response->body_length = static_cast<size_t>(info.st_size);
  if (send_head(response, false) < 0) return nullptr;
  response->finished = true;
  const bool send_body = !response->is_head && http::status_allows_body(response->status);
  if (send_body && info.st_size > 0 &&
      connection->send_file(file.get(), 0, static_cast<uint64_t>(info.st_size)) < 0) {
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* response_get_status(PyObject* self, void*) {
  return PyLong_FromLong(reinterpret_cast<ResponseObject*>(self)->status);
}

int response_set_status_attribute(PyObject* self, PyObject* value, void*) {
  if (value == nullptr) {
    PyErr_SetString(PyExc_AttributeError, "status cannot be deleted");
    return -1;
  }
  PyRef result(response_set_status(self, value));
  return result ? 0 : -1;
}

PyObject* response_get_headers_sent(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<ResponseObject*>(self)->headers_sent);
}

PyGetSetDef response_getset[] = {
    {"status", response_get_status, response_set_status_attribute, "the status code", nullptr},
    {"headers_sent", response_get_headers_sent, nullptr, "whether the head went out", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

#define TF_METHOD_CAST(function) \
  reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&function))

PyMethodDef response_methods[] = {
    {"set_status", response_set_status, METH_O, "Sets the status (100-599)."},
    {"set_header", TF_METHOD_CAST(response_set_header), METH_FASTCALL,
     "Replaces the headers called name."},
    {"add_header", TF_METHOD_CAST(response_add_header), METH_FASTCALL, "Adds a header line."},
    {"write", response_write, METH_O, "Appends to the body (sent at once after flush())."},
    {"json", response_json, METH_O, "Writes obj as JSON."},
    {"flush", response_flush, METH_NOARGS, "Sends the head now; the body then streams."},
    {"stream", response_stream, METH_O, "flush(), then write() each item."},
    {"sendfile", TF_METHOD_CAST(response_sendfile), METH_VARARGS | METH_KEYWORDS,
     "Sends a file with zero copies."},
    {"reset", response_reset, METH_NOARGS, "Clears status, headers and body (before sending)."},
    {nullptr, nullptr, 0, nullptr},
};

// ---------------------------------------------------------------------------------------------
// The request greenlet

// Reports an exception escaping the handler: logged (never sent), then answered if still
// possible. Returns false when the connection must close without a (complete) response.
bool answer_handler_error(RequestObject* request, ResponseObject* response) {
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  PyRef owned_type(type), owned_value(value), owned_traceback(traceback);
  PyObject* http_error = configuration.http_error.get();
  const bool is_http_error =
      http_error != nullptr && value != nullptr && PyObject_IsInstance(value, http_error) == 1;
  const bool client_gone =
      value != nullptr && (PyErr_GivenExceptionMatches(type, PyExc_ConnectionError) ||
                           PyErr_GivenExceptionMatches(type, PyExc_BrokenPipeError));
  if (!is_http_error && !client_gone && value != nullptr) {
    PyObject* logger = configuration.logger.get();
    PyRef logged;
    if (logger != nullptr) {
      PyRef method(request_get_method(reinterpret_cast<PyObject*>(request), nullptr));
      PyRef target(latin1(request->head.target));
      PyRef keywords(Py_BuildValue("{s:O}", "exc_info", value));
      PyRef error_method(PyObject_GetAttrString(logger, "error"));
      PyRef arguments(
          Py_BuildValue("(sOO)", "Exception in handler for %s %s", method.get(), target.get()));
      if (error_method && arguments && keywords) {
        logged = PyRef(PyObject_Call(error_method.get(), arguments.get(), keywords.get()));
      }
    }
    if (!logged) {
      PyErr_Clear();
      PyRef module(PyImport_ImportModule("traceback"));
      PyRef printed;
      if (module) printed = PyRef(PyObject_CallMethod(module.get(), "print_exception", "O", value));
      if (!printed) PyErr_Clear();
    }
  }
  PyErr_Clear();
  if (client_gone || response->connection == nullptr) return false;
  if (response->headers_sent) return false;
  response->status = 500;
  response->headers.clear();
  response_clear_body(response);
  std::string message = "Internal Server Error";
  if (is_http_error) {
    PyRef status(PyObject_GetAttrString(value, "status"));
    PyRef text(PyObject_GetAttrString(value, "message"));
    PyRef headers(PyObject_GetAttrString(value, "headers"));
    long code = status ? PyLong_AsLong(status.get()) : 500;
    if (code >= 100 && code <= 599) response->status = static_cast<int>(code);
    if (text && PyUnicode_Check(text.get())) {
      Py_ssize_t size = 0;
      const char* data = PyUnicode_AsUTF8AndSize(text.get(), &size);
      if (data != nullptr) message.assign(data, static_cast<size_t>(size));
    }
    if (headers) {
      PyRef sequence(PySequence_Fast(headers.get(), "headers"));
      for (Py_ssize_t i = 0; sequence && i < PySequence_Fast_GET_SIZE(sequence.get()); ++i) {
        PyObject* pair = PySequence_Fast_GET_ITEM(sequence.get(), i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) continue;
        std::string_view name, header_value;
        if (header_text(PyTuple_GET_ITEM(pair, 0), "name", name) &&
            header_text(PyTuple_GET_ITEM(pair, 1), "value", header_value) &&
            http::is_valid_header_name(name) && http::is_valid_header_value(header_value)) {
          response->headers.emplace_back(std::string(name), std::string(header_value));
        }
      }
    }
    PyErr_Clear();
    if (response->status == 408 || response->status == 413) response->connection->mark_close();
  }
  message += "\n";
  response->headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  PyObject* body =
      PyBytes_FromStringAndSize(message.data(), static_cast<Py_ssize_t>(message.size()));
  if (body == nullptr) {
    PyErr_Clear();
    return false;
  }
  response->body.push_back(body);
  response->body_length = message.size();
  return true;
}

// Completes the response after the handler. Returns whether it went out whole.
bool finish_response(ResponseObject* response) {
  if (response->finished) return true;
  response->finished = true;
  int status = 0;
  if (!response->headers_sent) {
    status = send_head(response, false);
  } else if (response->chunked) {
    Connection* connection = attached_connection(response->connection);
    std::vector<Py_buffer> views;
    status = connection != nullptr && append_view(views, last_chunk_bytes)
                 ? connection->send_views(views)
                 : -1;
  }
  if (status < 0) {
    PyErr_Clear();
    return false;
  }
  return !response->close_delimited;
}

void detach(RequestObject* request, ResponseObject* response) {
  if (request->connection != nullptr) {
    request->connection->release();
    request->connection = nullptr;
  }
  if (response->connection != nullptr) {
    response->connection->release();
    response->connection = nullptr;
  }
  response->finished = true;
}

}  // namespace

PyObject* new_request_object(Connection* connection, std::string_view head_bytes,
                             const http::RequestHead& head) {
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
  PyObject_GC_Track(request);
  return reinterpret_cast<PyObject*>(request);
}

PyObject* new_response_object(Connection* connection, const http::RequestHead& head) {
  auto* response = PyObject_New(ResponseObject, &ResponseType);
  if (response == nullptr) return nullptr;
  new (&response->headers) std::vector<std::pair<std::string, std::string>>();
  new (&response->body) std::vector<PyObject*>();
  response->connection = connection;
  connection->retain();
  response->body_length = 0;
  response->status = 200;
  response->version_minor = head.version_minor;
  response->is_head = head.method == "HEAD";
  response->headers_sent = false;
  response->finished = false;
  response->chunked = false;
  response->close_delimited = false;
  return reinterpret_cast<PyObject*>(response);
}

PyObject* run_request(PyObject*, PyObject* args) {
  PyObject* request_object = nullptr;
  PyObject* response_object = nullptr;
  if (!PyArg_ParseTuple(args, "OO", &request_object, &response_object)) return nullptr;
  PyRef request_ref = PyRef::borrow(request_object);
  PyRef response_ref = PyRef::borrow(response_object);
  while (true) {
    auto* request = reinterpret_cast<RequestObject*>(request_ref.get());
    auto* response = reinterpret_cast<ResponseObject*>(response_ref.get());
    Connection* connection = request->connection;
    connection->retain();
    PyObject* handler = connection->server().handler();
    PyObject* result =
        PyObject_CallFunctionObjArgs(handler, request_ref.get(), response_ref.get(), nullptr);
    bool complete = true;
    if (result == nullptr) {
      if (PyErr_ExceptionMatches(greenlet::api.exit_type)) {
        // Killed (hub stopping or drain deadline): no response, close.
        PyErr_Clear();
        complete = false;
      } else {
        complete = answer_handler_error(request, response);
      }
    } else {
      Py_DECREF(result);
    }
    if (complete) complete = finish_response(response);
    const double seconds = (core::monotonic_ns() - connection->request_started_ns()) / 1e9;
    connection->server().stats().record_response(response->status, seconds);
    if (PyObject* access_log = connection->server().access_log()) {
      PyRef logged(PyObject_CallFunction(
          access_log, "OiKd", request_ref.get(), response->status,
          static_cast<unsigned long long>(connection->response_bytes()), seconds));
      if (!logged) PyErr_Clear();
    }
    detach(request, response);
    PyObject* next_request = nullptr;
    PyObject* next_response = nullptr;
    bool more = connection->finish_request(complete, &next_request, &next_response);
    connection->release();
    if (!more) break;
    request_ref = PyRef(next_request);
    response_ref = PyRef(next_response);
  }
  Py_RETURN_NONE;
}

namespace {

// The body of a pooled request greenlet: handles (request, response) pairs, parking between them.
// After an exception (killed while parked) it must not touch the server: it may be gone.
PyObject* request_worker(PyObject* capsule, PyObject* pair) {
  auto* server = static_cast<HttpServer*>(PyCapsule_GetPointer(capsule, "theframework.server"));
  if (server == nullptr) return nullptr;
  PyRef current = PyRef::borrow(pair);
  while (true) {
    PyRef done(run_request(nullptr, current.get()));
    if (!done) return nullptr;
    if (!server->park_worker()) Py_RETURN_NONE;
    current = PyRef(server->hub().suspend());
    if (!current) return nullptr;
    if (!PyTuple_Check(current.get()) || PyTuple_GET_SIZE(current.get()) != 2) {
      PyErr_SetString(PyExc_RuntimeError, "request greenlet resumed without a request");
      return nullptr;
    }
  }
}

PyMethodDef request_worker_def = {"_request_worker", request_worker, METH_O,
                                  "A pooled request greenlet (internal)."};

}  // namespace

int HttpServer::spawn_request(PyObject* request, PyObject* response) {
  PyRef pair(PyTuple_Pack(2, request, response));
  if (!pair) return -1;
  if (!idle_workers_.empty()) {
    PyRef worker(idle_workers_.back());
    idle_workers_.pop_back();
    return hub_->schedule(worker.get(), pair.get());
  }
  if (!worker_function_) {
    PyRef capsule(PyCapsule_New(this, "theframework.server", nullptr));
    if (!capsule) return -1;
    worker_function_ = PyRef(PyCFunction_New(&request_worker_def, capsule.get()));
    if (!worker_function_) return -1;
  }
  PyRef arguments(PyTuple_Pack(1, pair.get()));
  if (!arguments) return -1;
  PyRef greenlet(hub_->spawn(worker_function_.get(), arguments.get(), nullptr));
  return greenlet ? 0 : -1;
}

bool HttpServer::park_worker() {
  if (draining_ || !serving_ || idle_workers_.size() >= kMaxIdleWorkers) return false;
  idle_workers_.push_back(greenlet::api.current());
  return true;
}

void HttpServer::release_workers() noexcept {
  // Parked greenlets end with GreenletExit thrown from the hub; they no longer touch the server.
  std::vector<PyObject*> workers;
  workers.swap(idle_workers_);
  for (PyObject* worker : workers) {
    if (hub_ != nullptr && hub_->kill(worker, nullptr) < 0) PyErr_Clear();
    Py_DECREF(worker);
  }
}

// ---------------------------------------------------------------------------------------------
// The HttpServer type

namespace {

struct HttpServerObject {
  PyObject_HEAD HttpServer* server;
};

PyObject* http_server_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {
      "handler",           "listen_fds",    "max_header_size", "max_headers",
      "max_request_line",  "max_body_size", "header_timeout",  "body_timeout",
      "keepalive_timeout", "write_timeout", "max_connections", "access_log",
      "rebalance_every",   nullptr};
  PyObject* handler = nullptr;
  PyObject* fds_object = nullptr;
  HttpOptions options;
  Py_ssize_t max_header_size = 32768, max_headers = 100, max_request_line = 8192;
  unsigned long long max_body_size = 1 << 20;
  Py_ssize_t max_connections = 1024;
  PyObject* access_log = Py_None;
  unsigned long long rebalance_every = 0;
  if (!PyArg_ParseTupleAndKeywords(
          args, kwargs, "OO|$nnnKddddnOK", const_cast<char**>(keywords), &handler, &fds_object,
          &max_header_size, &max_headers, &max_request_line, &max_body_size,
          &options.header_timeout, &options.body_timeout, &options.keepalive_timeout,
          &options.write_timeout, &max_connections, &access_log, &rebalance_every)) {
    return nullptr;
  }
  if (access_log != Py_None && !PyCallable_Check(access_log)) {
    PyErr_SetString(PyExc_TypeError, "access_log must be callable or None");
    return nullptr;
  }
  if (!PyCallable_Check(handler)) {
    PyErr_SetString(PyExc_TypeError, "handler must be callable");
    return nullptr;
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
  return Py_BuildValue("{sKsKsnsKsnsOsKsKsOsd}", "connections_accepted", stats.connections_accepted,
                       "accept_pauses", stats.accept_pauses, "connections_active",
                       static_cast<Py_ssize_t>(server->connection_count()), "requests",
                       stats.requests, "requests_in_flight",
                       static_cast<Py_ssize_t>(server->requests_in_flight()), "responses",
                       responses.get(), "bytes_in", stats.bytes_in, "bytes_out", stats.bytes_out,
                       "duration_buckets", buckets.get(), "duration_sum", stats.duration_sum);
}

PyObject* http_server_retire(PyObject* self, PyObject*) {
  reinterpret_cast<HttpServerObject*>(self)->server->retire();
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
    {"retire", http_server_retire, METH_NOARGS,
     "Stops accepting; each connection closes after its next response."},
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
  ResponseType.tp_name = "theframework._core.Response";
  ResponseType.tp_basicsize = sizeof(ResponseObject);
  ResponseType.tp_flags = Py_TPFLAGS_DEFAULT;
  ResponseType.tp_doc = "The response under construction (see _core.pyi).";
  ResponseType.tp_dealloc = response_dealloc;
  ResponseType.tp_getset = response_getset;
  ResponseType.tp_methods = response_methods;
  HttpServerType.tp_name = "theframework._core.HttpServer";
  HttpServerType.tp_basicsize = sizeof(HttpServerObject);
  HttpServerType.tp_flags = Py_TPFLAGS_DEFAULT;
  HttpServerType.tp_doc = "Serves HTTP/1.1 on listening sockets (see _core.pyi).";
  HttpServerType.tp_new = http_server_new;
  HttpServerType.tp_dealloc = http_server_dealloc;
  HttpServerType.tp_methods = http_server_methods;
  HttpServerType.tp_getset = http_server_getset;
  if (PyType_Ready(&RequestType) < 0 || PyType_Ready(&ResponseType) < 0 ||
      PyType_Ready(&HttpServerType) < 0) {
    return -1;
  }
  if (PyModule_AddObjectRef(module, "Request", reinterpret_cast<PyObject*>(&RequestType)) < 0 ||
      PyModule_AddObjectRef(module, "Response", reinterpret_cast<PyObject*>(&ResponseType)) < 0 ||
      PyModule_AddObjectRef(module, "HttpServer", reinterpret_cast<PyObject*>(&HttpServerType)) <
          0) {
    return -1;
  }
  crlf_bytes = PyBytes_FromString("\r\n");
  last_chunk_bytes = PyBytes_FromString("0\r\n\r\n");
  version_strings[0] = PyUnicode_InternFromString("HTTP/1.0");
  version_strings[1] = PyUnicode_InternFromString("HTTP/1.1");
  for (InternedMethod& method : interned_methods) {
    method.object = PyUnicode_InternFromString(std::string(method.name).c_str());
    if (method.object == nullptr) return -1;
  }
  dumps_keywords = Py_BuildValue("{s:(ss)}", "separators", ",", ":");
  if (!crlf_bytes || !last_chunk_bytes || !version_strings[0] || !version_strings[1] ||
      !dumps_keywords) {
    return -1;
  }
  return 0;
}

}  // namespace tf::py
