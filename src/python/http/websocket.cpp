// WebSocket sessions over upgraded connections and the theframework._core.WebSocket type (see
// websocket.hpp for the model).
#include "python/http/websocket.hpp"

#include <algorithm>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "core/http/http_response.hpp"
#include "core/websocket/handshake.hpp"
#include "python/configuration.hpp"
#include "python/greenlet_api.hpp"
#include "python/http/objects.hpp"
#include "python/http/server.hpp"

namespace tf::py {

namespace {

// How long close() waits for the peer's answer when ping_timeout is 0.
constexpr double kDefaultCloseTimeout = 10.0;
// Messages shorter than this go uncompressed even when permessage-deflate was negotiated: the
// deflate framing would make them longer, or barely shorter, for the CPU it costs.
constexpr size_t kCompressFrom = 64;

void set_websocket_closed(uint16_t code, std::string_view reason) {
  PyObject* type = configuration.websocket_closed.get();
  if (type == nullptr) {
    PyErr_Format(PyExc_ConnectionError, "WebSocket closed (%d)", int(code));
    return;
  }
  PyRef text(
      PyUnicode_DecodeUTF8(reason.data(), static_cast<Py_ssize_t>(reason.size()), "replace"));
  if (!text) return;
  PyRef error(PyObject_CallFunction(type, "iO", int(code), text.get()));
  if (error) PyErr_SetObject(type, error.get());
}

void raise_http_error(int status, const char* message, bool version_header) {
  PyObject* http_error = configuration.http_error.get();
  if (http_error == nullptr) {
    PyErr_Format(PyExc_RuntimeError, "HTTP %d: %s", status, message);
    return;
  }
  PyRef headers(version_header ? Py_BuildValue("[(ss)]", "Sec-WebSocket-Version", "13")
                               : PyList_New(0));
  if (!headers) return;
  PyRef error(PyObject_CallFunction(http_error, "isO", status, message, headers.get()));
  if (error) PyErr_SetObject(http_error, error.get());
}

// Logs the exception being raised by a WebSocket callback the way a handler's is logged (with
// its traceback; `format` % callback as the message), unless it says the client left; clears it.
void log_callback_error(const char* format, PyObject* callback) noexcept {
  PyRef error = take_exception();
  if (error && !client_gone_error(error.get())) {
    PyRef arguments(Py_BuildValue("(sO)", format, callback));
    log_exception(arguments.get(), error.get());
  }
  PyErr_Clear();
}

double seconds_until(int64_t deadline_ns, int64_t now_ns) {
  return std::max<double>(0, static_cast<double>(deadline_ns - now_ns) / 1e9);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// WebSocketSession

WebSocketSession::WebSocketSession(Connection& connection, const WebSocketOptions& options,
                                   const ws::DeflateParameters* deflate)
    : connection_(connection),
      options_(options),
      reader_(options.max_message_size),
      last_activity_ns_(core::monotonic_ns()) {
  if (deflate != nullptr) {
    deflate_ = std::make_unique<ws::DeflateSession>(*deflate, ws::DeflatePolicy{});
    reader_.allow_compression(true);
  }
}

PyObject* WebSocketSession::message_object(bool text) {
  std::string* message = &reader_.message();
  if (reader_.compressed()) {
    ws::InflateStatus status = deflate_->decompress(*message, options_.max_message_size, inflated_);
    if (status != ws::InflateStatus::ok) {
      const uint16_t code =
          status == ws::InflateStatus::too_big ? ws::kCloseTooBig : ws::kCloseInvalidData;
      const char* reason = status == ws::InflateStatus::too_big ? "message larger than the limit"
                                                                : "invalid compressed data";
      if (send_close(code, reason) < 0) PyErr_Clear();
      return closed_error(code, reason);
    }
    message = &inflated_;
    if (text && !ws::is_valid_utf8(*message)) {
      if (send_close(ws::kCloseInvalidData, "text message is not valid UTF-8") < 0) PyErr_Clear();
      return closed_error(ws::kCloseInvalidData, "text message is not valid UTF-8");
    }
  }
  PyObject* result =
      text
          ? PyUnicode_DecodeUTF8(message->data(), static_cast<Py_ssize_t>(message->size()), nullptr)
          : PyBytes_FromStringAndSize(message->data(), static_cast<Py_ssize_t>(message->size()));
  // The Python object holds a copy: an idle WebSocket keeps no decompression buffer.
  if (message == &inflated_) std::string().swap(inflated_);
  return result;
}

PyObject* WebSocketSession::raise_closed() {
  set_websocket_closed(close_code_ == 0 ? ws::kCloseAbnormal : close_code_, close_reason_);
  return nullptr;
}

void WebSocketSession::mark_closed(uint16_t code, std::string_view reason) noexcept {
  if (closed_) return;
  closed_ = true;
  if (close_code_ == 0) {
    close_code_ = code;
    close_reason_.assign(reason);
  }
  connection_.server().websocket_closed(close_code_);
}

PyObject* WebSocketSession::closed_error(uint16_t code, std::string_view reason) {
  mark_closed(code, reason);
  return raise_closed();
}

int WebSocketSession::acquire_send_lock() {
  Hub& hub = connection_.server().hub();
  while (sending_) {
    const uint64_t token = hub.prepare_event();
    send_waiters_.push_back(token);
    if (hub.wait_event(token, -1) < 0) {
      auto found = std::find(send_waiters_.begin(), send_waiters_.end(), token);
      if (found != send_waiters_.end()) {
        send_waiters_.erase(found);
      } else if (!sending_ && !send_waiters_.empty()) {
        // We were handed the lock but leave: hand it on.
        uint64_t next = send_waiters_.front();
        send_waiters_.erase(send_waiters_.begin());
        hub.complete_event(next, 0);
      }
      return -1;
    }
  }
  sending_ = true;
  return 0;
}

void WebSocketSession::release_send_lock() noexcept {
  sending_ = false;
  if (send_waiters_.empty()) return;
  uint64_t next = send_waiters_.front();
  send_waiters_.erase(send_waiters_.begin());
  connection_.server().hub().complete_event(next, 0);
}

int WebSocketSession::send_views(std::vector<Py_buffer>& views, bool is_close) {
  if (closed_ || (close_sent_ && !is_close)) {
    for (Py_buffer& view : views) PyBuffer_Release(&view);
    views.clear();
    raise_closed();
    return -1;
  }
  if (acquire_send_lock() < 0) {
    for (Py_buffer& view : views) PyBuffer_Release(&view);
    views.clear();
    return -1;
  }
  // The wait for the lock may have outlived the session, or the socket (whose descriptor
  // number may already belong to another connection).
  if (closed_ || (close_sent_ && !is_close) || !connection_.open()) {
    release_send_lock();
    for (Py_buffer& view : views) PyBuffer_Release(&view);
    views.clear();
    if (!connection_.open()) mark_closed(ws::kCloseAbnormal, "");
    raise_closed();
    return -1;
  }
  if (is_close) close_sent_ = true;
  const int status = connection_.send_views(views);
  release_send_lock();
  if (status < 0 && !closed_) {
    mark_closed(ws::kCloseAbnormal, "");
    wake();  // a listening session reports its end
  }
  return status;
}

int WebSocketSession::send_frame_bytes(PyObject* frame, bool is_close) {
  std::vector<Py_buffer> views;
  if (!append_view(views, frame)) return -1;
  return send_views(views, is_close);
}

int WebSocketSession::append_compressed(std::vector<Py_buffer>& views, ws::Opcode opcode,
                                        std::string_view payload) {
  std::string compressed;
  if (!deflate_->compress(payload, compressed)) {
    PyErr_NoMemory();
    return -1;
  }
  std::string frame;
  frame.reserve(compressed.size() + ws::kMaxHeaderSize);
  ws::append_frame(frame, opcode, compressed, true, true);
  PyRef bytes(PyBytes_FromStringAndSize(frame.data(), static_cast<Py_ssize_t>(frame.size())));
  return bytes && append_view(views, bytes.get()) ? 0 : -1;
}

int WebSocketSession::append_message(std::vector<Py_buffer>& views, PyObject* message) {
  std::string header;
  if (PyUnicode_Check(message)) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(message, &size);
    if (text == nullptr) return -1;
    const std::string_view payload(text, static_cast<size_t>(size));
    if (deflate_ && payload.size() >= kCompressFrom) {
      return append_compressed(views, ws::Opcode::text, payload);
    }
    ws::append_frame(header, ws::Opcode::text, payload);
    PyRef frame(PyBytes_FromStringAndSize(header.data(), static_cast<Py_ssize_t>(header.size())));
    return frame && append_view(views, frame.get()) ? 0 : -1;
  }
  if (!PyObject_CheckBuffer(message)) {
    PyErr_Format(PyExc_TypeError, "a WebSocket message is str or bytes-like, not %.100s",
                 Py_TYPE(message)->tp_name);
    return -1;
  }
  Py_buffer payload;
  if (PyObject_GetBuffer(message, &payload, PyBUF_SIMPLE) < 0) return -1;
  if (deflate_ && static_cast<size_t>(payload.len) >= kCompressFrom) {
    int status = append_compressed(
        views, ws::Opcode::binary,
        std::string_view(static_cast<const char*>(payload.buf), static_cast<size_t>(payload.len)));
    PyBuffer_Release(&payload);
    return status;
  }
  ws::append_frame_header(header, ws::Opcode::binary, static_cast<uint64_t>(payload.len));
  PyRef frame(PyBytes_FromStringAndSize(header.data(), static_cast<Py_ssize_t>(header.size())));
  if (!frame || !append_view(views, frame.get())) {
    PyBuffer_Release(&payload);
    return -1;
  }
  views.push_back(payload);  // the slot releases it after the send
  return 0;
}

int WebSocketSession::send(PyObject* message) {
  std::vector<Py_buffer> views;
  if (append_message(views, message) < 0) {
    for (Py_buffer& view : views) PyBuffer_Release(&view);
    return -1;
  }
  if (send_views(views, false) < 0) return -1;
  connection_.server().stats().websocket_messages_out += 1;
  return 0;
}

int WebSocketSession::send_many(PyObject* messages) {
  PyRef sequence(PySequence_Fast(messages, "send_many() takes an iterable of messages"));
  if (!sequence) return -1;
  const Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence.get());
  std::vector<Py_buffer> views;
  for (Py_ssize_t i = 0; i < count; ++i) {
    if (append_message(views, PySequence_Fast_GET_ITEM(sequence.get(), i)) < 0) {
      for (Py_buffer& view : views) PyBuffer_Release(&view);
      return -1;
    }
  }
  if (views.empty()) return 0;
  if (send_views(views, false) < 0) return -1;
  connection_.server().stats().websocket_messages_out += static_cast<uint64_t>(count);
  return 0;
}

int WebSocketSession::send_frame(PyObject* frame) {
  if (send_frame_bytes(frame, false) < 0) return -1;
  connection_.server().stats().websocket_messages_out += 1;
  return 0;
}

int WebSocketSession::send_control(ws::Opcode opcode, std::string_view payload) {
  std::string frame;
  ws::append_frame(frame, opcode, payload);
  PyRef bytes(PyBytes_FromStringAndSize(frame.data(), static_cast<Py_ssize_t>(frame.size())));
  if (!bytes) return -1;
  return send_frame_bytes(bytes.get(), opcode == ws::Opcode::close);
}

int WebSocketSession::send_close(uint16_t code, std::string_view reason) {
  if (close_sent_ || closed_) return 0;
  std::string payload;
  if (code != ws::kCloseNoStatus) ws::append_close_payload(payload, code, reason);
  if (close_code_ == 0) {
    close_code_ = code;
    close_reason_.assign(reason);
  }
  return send_control(ws::Opcode::close, payload);
}

int WebSocketSession::wait_input(int64_t deadline_ns) {
  const int64_t now = core::monotonic_ns();
  int64_t wake = deadline_ns;
  if (options_.ping_interval > 0 && !close_sent_) {
    const int64_t ping_due =
        awaiting_pong_ ? pong_deadline_ns_
                       : last_activity_ns_ + static_cast<int64_t>(options_.ping_interval * 1e9);
    if (wake < 0 || ping_due < wake) wake = ping_due;
  }
  if (connection_.wait_input(wake < 0 ? -1 : seconds_until(wake, now)) == 0) return 0;
  if (!PyErr_ExceptionMatches(PyExc_TimeoutError)) return -1;
  const int64_t after = core::monotonic_ns();
  if (deadline_ns >= 0 && after >= deadline_ns) return -1;  // the caller's timeout
  PyErr_Clear();
  if (options_.ping_interval <= 0 || close_sent_) return 0;
  if (awaiting_pong_) {
    if (after >= pong_deadline_ns_) return 1;  // the peer did not answer our ping in time
    return 0;
  }
  if (after >= last_activity_ns_ + static_cast<int64_t>(options_.ping_interval * 1e9)) {
    if (send_control(ws::Opcode::ping, "") < 0) return -1;
    awaiting_pong_ = true;
    pong_deadline_ns_ = after + static_cast<int64_t>(options_.ping_timeout * 1e9);
  }
  return 0;
}

ws::ReadEvent WebSocketSession::read_event() noexcept {
  if (pending_.kind != ws::ReadKind::need_more) {
    const ws::ReadEvent event = pending_;
    pending_ = {};
    return event;
  }
  ws::ReadEvent event = reader_.feed(connection_.buffered());
  if (event.consumed > 0) {
    queue_scan_ = {};
    connection_.consume(event.consumed);
    last_activity_ns_ = core::monotonic_ns();
    connection_.resume_receive();
  }
  return event;
}

PyObject* WebSocketSession::next_event(int64_t deadline_ns, bool discard_messages, bool wait) {
  while (true) {
    if (closed_) return raise_closed();
    if (going_away_ && !close_sent_) {
      if (send_close(ws::kCloseGoingAway, "server shutting down") < 0) PyErr_Clear();
      if (closed_) return raise_closed();
      const int64_t close_deadline = deadline_in(close_timeout());
      if (!wait) {
        close_deadline_ns_ = close_deadline;  // the connection timer enforces it
      } else if (deadline_ns < 0 || close_deadline < deadline_ns) {
        deadline_ns = close_deadline;
      }
      discard_messages = true;
    }
    ws::ReadEvent event = read_event();
    switch (event.kind) {
      case ws::ReadKind::text:
      case ws::ReadKind::binary: {
        connection_.server().stats().websocket_messages_in += 1;
        if (discard_messages) continue;
        return message_object(event.kind == ws::ReadKind::text);
      }
      case ws::ReadKind::ping:
        if (!close_sent_ && send_control(ws::Opcode::pong, reader_.control()) < 0) {
          if (!closed_) return nullptr;  // thrown into the greenlet
          PyErr_Clear();                 // the connection failed: the session is over
          return raise_closed();
        }
        continue;
      case ws::ReadKind::pong:
        awaiting_pong_ = false;
        continue;
      case ws::ReadKind::close: {
        const ws::CloseFrame& frame = reader_.close_frame();
        const uint16_t code = frame.code;
        const std::string reason(frame.reason);
        if (!close_sent_) {
          // Echo the peer's code (RFC 6455 §5.5.1); an empty close is answered empty.
          if (send_close(code == ws::kCloseNoStatus ? ws::kCloseNoStatus : code, reason) < 0) {
            PyErr_Clear();
          }
          close_code_ = code;
          close_reason_ = reason;
        }
        return closed_error(code, reason);
      }
      case ws::ReadKind::error:
        if (send_close(event.close_code, event.reason) < 0) PyErr_Clear();
        return closed_error(event.close_code, event.reason);
      case ws::ReadKind::need_more:
        break;
    }
    if (connection_.input_ended()) return closed_error(ws::kCloseAbnormal, "connection lost");
    if (!wait) return nullptr;
    const int waited = wait_input(deadline_ns);
    if (waited < 0) {
      if (closed_ || connection_.input_ended() || !connection_.open()) {
        PyErr_Clear();
        return closed_error(ws::kCloseAbnormal, "connection lost");
      }
      return nullptr;
    }
    if (waited == 1) {
      if (send_close(ws::kCloseInternalError, "keepalive ping timeout") < 0) PyErr_Clear();
      return closed_error(ws::kCloseInternalError, "keepalive ping timeout");
    }
  }
}

PyObject* WebSocketSession::receive(double timeout) {
  if (listen_state_ != ListenState::none) {
    PyErr_SetString(PyExc_RuntimeError,
                    "receive() after listen(): this WebSocket's messages go to on_message");
    return nullptr;
  }
  if (closed_) return raise_closed();
  if (receiving_) {
    PyErr_SetString(PyExc_RuntimeError, "another greenlet is already receiving on this WebSocket");
    return nullptr;
  }
  receiving_ = true;
  const int64_t deadline = timeout < 0 ? -1 : deadline_in(timeout);
  // After our close frame, only the peer's close is awaited (bounded): messages are dropped.
  PyObject* result =
      close_sent_ ? next_event(deadline_in(close_timeout()), true) : next_event(deadline, false);
  receiving_ = false;
  if (result == nullptr && close_sent_ && !closed_ && PyErr_ExceptionMatches(PyExc_TimeoutError)) {
    PyErr_Clear();
    return closed_error(close_code_, close_reason_);
  }
  return result;
}

double WebSocketSession::close_timeout() const noexcept {
  return options_.ping_timeout > 0 ? options_.ping_timeout : kDefaultCloseTimeout;
}

int WebSocketSession::close(uint16_t code, std::string_view reason) {
  if (closed_) return 0;
  if (!close_sent_ && send_close(code, reason) < 0) {
    if (closed_) {
      PyErr_Clear();
      return 0;
    }
    return -1;
  }
  if (listen_state_ == ListenState::requested || listen_state_ == ListenState::active) {
    // Listening: the dispatch reads the answer; the connection timer bounds the wait.
    if (close_deadline_ns_ == 0) close_deadline_ns_ = deadline_in(close_timeout());
    wake();
    return 0;
  }
  if (receiving_ || closed_) return 0;  // the receiving greenlet reads the answer
  receiving_ = true;
  PyObject* result = next_event(deadline_in(close_timeout()), true);
  receiving_ = false;
  if (result != nullptr) {
    Py_DECREF(result);
    return 0;
  }
  const PyObject* websocket_closed = configuration.websocket_closed.get();
  if ((websocket_closed != nullptr &&
       PyErr_ExceptionMatches(const_cast<PyObject*>(websocket_closed))) ||
      PyErr_ExceptionMatches(PyExc_TimeoutError)) {
    PyErr_Clear();
    mark_closed(close_code_, close_reason_);
    return 0;
  }
  return -1;
}

void WebSocketSession::finish(bool failed) noexcept {
  if (listen_state_ == ListenState::requested && !failed) return;  // start_listening() follows
  if (!closed_ && !close_sent_ && connection_.open()) {
    if (send_close(failed ? ws::kCloseInternalError : ws::kCloseNormal, "") < 0) PyErr_Clear();
  }
  mark_closed(ws::kCloseAbnormal, "");
  if (listen_state_ == ListenState::requested) close_listener();
}

void WebSocketSession::abandon_listener() noexcept {
  listen_state_ = ListenState::ended;
  drop_listener();
}

// ---------------------------------------------------------------------------------------------
// Listening

int WebSocketSession::listen(PyObject* self, PyObject* on_message, PyObject* on_close) {
  if (listen_state_ != ListenState::none) {
    PyErr_SetString(PyExc_RuntimeError, "listen() was already called on this WebSocket");
    return -1;
  }
  if (!connection_.handling()) {
    PyErr_SetString(PyExc_RuntimeError,
                    "listen() is called by the request's handler, before it returns");
    return -1;
  }
  if (receiving_) {
    PyErr_SetString(PyExc_RuntimeError, "another greenlet is receiving on this WebSocket");
    return -1;
  }
  if (closed_) {
    raise_closed();
    return -1;
  }
  listener_ = Py_NewRef(self);
  on_message_ = Py_NewRef(on_message);
  on_close_ = Py_XNewRef(on_close);
  listen_state_ = ListenState::requested;
  return 0;
}

void WebSocketSession::start_listening() noexcept {
  listen_state_ = ListenState::active;
  if (close_sent_ && close_deadline_ns_ == 0) close_deadline_ns_ = deadline_in(close_timeout());
  wake();
}

int64_t WebSocketSession::next_deadline_ns() const noexcept {
  if (close_sent_) return close_deadline_ns_ > 0 ? close_deadline_ns_ : -1;
  if (options_.ping_interval <= 0) return -1;
  if (awaiting_pong_) return pong_deadline_ns_;
  return last_activity_ns_ + static_cast<int64_t>(options_.ping_interval * 1e9);
}

void WebSocketSession::arm_timer() noexcept {
  const int64_t deadline = next_deadline_ns();
  if (deadline < 0) {
    if (timer_at_ns_ != 0) connection_.wake_at(-1);
    timer_at_ns_ = 0;
    return;
  }
  // A timer that fires no later is kept: when it fires early, wake() looks and arms again (the
  // ping deadline moves with every byte received, the timer need not follow each move).
  if (timer_at_ns_ != 0 && timer_at_ns_ <= deadline) return;
  connection_.wake_at(deadline);
  timer_at_ns_ = deadline;
}

void WebSocketSession::wake() noexcept {
  if (listen_state_ != ListenState::active || dispatching_) return;
  if (closed_ || (going_away_ && !close_sent_) || pending_.kind != ws::ReadKind::need_more) {
    schedule_dispatch();
    return;
  }
  while (true) {
    const ws::ReadEvent event = read_event();
    if (event.kind == ws::ReadKind::pong) {
      awaiting_pong_ = false;
      continue;
    }
    if (event.kind != ws::ReadKind::need_more) {
      pending_ = event;  // the reader keeps the message or control payload until the next feed
      schedule_dispatch();
      return;
    }
    break;
  }
  const int64_t deadline = next_deadline_ns();
  if (connection_.input_ended() || (deadline >= 0 && core::monotonic_ns() >= deadline)) {
    schedule_dispatch();
    return;
  }
  // Idle: nothing but the reader's state is kept; buffers go until bytes arrive.
  connection_.release_input();
  if (!reader_.in_message()) std::string().swap(reader_.message());
  arm_timer();
}

bool WebSocketSession::service_deadline() {
  const int64_t deadline = next_deadline_ns();
  const int64_t now = core::monotonic_ns();
  if (deadline < 0 || now < deadline) return false;
  if (close_sent_) {
    mark_closed(close_code_, close_reason_);  // the peer did not answer our close in time
  } else if (awaiting_pong_) {
    if (send_close(ws::kCloseInternalError, "keepalive ping timeout") < 0) PyErr_Clear();
    mark_closed(ws::kCloseInternalError, "keepalive ping timeout");
  } else {
    if (send_control(ws::Opcode::ping, "") < 0) PyErr_Clear();  // a failed send closed it
    awaiting_pong_ = true;
    pong_deadline_ns_ = now + static_cast<int64_t>(options_.ping_timeout * 1e9);
  }
  return true;
}

void WebSocketSession::schedule_dispatch() noexcept {
  dispatching_ = true;
  if (connection_.server().spawn_websocket(listener_) == 0) return;
  // No greenlet to run it (out of memory): the session ends without its callbacks.
  PyErr_Clear();
  dispatching_ = false;
  listen_state_ = ListenState::ended;
  mark_closed(ws::kCloseAbnormal, "");
  connection_.retain();
  connection_.close_now();
  drop_listener();
  connection_.release();
}

bool WebSocketSession::deliver(PyObject* message) {
  PyObject* arguments[] = {listener_, message};
  PyRef result(PyObject_Vectorcall(on_message_, arguments, 2, nullptr));
  if (result) return true;
  if (PyErr_ExceptionMatches(greenlet::api.exit_type)) return false;  // killed
  log_callback_error("Exception in WebSocket on_message callback %r", on_message_);
  fail(ws::kCloseInternalError);
  return true;
}

void WebSocketSession::fail(uint16_t code) noexcept {
  if (!closed_ && !close_sent_ && connection_.open() && send_close(code, "") < 0) PyErr_Clear();
  mark_closed(code, "");
}

void WebSocketSession::dispatch() noexcept {
  while (listen_state_ == ListenState::active && !closed_) {
    PyObject* message = next_event(-1, close_sent_, false);
    if (message != nullptr) {
      const bool delivered = deliver(message);
      Py_DECREF(message);
      if (!delivered) return abandon_dispatch();
      continue;
    }
    if (!PyErr_Occurred()) {
      if (service_deadline()) continue;
      // Nothing left: the greenlet goes back to the pool, and wake() keeps the idle connection
      // (no switch happened since the last look at the input, so nothing arrived unseen).
      dispatching_ = false;
      wake();
      return;
    }
    if (PyErr_ExceptionMatches(greenlet::api.exit_type)) return abandon_dispatch();
    if (PyErr_ExceptionMatches(configuration.websocket_closed.get())) {
      PyErr_Clear();  // closed_ is set
    } else {
      log_callback_error("Exception in the WebSocket dispatch of %r", on_message_);
      fail(ws::kCloseInternalError);
    }
  }
  dispatching_ = false;
  if (listen_state_ == ListenState::active) end_listening();
}

void WebSocketSession::abandon_dispatch() noexcept {
  PyErr_Clear();
  mark_closed(ws::kCloseAbnormal, "");
  listen_state_ = ListenState::ended;
  dispatching_ = false;
  connection_.retain();  // dropping the WebSocket object may release the connection
  connection_.end_websocket();
  drop_listener();
  connection_.release();
}

void WebSocketSession::close_listener() noexcept {
  listen_state_ = ListenState::ended;
  if (on_close_ != nullptr && listener_ != nullptr) {
    PyRef code(PyLong_FromLong(close_code_ == 0 ? ws::kCloseAbnormal : close_code_));
    PyRef reason(PyUnicode_DecodeUTF8(close_reason_.data(),
                                      static_cast<Py_ssize_t>(close_reason_.size()), "replace"));
    PyObject* arguments[] = {listener_, code.get(), reason.get()};
    PyRef result(code && reason ? PyObject_Vectorcall(on_close_, arguments, 3, nullptr) : nullptr);
    if (!result) log_callback_error("Exception in WebSocket on_close callback %r", on_close_);
  }
  drop_listener();
}

void WebSocketSession::end_listening() noexcept {
  listen_state_ = ListenState::ended;
  connection_.retain();         // dropping the WebSocket object may release the connection
  connection_.end_websocket();  // the client sees the end before on_close runs
  close_listener();
  connection_.release();
}

void WebSocketSession::drop_listener() noexcept {
  PyObject* listener = listener_;
  PyObject* on_message = on_message_;
  PyObject* on_close = on_close_;
  listener_ = on_message_ = on_close_ = nullptr;
  Py_XDECREF(on_message);
  Py_XDECREF(on_close);
  Py_XDECREF(listener);
}

// ---------------------------------------------------------------------------------------------
// The Python type

namespace {

struct WebSocketObject {
  PyObject_HEAD Connection* connection;  // retained
  PyObject* subprotocol;                 // str or None
};

PyTypeObject WebSocketType = {PyVarObject_HEAD_INIT(nullptr, 0)};

WebSocketSession& session_of(PyObject* self) {
  return *reinterpret_cast<WebSocketObject*>(self)->connection->websocket();
}

void websocket_dealloc(PyObject* self) {
  auto* object = reinterpret_cast<WebSocketObject*>(self);
  Py_XDECREF(object->subprotocol);
  if (object->connection != nullptr) object->connection->release();
  Py_TYPE(self)->tp_free(self);
}

PyObject* websocket_receive(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"timeout", nullptr};
  PyObject* timeout_object = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O", const_cast<char**>(keywords),
                                   &timeout_object)) {
    return nullptr;
  }
  double timeout = timeout_from_object(timeout_object);
  if (timeout == -2) return nullptr;
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  return session_of(self).receive(timeout);
}

PyObject* websocket_send(PyObject* self, PyObject* message) {
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  if (session_of(self).send(message) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* websocket_send_many(PyObject* self, PyObject* messages) {
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  if (session_of(self).send_many(messages) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* websocket_send_frame(PyObject* self, PyObject* frame) {
  if (!PyBytes_Check(frame)) {
    PyErr_SetString(PyExc_TypeError, "_send_frame() takes bytes made by encode_frame()");
    return nullptr;
  }
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  if (session_of(self).send_frame(frame) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* websocket_ping(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs > 1) {
    PyErr_SetString(PyExc_TypeError, "ping() takes at most one argument");
    return nullptr;
  }
  Py_buffer payload{};
  if (nargs == 1 && PyObject_GetBuffer(args[0], &payload, PyBUF_SIMPLE) < 0) return nullptr;
  std::string data(nargs == 1 ? static_cast<const char*>(payload.buf) : "",
                   nargs == 1 ? static_cast<size_t>(payload.len) : 0);
  if (nargs == 1) PyBuffer_Release(&payload);
  if (data.size() > ws::kMaxControlPayload) {
    PyErr_SetString(PyExc_ValueError, "a ping payload is at most 125 bytes");
    return nullptr;
  }
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  if (session_of(self).send_control(ws::Opcode::ping, data) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* websocket_close(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"code", "reason", nullptr};
  int code = ws::kCloseNormal;
  PyObject* reason_object = nullptr;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|iU", const_cast<char**>(keywords), &code,
                                   &reason_object)) {
    return nullptr;
  }
  const char* reason = "";
  Py_ssize_t reason_size = 0;
  if (reason_object != nullptr) {
    reason = PyUnicode_AsUTF8AndSize(reason_object, &reason_size);
    if (reason == nullptr) return nullptr;
  }
  if (code < 0 || code > 65535 || !ws::is_valid_close_code(static_cast<uint16_t>(code))) {
    PyErr_Format(PyExc_ValueError,
                 "close code %d may not be sent (1000-1003, 1007-1014 or 3000-4999)", code);
    return nullptr;
  }
  if (reason_size > 123) {
    PyErr_SetString(PyExc_ValueError, "a close reason is at most 123 bytes of UTF-8");
    return nullptr;
  }
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  if (session_of(self).close(static_cast<uint16_t>(code),
                             std::string_view(reason, static_cast<size_t>(reason_size))) < 0) {
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* websocket_listen(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"on_message", "on_close", nullptr};
  PyObject* on_message = nullptr;
  PyObject* on_close = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O", const_cast<char**>(keywords), &on_message,
                                   &on_close)) {
    return nullptr;
  }
  if (!PyCallable_Check(on_message) || (on_close != Py_None && !PyCallable_Check(on_close))) {
    PyErr_SetString(PyExc_TypeError, "listen() takes callables (on_close may be None)");
    return nullptr;
  }
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  if (session_of(self).listen(self, on_message, on_close == Py_None ? nullptr : on_close) < 0) {
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* websocket_iter(PyObject* self) {
  return Py_NewRef(self);
}

// Iteration ends (StopIteration) when the WebSocket closes, whatever the code; close_code says why.
PyObject* websocket_next(PyObject* self) {
  if (Hub::for_blocking_call() == nullptr) return nullptr;
  PyRef keep = PyRef::borrow(self);
  PyObject* message = session_of(self).receive(-1);
  if (message == nullptr) {
    PyObject* websocket_closed = configuration.websocket_closed.get();
    if (websocket_closed != nullptr && PyErr_ExceptionMatches(websocket_closed)) PyErr_Clear();
  }
  return message;
}

PyObject* websocket_get_subprotocol(PyObject* self, void*) {
  return Py_NewRef(reinterpret_cast<WebSocketObject*>(self)->subprotocol);
}

PyObject* websocket_get_closed(PyObject* self, void*) {
  return PyBool_FromLong(session_of(self).closed());
}

PyObject* websocket_get_close_code(PyObject* self, void*) {
  const WebSocketSession& session = session_of(self);
  if (session.close_code() == 0) Py_RETURN_NONE;
  return PyLong_FromLong(session.close_code());
}

PyObject* websocket_get_close_reason(PyObject* self, void*) {
  const std::string& reason = session_of(self).close_reason();
  return PyUnicode_DecodeUTF8(reason.data(), static_cast<Py_ssize_t>(reason.size()), "replace");
}

PyMethodDef websocket_methods[] = {
    {"receive", TF_METHOD_CAST(websocket_receive), METH_VARARGS | METH_KEYWORDS,
     "The next message: str (text) or bytes (binary); WebSocketClosed once closed."},
    {"send", websocket_send, METH_O, "Sends str as a text message, bytes-like as binary."},
    {"send_many", websocket_send_many, METH_O, "Sends several messages in one write."},
    {"_send_frame", websocket_send_frame, METH_O, "Sends a frame made by encode_frame()."},
    {"ping", TF_METHOD_CAST(websocket_ping), METH_FASTCALL, "Sends a ping (payload <= 125 bytes)."},
    {"close", TF_METHOD_CAST(websocket_close), METH_VARARGS | METH_KEYWORDS,
     "Closes with code and reason and waits (bounded) for the peer's close."},
    {"listen", TF_METHOD_CAST(websocket_listen), METH_VARARGS | METH_KEYWORDS,
     "listen(on_message, on_close=None): messages go to on_message(ws, message) with no greenlet "
     "held while idle; on_close(ws, code, reason) once at the end. The handler then returns."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef websocket_getset[] = {
    {"subprotocol", websocket_get_subprotocol, nullptr, "the negotiated subprotocol or None",
     nullptr},
    {"closed", websocket_get_closed, nullptr, "whether the close handshake started or ended",
     nullptr},
    {"close_code", websocket_get_close_code, nullptr, "the close code, None while open", nullptr},
    {"close_reason", websocket_get_close_reason, nullptr, "the close reason", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

// encode_frame(message) -> bytes: one unfragmented server frame (text for str, binary otherwise).
PyObject* encode_frame(PyObject*, PyObject* message) {
  std::string frame;
  if (PyUnicode_Check(message)) {
    Py_ssize_t size = 0;
    const char* text = PyUnicode_AsUTF8AndSize(message, &size);
    if (text == nullptr) return nullptr;
    ws::append_frame(frame, ws::Opcode::text, std::string_view(text, static_cast<size_t>(size)));
  } else {
    Py_buffer payload;
    if (PyObject_GetBuffer(message, &payload, PyBUF_SIMPLE) < 0) return nullptr;
    ws::append_frame(
        frame, ws::Opcode::binary,
        std::string_view(static_cast<const char*>(payload.buf), static_cast<size_t>(payload.len)));
    PyBuffer_Release(&payload);
  }
  return PyBytes_FromStringAndSize(frame.data(), static_cast<Py_ssize_t>(frame.size()));
}

PyMethodDef module_functions[] = {
    {"encode_frame", encode_frame, METH_O, "One WebSocket frame for a message (Group broadcasts)."},
    {nullptr, nullptr, 0, nullptr},
};

// Whether the request may open a WebSocket by its Origin header (the first one; absent: None):
// `origins` None lets everyone in; a sequence of str admits an Origin equal to one of them
// (ASCII case-insensitive) and a request without Origin (not a browser page: browsers always send
// it); a callable is called with the Origin (str or None) and admits on a true result. 1 admitted,
// 0 refused, -1 with an exception (a bad `origins` or the callable raised).
int origin_allowed(std::span<const http::Header> headers, PyObject* origins) {
  if (origins == nullptr || origins == Py_None) return 1;
  const http::Header* origin = nullptr;
  for (const http::Header& header : headers) {
    if (http::iequals(header.name, "origin")) {
      origin = &header;
      break;
    }
  }
  if (PyCallable_Check(origins)) {
    PyRef value(origin == nullptr ? Py_NewRef(Py_None)
                                  : PyUnicode_DecodeLatin1(
                                        origin->value.data(),
                                        static_cast<Py_ssize_t>(origin->value.size()), nullptr));
    if (!value) return -1;
    PyRef verdict(PyObject_CallOneArg(origins, value.get()));
    if (!verdict) return -1;
    return PyObject_IsTrue(verdict.get());
  }
  if (PyUnicode_Check(origins)) {
    PyErr_SetString(PyExc_TypeError, "origins must be a sequence of str or a callable, not a str");
    return -1;
  }
  PyRef sequence(PySequence_Fast(origins, "origins must be a sequence of str or a callable"));
  if (!sequence) return -1;
  if (origin == nullptr) return 1;
  for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence.get()); ++i) {
    PyObject* item = PySequence_Fast_GET_ITEM(sequence.get(), i);
    Py_ssize_t size = 0;
    const char* text = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &size) : nullptr;
    if (text == nullptr) {
      if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "origins must be str");
      return -1;
    }
    if (http::iequals(origin->value, std::string_view(text, static_cast<size_t>(size)))) return 1;
  }
  return 0;
}

}  // namespace

void run_websocket_dispatch(PyObject* websocket) {
  PyRef keep = PyRef::borrow(websocket);
  session_of(websocket).dispatch();
}

PyObject* websocket_accept(Connection* connection, std::string_view head_bytes,
                           PyObject* subprotocols, PyObject* origins) {
  if (connection->websocket() != nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "this request was already upgraded to a WebSocket");
    return nullptr;
  }
  if (connection->response_bytes() > 0) {
    PyErr_SetString(PyExc_RuntimeError, "the response was already started");
    return nullptr;
  }
  std::vector<http::Header> storage(4096 + 1);
  http::RequestHead head;
  http::Limits generous;
  generous.max_request_line = SIZE_MAX;
  generous.max_header_size = SIZE_MAX;
  generous.max_headers = 4096;
  generous.max_body_size = UINT64_MAX;
  http::parse_request(head_bytes, generous, head, storage);
  std::span<const http::Header> headers(storage.data(), head.header_count);
  ws::UpgradeRequest upgrade;
  ws::HandshakeResult result = ws::validate_upgrade(head, headers, upgrade);
  if (result.http_status == 0 && head.framing != http::BodyFraming::none &&
      !(head.framing == http::BodyFraming::content_length && head.content_length == 0)) {
    result = {400, "a WebSocket handshake has no body"};
  }
  if (result.http_status != 0) {
    connection->mark_close();
    raise_http_error(result.http_status, result.reason, result.http_status == 426);
    return nullptr;
  }
  const int admitted = origin_allowed(headers, origins);
  if (admitted <= 0) {
    connection->mark_close();
    if (admitted == 0) raise_http_error(403, "this Origin may not open a WebSocket", false);
    return nullptr;
  }
  std::vector<std::string_view> supported;
  PyRef sequence;
  if (subprotocols != nullptr && subprotocols != Py_None) {
    if (PyUnicode_Check(subprotocols)) {
      PyErr_SetString(PyExc_TypeError, "subprotocols must be a sequence of str, not a str");
      return nullptr;
    }
    sequence = PyRef(PySequence_Fast(subprotocols, "subprotocols must be a sequence of str"));
    if (!sequence) return nullptr;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(sequence.get()); ++i) {
      PyObject* item = PySequence_Fast_GET_ITEM(sequence.get(), i);
      Py_ssize_t size = 0;
      const char* text = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &size) : nullptr;
      if (text == nullptr) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "subprotocols must be str");
        return nullptr;
      }
      supported.emplace_back(text, static_cast<size_t>(size));
    }
  }
  const std::string_view chosen = ws::select_subprotocol(headers, supported);
  ws::DeflateParameters deflate;
  std::string extension;
  const WebSocketOptions& options = connection->server().options().websocket;
  ws::DeflatePolicy policy;
  policy.no_context_takeover = options.compression_no_context;
  const bool compress =
      options.compression && ws::negotiate_deflate(headers, policy, deflate, extension);
  std::string answer =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  answer += ws::accept_key(upgrade.key);
  answer += "\r\n";
  if (compress) {
    answer += "Sec-WebSocket-Extensions: ";
    answer += extension;
    answer += "\r\n";
  }
  if (!chosen.empty()) {
    answer += "Sec-WebSocket-Protocol: ";
    answer += chosen;
    answer += "\r\n";
  }
  answer += "\r\n";
  PyRef subprotocol(
      chosen.empty()
          ? Py_NewRef(Py_None)
          : PyUnicode_DecodeUTF8(chosen.data(), static_cast<Py_ssize_t>(chosen.size()), nullptr));
  if (!subprotocol) return nullptr;
  auto* object = PyObject_New(WebSocketObject, &WebSocketType);
  if (object == nullptr) return nullptr;
  object->connection = nullptr;
  object->subprotocol = subprotocol.release();
  PyRef owned(reinterpret_cast<PyObject*>(object));
  if (connection->send_bytes(answer) < 0) return nullptr;
  connection->upgrade(compress ? &deflate : nullptr);
  connection->retain();
  object->connection = connection;
  return owned.release();
}

int init_websocket_type(PyObject* module) {
  WebSocketType.tp_name = "theframework._core.WebSocket";
  WebSocketType.tp_basicsize = sizeof(WebSocketObject);
  WebSocketType.tp_flags = Py_TPFLAGS_DEFAULT;
  WebSocketType.tp_doc = "A server-side WebSocket connection (see _core.pyi).";
  WebSocketType.tp_dealloc = websocket_dealloc;
  WebSocketType.tp_methods = websocket_methods;
  WebSocketType.tp_getset = websocket_getset;
  WebSocketType.tp_iter = websocket_iter;
  WebSocketType.tp_iternext = websocket_next;
  if (PyType_Ready(&WebSocketType) < 0 ||
      PyModule_AddObjectRef(module, "WebSocket", reinterpret_cast<PyObject*>(&WebSocketType)) < 0) {
    return -1;
  }
  return PyModule_AddFunctions(module, module_functions);
}

}  // namespace tf::py
