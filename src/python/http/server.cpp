// HttpServer: the accepting side (readiness, then accept4 up to max_connections: an exact bound),
// the connection registry, draining and shutdown, and the response counters.
#include "python/http/server.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "python/configuration.hpp"

namespace tf::py {

class HttpServer::Acceptor final : public CompletionHandler {
 public:
  Acceptor(HttpServer& server, size_t listener) : server_(server), listener_(listener) {}
  void on_completion(const core::Completion& completion) override {
    server_.on_accept(completion, listener_);
  }
  uint64_t token = 0;

 private:
  HttpServer& server_;
  size_t listener_;
};

// A server timer: calls `action` on the server when it fires.
class HttpServer::ServerTimer final : public CompletionHandler {
 public:
  ServerTimer(HttpServer& server, uint64_t HttpServer::*token, void (HttpServer::*action)())
      : server_(server), token_(token), action_(action) {}
  void on_completion(const core::Completion&) override {
    server_.*token_ = 0;
    (server_.*action_)();
  }

 private:
  HttpServer& server_;
  uint64_t HttpServer::*token_;
  void (HttpServer::*action_)();
};

HttpServer::HttpServer(PyObject* handler, std::vector<int> listen_fds, const HttpOptions& options,
                       PyObject* access_log)
    : handler_(PyRef::borrow(handler)),
      access_log_(PyRef::borrow(access_log)),
      listen_fds_(std::move(listen_fds)),
      options_(options),
      header_storage_(options.limits.max_headers + 1) {
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    int domain = 0;
    socklen_t length = sizeof(domain);
    ::getsockopt(listen_fds_[i], SOL_SOCKET, SO_DOMAIN, &domain, &length);
    listener_is_tcp_.push_back(domain == AF_INET || domain == AF_INET6);
    acceptors_.push_back(std::make_unique<Acceptor>(*this, i));
  }
  drain_timer_ = std::make_unique<ServerTimer>(*this, &HttpServer::drain_timer_token_,
                                               &HttpServer::on_drain_deadline);
  accept_retry_ = std::make_unique<ServerTimer>(*this, &HttpServer::accept_retry_token_,
                                                &HttpServer::retry_accept);
  idle_grace_timer_ = std::make_unique<ServerTimer>(*this, &HttpServer::idle_grace_token_,
                                                    &HttpServer::end_idle_grace);
}

HttpServer::~HttpServer() {
  for (PyObject* worker : idle_workers_) Py_DECREF(worker);
}

PyObject* HttpServer::serve() {
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  if (serving_) {
    PyErr_SetString(PyExc_RuntimeError, "this HttpServer is already serving");
    return nullptr;
  }
  if (draining_) Py_RETURN_NONE;  // shut down before it started
  hub_ = hub;
  serving_ = true;
  for (int fd : listen_fds_) {
    int flags = ::fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  arm_accept();
  done_token_ = hub->prepare_event();
  int result = hub->wait_event(done_token_, -1);
  done_token_ = 0;
  // Whatever ended the wait (drained, or the greenlet was killed): nothing stays open.
  pause_accept();
  for (uint64_t* token : {&drain_timer_token_, &accept_retry_token_, &idle_grace_token_}) {
    if (*token != 0) hub->cancel_handler_timer(*token);
    *token = 0;
  }
  while (!connections_.empty()) connections_.back()->close_now();
  serving_ = false;
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  release_workers();
  PyErr_Restore(type, value, traceback);
  if (result < 0) return nullptr;
  Py_RETURN_NONE;
}

void HttpServer::arm_accept() {
  if (draining_ || retiring_ || !serving_ || hub_ == nullptr) return;
  accepting_ = true;
  for (size_t i = 0; i < acceptors_.size(); ++i) arm_listener(i);
}

void HttpServer::arm_listener(size_t listener) {
  Acceptor& acceptor = *acceptors_[listener];
  if (acceptor.token != 0) return;
  // A readiness wait, not an accept: the kernel takes nothing off the queue by itself, so the
  // number of connections accepted is decided here, one accept4 at a time (an armed accept, even
  // a single-shot one, would take a connection whether or not there is room for it).
  acceptor.token = hub_->reserve_handler_slot(&acceptor);
  hub_->backend().poll(listen_fds_[listener], POLLIN, acceptor.token);
}

void HttpServer::pause_accept() {
  accepting_ = false;
  if (hub_ == nullptr) return;
  for (auto& acceptor : acceptors_) {
    if (acceptor->token != 0) hub_->backend().cancel(acceptor->token);
  }
}

void HttpServer::on_accept(const core::Completion& completion, size_t listener) {
  acceptors_[listener]->token = 0;  // a poll: one completion
  if (released_) {
    delete_if_unused();  // the last callback of a server whose Python object is gone
    return;
  }
  if (draining_ || retiring_) {
    check_drained();  // what was queued was taken by accept_queued()
    return;
  }
  if (!accepting_ || !serving_) return;
  // Cancelled by a pause that accepting has resumed from since: wait again.
  int error = completion.result == -ECANCELED ? EAGAIN
              : completion.result < 0         ? -completion.result
                                              : accept_ready(listener);
  if (error == EAGAIN) {
    arm_listener(listener);  // the queue is empty: wait for the next connection
  } else if (error == 0) {
    ++stats_.accept_pauses;  // full: connection_closed() arms the listeners again
    pause_accept();
  } else {
    // Out of descriptors or memory (or a listener error): retry shortly (the kernel backlog
    // holds clients meanwhile).
    if (accept_retry_token_ == 0) {
      accept_retry_token_ = hub_->add_handler_timer(deadline_in(0.1), accept_retry_.get());
    }
  }
}

int HttpServer::accept_ready(size_t listener) {
  while (connections_.size() < options_.max_connections) {
    int fd = ::accept4(listen_fds_[listener], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return errno == EWOULDBLOCK ? EAGAIN : errno;
    }
    adopt_connection(fd, listener);
  }
  return 0;
}

void HttpServer::connection_closed(Connection* connection) noexcept {
  const size_t index = connection->registry_index;
  if (index < connections_.size() && connections_[index] == connection) {
    // Swap with the last entry: O(1), and the moved connection learns its new position.
    connections_[index] = connections_.back();
    connections_[index]->registry_index = index;
    connections_.pop_back();
    connection->registry_index = Connection::kNotRegistered;
  }
  if (!accepting_ && !draining_ && !retiring_ && serving_ &&
      connections_.size() < options_.max_connections) {
    arm_accept();
  }
  check_drained();
}

void HttpStats::record_response(int status, double seconds) noexcept {
  int status_class = status / 100;
  if (status_class >= 1 && status_class <= 5) ++responses_by_class[status_class];
  if (seconds < 0) return;
  size_t bucket = 0;
  while (bucket < std::size(kDurationBounds) && seconds > kDurationBounds[bucket]) ++bucket;
  ++duration_buckets[bucket];
  duration_sum += seconds;
}

void HttpServer::request_finished() noexcept {
  if (requests_in_flight_ > 0) --requests_in_flight_;
}

bool HttpServer::accept_armed() const noexcept {
  return std::any_of(acceptors_.begin(), acceptors_.end(),
                     [](const auto& acceptor) { return acceptor->token != 0; });
}

void HttpServer::release(HttpServer* server) noexcept {
  server->released_ = true;
  server->delete_if_unused();
}

void HttpServer::connection_destroyed() noexcept {
  --live_connections_;
  delete_if_unused();
}

void HttpServer::delete_if_unused() noexcept {
  if (released_ && live_connections_ == 0 && !accept_armed()) delete this;
}

void HttpServer::check_drained() noexcept {
  // Done when no connection is left and no accept is armed: a cancelled multishot accept may
  // still deliver connections the kernel accepted before the cancel, and those are served too.
  if ((draining_ || retiring_) && connections_.empty() && !accept_armed() && done_token_ != 0 &&
      hub_ != nullptr) {
    hub_->complete_event(done_token_, 0);
  }
}

void HttpServer::shutdown(double graceful_timeout) {
  if (draining_) {
    if (graceful_timeout == 0) on_drain_deadline();
    return;
  }
  draining_ = true;
  if (!serving_ || hub_ == nullptr) return;
  pause_accept();
  accept_queued();
  // Every connection answers its next request with Connection: close; idle ones get a short
  // grace for a request already on its way (closing under it would lose it), then close;
  // WebSockets are sent close 1001 at the same moment.
  for (Connection* connection : connections_) connection->begin_drain();
  if (graceful_timeout >= 0 && !connections_.empty()) {
    drain_timer_token_ = hub_->add_handler_timer(deadline_in(graceful_timeout), drain_timer_.get());
  }
  if (websockets_going_away_) {
    end_idle_grace();  // retire() already ended its grace: idle connections close now
  } else if (!connections_.empty()) {
    const double grace =
        graceful_timeout >= 0 ? std::min(graceful_timeout, kIdleGraceSeconds) : kIdleGraceSeconds;
    if (idle_grace_token_ != 0) hub_->cancel_handler_timer(idle_grace_token_);
    idle_grace_token_ = hub_->add_handler_timer(deadline_in(grace), idle_grace_timer_.get());
  }
  check_drained();
}

void HttpServer::end_idle_grace() {
  if (!websockets_going_away_) {
    websockets_going_away_ = true;
    stats_.websockets_going_away += stats_.websockets_open;
  }
  std::vector<Connection*> snapshot = connections_;
  for (Connection* connection : snapshot) {
    if (draining_) connection->close_if_idle();
    connection->go_away();
  }
}

void HttpServer::adopt_connection(int fd, size_t listener) {
  if (listener_is_tcp_[listener]) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  auto* connection = new Connection(*this, fd);
  connection->registry_index = connections_.size();
  connections_.push_back(connection);
  ++stats_.connections_accepted;
  stats_.connections_peak = std::max<uint64_t>(stats_.connections_peak, connections_.size());
  connection->start();
}

void HttpServer::retire(bool take_queued) {
  if (retiring_ || draining_) return;
  retiring_ = true;
  pause_accept();
  if (take_queued) accept_queued();
  // WebSockets never end by themselves between requests: after the grace they are asked to go
  // away (1001).
  if (serving_ && hub_ != nullptr && !connections_.empty()) {
    idle_grace_token_ =
        hub_->add_handler_timer(deadline_in(kIdleGraceSeconds), idle_grace_timer_.get());
  }
  check_drained();
}

void HttpServer::accept_queued() {
  // Connections already queued on the listeners (the multishot accept only takes them when the
  // loop enters the kernel) are taken now, so that shutting a listener down right after this
  // resets nobody.
  if (!serving_) return;
  for (size_t i = 0; i < listen_fds_.size(); ++i) {
    while (true) {
      int fd = ::accept4(listen_fds_[i], nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) break;
      adopt_connection(fd, i);
      if (draining_) connections_.back()->begin_drain();
    }
  }
}

void HttpServer::retry_accept() {
  if (!accepting_) return;  // paused meanwhile: connection_closed() resumes
  for (size_t i = 0; i < acceptors_.size(); ++i) arm_listener(i);
}

void HttpServer::on_drain_deadline() {
  while (!connections_.empty()) connections_.back()->close_now();
  check_drained();
}

}  // namespace tf::py
