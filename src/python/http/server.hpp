// The HTTP/1.1 server of _core: connections are C++ state machines driven by hub completions; a
// greenlet runs only while a request is handled.
//
// A request's journey:
//  1. A readiness wait (poll) on each listening socket, then accept4 while there is room: never
//     more than max_connections open (TCP_NODELAY set on each). At max_connections the wait is
//     not renewed and the kernel backlog holds newcomers until a connection closes.
//  2. Each connection keeps a multishot receive armed (provided buffers: an idle connection holds
//     no buffer). Bytes are parsed in the hub greenlet; a parse error is answered from C++ (status,
//     Connection: close) and the connection lingers briefly before it closes.
//  3. A complete head creates a Request and a Response and spawns a greenlet that calls the
//     handler. Body reads wait on the connection's input (an event in the hub) with body_timeout.
//  4. When the handler returns, the greenlet sends the response (writev: head + body objects, no
//     copy) and, if the connection stays open, handles any pipelined request already buffered;
//     otherwise it ends and the connection waits for the next request itself (keepalive_timeout).
//
// Files: connection.cpp (Connection), server.cpp (HttpServer: accepting, draining),
// request.cpp / response.cpp / request_greenlet.cpp / wsgi_environ.cpp (the Python objects, over
// objects.hpp) and server_type.cpp (the HttpServer Python type).
#pragma once

#include <Python.h>

#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/forwarded.hpp"
#include "core/http/http_parser.hpp"
#include "core/http/http_response.hpp"
#include "core/io/timer_heap.hpp"
#include "python/http/connection.hpp"
#include "python/http/websocket.hpp"
#include "python/hub.hpp"
#include "python/pyref.hpp"

namespace tf::py {

// Limits and timeouts of one server (HttpServer(...) keyword arguments).
struct HttpOptions {
  http::Limits limits;
  double header_timeout = 10.0;
  double body_timeout = 30.0;
  double keepalive_timeout = 5.0;
  double write_timeout = 30.0;
  size_t max_connections = 1024;
  uint64_t rebalance_every = 0;  // every Nth response closes its connection (0: never)
  // Peers whose forwarding headers and PROXY headers are believed (UNIX-socket peers always are).
  http::TrustedNetworks forwarded_allow;
  bool proxy_headers = true;    // read the forwarding headers of trusted peers
  bool proxy_protocol = false;  // every connection starts with a PROXY v1/v2 header
  WebSocketOptions websocket;
};

// The CLOCK_MONOTONIC time (ns) `seconds` from now: a deadline for Hub::add_handler_timer.
inline int64_t deadline_in(double seconds) {
  return core::monotonic_ns() + static_cast<int64_t>(seconds * 1e9);
}

// Counters of one server, read by HttpServer.stats() (Prometheus metrics are built from them).
struct HttpStats {
  // Upper bounds (seconds) of the request-duration histogram buckets; the last bucket is +Inf.
  static constexpr double kDurationBounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1,
                                               0.25,  0.5,   1.0,  2.5,   5.0,  10.0};
  static constexpr size_t kBuckets = std::size(kDurationBounds) + 1;
  uint64_t connections_accepted = 0;
  uint64_t accept_pauses = 0;  // times max_connections stopped accepting (backpressure)
  // The most connections open at once (never above max_connections while serving; a drain also
  // takes what was queued).
  uint64_t connections_peak = 0;
  uint64_t requests = 0;
  uint64_t responses_by_class[6] = {};  // index status / 100 (0 unused)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t duration_buckets[kBuckets] = {};  // non-cumulative counts
  double duration_sum = 0;
  uint64_t websockets_open = 0;  // sessions upgraded and not yet closed
  uint64_t websockets_accepted = 0;
  uint64_t websockets_going_away = 0;  // sessions the drain asked to go away (close 1001)
  uint64_t websocket_messages_in = 0;
  uint64_t websocket_messages_out = 0;
  std::map<uint16_t, uint64_t> websocket_closes;  // by close code (1006: no close frame)
  // Counts one response (status) that took `seconds` (< 0: not a timed handler response).
  void record_response(int status, double seconds) noexcept;
};

// The HTTP/1.1 server over listening sockets: accepts, owns the connections, drains.
class HttpServer {
 public:
  // Serves handler(request, response) on the (non-blocking, listening) `listen_fds`; access_log may
  // be null.
  HttpServer(PyObject* handler, std::vector<int> listen_fds, const HttpOptions& options,
             PyObject* access_log);

  // Runs in a hub greenlet until shutdown completes. New reference (None) or null.
  PyObject* serve();
  // Stops accepting and drains: idle connections close and WebSockets are sent close 1001
  // (after a short grace, kIdleGraceSeconds, the drain's first phase), the others after their
  // response; at graceful_timeout (< 0: no limit) the remaining connections are closed.
  void shutdown(double graceful_timeout);
  // Stops accepting for good and lets every connection close after its next response (idle ones
  // stay until their client's next request or the keep-alive timeout; WebSockets are sent close
  // 1001 after the same grace as in shutdown()); serve() returns when none is left. take_queued:
  // the connections already in the listeners' queues are accepted first (the listener is about
  // to close); false: they are left there for whoever else accepts from the same socket (a
  // successor taking over the listener). shutdown() may still follow to bound the wait.
  void retire(bool take_queued = true);
  // Whether the drain's first phase is over: WebSockets (also ones upgraded from now on) are
  // asked to go away.
  bool websockets_going_away() const noexcept { return websockets_going_away_; }

  // The limits and timeouts given at construction.
  const HttpOptions& options() const noexcept { return options_; }
  // Scratch header views for parsing a head (max_headers + 1 entries, one more to detect too
  // many). Shared by the server's connections: a parse never switches greenlets, and the views
  // are not kept past it.
  std::span<http::Header> header_storage() noexcept { return header_storage_; }
  // The Python handler (borrowed).
  PyObject* handler() const noexcept { return handler_.get(); }
  // callable(request, status, bytes_sent, seconds) after each handled request, or null.
  PyObject* access_log() const noexcept { return access_log_.get(); }
  // The hub serve() runs in (valid while serving).
  Hub& hub() noexcept { return *hub_; }
  // The Date header value (formatted again only when the second changes).
  http::DateCache& dates() noexcept { return dates_; }
  // Open connections.
  size_t connection_count() const noexcept { return connections_.size(); }
  // Requests whose handler has started and whose response is not finished.
  size_t requests_in_flight() const noexcept { return requests_in_flight_; }

  // The Python object lets go of the server; it is deleted once no connection object and no
  // armed accept can still call back into it (at once when nothing is in flight).
  static void release(HttpServer* server) noexcept;

  // Called by connections: one closed (leaves the registry; accepting may resume), one Connection
  // object was created or deleted, a request started or finished.
  void connection_closed(Connection* connection) noexcept;
  void connection_created() noexcept { ++live_connections_; }
  void connection_destroyed() noexcept;
  void request_started() noexcept {
    ++requests_in_flight_;
    ++stats_.requests;
  }
  void request_finished() noexcept;
  // A WebSocket session opened, or ended with `code`.
  void websocket_opened() noexcept {
    ++stats_.websockets_open;
    ++stats_.websockets_accepted;
  }
  void websocket_closed(uint16_t code) noexcept {
    if (stats_.websockets_open > 0) --stats_.websockets_open;
    ++stats_.websocket_closes[code];
  }
  // The counters, updated as requests are served.
  HttpStats& stats() noexcept { return stats_; }
  // Whether responses must close their connection (shutting down or retiring).
  bool draining() const noexcept { return draining_ || retiring_; }
  // Whether idle connections are closed at once (shutdown(), not retire()).
  bool shutting_down() const noexcept { return draining_; }
  // Whether this response should close its connection to rebalance clients (every Nth).
  bool rebalance_due() noexcept {
    return options_.rebalance_every > 0 &&
           ++responses_since_rebalance_ % options_.rebalance_every == 0;
  }
  // Hands (request, response) to a parked request greenlet, or spawns one. 0 or -1 with exception.
  int spawn_request(PyObject* request, PyObject* response);
  // The same for the dispatch of a listening WebSocket (`websocket`: its Python object, which the
  // task keeps alive). 0 or -1 with an exception.
  int spawn_websocket(PyObject* websocket);
  // Parks the current request greenlet for reuse; false when it should end instead.
  bool park_worker();

 private:
  class Acceptor;
  // Accepting: a readiness wait per listener (arm_listener); on readiness accept_ready() takes
  // connections while there is room. pause_accept() cancels the waits.
  void arm_accept();
  void arm_listener(size_t listener);
  // Accepts from `listener` until it is empty (returns EAGAIN), max_connections is reached
  // (returns 0) or accept4 fails (returns its errno).
  int accept_ready(size_t listener);
  void pause_accept();
  void on_accept(const core::Completion& completion, size_t listener);
  void check_drained() noexcept;
  void on_drain_deadline();
  void retry_accept();
  // Serves an accepted socket.
  void adopt_connection(int fd, size_t listener);
  // Accepts (without waiting) what is queued on the listeners.
  void accept_queued();

  PyRef handler_;
  PyRef access_log_;
  std::vector<int> listen_fds_;
  std::vector<bool> listener_is_tcp_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  HttpOptions options_;
  std::vector<http::Header> header_storage_;
  Hub* hub_ = nullptr;
  http::DateCache dates_;
  // Open connections, unordered; each keeps its index (Connection::registry_index) for O(1)
  // removal.
  std::vector<Connection*> connections_;
  size_t requests_in_flight_ = 0;
  ~HttpServer();  // through release()
  HttpStats stats_;
  size_t live_connections_ = 0;  // Connection objects alive (open or waiting for completions)
  bool released_ = false;
  bool accept_armed() const noexcept;
  void delete_if_unused() noexcept;
  bool serving_ = false;
  bool draining_ = false;
  bool retiring_ = false;
  bool accepting_ = false;
  uint64_t responses_since_rebalance_ = 0;
  uint64_t done_token_ = 0;  // event the serve() greenlet waits on
  class ServerTimer;
  std::unique_ptr<ServerTimer> drain_timer_;
  uint64_t drain_timer_token_ = 0;
  std::unique_ptr<ServerTimer> accept_retry_;
  uint64_t accept_retry_token_ = 0;
  // The drain's first phase: idle keep-alive connections get this long for a request already on
  // its way, WebSockets for messages already on theirs, before they are closed (1001).
  static constexpr double kIdleGraceSeconds = 0.2;
  std::unique_ptr<ServerTimer> idle_grace_timer_;
  uint64_t idle_grace_token_ = 0;
  bool websockets_going_away_ = false;
  // The grace is over: closes idle connections (shutdown only) and sends WebSockets away.
  void end_idle_grace();
  // A task (request_greenlet.cpp's request_worker) to a parked greenlet, or a new one.
  int spawn_task(PyObject* task);
  // Request greenlets waiting for their next request (strong references), and their body.
  static constexpr size_t kMaxIdleWorkers = 1024;
  std::vector<PyObject*> idle_workers_;
  PyRef worker_function_;
  void release_workers() noexcept;
};

// Python objects of the HTTP layer: a new Request (request.cpp) or Response (response.cpp) for
// the head just parsed, attached to `connection`. New reference or null with an exception.
// `forwarded` (may be null): what a trusted proxy's forwarding headers said.
PyObject* new_request_object(Connection* connection, std::string_view head_bytes,
                             const http::RequestHead& head,
                             std::unique_ptr<http::ForwardedInfo> forwarded);
PyObject* new_response_object(Connection* connection, const http::RequestHead& head);
// request_greenlet.cpp: runs handler(request, response) and sends the response, then any pipelined
// requests.
PyObject* run_request(PyObject* module, PyObject* args);

// Registers Request, Response and HttpServer on the module (server_type.cpp). 0 or -1.
int init_http(PyObject* module);

}  // namespace tf::py
