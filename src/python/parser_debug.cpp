// Debug entry points into the HTTP/1.1 parser of src/core, for tests that compare it with other
// parsers (tests/test_parser_differential.py). Not used by the server itself.
//
//   _core._parse_request(data, max_header_size=32768, max_headers=100, max_body_size=1048576,
//                        max_request_line=8192)
//     -> ("error", http_status, reason) | ("incomplete",) |
//        ("complete", method, target, path, query, version_minor, [(name, value), ...],
//         framing, content_length, keep_alive, head_length)
//     Text fields are str decoded as latin-1 (one character per byte); framing is "none",
//     "content_length" or "chunked".
//
//   _core._decode_chunked(data, max_body_size=1048576)
//     -> ("done", body, consumed) | ("need_more", body, consumed) | ("error", http_status, reason)
//     Runs one ChunkedDecoder over `data` in a single feed; body is bytes.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/http_parser.hpp"
#include "python/pyref.hpp"

namespace tf::py {
namespace {

// Releases a Py_buffer filled by PyArg_Parse* with "y*".
class BufferView {
 public:
  BufferView() noexcept = default;
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  ~BufferView() {
    if (buffer_.obj != nullptr) PyBuffer_Release(&buffer_);
  }
  Py_buffer* get() noexcept { return &buffer_; }
  std::string_view view() const noexcept {
    return {static_cast<const char*>(buffer_.buf), static_cast<size_t>(buffer_.len)};
  }

 private:
  Py_buffer buffer_{};
};

PyObject* latin1(std::string_view text) {
  return PyUnicode_DecodeLatin1(text.data(), static_cast<Py_ssize_t>(text.size()), nullptr);
}

const char* framing_name(http::BodyFraming framing) {
  switch (framing) {
    case http::BodyFraming::content_length:
      return "content_length";
    case http::BodyFraming::chunked:
      return "chunked";
    case http::BodyFraming::none:
      break;
  }
  return "none";
}

// Bound on max_headers: the header storage is allocated per call.
constexpr Py_ssize_t kMaxHeaderStorage = 100000;

PyObject* parse_request_debug(PyObject* /*module*/, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"data",          "max_header_size",  "max_headers",
                                   "max_body_size", "max_request_line", nullptr};
  BufferView data;
  Py_ssize_t max_header_size = 32768;
  Py_ssize_t max_headers = 100;
  unsigned long long max_body_size = 1048576;
  Py_ssize_t max_request_line = 8192;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|nnKn:_parse_request",
                                   const_cast<char**>(keywords), data.get(), &max_header_size,
                                   &max_headers, &max_body_size, &max_request_line)) {
    return nullptr;
  }
  if (max_header_size < 0 || max_headers < 0 || max_request_line < 0) {
    PyErr_SetString(PyExc_ValueError, "limits must not be negative");
    return nullptr;
  }
  if (max_headers > kMaxHeaderStorage) {
    PyErr_SetString(PyExc_ValueError, "max_headers is too large");
    return nullptr;
  }
  const http::Limits limits{
      .max_request_line = static_cast<size_t>(max_request_line),
      .max_header_size = static_cast<size_t>(max_header_size),
      .max_headers = static_cast<size_t>(max_headers),
      .max_body_size = max_body_size,
  };
  std::vector<http::Header> storage(static_cast<size_t>(max_headers));
  http::RequestHead head;
  const http::ParseResult result = http::parse_request(data.view(), limits, head, storage);
  switch (result.status) {
    case http::ParseStatus::incomplete:
      return Py_BuildValue("(s)", "incomplete");
    case http::ParseStatus::error:
      return Py_BuildValue("(sis)", "error", result.http_status, result.reason);
    case http::ParseStatus::complete:
      break;
  }

  PyRef headers(PyList_New(static_cast<Py_ssize_t>(head.header_count)));
  if (!headers) return nullptr;
  for (size_t i = 0; i < head.header_count; ++i) {
    PyRef name(latin1(storage[i].name));
    if (!name) return nullptr;
    PyRef value(latin1(storage[i].value));
    if (!value) return nullptr;
    PyObject* pair = PyTuple_Pack(2, name.get(), value.get());
    if (pair == nullptr) return nullptr;
    PyList_SET_ITEM(headers.get(), static_cast<Py_ssize_t>(i), pair);  // steals `pair`
  }
  PyRef method(latin1(head.method));
  PyRef target(latin1(head.target));
  PyRef path(latin1(head.path));
  PyRef query(latin1(head.query));
  if (!method || !target || !path || !query) return nullptr;
  return Py_BuildValue(
      "(sOOOOiOsKOn)", "complete", method.get(), target.get(), path.get(), query.get(),
      static_cast<int>(head.version_minor), headers.get(), framing_name(head.framing),
      static_cast<unsigned long long>(head.content_length), head.keep_alive ? Py_True : Py_False,
      static_cast<Py_ssize_t>(head.head_length));
}

PyObject* decode_chunked_debug(PyObject* /*module*/, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"data", "max_body_size", nullptr};
  BufferView data;
  unsigned long long max_body_size = 1048576;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|K:_decode_chunked",
                                   const_cast<char**>(keywords), data.get(), &max_body_size)) {
    return nullptr;
  }
  http::ChunkedDecoder decoder(max_body_size);
  std::string body;
  const http::ChunkResult result = decoder.feed(data.view(), body);
  if (result.status == http::ChunkStatus::error) {
    return Py_BuildValue("(sis)", "error", result.http_status, result.reason);
  }
  return Py_BuildValue("(sy#n)", result.status == http::ChunkStatus::done ? "done" : "need_more",
                       body.data(), static_cast<Py_ssize_t>(body.size()),
                       static_cast<Py_ssize_t>(result.consumed));
}

PyMethodDef parser_debug_functions[] = {
    {"_parse_request", reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(parse_request_debug)),
     METH_VARARGS | METH_KEYWORDS,
     "_parse_request(data, max_header_size=32768, max_headers=100, max_body_size=1048576, "
     "max_request_line=8192)\n--\n\nParses one request head with the server's parser (debug "
     "aid)."},
    {"_decode_chunked",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void*>(decode_chunked_debug)),
     METH_VARARGS | METH_KEYWORDS,
     "_decode_chunked(data, max_body_size=1048576)\n--\n\nDecodes a chunked body in one feed "
     "(debug aid)."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

// Adds _parse_request and _decode_chunked to `module`. Returns 0, or -1 with an exception set.
int init_parser_debug(PyObject* module) {
  return PyModule_AddFunctions(module, parser_debug_functions);
}

}  // namespace tf::py
