// Request._wsgi_environ: the CGI part of a PEP 3333 environ, built in C++ from the stored head
// (the WSGI adapter, theframework/wsgi.py, adds the wsgi.* items).
#include <Python.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

namespace {

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

// The key objects of the variables every environ sets, looked up once (no hashing of their text
// per request). Borrowed from environ_keys, which never drops them.
struct FixedKeys {
  PyObject* request_method = nullptr;
  PyObject* script_name = nullptr;
  PyObject* path_info = nullptr;
  PyObject* query_string = nullptr;
  PyObject* server_protocol = nullptr;
  PyObject* remote_addr = nullptr;
  PyObject* remote_port = nullptr;
  PyObject* server_name = nullptr;
  PyObject* server_port = nullptr;
  PyObject* url_scheme = nullptr;
};
FixedKeys fixed_keys;

// fixed_keys, filled on first use. False with an exception set when a key could not be made.
bool ready_fixed_keys() {
  if (fixed_keys.request_method != nullptr) return true;
  const std::pair<PyObject**, std::string_view> keys[] = {
      {&fixed_keys.request_method, "REQUEST_METHOD"},
      {&fixed_keys.script_name, "SCRIPT_NAME"},
      {&fixed_keys.path_info, "PATH_INFO"},
      {&fixed_keys.query_string, "QUERY_STRING"},
      {&fixed_keys.server_protocol, "SERVER_PROTOCOL"},
      {&fixed_keys.remote_addr, "REMOTE_ADDR"},
      {&fixed_keys.remote_port, "REMOTE_PORT"},
      {&fixed_keys.server_name, "SERVER_NAME"},
      {&fixed_keys.server_port, "SERVER_PORT"},
      {&fixed_keys.url_scheme, "wsgi.url_scheme"},
  };
  // request_method last: it says the others are ready.
  for (auto it = std::rbegin(keys); it != std::rend(keys); ++it) {
    PyRef key(environ_key(it->second));
    if (!key) return false;
    *it->first = key.get();  // environ_keys keeps a reference (it is far from full here)
  }
  return true;
}

// Stores `value` (a new reference, or null after an error) under the key object `key`. False on
// error.
bool set_fixed(PyObject* dict, PyObject* key, PyObject* value) {
  if (value == nullptr) return false;
  PyRef owned(value);
  return PyDict_SetItem(dict, key, value) == 0;
}

}  // namespace

// The CGI part of a WSGI environ (PEP 3333), filled in C++ on top of a copy of `base` (which holds
// the per-server constants and SCRIPT_NAME). Header names become HTTP_*; repeated headers are
// joined with ","; PATH_INFO is the percent-decoded path as latin-1 (the "bytes in str" rule).
PyObject* request_wsgi_environ(PyObject* self, PyObject* base) {
  auto* request = reinterpret_cast<RequestObject*>(self);
  if (!PyDict_Check(base)) {
    PyErr_SetString(PyExc_TypeError, "_wsgi_environ() needs a dict");
    return nullptr;
  }
  if (!ready_fixed_keys()) return nullptr;
  PyRef environ(PyDict_Copy(base));
  if (!environ) return nullptr;
  PyObject* dict = environ.get();
  const http::RequestHead& head = request->head;
  if (!set_fixed(dict, fixed_keys.request_method, request_get_method(self, nullptr)))
    return nullptr;
  std::string path = http::percent_decode(head.path);
  PyObject* script_name = PyDict_GetItemWithError(dict, fixed_keys.script_name);
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
  if (!set_fixed(dict, fixed_keys.path_info, latin1(path))) return nullptr;
  if (!set_fixed(dict, fixed_keys.query_string, request_get_query_string(self, nullptr)))
    return nullptr;
  if (!set_fixed(dict, fixed_keys.server_protocol, request_get_version(self, nullptr)))
    return nullptr;
  std::vector<http::Header> storage;
  http::RequestHead parsed;
  parse_stored_head(request, storage, parsed);
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
    PyRef key_object(environ_key(key));
    if (!key_object) return nullptr;
    // A key this request set already is joined; one from base (still base's value) is replaced.
    PyObject* previous = PyDict_GetItemWithError(dict, key_object.get());
    if (previous == nullptr && PyErr_Occurred()) return nullptr;
    if (previous != nullptr) {
      PyObject* from_base = PyDict_GetItemWithError(base, key_object.get());
      if (from_base == nullptr && PyErr_Occurred()) return nullptr;
      if (from_base == previous) previous = nullptr;
    }
    if (previous == nullptr) {
      if (PyDict_SetItem(dict, key_object.get(), value.get()) < 0) return nullptr;
    } else if (!is_length) {  // equal duplicates of Content-Length (the parser refuses others)
      if (!set_fixed(dict, key_object.get(),
                     PyUnicode_FromFormat(key == "HTTP_COOKIE" ? "%U; %U" : "%U, %U", previous,
                                          value.get()))) {
        return nullptr;
      }
    }
  }
  // The client: a trusted proxy's forwarded one, else the peer (nothing for a UNIX socket).
  const http::ForwardedInfo* forwarded = request->forwarded;
  const Endpoint* peer = nullptr;
  if (request->connection != nullptr) peer = &request->connection->peer();
  std::string_view client_host;
  int client_port = 0;
  if (forwarded != nullptr && forwarded->has_client) {
    client_host = forwarded->client_host;
    client_port = forwarded->client_port;
  } else if (peer != nullptr && peer->valid && !peer->is_unix) {
    client_host = peer->host;
    client_port = peer->port;
  }
  if (!client_host.empty()) {
    char port[16];
    const auto [end, error] = std::to_chars(port, port + sizeof port, client_port);
    (void)error;  // cannot fail: 16 characters hold any int
    if (!set_fixed(dict, fixed_keys.remote_addr, latin1(client_host)) ||
        !set_fixed(dict, fixed_keys.remote_port, latin1(std::string_view(port, end - port)))) {
      return nullptr;
    }
  }
  // A trusted proxy's scheme and host replace wsgi.url_scheme and HTTP_HOST.
  std::string forwarded_host;
  if (forwarded != nullptr) {
    if (!forwarded->scheme.empty() &&
        !set_fixed(dict, fixed_keys.url_scheme, latin1(forwarded->scheme))) {
      return nullptr;
    }
    if (!forwarded->host.empty() || forwarded->port != 0) {
      forwarded_host = request_host(request, host_header);
      host_header = forwarded_host;
      if (!set_item(dict, "HTTP_HOST", latin1(forwarded_host))) return nullptr;
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
      PyObject* scheme = PyDict_GetItemWithError(dict, fixed_keys.url_scheme);
      if (scheme == nullptr && PyErr_Occurred()) return nullptr;
      const bool https = scheme != nullptr && PyUnicode_Check(scheme) &&
                         PyUnicode_CompareWithASCIIString(scheme, "https") == 0;
      port = https ? "443" : "80";
    }
    if (!set_fixed(dict, fixed_keys.server_name, latin1(lowered))) return nullptr;
    if (!set_fixed(dict, fixed_keys.server_port, latin1(port))) return nullptr;
  }
  return environ.release();
}

}  // namespace tf::py
