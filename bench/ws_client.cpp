// ws_client: a WebSocket load generator for the echo and broadcast benchmarks
// (bench/websocket_echo.py, bench/websocket_broadcast.py).
//
// It opens N WebSockets (HTTP/1.1 upgrade, no extension offered), then, single-threaded on epoll:
//  - echo: every connection sends a masked text message of --size bytes and sends the next one
//    when the previous one came back (closed loop, one message in flight per connection);
//  - broadcast: connection 0 sends a message and the next one only once every connection
//    (itself included) has received it; the time from the send to the last arrival is recorded.
//    The server sends one message on each connection once it has joined the group; the client
//    waits for it before the first broadcast.
// Frames from the server are parsed by their length fields only; a close frame, a connection
// that ends, a silence longer than --timeout seconds, or no message completed after the warm-up
// is an error (exit code 1).
// Only messages completed after --warmup seconds are counted in the rates.
//
// Usage: ws_client --port N [--host 127.0.0.1] [--path /echo] [--mode echo|broadcast]
//                  [--connections 64] [--size 32] [--duration 5] [--warmup 1] [--timeout 10]
// Prints one JSON object on stdout: connections, messages (counted), messages_total (warm-up
// included), seconds, rate (counted messages per second); broadcast adds broadcasts and the
// latency of one broadcast to reach everyone in milliseconds (p50, p99, max).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/fd.hpp"
#include "load_client.hpp"

namespace {

using tf::bench::now_ns;
using tf::core::UniqueFd;

struct Options : tf::bench::TargetOptions {
  Options() { path = "/echo"; }
  bool broadcast = false;
  int size = 32;
  double timeout = 10;
};

// One WebSocket: its socket and the bytes of a server frame not yet complete.
struct Connection {
  UniqueFd fd;
  std::string input;
};

// A masked text frame of `size` bytes ('x'); the fixed mask key is enough for a benchmark.
std::string client_frame(int size) {
  std::string frame;
  frame.push_back(static_cast<char>(0x81));
  if (size < 126) {
    frame.push_back(static_cast<char>(0x80 | size));
  } else {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>((size >> 8) & 0xFF));
    frame.push_back(static_cast<char>(size & 0xFF));
  }
  const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
  frame.append(reinterpret_cast<const char*>(key), 4);
  for (int index = 0; index < size; ++index) {
    frame.push_back(static_cast<char>('x' ^ key[index % 4]));
  }
  return frame;
}

// The length of the first complete frame at the start of `input`, 0 when it is not complete yet;
// `opcode` receives its opcode.
size_t complete_frame(std::string_view input, int& opcode) {
  if (input.size() < 2) return 0;
  const auto byte = [&](size_t index) { return static_cast<unsigned char>(input[index]); };
  opcode = byte(0) & 0x0F;
  uint64_t length = byte(1) & 0x7F;
  size_t header = 2;
  if (length == 126) {
    if (input.size() < 4) return 0;
    length = (uint64_t{byte(2)} << 8) | byte(3);
    header = 4;
  } else if (length == 127) {
    if (input.size() < 10) return 0;
    length = 0;
    for (size_t index = 2; index < 10; ++index) length = (length << 8) | byte(index);
    header = 10;
  }
  if (byte(1) & 0x80) header += 4;  // a masked server frame is wrong, but its length still holds
  if (input.size() - header < length) return 0;
  return header + static_cast<size_t>(length);
}

class Client {
 public:
  explicit Client(const Options& options)
      : options_(options),
        frame_(client_frame(options.size)),
        epoll_(epoll_create1(EPOLL_CLOEXEC)),
        address_(tf::bench::ipv4_address(options.host, options.port)) {}

  // Connects everything, runs the load, prints the report; false on any error.
  bool run() {
    connections_.resize(static_cast<size_t>(options_.connections));
    for (size_t index = 0; index < connections_.size(); ++index) {
      if (!open_websocket(index)) return false;
    }
    start_ = now_ns();
    measure_from_ = start_ + static_cast<int64_t>(options_.warmup * 1e9);
    const int64_t end = measure_from_ + static_cast<int64_t>(options_.duration * 1e9);
    if (options_.broadcast) {
      if (!start_broadcast()) return false;
    } else {
      for (size_t index = 0; index < connections_.size(); ++index) {
        if (!send_message(index)) return false;
      }
    }
    std::vector<epoll_event> events(1024);
    int64_t last_progress = now_ns();
    while (now_ns() < end) {
      const int ready =
          epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 100);
      if (ready < 0 && errno != EINTR) return error("epoll_wait");
      const uint64_t before = messages_total_;
      for (int i = 0; i < std::max(ready, 0); ++i) {
        if (!on_readable(events[i].data.u64)) return false;
      }
      if (messages_total_ != before) {
        last_progress = now_ns();
      } else if (now_ns() - last_progress > static_cast<int64_t>(options_.timeout * 1e9)) {
        std::fprintf(stderr, "ws_client: no message for %.0f s\n", options_.timeout);
        return false;
      }
    }
    if (messages_ == 0) {
      std::fprintf(stderr, "ws_client: no message completed after the warm-up\n");
      return false;
    }
    report(static_cast<double>(now_ns() - measure_from_) / 1e9);
    return true;
  }

 private:
  bool error(const char* what) {
    std::fprintf(stderr, "ws_client: %s: %s\n", what, std::strerror(errno));
    return false;
  }

  // Connects connection `index` and completes the upgrade handshake (blocking), then makes the
  // socket non-blocking and registers it for reading.
  bool open_websocket(size_t index) {
    Connection& connection = connections_[index];
    connection.fd = tf::bench::connect_tcp(address_);
    if (!connection.fd) return error("connect");
    const std::string request = "GET " + options_.path + " HTTP/1.1\r\nHost: " + options_.host +
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                "Sec-WebSocket-Version: 13\r\n\r\n";
    if (::send(connection.fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
      return error("send handshake");
    }
    std::string head;
    while (head.find("\r\n\r\n") == std::string::npos) {
      char buffer[4096];
      const ssize_t received = ::recv(connection.fd.get(), buffer, sizeof buffer, 0);
      if (received <= 0) return error("handshake answer");
      head.append(buffer, static_cast<size_t>(received));
    }
    if (head.rfind("HTTP/1.1 101", 0) != 0) {
      std::fprintf(stderr, "ws_client: upgrade refused: %.60s\n", head.c_str());
      return false;
    }
    connection.input = head.substr(head.find("\r\n\r\n") + 4);
    if (options_.broadcast) {
      // The server's first message says this connection joined the group: only then can a
      // broadcast be expected to reach it.
      int opcode = 0;
      size_t length = 0;
      while ((length = complete_frame(connection.input, opcode)) == 0) {
        char buffer[4096];
        const ssize_t received = ::recv(connection.fd.get(), buffer, sizeof buffer, 0);
        if (received <= 0) return error("joined message");
        connection.input.append(buffer, static_cast<size_t>(received));
      }
      connection.input.erase(0, length);
    }
    if (!tf::bench::watch_readable(epoll_.get(), connection.fd.get(), index)) {
      return error("epoll_ctl");
    }
    return true;
  }

  bool send_message(size_t index) {
    const ssize_t sent =
        ::send(connections_[index].fd.get(), frame_.data(), frame_.size(), MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(frame_.size())) return error("send");
    return true;
  }

  bool start_broadcast() {
    waiting_ = connections_.size();
    broadcast_sent_ = now_ns();
    return send_message(0);
  }

  bool on_readable(size_t index) {
    Connection& connection = connections_[index];
    char buffer[65536];
    const ssize_t received = ::recv(connection.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (received < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    if (received == 0) {
      std::fprintf(stderr, "ws_client: the server closed connection %zu\n", index);
      return false;
    }
    if (received < 0) return error("recv");
    connection.input.append(buffer, static_cast<size_t>(received));
    size_t consumed = 0;
    for (;;) {
      int opcode = 0;
      const size_t length =
          complete_frame(std::string_view(connection.input).substr(consumed), opcode);
      if (length == 0) break;
      consumed += length;
      if (opcode == 0x8) {
        std::fprintf(stderr, "ws_client: the server sent a close frame on %zu\n", index);
        return false;
      }
      if (opcode == 0x9 || opcode == 0xA) continue;  // pings: none are expected at these rates
      if (!on_message(index)) return false;
    }
    connection.input.erase(0, consumed);
    return true;
  }

  bool on_message(size_t index) {
    ++messages_total_;
    const int64_t now = now_ns();
    if (!options_.broadcast) {
      if (now >= measure_from_) ++messages_;
      return send_message(index);
    }
    if (waiting_ == 0) {
      std::fprintf(stderr, "ws_client: a message nobody sent arrived on %zu\n", index);
      return false;
    }
    if (--waiting_ > 0) return true;
    if (broadcast_sent_ >= measure_from_) {
      messages_ += connections_.size();
      latencies_ns_.push_back(now - broadcast_sent_);
    }
    return start_broadcast();
  }

  void report(double seconds) {
    std::printf(
        "{\"connections\": %zu, \"messages\": %llu, \"messages_total\": %llu, "
        "\"seconds\": %.3f, \"rate\": %.1f",
        connections_.size(), static_cast<unsigned long long>(messages_),
        static_cast<unsigned long long>(messages_total_), seconds,
        static_cast<double>(messages_) / seconds);
    if (options_.broadcast) {
      std::sort(latencies_ns_.begin(), latencies_ns_.end());
      const auto percentile = [&](double fraction) {
        return tf::bench::percentile_ms(latencies_ns_, fraction);
      };
      std::printf(", \"broadcasts\": %zu, \"p50\": %.3f, \"p99\": %.3f, \"max\": %.3f",
                  latencies_ns_.size(), percentile(0.5), percentile(0.99),
                  latencies_ns_.empty() ? 0.0 : static_cast<double>(latencies_ns_.back()) / 1e6);
    }
    std::printf("}\n");
  }

  Options options_;
  std::string frame_;
  UniqueFd epoll_;
  sockaddr_in address_{};
  std::vector<Connection> connections_;
  int64_t start_ = 0;
  int64_t measure_from_ = 0;
  uint64_t messages_ = 0;        // counted (after the warm-up); broadcast: deliveries
  uint64_t messages_total_ = 0;  // every message received
  size_t waiting_ = 0;           // broadcast: connections that have not received it yet
  int64_t broadcast_sent_ = 0;
  std::vector<int64_t> latencies_ns_;
};

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s --port N [--host ADDR] [--path /echo] [--mode echo|broadcast] "
               "[--connections 64] [--size 32] [--duration 5] [--warmup 1] [--timeout 10]\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const char* text = argv[++i];
    const std::string_view value = text;
    if (tf::bench::set_target_option(argument, text, options)) continue;
    if (argument == "--mode" && (value == "echo" || value == "broadcast")) {
      options.broadcast = value == "broadcast";
    } else if (argument == "--size") {
      options.size = std::atoi(text);
    } else if (argument == "--timeout") {
      options.timeout = std::atof(text);
    } else {
      return usage(argv[0]);
    }
  }
  if (!tf::bench::target_options_valid(options) || options.size < 0 || options.size > 65535 ||
      options.timeout <= 0) {
    return usage(argv[0]);
  }
  Client client(options);
  return client.run() ? 0 : 1;
}
