// A connection of the HTTP server: a C++ state machine driven by hub completions (receive, parse,
// timers, sends), with the green calls a request greenlet makes on it (body reads, sends). The
// request's journey is described in server.hpp.
#pragma once

#include <Python.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/forwarded.hpp"
#include "core/http/http_parser.hpp"
#include "python/http/websocket.hpp"
#include "python/hub.hpp"

namespace tf::py {

// A socket address in text form, looked up once per connection.
struct Endpoint {
  std::string host;           // numeric address; empty for UNIX sockets
  http::IpAddress address{};  // the same in binary (TCP only)
  int port = 0;
  bool is_unix = false;
  bool valid = false;  // false when the lookup failed
};

class HttpServer;

// One accepted socket of an HttpServer; deletes itself when its last reference goes.
class Connection final : public CompletionHandler {
 public:
  // Where the connection is: waiting for a request, reading a head, handling one, answering a
  // parse error from C++, carrying a listening WebSocket session (WebSocket.listen: no handler
  // runs; dispatch tasks may), discarding input before closing, closed.
  enum class Phase : uint8_t { idle, head, handling, error_response, websocket, lingering, closed };

  // Takes ownership of the connected socket `fd`; start() arms it.
  Connection(HttpServer& server, int fd);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // References: the server (while open), each pending operation and each Python object.
  void retain() noexcept { ++references_; }
  void release() noexcept;

  void start();  // arms the receive and the keep-alive (first request) timer
  // Hub callback: a receive, send or timer completion of this connection.
  void on_completion(const core::Completion& completion) override;

  // --- Used by the request greenlet (may suspend) -----------------------------------------------
  // Reads up to `size` body bytes (size < 0: everything) into `out`. Returns 0, or -1 with an
  // exception (TimeoutError after body_timeout, HTTPError 413, ConnectionError if the client left).
  int read_body(Py_ssize_t size, std::string& out);
  // Whether the current request's body was read to its end.
  bool body_complete() const noexcept;
  // Whether the response may promise keep-alive; when not, the connection closes after it.
  bool will_keep_alive() const noexcept;
  // The connection closes after the current response.
  void mark_close() noexcept { draining_ = true; }
  // The server this connection belongs to.
  HttpServer& server() noexcept { return server_; }
  // Sends the buffers (green, with write_timeout); the slot keeps `views` exported while needed.
  int send_views(std::vector<Py_buffer>& views);
  // send_views of a copy of `data`. 0 or -1 with an exception.
  int send_bytes(std::string_view data);
  // Sends `count` bytes of `file_fd` from `offset` (green, with write_timeout). 0 or -1.
  int send_file(int file_fd, uint64_t offset, uint64_t count);
  // After the handler: decides between closing, the next pipelined request, idling, or carrying a
  // listening WebSocket session. Returns the next request's objects (new references) when one is
  // ready to run in the same greenlet.
  bool finish_request(bool response_complete, PyObject** next_request, PyObject** next_response);
  // Whether a request's handler is running on this connection.
  bool handling() const noexcept { return phase_ == Phase::handling; }

  // --- Shutdown ------------------------------------------------------------------------------
  // Cancels what is pending, closes the socket and leaves the server's registry (idempotent).
  void close_now() noexcept;
  // The server drains or retires: the next response says Connection: close and the connection
  // ends after it.
  void begin_drain() noexcept;
  // The drain's grace is over: a WebSocket session is closed with 1001 (going away) by the
  // greenlet waiting in (or next calling) receive(), or by a dispatch task when it listens.
  void go_away() noexcept;
  // Closes the connection if it waits for a request and none has arrived (drain grace over).
  void close_if_idle() noexcept;

  // The socket (valid until closed).
  int fd() const noexcept { return fd_; }
  // The peer's address (getpeername on first use, then cached); with --proxy-protocol, the client
  // the PROXY header named (the socket's own peer for LOCAL / UNKNOWN).
  const Endpoint& peer();
  // Whether peer() is in the server's forwarded_allow list (UNIX-socket peers always are);
  // computed once per peer.
  bool peer_trusted();
  // CLOCK_MONOTONIC ns at which the current request's head was complete.
  int64_t request_started_ns() const noexcept { return request_started_ns_; }
  // Bytes written for the current response (head and body).
  uint64_t response_bytes() const noexcept { return response_bytes_; }
  // The request sent Expect: 100-continue and the interim response is not sent yet.
  bool expect_continue_pending = false;
  // Position in the server's registry of open connections (kept by HttpServer: a close finds its
  // entry in O(1)); kNotRegistered once closed.
  static constexpr size_t kNotRegistered = static_cast<size_t>(-1);
  size_t registry_index = kNotRegistered;

  // --- WebSocket (websocket.cpp) -----------------------------------------------------------------
  // The request was upgraded: the connection now carries a WebSocket session until it closes
  // (`deflate`: the negotiated permessage-deflate parameters, or null).
  void upgrade(const ws::DeflateParameters* deflate);
  // The session, or null when the connection was not upgraded.
  WebSocketSession* websocket() noexcept { return websocket_.get(); }
  // Unread input.
  std::string_view buffered() const noexcept {
    return std::string_view(input_).substr(input_start_);
  }
  // Drops `count` bytes of buffered input.
  void consume(size_t count) noexcept;
  // Re-arms a receive that backpressure paused, once the buffered input is small again.
  void resume_receive();
  // Frees the input buffer when nothing is buffered (an idle listening WebSocket keeps none).
  void release_input() noexcept {
    if (input_start_ == input_.size()) {
      std::string().swap(input_);
      input_start_ = 0;
    }
  }
  // A listening WebSocket session: its timer fires at `deadline_ns` (monotonic; replaces the one
  // armed; < 0: none). The session's on_timer() runs then, in the hub.
  void wake_at(int64_t deadline_ns);
  // A listening WebSocket session ended: the connection half-closes and lingers until the
  // client's end (or closes at once when the client is gone). No-op once lingering or closed.
  void end_websocket();
  // Backpressure: while a handler runs, whether the unread input is large enough (or, for a
  // WebSocket, holds --ws-max-queue complete messages) that the socket is not read further.
  bool input_full() noexcept;
  // The client's end of the stream was read (or the connection failed or closed).
  bool input_ended() const noexcept { return peer_closed_ || phase_ == Phase::closed; }
  bool open() const noexcept { return phase_ != Phase::closed; }
  // Waits for more input (green): 0, or -1 with TimeoutError after `timeout` seconds (< 0: none),
  // ConnectionResetError when the client left, or the exception thrown into the greenlet.
  int wait_input(double timeout);

 private:
  ~Connection();
  void on_receive(const core::Completion& completion);
  void on_timer();
  void on_send(const core::Completion& completion);
  void arm_receive();
  void set_timer(double seconds);
  void clear_timer() noexcept;
  // Parses what is buffered: starts a request (spawning its greenlet when `spawn` is true, else
  // returning the objects), answers an error, or waits for more.
  bool parse_buffered(bool spawn, PyObject** request, PyObject** response);
  // Reads the PROXY header at the start of the input (--proxy-protocol): true once it is consumed
  // and request bytes follow; false while it is incomplete, or after closing on a bad header.
  bool take_proxy_header();
  // What the forwarding headers among `headers` say, when the option is on, one is present and
  // the peer is trusted; null otherwise (the common case costs a scan of the header names).
  std::unique_ptr<http::ForwardedInfo> forwarded_info(std::span<const http::Header> headers);
  bool create_request_objects(PyObject** request, PyObject** response,
                              std::unique_ptr<http::ForwardedInfo> forwarded);
  void send_error(int status, const char* reason);
  void begin_linger();
  void wake_reader(int result) noexcept;
  int wait_for_input();

  HttpServer& server_;
  int fd_;
  uint32_t references_ = 1;
  Phase phase_ = Phase::idle;
  bool draining_ = false;
  bool peer_closed_ = false;
  int read_error_ = 0;
  uint64_t receive_token_ = 0;
  bool receive_paused_ = false;  // the multishot receive was cancelled by backpressure
  uint64_t timer_token_ = 0;
  uint64_t send_token_ = 0;
  uint64_t reader_token_ = 0;  // event of a greenlet waiting for input
  Endpoint peer_;
  bool peer_known_ = false;
  int8_t peer_trusted_ = -1;            // -1: not computed yet
  bool awaiting_proxy_header_ = false;  // --proxy-protocol: the header has not arrived yet
  std::string input_;
  size_t input_start_ = 0;
  size_t scanned_ = 0;  // buffered bytes an incomplete parse already looked at
  // The request being handled.
  http::RequestHead head_{};
  uint64_t body_remaining_ = 0;  // content-length bytes not yet consumed
  int64_t request_started_ns_ = 0;
  uint64_t response_bytes_ = 0;
  std::unique_ptr<http::ChunkedDecoder> chunked_;
  std::string decoded_pending_;  // chunked payload decoded but not yet read by the handler
  bool body_done_ = true;
  // An error response written from C++.
  std::string error_output_;
  iovec error_iov_{};
  msghdr error_message_{};
  std::unique_ptr<WebSocketSession> websocket_;
};

}  // namespace tf::py
