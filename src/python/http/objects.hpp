// The Python objects of the HTTP layer (Request and Response structs) and the helpers that
// request.cpp, response.cpp, request_greenlet.cpp and wsgi_environ.cpp share. Internal to
// src/python/http: nothing outside the folder includes it.
#pragma once

#include <Python.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/http/forwarded.hpp"
#include "core/http/http_parser.hpp"
#include "python/http/connection.hpp"

// A METH_FASTCALL / METH_VARARGS | METH_KEYWORDS function as the PyCFunction of a PyMethodDef.
#define TF_METHOD_CAST(function) \
  reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&function))

namespace tf::py {

// theframework._core.Request: the head is kept as bytes (views rebased into head_bytes); the
// Python-level attributes are built on first access.
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
  PyObject* scheme;
  PyObject* host;
  PyObject* url;
  // What a trusted proxy's forwarding headers said (owned; null without such headers).
  http::ForwardedInfo* forwarded;
};

// theframework._core.Response: status, headers and body buffered until the head is sent.
struct ResponseObject {
  PyObject_HEAD Connection* connection;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<PyObject*> body;  // strong references to bytes objects
  size_t body_length;
  size_t head_length;  // bytes of the status line and headers sent (0 before)
  int status;
  uint8_t version_minor;
  bool is_head;
  bool headers_sent;
  bool finished;
  bool chunked;          // streaming with chunked framing
  bool close_delimited;  // streaming to an HTTP/1.0 client: the body ends at close
};

// The text as a str, byte for byte (latin-1). New reference or null with an exception.
inline PyObject* latin1(std::string_view text) {
  return PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
}

// --- request.cpp ---------------------------------------------------------------------------------
// Getters of Request attributes (new reference or null with an exception); cached on the object.
PyObject* request_get_method(PyObject* self, void*);
PyObject* request_get_query_string(PyObject* self, void*);
PyObject* request_get_version(PyObject* self, void*);
// Parses the request's stored head again into `head`, its headers into `storage`.
void parse_stored_head(const RequestObject* request, std::vector<http::Header>& storage,
                       http::RequestHead& head);
// The request's scheme: a trusted proxy's forwarded one, else "http".
std::string_view request_scheme(const RequestObject* request);
// The host[:port] the request addressed: a trusted proxy's forwarded host, else `host_header`
// (else the listening socket's address); a forwarded port replaces the port (omitted when it is
// the scheme's default).
std::string request_host(const RequestObject* request, std::string_view host_header);
// The value of the request's first Host header; empty when there is none.
std::string_view request_host_header(const RequestObject* request);
// Readies the Request type and adds it to the module. 0 or -1 with an exception set.
int init_request_type(PyObject* module);

// --- wsgi_environ.cpp ----------------------------------------------------------------------------
// Request._wsgi_environ(base): a copy of `base` with this request's CGI variables (PEP 3333).
PyObject* request_wsgi_environ(PyObject* self, PyObject* base);

// --- response.cpp --------------------------------------------------------------------------------
// b"0\r\n\r\n", the last chunk of a chunked body (set by init_response_type).
extern PyObject* last_chunk_bytes;
// The connection, or null with RuntimeError when the request is over.
Connection* attached_connection(Connection* connection);
// Drops the buffered body.
void response_clear_body(ResponseObject* response);
// `object` as UTF-8 text into `out`; false with TypeError (naming `what`) when it is not a str.
bool header_text(PyObject* object, const char* what, std::string_view& out);
// Exports `object`'s buffer at the end of `views`; false with an exception.
bool append_view(std::vector<Py_buffer>& views, PyObject* object);
// Sends the head (and, unless streaming, the buffered body). 0 or -1 with an exception.
int send_head(ResponseObject* response, bool streaming);
// Readies the Response type and adds it to the module. 0 or -1 with an exception set.
int init_response_type(PyObject* module);

// --- request_greenlet.cpp ------------------------------------------------------------------------
// Takes the exception being raised: normalized, its traceback attached; null when none was set.
PyRef take_exception() noexcept;
// Whether `error`, escaping a handler or a WebSocket callback, says the client left
// (ConnectionError, BrokenPipeError, WebSocketClosed): not logged as a failure.
bool client_gone_error(PyObject* error) noexcept;

}  // namespace tf::py
