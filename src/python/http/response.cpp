// theframework._core.Response: the Python type of a response (status, headers, buffered or
// streamed body, sendfile) and the writing of its head and body to the connection.
#include <Python.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/http/http_response.hpp"
#include "core/io/fd.hpp"
#include "python/configuration.hpp"
#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

PyObject* last_chunk_bytes = nullptr;  // b"0\r\n\r\n"

namespace {

PyTypeObject ResponseType = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* crlf_bytes = nullptr;      // b"\r\n"
PyObject* dumps_keywords = nullptr;  // {"separators": (",", ":")}

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

void release_all(std::vector<Py_buffer>& views) {
  for (Py_buffer& view : views) PyBuffer_Release(&view);
  views.clear();
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

PyObject* response_get_head_length(PyObject* self, void*) {
  return PyLong_FromSize_t(reinterpret_cast<ResponseObject*>(self)->head_length);
}

// get_header(name): the values of the headers called `name` that the handler set, joined with
// ", "; None when there is none.
PyObject* response_get_header(PyObject* self, PyObject* name_object) {
  auto* response = reinterpret_cast<ResponseObject*>(self);
  std::string_view name;
  if (!header_text(name_object, "header name", name)) return nullptr;
  std::string joined;
  bool found = false;
  for (const auto& header : response->headers) {
    if (!http::iequals(header.first, name)) continue;
    if (found) joined += ", ";
    joined += header.second;
    found = true;
  }
  if (!found) Py_RETURN_NONE;
  return PyUnicode_DecodeUTF8(joined.data(), static_cast<Py_ssize_t>(joined.size()), "replace");
}

PyGetSetDef response_getset[] = {
    {"status", response_get_status, response_set_status_attribute, "the status code", nullptr},
    {"headers_sent", response_get_headers_sent, nullptr, "whether the head went out", nullptr},
    {"head_length", response_get_head_length, nullptr,
     "bytes of the status line and headers sent (0 before)", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyMethodDef response_methods[] = {
    {"set_status", response_set_status, METH_O, "Sets the status (100-599)."},
    {"set_header", TF_METHOD_CAST(response_set_header), METH_FASTCALL,
     "Replaces the headers called name."},
    {"add_header", TF_METHOD_CAST(response_add_header), METH_FASTCALL, "Adds a header line."},
    {"get_header", response_get_header, METH_O,
     "The values of the headers called name set so far, joined with ', ' (None: none)."},
    {"write", response_write, METH_O, "Appends to the body (sent at once after flush())."},
    {"json", response_json, METH_O, "Writes obj as JSON."},
    {"flush", response_flush, METH_NOARGS, "Sends the head now; the body then streams."},
    {"stream", response_stream, METH_O, "flush(), then write() each item."},
    {"sendfile", TF_METHOD_CAST(response_sendfile), METH_VARARGS | METH_KEYWORDS,
     "Sends a file with zero copies."},
    {"reset", response_reset, METH_NOARGS, "Clears status, headers and body (before sending)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

Connection* attached_connection(Connection* connection) {
  if (connection == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the request is over: its connection is gone");
  } else if (connection->websocket() != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the request was upgraded to a WebSocket");
    return nullptr;
  }
  return connection;
}

void response_clear_body(ResponseObject* response) {
  for (PyObject* chunk : response->body) Py_DECREF(chunk);
  response->body.clear();
  response->body_length = 0;
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

bool append_view(std::vector<Py_buffer>& views, PyObject* object) {
  views.emplace_back();
  if (PyObject_GetBuffer(object, &views.back(), PyBUF_SIMPLE) < 0) {
    views.pop_back();
    return false;
  }
  return true;
}

// Sends the head (and, unless streaming, the buffered body). 0 or -1 with an exception.
int send_head(ResponseObject* response, bool streaming) {
  Connection* connection = attached_connection(response->connection);
  if (connection == nullptr) return -1;
  std::string head;
  build_head(response, streaming, head);
  response->headers_sent = true;
  response->head_length = head.size();
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

PyObject* new_response_object(Connection* connection, const http::RequestHead& head) {
  auto* response = PyObject_New(ResponseObject, &ResponseType);
  if (response == nullptr) return nullptr;
  new (&response->headers) std::vector<std::pair<std::string, std::string>>();
  new (&response->body) std::vector<PyObject*>();
  response->connection = connection;
  connection->retain();
  response->body_length = 0;
  response->head_length = 0;
  response->status = 200;
  response->version_minor = head.version_minor;
  response->is_head = head.method == "HEAD";
  response->headers_sent = false;
  response->finished = false;
  response->chunked = false;
  response->close_delimited = false;
  return reinterpret_cast<PyObject*>(response);
}

int init_response_type(PyObject* module) {
  ResponseType.tp_name = "theframework._core.Response";
  ResponseType.tp_basicsize = sizeof(ResponseObject);
  ResponseType.tp_flags = Py_TPFLAGS_DEFAULT;
  ResponseType.tp_doc = "The response under construction (see _core.pyi).";
  ResponseType.tp_dealloc = response_dealloc;
  ResponseType.tp_getset = response_getset;
  ResponseType.tp_methods = response_methods;
  if (PyType_Ready(&ResponseType) < 0 ||
      PyModule_AddObjectRef(module, "Response", reinterpret_cast<PyObject*>(&ResponseType)) < 0) {
    return -1;
  }
  crlf_bytes = PyBytes_FromString("\r\n");
  last_chunk_bytes = PyBytes_FromString("0\r\n\r\n");
  dumps_keywords = Py_BuildValue("{s:(ss)}", "separators", ",", ":");
  if (!crlf_bytes || !last_chunk_bytes || !dumps_keywords) return -1;
  return 0;
}

}  // namespace tf::py
