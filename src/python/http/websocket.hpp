// The server side of a WebSocket connection (RFC 6455) over a Connection whose request upgraded:
// the session state a Connection owns once upgraded, and the theframework._core.WebSocket type.
//
// Two ways to read a session:
//  - Blocking: the handler's greenlet keeps running for the whole session (a WebSocket is a long
//    request). receive() reads frames from the connection's input and, when it is empty, waits on
//    the same hub event as a body read (no busy loop, no thread). Keep-alive pings are sent, and
//    their pongs awaited, while a greenlet waits in receive().
//  - Listening (listen(on_message, on_close)): the handler returns and no greenlet waits. The hub
//    feeds the input to the MessageReader as it arrives (C++ only; pongs are taken there); an
//    event that needs Python or a send (a message, a ping, a close, a protocol error, a keep-alive
//    deadline, the drain) schedules a dispatch task on a pooled request greenlet, which handles
//    events until the input holds no complete one, then goes back to the pool. One dispatch at a
//    time per session, so callbacks see messages one at a time and in order. Keep-alive pings and
//    close deadlines are a connection timer. When the session ends, the dispatch calls on_close
//    once and the connection lingers as below.
//  - Sends go out with the connection's green send; a send lock keeps frames from different
//    greenlets whole (any greenlet may send while another receives).
//  - The close handshake: a close frame received is answered (same code) and ends the session;
//    close() sends one and waits (bounded) for the answer unless another greenlet is receiving.
//    Protocol errors close with their code (1002, 1007, 1009). When the handler returns, a session
//    still open is closed with 1000 (1011 if the handler raised), and the connection half-closes
//    and lingers so the client reads the close frame before the socket goes.
#pragma once

#include <Python.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/websocket/deflate.hpp"
#include "core/websocket/frame.hpp"

namespace tf::py {

class Connection;

// WebSocket settings of a server (HttpServer(...) keyword arguments ws_*).
struct WebSocketOptions {
  uint64_t max_message_size = 1 << 20;  // a larger message closes with 1009 (0: no limit)
  double ping_interval = 20.0;          // seconds of silence before a ping (0: no pings)
  double ping_timeout = 20.0;           // seconds a ping (or our close) waits for its answer
  bool compression = true;              // accept permessage-deflate offers
  bool compression_no_context = false;  // ... and ask for no context takeover either way
  // Complete messages buffered but not yet taken by receive() at which the connection stops
  // reading the socket (backpressure), until receive() takes some.
  unsigned int max_queue = 32;
};

// The state of one upgraded connection; owned by its Connection.
class WebSocketSession {
 public:
  // `deflate`: the negotiated permessage-deflate parameters, or null without compression.
  WebSocketSession(Connection& connection, const WebSocketOptions& options,
                   const ws::DeflateParameters* deflate);

  // receive(timeout): the next message (str or bytes; new reference), or null with an exception:
  // WebSocketClosed once closed, TimeoutError after `timeout` seconds (< 0: none) with the
  // session still open, RuntimeError after listen(), or what was thrown into the greenlet.
  PyObject* receive(double timeout);
  // Sends one message as a single frame (text for str, binary for bytes-like). 0 or -1.
  int send(PyObject* message);
  // Sends every message of the iterable in one write. 0 or -1.
  int send_many(PyObject* messages);
  // Sends a control frame (ping, pong or close) with `payload` (<= 125 bytes). 0 or -1.
  int send_control(ws::Opcode opcode, std::string_view payload);
  // Sends an already framed message (Group broadcasts: framed once, the same bytes object to
  // every member). 0 or -1.
  int send_frame(PyObject* frame);
  // Starts (or finishes) the close handshake with `code` and `reason`; waits for the peer's
  // answer (at most close_timeout()) unless another greenlet is receiving or the session listens
  // (then the dispatch reads the answer, and the session ends at the latest at the deadline).
  // 0 or -1.
  int close(uint16_t code, std::string_view reason);
  // The server drains: the greenlet waiting in receive() (now or next) sends close 1001 and
  // waits, at most close_timeout(), for the peer's close; receive() then raises WebSocketClosed.
  void going_away() noexcept { going_away_ = true; }
  // The handler returned (`failed`: by an exception): a session still open is closed with 1000
  // or 1011, unless the handler called listen() and returned normally (the session then goes on
  // listening: see start_listening). After listen() and an exception, on_close is called here
  // (in the handler's greenlet). Never raises.
  void finish(bool failed) noexcept;
  // The handler's greenlet was killed: a listener set by listen() is dropped without calling it.
  void abandon_listener() noexcept;

  // --- Listening (WebSocket.listen) -------------------------------------------------------------
  // listen(on_message, on_close): called while the request's handler runs (the connection is
  // handling it), at most once, and not while a greenlet receives: RuntimeError otherwise;
  // WebSocketClosed when the session is already over. Keeps `self` (the WebSocket object),
  // `on_message` and `on_close` (None or null: none) until the session ends. 0 or -1.
  int listen(PyObject* self, PyObject* on_message, PyObject* on_close);
  // Whether listen() was called and the handler returned normally: the connection then carries
  // the session with no greenlet (Connection::Phase::websocket).
  bool listening() const noexcept { return listen_state_ == ListenState::active; }
  // Whether listen() was called and the handler is still running (or just returned normally).
  bool listen_requested() const noexcept { return listen_state_ == ListenState::requested; }
  // The handler returned after listen(): looks at what is buffered, arms the keep-alive timer and
  // schedules a dispatch when there is work. Hub or handler greenlet; never blocks.
  void start_listening() noexcept;
  // Something changed while listening (input arrived or ended, the timer fired, the drain asks
  // to go away, the connection closed, a send failed or close() was called): feeds the buffered
  // input to the reader (pongs are taken here), and schedules a dispatch task when an event needs
  // Python or a send, or re-arms the connection timer. No-op while a dispatch is scheduled or
  // running (it looks again before it ends). Never blocks or switches.
  void wake() noexcept;
  // The connection timer fired while listening (the timer is gone): wake().
  void on_timer() noexcept {
    timer_at_ns_ = 0;
    wake();
  }
  // The body of a dispatch task, in a pooled request greenlet: handles events (on_message for
  // each message, pongs, close handshake, keep-alive pings and deadlines, the drain's 1001) until
  // none is left, then returns with the session idle (timer armed) or ended (on_close called,
  // listener dropped, the connection lingering or closed). Never raises.
  void dispatch() noexcept;
  // Whether a greenlet is sending (its send may be pending on the socket).
  bool sending() const noexcept { return sending_; }

  // Whether `unread` (the connection's buffered input) holds max_queue complete messages that
  // receive() has not taken: the connection then stops reading (backpressure).
  // Resumes the scan where the last call stopped (it restarts after each consume), so a flood
  // of small frames costs each byte one look, not one per receive completion.
  bool queue_full(std::string_view unread) noexcept {
    reader_.scan_complete_messages(unread, options_.max_queue, queue_scan_);
    return queue_scan_.messages >= options_.max_queue;
  }
  // Whether the close handshake started (our close frame sent) or the session ended.
  bool closed() const noexcept { return closed_ || close_sent_; }
  uint16_t close_code() const noexcept { return close_code_; }
  const std::string& close_reason() const noexcept { return close_reason_; }

 private:
  // Sends `views` under the send lock (released in every case). `is_close`: our close frame,
  // the last frame we may send. 0 or -1 (after a failed write the session is closed).
  int send_views(std::vector<Py_buffer>& views, bool is_close);
  int send_frame_bytes(PyObject* frame, bool is_close);
  // Appends the frame views of one message (compressed when negotiated and worth it). 0 or -1.
  int append_message(std::vector<Py_buffer>& views, PyObject* message);
  int append_compressed(std::vector<Py_buffer>& views, ws::Opcode opcode, std::string_view payload);
  int acquire_send_lock();
  void release_send_lock() noexcept;
  // Sends our close frame unless one was sent. 0 or -1.
  int send_close(uint16_t code, std::string_view reason);
  // Waits for input until `deadline_ns` (< 0: none), sending keep-alive pings when due. 0 (look
  // again), 1 (the peer left a ping unanswered) or -1 with an exception (TimeoutError at the
  // deadline).
  int wait_input(int64_t deadline_ns);
  // The next reader event: the one wake() stored, else what the buffered input gives (the bytes
  // it used are consumed).
  ws::ReadEvent read_event() noexcept;
  // Reads until a message (returned; dropped when `discard_messages`) or the end of the session
  // (WebSocketClosed), answering pings and closes on the way. `wait` false (listening): returns
  // null with no exception set when the input holds no complete event instead of waiting.
  PyObject* next_event(int64_t deadline_ns, bool discard_messages, bool wait = true);
  // Marks the session closed with `code` (unless a code is known) and counts the close; no-op
  // when already closed.
  void mark_closed(uint16_t code, std::string_view reason) noexcept;
  // mark_closed, then raises WebSocketClosed.
  PyObject* closed_error(uint16_t code, std::string_view reason);
  // Listening: the earliest keep-alive or close deadline (monotonic ns), or -1 for none.
  int64_t next_deadline_ns() const noexcept;
  // Listening: acts on a deadline that passed (sends a ping; ends the session at a pong or close
  // deadline). Whether one had passed.
  bool service_deadline();
  // Listening: a dispatch task takes over (dispatching_); on failure the session ends without
  // calling on_close.
  void schedule_dispatch() noexcept;
  // Listening: on_message(ws, message); an exception is logged and closes with 1011. False when
  // the greenlet was killed (GreenletExit is set).
  bool deliver(PyObject* message);
  // Sends our close frame with `code` unless one was sent, and marks the session closed.
  void fail(uint16_t code) noexcept;
  // Listening: the session is over: the connection lingers or closes, then on_close(ws, code,
  // reason) and the listener is dropped.
  void end_listening() noexcept;
  // Listening: the dispatch greenlet was killed (the hub stops): the connection ends, the
  // listener is dropped without a call. Clears the exception.
  void abandon_dispatch() noexcept;
  // on_close(ws, code, reason) when there is one (its exception logged), then drop_listener().
  void close_listener() noexcept;
  // Drops the listener's references (may run Python code: the WebSocket object may go).
  void drop_listener() noexcept;
  PyObject* raise_closed();
  double close_timeout() const noexcept;
  // The received message as str/bytes, decompressed and checked when it was compressed; null
  // with WebSocketClosed (1007, 1009) after closing.
  PyObject* message_object(bool text);

  Connection& connection_;
  WebSocketOptions options_;
  ws::MessageReader reader_;
  ws::MessageReader::QueueScan queue_scan_;  // complete messages buffered (see queue_full)
  std::unique_ptr<ws::DeflateSession> deflate_;
  std::string inflated_;      // a decompressed message, released once converted
  int64_t last_activity_ns_;  // when bytes last arrived (keep-alive pings follow silence)
  bool receiving_ = false;
  bool sending_ = false;
  // Events of greenlets waiting for the send lock, first first. A vector, not a deque: an
  // empty std::deque allocates ~600 bytes, which every idle WebSocket would carry.
  std::vector<uint64_t> send_waiters_;
  bool close_sent_ = false;
  bool closed_ = false;  // the close handshake finished, or the connection is gone
  bool awaiting_pong_ = false;
  bool going_away_ = false;
  int64_t pong_deadline_ns_ = 0;
  uint16_t close_code_ = 0;
  std::string close_reason_;
  // Listening.
  enum class ListenState : uint8_t { none, requested, active, ended };
  ListenState listen_state_ = ListenState::none;
  bool dispatching_ = false;       // a dispatch task is scheduled or running
  ws::ReadEvent pending_{};        // an event wake() read, for the dispatch to handle
  int64_t close_deadline_ns_ = 0;  // our close frame waits for the peer's until then
  int64_t timer_at_ns_ = 0;        // when the connection timer armed by arm_timer fires (0: none)
  // The WebSocket object and the callbacks (strong references, null when not listening).
  PyObject* listener_ = nullptr;
  PyObject* on_message_ = nullptr;
  PyObject* on_close_ = nullptr;
  // Arms the connection timer for next_deadline_ns() unless one fires no later.
  void arm_timer() noexcept;
};

// The dispatch task of a listening WebSocket (`websocket`: the WebSocket object), run by a pooled
// request greenlet (request_greenlet.cpp). Never raises.
void run_websocket_dispatch(PyObject* websocket);

// Accepts the upgrade of the request being handled on `connection`: validates the handshake
// (HTTPError 400/426 otherwise, and the connection closes after that answer), picks the first
// subprotocol the client offers that `subprotocols` (a sequence of str, or None) holds, accepts a
// permessage-deflate offer when the server allows compression, sends the 101 response and returns a
// new WebSocket object (new reference) or null with an exception. `head_bytes` is the request's
// head. `origins` (None, a sequence of str or a callable; see origin_allowed in websocket.cpp)
// decides by the Origin header: a refused one raises HTTPError 403 before the upgrade.
PyObject* websocket_accept(Connection* connection, std::string_view head_bytes,
                           PyObject* subprotocols, PyObject* origins);

// Registers the WebSocket type on the module. 0 or -1.
int init_websocket_type(PyObject* module);

}  // namespace tf::py
