// The request greenlet: runs handler(request, response), answers an exception escaping it
// (logged, then 500 or the HTTPError's status), completes the response and goes on with pipelined
// requests; pooled greenlets park between requests (HttpServer::spawn_request / park_worker).
#include <Python.h>

#include <string>
#include <string_view>
#include <vector>

#include "python/configuration.hpp"
#include "python/greenlet_api.hpp"
#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

PyRef take_exception() noexcept {
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  PyRef owned_type(type), owned_traceback(traceback);
  return PyRef(value);
}

bool client_gone_error(PyObject* error) noexcept {
  PyObject* type = reinterpret_cast<PyObject*>(Py_TYPE(error));
  PyObject* websocket_closed = configuration.websocket_closed.get();
  return PyErr_GivenExceptionMatches(type, PyExc_ConnectionError) ||
         PyErr_GivenExceptionMatches(type, PyExc_BrokenPipeError) ||
         (websocket_closed != nullptr && PyErr_GivenExceptionMatches(type, websocket_closed));
}

namespace {

// Reports an exception escaping the handler: logged (never sent), then answered if still
// possible. Returns false when the connection must close without a (complete) response.
[[gnu::noinline]] bool answer_handler_error(RequestObject* request, ResponseObject* response) {
  PyRef owned_value = take_exception();
  PyObject* value = owned_value.get();
  PyObject* http_error = configuration.http_error.get();
  const bool is_http_error =
      http_error != nullptr && value != nullptr && PyObject_IsInstance(value, http_error) == 1;
  const bool client_gone = value != nullptr && client_gone_error(value);
  if (!is_http_error && !client_gone && value != nullptr) {
    PyRef method(request_get_method(reinterpret_cast<PyObject*>(request), nullptr));
    PyRef target(latin1(request->head.target));
    PyRef arguments;
    if (method && target) {
      arguments = PyRef(
          Py_BuildValue("(sOO)", "Exception in handler for %s %s", method.get(), target.get()));
    }
    log_exception(arguments.get(), value);
  }
  PyErr_Clear();
  if (client_gone || response->connection == nullptr) return false;
  if (response->connection->websocket() != nullptr) return false;  // no HTTP answer any more
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
[[gnu::noinline]] bool finish_response(ResponseObject* response) {
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

[[gnu::noinline]] void detach(RequestObject* request, ResponseObject* response) {
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

// access_log(request, status, bytes_sent, seconds, response); its errors are dropped. Not inlined:
// run_request's frame stays small (see there).
[[gnu::noinline]] void call_access_log(PyObject* access_log, PyObject* request, PyObject* response,
                                       int status, uint64_t bytes, double seconds) {
  PyRef logged(PyObject_CallFunction(access_log, "OiKdO", request, status,
                                     static_cast<unsigned long long>(bytes), seconds, response));
  if (!logged) PyErr_Clear();
}

}  // namespace

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
    // A plain vectorcall: every C frame under the handler stays on the greenlet's stack, and is
    // copied to the heap each time the handler waits (an idle WebSocket keeps that copy).
    PyObject* call_args[] = {request_ref.get(), response_ref.get()};
    PyObject* result = PyObject_Vectorcall(handler, call_args, 2, nullptr);
    bool complete = true;
    bool killed = false;
    if (result == nullptr) {
      if (PyErr_ExceptionMatches(greenlet::api.exit_type)) {
        // Killed (hub stopping or drain deadline): no response, close.
        PyErr_Clear();
        complete = false;
        killed = true;
      } else {
        complete = answer_handler_error(request, response);
      }
    } else {
      Py_DECREF(result);
    }
    if (WebSocketSession* websocket = connection->websocket()) {
      // An upgraded request: no HTTP response; a session still open is closed (1000, or 1011
      // after an exception), unless the greenlet was killed, or the handler called listen() and
      // returned normally (finish_request() then hands the session to the connection).
      response->status = 101;
      response->finished = true;
      if (killed) {
        websocket->abandon_listener();
      } else {
        websocket->finish(result == nullptr);
      }
      complete = true;
    }
    if (complete) complete = finish_response(response);
    const double seconds = (core::monotonic_ns() - connection->request_started_ns()) / 1e9;
    connection->server().stats().record_response(response->status, seconds);
    if (PyObject* access_log = connection->server().access_log()) {
      call_access_log(access_log, request_ref.get(), response_ref.get(), response->status,
                      connection->response_bytes(), seconds);
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

// The body of a pooled request greenlet: runs tasks, parking between them. A task is a tuple:
// (request, response) runs the handler (run_request), (websocket,) the dispatch of a listening
// WebSocket (run_websocket_dispatch). After an exception (killed while parked) it must not touch
// the server: it may be gone.
PyObject* request_worker(PyObject* capsule, PyObject* task) {
  auto* server = static_cast<HttpServer*>(PyCapsule_GetPointer(capsule, "theframework.server"));
  if (server == nullptr) return nullptr;
  PyRef current = PyRef::borrow(task);
  while (true) {
    if (PyTuple_GET_SIZE(current.get()) == 1) {
      run_websocket_dispatch(PyTuple_GET_ITEM(current.get(), 0));
    } else {
      PyRef done(run_request(nullptr, current.get()));
      if (!done) return nullptr;
    }
    if (!server->park_worker()) Py_RETURN_NONE;
    current = PyRef(server->hub().suspend());
    if (!current) return nullptr;
    if (!PyTuple_Check(current.get()) ||
        (PyTuple_GET_SIZE(current.get()) != 2 && PyTuple_GET_SIZE(current.get()) != 1)) {
      PyErr_SetString(PyExc_RuntimeError, "request greenlet resumed without a task");
      return nullptr;
    }
  }
}

PyMethodDef request_worker_def = {"_request_worker", request_worker, METH_O,
                                  "A pooled request greenlet (internal)."};

}  // namespace

int HttpServer::spawn_request(PyObject* request, PyObject* response) {
  PyRef pair(PyTuple_Pack(2, request, response));
  return pair ? spawn_task(pair.get()) : -1;
}

int HttpServer::spawn_websocket(PyObject* websocket) {
  PyRef task(PyTuple_Pack(1, websocket));
  return task ? spawn_task(task.get()) : -1;
}

int HttpServer::spawn_task(PyObject* task) {
  if (!idle_workers_.empty()) {
    PyRef worker(idle_workers_.back());
    idle_workers_.pop_back();
    return hub_->schedule(worker.get(), task);
  }
  if (!worker_function_) {
    PyRef capsule(PyCapsule_New(this, "theframework.server", nullptr));
    if (!capsule) return -1;
    worker_function_ = PyRef(PyCFunction_New(&request_worker_def, capsule.get()));
    if (!worker_function_) return -1;
  }
  PyRef arguments(PyTuple_Pack(1, task));
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

}  // namespace tf::py
