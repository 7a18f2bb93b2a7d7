// cpp_responder: the ceiling of the plaintext benchmark. A single-threaded HTTP/1.1 server built
// only from the project's C++ core (Backend, http_parser, http_response), with no Python and no
// greenlets: multishot accept, multishot receive into provided buffers, tf::http::parse_request,
// and "Hello, World!" answered with keep-alive (or Connection: close when the request asks).
// GET /sleep answers the same after 10 ms on the core's TimerHeap (the sleep scenario's ceiling);
// the connection's later requests wait for it, so pipelined answers keep their order.
// Request bodies with Content-Length are read and discarded; chunked bodies and malformed requests
// are answered with an error status and the connection is closed.
//
// Usage: cpp_responder [--host 127.0.0.1] [--port 8000] [--backend io_uring|epoll|auto]
// Logs "listening on http://HOST:PORT (pid N, backend B)" on stderr once it accepts, like
// `python -m theframework`, and exits 0 on SIGINT or SIGTERM.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "core/http/http_parser.hpp"
#include "core/http/http_response.hpp"
#include "core/io/backend.hpp"
#include "core/io/fd.hpp"
#include "core/io/timer_heap.hpp"

namespace {

using tf::core::Backend;
using tf::core::Completion;
using tf::core::UniqueFd;

constexpr std::string_view kBody = "Hello, World!";
constexpr std::string_view kSleepPath = "/sleep";
constexpr int64_t kSleepNs = 10'000'000;
constexpr uint64_t kAcceptToken = 1;
// Connection tokens: bit 62 set, the operation kind in bit 61, the slot generation in bits 32..60
// and the slot index in bits 0..31. Every token stays below tf::core::kReservedTokenBit.
constexpr uint64_t kConnectionBit = uint64_t{1} << 62;
constexpr uint64_t kSendBit = uint64_t{1} << 61;

volatile sig_atomic_t stop_requested = 0;
Backend* signal_backend = nullptr;

void on_stop_signal(int) {
  stop_requested = 1;
  if (signal_backend != nullptr) signal_backend->wake();
}

// One client connection. Lives in a slot of Server::connections_ until its socket is closed and
// every operation queued on it has delivered its final completion.
struct Connection {
  UniqueFd fd;
  uint32_t generation = 0;
  int operations = 0;             // queued operations whose final completion is still due
  bool open = false;              // false once close was requested
  bool receive_armed = false;     // a multishot receive is queued
  bool send_queued = false;       // a sendmsg is in flight (output_ holds its bytes)
  bool close_after_send = false;  // Connection: close was answered
  bool sleeping = false;          // a /sleep request waits for its timer; input waits behind it
  bool sleeping_keep_alive = false;
  int sleeping_version_minor = 1;
  uint64_t body_to_skip = 0;  // bytes of the current request body still to discard
  std::string input;          // received bytes not parsed yet
  std::string output;         // response bytes not sent yet
  size_t output_sent = 0;     // prefix of output already handed to the kernel
  iovec send_vector{};        // the in-flight sendmsg's iovec (stable address)
  msghdr send_message{};
};

class Server {
 public:
  Server(Backend& backend, int listen_fd) : backend_(backend), listen_fd_(listen_fd) {}

  // Arms the multishot accept and runs the completion loop until SIGINT/SIGTERM.
  void run() {
    backend_.accept_multishot(listen_fd_, kAcceptToken);
    std::vector<Completion> completions;
    std::vector<uint64_t> expired;
    while (stop_requested == 0) {
      completions.clear();
      int64_t timeout_ns = -1;
      if (auto deadline = timers_.next_deadline()) {
        timeout_ns = std::max<int64_t>(0, *deadline - tf::core::monotonic_ns());
      }
      backend_.wait(timeout_ns, completions);
      for (const Completion& completion : completions) dispatch(completion);
      expired.clear();
      timers_.pop_expired(tf::core::monotonic_ns(), expired);
      for (uint64_t token : expired) wake(token);
    }
  }

 private:
  void dispatch(const Completion& completion) {
    if (completion.token == kAcceptToken) {
      on_accept(completion);
      return;
    }
    const uint32_t index = static_cast<uint32_t>(completion.token);
    const uint32_t generation = static_cast<uint32_t>((completion.token >> 32) & 0x1fffffff);
    if (index >= connections_.size() || connections_[index]->generation != generation) {
      if (completion.buffer >= 0) backend_.release_buffer(completion.buffer);
      return;  // stale: cannot happen while operations are counted, kept as a guard
    }
    Connection& connection = *connections_[index];
    if ((completion.token & kSendBit) != 0) {
      on_send(index, connection, completion);
    } else {
      on_receive(index, connection, completion);
    }
    if (!completion.more) {
      --connection.operations;
      if (!connection.open && connection.operations == 0) free_slot(index);
    }
  }

  // A /sleep timer fired: answer, then go on with the input that waited behind it.
  void wake(uint64_t token) {
    const uint32_t index = static_cast<uint32_t>(token);
    Connection& connection = *connections_[index];
    --connection.operations;
    connection.sleeping = false;
    if (connection.open) {
      append_response(connection, 200, connection.sleeping_keep_alive, kBody,
                      connection.sleeping_version_minor);
      handle_input(index, connection);
      if (connection.open) flush(index, connection);
    }
    if (!connection.open && connection.operations == 0) free_slot(index);
  }

  uint64_t token_of(uint32_t index, bool send) const {
    uint64_t token = kConnectionBit | (uint64_t{connections_[index]->generation} << 32) | index;
    return send ? token | kSendBit : token;
  }

  void on_accept(const Completion& completion) {
    if (completion.result >= 0) {
      int one = 1;
      setsockopt(completion.result, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const uint32_t index = allocate_slot(completion.result);
      arm_receive(index);
    } else if (completion.result != -ECANCELED && completion.result != -EAGAIN) {
      std::fprintf(stderr, "cpp_responder: accept: %s\n", std::strerror(-completion.result));
    }
    if (!completion.more && stop_requested == 0) {
      backend_.accept_multishot(listen_fd_, kAcceptToken);
    }
  }

  uint32_t allocate_slot(int fd) {
    uint32_t index;
    if (!free_slots_.empty()) {
      index = free_slots_.back();
      free_slots_.pop_back();
    } else {
      index = static_cast<uint32_t>(connections_.size());
      connections_.push_back(std::make_unique<Connection>());
    }
    Connection& connection = *connections_[index];
    const uint32_t generation = (connection.generation + 1) & 0x1fffffff;
    connection = Connection{};
    connection.generation = generation;
    connection.fd.reset(fd);
    connection.open = true;
    return index;
  }

  void free_slot(uint32_t index) {
    Connection& connection = *connections_[index];
    connection.input = std::string();
    connection.output = std::string();
    free_slots_.push_back(index);
  }

  void arm_receive(uint32_t index) {
    Connection& connection = *connections_[index];
    connection.receive_armed = true;
    ++connection.operations;
    backend_.recv_multishot(connection.fd.get(), token_of(index, false));
  }

  void close_connection(Connection& connection) {
    if (!connection.open) return;
    connection.open = false;
    if (connection.operations > 0) backend_.cancel_fd(connection.fd.get());
    connection.fd.reset();
  }

  void on_receive(uint32_t index, Connection& connection, const Completion& completion) {
    if (completion.buffer >= 0) {
      if (completion.result > 0 && connection.open) {
        auto data = backend_.buffer_data(completion.buffer);
        connection.input.append(reinterpret_cast<const char*>(data.data()),
                                static_cast<size_t>(completion.result));
      }
      backend_.release_buffer(completion.buffer);
    }
    if (!completion.more) connection.receive_armed = false;
    if (!connection.open) return;
    if (completion.result == 0 || (completion.result < 0 && completion.result != -ENOBUFS)) {
      close_connection(connection);
      return;
    }
    handle_input(index, connection);
    if (!connection.open) return;
    flush(index, connection);
    if (connection.open && !connection.receive_armed && !connection.close_after_send) {
      arm_receive(index);
    }
  }

  // Parses every complete request in the input and appends one response per request.
  void handle_input(uint32_t index, Connection& connection) {
    size_t consumed = 0;
    std::string_view input = connection.input;
    while (!connection.close_after_send && !connection.sleeping) {
      if (connection.body_to_skip > 0) {
        const uint64_t skip = std::min<uint64_t>(connection.body_to_skip, input.size() - consumed);
        consumed += skip;
        connection.body_to_skip -= skip;
        if (connection.body_to_skip > 0) break;
      }
      if (consumed == input.size()) break;
      tf::http::RequestHead head;
      const tf::http::ParseResult result =
          tf::http::parse_request(input.substr(consumed), limits_, head, headers_);
      if (result.status == tf::http::ParseStatus::incomplete) break;
      if (result.status == tf::http::ParseStatus::error) {
        append_response(connection, result.http_status, false, "");
        break;
      }
      if (head.framing == tf::http::BodyFraming::chunked) {
        append_response(connection, 501, false, "");
        break;
      }
      consumed += head.head_length;
      connection.body_to_skip = head.content_length;
      if (head.path == kSleepPath) {
        connection.sleeping = true;
        connection.sleeping_keep_alive = head.keep_alive;
        connection.sleeping_version_minor = head.version_minor;
        ++connection.operations;  // the timer holds the slot like a queued operation
        timers_.add(tf::core::monotonic_ns() + kSleepNs, token_of(index, false));
        break;
      }
      append_response(connection, 200, head.keep_alive, kBody, head.version_minor);
    }
    connection.input.erase(0, consumed);
  }

  void append_response(Connection& connection, int status, bool keep_alive, std::string_view body,
                       int version_minor = 1) {
    std::string& out = connection.output;
    tf::http::append_status_line(out, status, version_minor);
    out += "Content-Type: text/plain\r\nContent-Length: ";
    tf::http::append_decimal(out, body.size());
    out += "\r\nDate: ";
    out += date_.now();
    if (!keep_alive) {
      out += "\r\nConnection: close";
      connection.close_after_send = true;
    } else if (version_minor == 0) {
      out += "\r\nConnection: keep-alive";
    }
    out += "\r\n\r\n";
    out += body;
  }

  // Sends what is pending: a direct non-blocking send first, the kernel's wait only if needed.
  void flush(uint32_t index, Connection& connection) {
    if (connection.send_queued) return;
    while (connection.output_sent < connection.output.size()) {
      const ssize_t sent =
          ::send(connection.fd.get(), connection.output.data() + connection.output_sent,
                 connection.output.size() - connection.output_sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent > 0) {
        connection.output_sent += static_cast<size_t>(sent);
        continue;
      }
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        queue_send(index, connection);
        return;
      }
      close_connection(connection);
      return;
    }
    connection.output.clear();
    connection.output_sent = 0;
    if (connection.close_after_send) close_connection(connection);
  }

  void queue_send(uint32_t index, Connection& connection) {
    connection.send_vector.iov_base = connection.output.data() + connection.output_sent;
    connection.send_vector.iov_len = connection.output.size() - connection.output_sent;
    connection.send_message = msghdr{};
    connection.send_message.msg_iov = &connection.send_vector;
    connection.send_message.msg_iovlen = 1;
    connection.send_queued = true;
    ++connection.operations;
    backend_.sendmsg(connection.fd.get(), &connection.send_message, token_of(index, true));
  }

  void on_send(uint32_t index, Connection& connection, const Completion& completion) {
    connection.send_queued = false;
    if (!connection.open) return;
    if (completion.result < 0) {
      close_connection(connection);
      return;
    }
    connection.output_sent += static_cast<size_t>(completion.result);
    flush(index, connection);
  }

  Backend& backend_;
  int listen_fd_;
  tf::http::Limits limits_{};
  std::array<tf::http::Header, 100> headers_{};
  tf::http::DateCache date_;
  tf::core::TimerHeap timers_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::vector<uint32_t> free_slots_;
};

int usage(const char* program) {
  std::fprintf(stderr, "usage: %s [--host ADDR] [--port N] [--backend io_uring|epoll|auto]\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 8000;
  tf::core::BackendOptions options;
  options.choice = tf::core::BackendChoice::io_uring;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const char* value = argv[++i];
    if (argument == "--host") {
      host = value;
    } else if (argument == "--port") {
      port = std::atoi(value);
    } else if (argument == "--backend") {
      if (!tf::core::parse_backend_choice(value, options.choice)) return usage(argv[0]);
    } else {
      return usage(argv[0]);
    }
  }

  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  int one = 1;
  if (!listener || inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1 ||
      setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      listen(listener.get(), 4096) != 0) {
    std::fprintf(stderr, "cpp_responder: cannot listen on %s:%d: %s\n", host.c_str(), port,
                 std::strerror(errno));
    return 1;
  }
  socklen_t length = sizeof address;
  getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length);

  std::unique_ptr<Backend> backend;
  try {
    backend = tf::core::make_backend(options);
  } catch (const std::system_error& error) {
    std::fprintf(stderr, "cpp_responder: backend: %s\n", error.what());
    return 1;
  }
  signal_backend = backend.get();
  struct sigaction action {};
  action.sa_handler = on_stop_signal;  // no SA_RESTART: a blocked wait returns
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::fprintf(stderr, "listening on http://%s:%d (pid %d, backend %s)\n", host.c_str(),
               ntohs(address.sin_port), getpid(), tf::core::backend_name(backend->kind()));
  Server server(*backend, listener.get());
  server.run();
  return 0;
}
