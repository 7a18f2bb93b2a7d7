// Connection: receive, parse, timers, error answers and lingering of one HTTP connection, and the
// green body reads and sends of its request greenlet (see server.hpp for the flow).
#include "python/http/connection.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/http/proxy_protocol.hpp"
#include "python/configuration.hpp"
#include "python/http/server.hpp"

namespace tf::py {

namespace {

// Unread input above this pauses the receive while a handler runs (backpressure).
constexpr size_t kInputHighWater = 256 * 1024;
// How long an answered-and-closing connection keeps discarding input before it closes.
constexpr double kLingerSeconds = 2.0;

PyObject* make_http_error(int status, const char* message) {
  PyObject* http_error = configuration.http_error.get();
  if (http_error == nullptr) {
    PyErr_Format(PyExc_RuntimeError, "HTTP %d: %s", status, message);
    return nullptr;
  }
  PyRef error(PyObject_CallFunction(http_error, "is", status, message));
  if (error) PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.get())), error.get());
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Connection

Connection::Connection(HttpServer& server, int fd) : server_(server), fd_(fd) {
  server_.connection_created();
}

Connection::~Connection() {
  server_.connection_destroyed();
}

namespace {

Endpoint peer_endpoint(int fd) {
  Endpoint endpoint;
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  auto* raw = reinterpret_cast<sockaddr*>(&address);
  if (::getpeername(fd, raw, &length) < 0) {
    return endpoint;
  }
  char host[INET6_ADDRSTRLEN] = {};
  endpoint.valid = true;
  if (address.ss_family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(address);
    endpoint.port = ntohs(in.sin_port);
    endpoint.address.bytes[10] = endpoint.address.bytes[11] = 0xff;  // IPv4-mapped
    std::memcpy(endpoint.address.bytes.data() + 12, &in.sin_addr, 4);
    endpoint.host = http::format_ip(endpoint.address);  // without inet_ntop's sprintf
    return endpoint;
  }
  if (address.ss_family == AF_INET6) {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
    inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof(host));
    endpoint.port = ntohs(in6.sin6_port);
    std::memcpy(endpoint.address.bytes.data(), &in6.sin6_addr, 16);
  } else {
    endpoint.is_unix = true;
  }
  endpoint.host = host;
  return endpoint;
}

}  // namespace

const Endpoint& Connection::peer() {
  if (!peer_known_) {
    peer_ = peer_endpoint(fd_);
    peer_known_ = phase_ != Phase::closed;
  }
  return peer_;
}

bool Connection::peer_trusted() {
  if (peer_trusted_ < 0) {
    const Endpoint& endpoint = peer();
    peer_trusted_ =
        endpoint.valid &&
        (endpoint.is_unix || server_.options().forwarded_allow.contains(endpoint.address));
  }
  return peer_trusted_ == 1;
}

void Connection::release() noexcept {
  if (--references_ == 0) delete this;
}

void Connection::start() {
  if (server_.options().proxy_protocol) {
    if (!server_.options().forwarded_allow.trusts_all() && !peer_trusted()) {
      log_proxy_debug("closed a connection from %s: %s", peer().host,
                      "PROXY protocol from a peer not in --forwarded-allow-ips");
      close_now();
      return;
    }
    awaiting_proxy_header_ = true;
  }
  arm_receive();
  set_timer(server_.options().keepalive_timeout);
}

void Connection::arm_receive() {
  if (receive_token_ != 0 || phase_ == Phase::closed || peer_closed_) return;
  Hub& hub = server_.hub();
  receive_token_ = hub.reserve_handler_slot(this);
  retain();
  hub.backend().recv_multishot(fd_, receive_token_);
}

void Connection::set_timer(double seconds) {
  clear_timer();
  if (seconds <= 0) return;
  timer_token_ = server_.hub().add_handler_timer(deadline_in(seconds), this);
  retain();
}

void Connection::clear_timer() noexcept {
  if (timer_token_ == 0) return;
  server_.hub().cancel_handler_timer(timer_token_);
  timer_token_ = 0;
  release();
}

void Connection::on_completion(const core::Completion& completion) {
  if (completion.token == receive_token_) {
    on_receive(completion);
  } else if (completion.token == timer_token_) {
    timer_token_ = 0;
    on_timer();
    release();
  } else if (completion.token == send_token_) {
    on_send(completion);
  } else if (completion.buffer >= 0) {
    server_.hub().backend().release_buffer(completion.buffer);
  }
}

void Connection::on_receive(const core::Completion& completion) {
  core::Backend& backend = server_.hub().backend();
  if (completion.result > 0 && completion.buffer >= 0) {
    server_.stats().bytes_in += static_cast<uint64_t>(completion.result);
    auto data = backend.buffer_data(completion.buffer);
    if (phase_ != Phase::lingering && phase_ != Phase::closed) {
      if (input_start_ == input_.size()) {
        input_.clear();
        input_start_ = 0;
      }
      input_.append(reinterpret_cast<const char*>(data.data()),
                    static_cast<size_t>(completion.result));
    }
    backend.release_buffer(completion.buffer);
  } else if (completion.buffer >= 0) {
    backend.release_buffer(completion.buffer);
  }
  const bool final = !completion.more;
  if (final) {
    receive_token_ = 0;
    if (completion.result == 0) {
      peer_closed_ = true;
    } else if (completion.result < 0 && completion.result != -ENOBUFS &&
               completion.result != -ECANCELED) {
      peer_closed_ = true;
      read_error_ = -completion.result;
    }
  }
  retain();  // this function may close the connection; keep it alive until the end
  switch (phase_) {
    case Phase::idle:
    case Phase::head:
      if (input_start_ < input_.size()) {
        parse_buffered(true, nullptr, nullptr);
      } else if (peer_closed_) {
        close_now();
      }
      break;
    case Phase::handling:
    case Phase::websocket:
      wake_reader(0);
      // A listening session reads what arrived (or learns the input ended) without a greenlet.
      if (phase_ == Phase::websocket) websocket_->wake();
      // A WebSocket whose handler does not keep up: stop reading (backpressure) until receive()
      // (or the dispatch) takes messages; resume_receive() arms the receive again.
      if (websocket_ && receive_token_ != 0 && !final && !receive_paused_ && input_full()) {
        receive_paused_ = true;
        backend.cancel(receive_token_);
      }
      break;
    case Phase::error_response:
      break;
    case Phase::lingering:
      input_.clear();
      input_start_ = 0;
      if (peer_closed_) close_now();
      break;
    case Phase::closed:
      break;
  }
  if (final) {
    // -ENOBUFS, a cancel or a multishot that ended by itself: arm again unless paused by
    // backpressure.
    receive_paused_ = false;
    if (!input_full()) arm_receive();
    release();  // the receive's reference
  }
  release();
}

void Connection::on_timer() {
  switch (phase_) {
    case Phase::idle:
      close_now();  // keep-alive timeout: close quietly
      break;
    case Phase::head:
      send_error(408, "Request Timeout");
      break;
    case Phase::lingering:
    case Phase::error_response:
      close_now();
      break;
    case Phase::websocket:
      websocket_->on_timer();
      break;
    case Phase::handling:
    case Phase::closed:
      break;
  }
}

void Connection::wake_reader(int result) noexcept {
  if (reader_token_ == 0) return;
  uint64_t token = reader_token_;
  reader_token_ = 0;
  server_.hub().complete_event(token, result);
}

void Connection::consume(size_t count) noexcept {
  input_start_ += count;
  if (input_start_ >= input_.size()) {
    input_.clear();
    input_start_ = 0;
  } else if (input_start_ > 64 * 1024 && input_start_ * 2 > input_.size()) {
    input_.erase(0, input_start_);
    input_start_ = 0;
  }
}

bool Connection::parse_buffered(bool spawn, PyObject** request, PyObject** response) {
  if (draining_ && phase_ == Phase::idle && input_start_ == input_.size()) {
    close_now();
    return false;
  }
  if (awaiting_proxy_header_ && !take_proxy_header()) return false;
  const http::Limits& limits = server_.options().limits;
  std::span<http::Header> headers = server_.header_storage();
  http::RequestHead head;
  const std::string_view data = buffered();
  http::ParseResult result =
      http::parse_request(data, limits, head, headers, phase_ == Phase::head ? scanned_ : 0);
  if (result.status == http::ParseStatus::incomplete) {
    scanned_ = data.size();
    if (peer_closed_) {
      close_now();  // a partial request and then the client left
      return false;
    }
    if (phase_ != Phase::head) {
      phase_ = Phase::head;
      set_timer(server_.options().header_timeout);
    }
    return false;
  }
  if (result.status == http::ParseStatus::error) {
    send_error(result.http_status, result.reason);
    return false;
  }
  clear_timer();
  head_ = head;
  PyObject* request_object = nullptr;
  PyObject* response_object = nullptr;
  if (!create_request_objects(&request_object, &response_object,
                              forwarded_info(headers.first(head.header_count)))) {
    PyErr_Clear();
    send_error(500, "Internal Server Error");
    return false;
  }
  phase_ = Phase::handling;
  request_started_ns_ = core::monotonic_ns();
  response_bytes_ = 0;
  server_.request_started();
  if (!spawn) {
    *request = request_object;
    *response = response_object;
    return true;
  }
  int spawned = server_.spawn_request(request_object, response_object);
  Py_DECREF(request_object);
  Py_DECREF(response_object);
  if (spawned < 0) {
    PyErr_Clear();
    server_.request_finished();
    send_error(500, "Internal Server Error");
  }
  return false;
}

bool Connection::take_proxy_header() {
  http::ProxyHeader header;
  const http::ProxyResult result = http::parse_proxy_header(buffered(), header);
  if (result.status == http::ProxyStatus::incomplete) {
    if (peer_closed_) close_now();
    return false;
  }
  if (result.status == http::ProxyStatus::error) {
    log_proxy_debug("closed a connection from %s: %s", peer().host, result.reason);
    close_now();
    return false;
  }
  consume(result.consumed);
  awaiting_proxy_header_ = false;
  if (!header.keep_peer) {
    Endpoint client;
    client.valid = true;
    if (header.family == http::ProxyHeader::Family::unix_socket) {
      client.is_unix = true;
    } else {
      client.address = header.source;
      client.host = http::format_ip(header.source);
      client.port = header.source_port;
    }
    peer_ = std::move(client);
    peer_known_ = true;
    peer_trusted_ = -1;
  }
  if (input_start_ == input_.size()) {
    if (peer_closed_) close_now();
    return false;  // the request follows later
  }
  return true;
}

std::unique_ptr<http::ForwardedInfo> Connection::forwarded_info(
    std::span<const http::Header> headers) {
  const HttpOptions& options = server_.options();
  if (!options.proxy_headers) return nullptr;
  const bool present = std::any_of(headers.begin(), headers.end(), [](const http::Header& header) {
    return http::is_forwarding_header(header.name);
  });
  if (!present || !peer_trusted()) return nullptr;
  auto info = std::make_unique<http::ForwardedInfo>(
      http::resolve_forwarded(headers, options.forwarded_allow));
  if (info->malformed != nullptr) {
    log_proxy_debug("ignored a forwarding header value from %s: %s", peer().host, info->malformed);
  }
  return info;
}

bool Connection::create_request_objects(PyObject** request, PyObject** response,
                                        std::unique_ptr<http::ForwardedInfo> forwarded) {
  std::string_view data = buffered();
  const size_t head_length = head_.head_length;
  PyObject* request_object =
      new_request_object(this, data.substr(0, head_length), head_, std::move(forwarded));
  if (request_object == nullptr) return false;
  PyObject* response_object = new_response_object(this, head_);
  if (response_object == nullptr) {
    Py_DECREF(request_object);
    return false;
  }
  consume(head_length);
  body_done_ = head_.framing == http::BodyFraming::none ||
               (head_.framing == http::BodyFraming::content_length && head_.content_length == 0);
  body_remaining_ = head_.framing == http::BodyFraming::content_length ? head_.content_length : 0;
  chunked_.reset();
  decoded_pending_.clear();
  if (head_.framing == http::BodyFraming::chunked) {
    chunked_ = std::make_unique<http::ChunkedDecoder>(server_.options().limits.max_body_size);
  }
  expect_continue_pending = head_.expect_continue && !body_done_;
  *request = request_object;
  *response = response_object;
  return true;
}

int Connection::wait_input(double timeout) {
  if (peer_closed_) {
    PyErr_SetString(PyExc_ConnectionResetError, "the client closed the connection");
    return -1;
  }
  if (phase_ == Phase::closed) {
    PyErr_SetString(PyExc_ConnectionAbortedError, "the connection was closed");
    return -1;
  }
  arm_receive();
  Hub& hub = server_.hub();
  reader_token_ = hub.prepare_event();
  uint64_t token = reader_token_;
  retain();
  int result = hub.wait_event(token, timeout);
  if (reader_token_ == token) reader_token_ = 0;
  release();
  return result < 0 ? -1 : 0;
}

bool Connection::input_full() noexcept {
  if (phase_ != Phase::handling && phase_ != Phase::websocket) return false;
  const std::string_view data = buffered();
  return data.size() >= kInputHighWater || (websocket_ && websocket_->queue_full(data));
}

void Connection::resume_receive() {
  if ((phase_ == Phase::handling || phase_ == Phase::websocket) && receive_token_ == 0 &&
      !peer_closed_ && !input_full()) {
    arm_receive();
  }
}

void Connection::wake_at(int64_t deadline_ns) {
  clear_timer();
  if (deadline_ns < 0 || phase_ == Phase::closed) return;
  timer_token_ = server_.hub().add_handler_timer(deadline_ns, this);
  retain();
}

void Connection::end_websocket() {
  if (phase_ != Phase::websocket) return;
  if (peer_closed_) {
    close_now();
  } else {
    begin_linger();
  }
}

void Connection::upgrade(const ws::DeflateParameters* deflate) {
  websocket_ = std::make_unique<WebSocketSession>(*this, server_.options().websocket, deflate);
  server_.websocket_opened();
  if (server_.websockets_going_away()) websocket_->going_away();
}

int Connection::wait_for_input() {
  int result = wait_input(server_.options().body_timeout);
  if (result < 0 && PyErr_ExceptionMatches(PyExc_TimeoutError)) {
    PyErr_Clear();
    make_http_error(408, "the request body was not received in time");
  }
  return result < 0 ? -1 : 0;
}

bool Connection::body_complete() const noexcept {
  return body_done_ && decoded_pending_.empty();
}

bool Connection::will_keep_alive() const noexcept {
  if (!head_.keep_alive || draining_ || server_.draining() || peer_closed_ ||
      phase_ == Phase::closed) {
    return false;
  }
  if (body_done_) return true;
  return head_.framing == http::BodyFraming::content_length && buffered().size() >= body_remaining_;
}

int Connection::read_body(Py_ssize_t size, std::string& out) {
  const size_t limit = size < 0 ? SIZE_MAX : static_cast<size_t>(size);
  if (expect_continue_pending) {
    expect_continue_pending = false;
    static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
    if (send_bytes(kContinue) < 0) return -1;
  }
  while (true) {
    // Decoded bytes not yet handed out come first (a chunk may be larger than `size`).
    if (!decoded_pending_.empty()) {
      size_t take = std::min(decoded_pending_.size(), limit - out.size());
      out.append(decoded_pending_, 0, take);
      decoded_pending_.erase(0, take);
    }
    if (out.size() >= limit || body_done_ || (size >= 0 && !out.empty())) break;
    std::string_view available = buffered();
    size_t progress = 0;
    if (head_.framing == http::BodyFraming::content_length) {
      size_t take = std::min<uint64_t>({available.size(), body_remaining_, limit - out.size()});
      out.append(available.substr(0, take));
      consume(take);
      progress = take;
      body_remaining_ -= take;
      if (body_remaining_ == 0) body_done_ = true;
    } else {
      http::ChunkResult result = chunked_->feed(available, decoded_pending_);
      consume(result.consumed);
      progress = result.consumed;
      if (result.status == http::ChunkStatus::error) {
        body_done_ = true;
        decoded_pending_.clear();
        draining_ = true;  // the stream is unusable: close after the response
        make_http_error(result.http_status, result.reason);
        return -1;
      }
      if (result.status == http::ChunkStatus::done) body_done_ = true;
    }
    if (progress == 0 && decoded_pending_.empty() && !body_done_ && wait_for_input() < 0) {
      draining_ = true;
      return -1;
    }
  }
  resume_receive();
  return 0;
}

int Connection::send_views(std::vector<Py_buffer>& views) {
  size_t total = 0;
  for (const Py_buffer& view : views) total += static_cast<size_t>(view.len);
  size_t done = 0;
  Hub& hub = server_.hub();
  const double timeout = server_.options().write_timeout;
  const int64_t deadline = deadline_in(timeout);
  retain();
  int status = 0;
  while (done < total) {
    double remaining = std::max<double>(0, (deadline - core::monotonic_ns()) / 1e9);
    Py_ssize_t sent = hub.send(fd_, views, done, timeout > 0 ? remaining : -1);
    if (sent < 0) {
      draining_ = true;
      status = -1;
      break;
    }
    done += static_cast<size_t>(sent);
  }
  server_.stats().bytes_out += done;
  response_bytes_ += done;
  for (Py_buffer& view : views) PyBuffer_Release(&view);
  views.clear();
  release();
  return status;
}

int Connection::send_bytes(std::string_view data) {
  PyRef bytes(PyBytes_FromStringAndSize(data.data(), static_cast<Py_ssize_t>(data.size())));
  if (!bytes) return -1;
  std::vector<Py_buffer> views(1);
  if (PyObject_GetBuffer(bytes.get(), &views[0], PyBUF_SIMPLE) < 0) return -1;
  return send_views(views);
}

int Connection::send_file(int file_fd, uint64_t offset, uint64_t count) {
  Hub& hub = server_.hub();
  const double timeout = server_.options().write_timeout;
  retain();
  int status = 0;
  off_t position = static_cast<off_t>(offset);
  uint64_t left = count;
  while (left > 0) {
    ssize_t sent = ::sendfile(fd_, file_fd, &position, std::min<uint64_t>(left, 1u << 30));
    if (sent > 0) {
      left -= static_cast<uint64_t>(sent);
      server_.stats().bytes_out += static_cast<uint64_t>(sent);
      response_bytes_ += static_cast<uint64_t>(sent);
      continue;
    }
    if (sent == 0) {
      PyErr_SetString(PyExc_OSError, "file shrank while it was being sent");
      status = -1;
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      PyErr_SetFromErrno(PyExc_OSError);
      status = -1;
      break;
    }
    if (hub.poll(fd_, POLLOUT, timeout > 0 ? timeout : -1) < 0) {
      status = -1;
      break;
    }
  }
  if (status < 0) draining_ = true;
  release();
  return status;
}

bool Connection::finish_request(bool response_complete, PyObject** next_request,
                                PyObject** next_response) {
  server_.request_finished();
  wake_reader(0);
  if (websocket_ && websocket_->listen_requested()) {
    // WebSocket.listen(): the connection carries the session; no greenlet waits for it.
    if (phase_ != Phase::closed) phase_ = Phase::websocket;
    websocket_->start_listening();  // a closed connection: the dispatch reports the end
    return false;
  }
  if (phase_ == Phase::closed) return false;
  if (websocket_) {
    // After a WebSocket session: half-close and read until the client's end (or the linger
    // timeout), so that it reads our close frame before the socket goes.
    if (peer_closed_) {
      close_now();
    } else {
      begin_linger();
    }
    return false;
  }
  // Unread body that is already buffered is skipped; a body still on the wire closes.
  if (!body_done_ && head_.framing == http::BodyFraming::content_length &&
      buffered().size() >= body_remaining_) {
    consume(body_remaining_);
    body_remaining_ = 0;
    body_done_ = true;
  }
  // Only what the response promised decides (draining_ is set when its head said close): a
  // response that went out without Connection: close keeps the connection, or the client's next
  // request would meet a closed socket. A server shutting down closes it once idle.
  const bool keep =
      response_complete && body_done_ && head_.keep_alive && !draining_ && !peer_closed_;
  if (keep && server_.shutting_down() && buffered().empty()) {
    close_now();
    return false;
  }
  if (!keep) {
    if (!response_complete || buffered().empty() || peer_closed_) {
      close_now();
    } else {
      begin_linger();
    }
    return false;
  }
  phase_ = Phase::idle;
  if (receive_token_ == 0) arm_receive();
  if (!buffered().empty()) {
    if (parse_buffered(false, next_request, next_response)) return true;
    return false;
  }
  set_timer(server_.options().keepalive_timeout);
  return false;
}

void Connection::send_error(int status, const char* reason) {
  if (phase_ == Phase::closed || phase_ == Phase::error_response) return;
  clear_timer();
  phase_ = Phase::error_response;
  std::string body = std::to_string(status) + " " + std::string(http::reason_phrase(status));
  if (reason != nullptr && *reason) body += ": " + std::string(reason);
  body += "\n";
  error_output_.clear();
  http::append_status_line(error_output_, status, 1);
  http::append_header(error_output_, "Date", server_.dates().now());
  http::append_header(error_output_, "Content-Type", "text/plain; charset=utf-8");
  error_output_ += "Content-Length: ";
  http::append_decimal(error_output_, body.size());
  error_output_ += "\r\nConnection: close\r\n\r\n";
  error_output_ += body;
  server_.stats().record_response(status, -1);
  error_iov_ = {error_output_.data(), error_output_.size()};
  error_message_ = msghdr{};
  error_message_.msg_iov = &error_iov_;
  error_message_.msg_iovlen = 1;
  Hub& hub = server_.hub();
  send_token_ = hub.reserve_handler_slot(this);
  retain();
  hub.backend().sendmsg(fd_, &error_message_, send_token_);
  set_timer(server_.options().write_timeout);
}

void Connection::on_send(const core::Completion& completion) {
  send_token_ = 0;
  if (completion.result > 0) server_.stats().bytes_out += static_cast<uint64_t>(completion.result);
  if (completion.result > 0 && static_cast<size_t>(completion.result) < error_iov_.iov_len &&
      phase_ == Phase::error_response) {
    error_iov_.iov_base = static_cast<char*>(error_iov_.iov_base) + completion.result;
    error_iov_.iov_len -= static_cast<size_t>(completion.result);
    Hub& hub = server_.hub();
    send_token_ = hub.reserve_handler_slot(this);
    hub.backend().sendmsg(fd_, &error_message_, send_token_);
    return;  // the send's reference carries over
  }
  if (phase_ == Phase::error_response) {
    if (completion.result < 0) {
      close_now();
    } else {
      begin_linger();
    }
  }
  release();
}

void Connection::begin_linger() {
  // Half-close and discard what the client still sends, so that it reads our response before it
  // sees a reset; close on its end of stream or after a short while.
  phase_ = Phase::lingering;
  input_.clear();
  input_start_ = 0;
  ::shutdown(fd_, SHUT_WR);
  if (peer_closed_) {
    close_now();
    return;
  }
  arm_receive();
  set_timer(kLingerSeconds);
}

void Connection::begin_drain() noexcept {
  draining_ = true;
}

void Connection::go_away() noexcept {
  if (websocket_ && phase_ == Phase::handling) {
    websocket_->going_away();
    wake_reader(0);
  } else if (websocket_ && phase_ == Phase::websocket) {
    websocket_->going_away();
    websocket_->wake();
  }
}

void Connection::close_if_idle() noexcept {
  if (phase_ != Phase::idle) return;
  // An idle connection whose next request already sits in the kernel's buffer (its completion
  // not reaped yet) is not closed under it: that request is answered, with Connection: close.
  int pending = 0;
  if (::ioctl(fd_, FIONREAD, &pending) == 0 && pending > 0) return;
  close_now();
}

void Connection::close_now() noexcept {
  if (phase_ == Phase::closed) return;
  const bool listening = phase_ == Phase::websocket;
  // A greenlet may be waiting in a send or poll on the socket: a handler, or a sender to a
  // listening WebSocket.
  const bool handling = phase_ == Phase::handling || (listening && websocket_->sending());
  phase_ = Phase::closed;
  clear_timer();
  wake_reader(0);
  if (listening) websocket_->wake();  // a dispatch reports the end (on_close)
  Hub& hub = server_.hub();
  if (receive_token_ != 0) hub.backend().cancel(receive_token_);
  if (send_token_ != 0) hub.backend().cancel(send_token_);
  if (handling) {
    // A request greenlet may be waiting in a send or poll on the socket: cancel everything on it.
    hub.close_fd(fd_);
  } else {
    // Only this connection's own operations can be pending, cancelled above by token. (Cancelling
    // by fd makes io_uring scan every pending request: O(connections) per close.)
    ::close(fd_);
  }
  server_.connection_closed(this);
  release();  // the server's reference
}

}  // namespace tf::py
