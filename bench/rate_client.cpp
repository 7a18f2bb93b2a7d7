// rate_client: an open-loop HTTP/1.1 load generator for fixed-rate latency measurements.
//
// Requests are scheduled at a constant total rate: request n is due at start + n / rate and goes
// to connection n % connections. When that connection still waits for an earlier response, the
// request queues behind it, and its latency is still measured from the time it was due (so a
// stalled server cannot hide its stall by slowing the client down: no coordinated omission).
// Only responses to requests due after the warm-up are recorded. Single-threaded, epoll.
//
// Usage: rate_client --port N --rate R [--host 127.0.0.1] [--path /] [--connections 64]
//                    [--duration 10] [--warmup 2]
// Prints one JSON object on stdout: requests, errors, non_2xx, achieved_rate, and latency
// percentiles in milliseconds (p50, p90, p99, p999, max).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/fd.hpp"
#include "load_client.hpp"

namespace {

using tf::bench::now_ns;
using tf::core::UniqueFd;

struct Options : tf::bench::TargetOptions {
  Options() {
    duration = 10;
    warmup = 2;
  }
  double rate = 0;
};

// One client connection: the requests due on it (their due times) and the response being read.
struct ClientConnection {
  UniqueFd fd;
  std::deque<int64_t> due_times;  // front: the request on the wire; the rest wait to be sent
  bool in_flight = false;
  std::string input;
};

class LoadGenerator {
 public:
  explicit LoadGenerator(const Options& options)
      : options_(options),
        request_("GET " + options.path + " HTTP/1.1\r\nHost: " + options.host +
                 "\r\nUser-Agent: rate_client\r\n\r\n"),
        epoll_(epoll_create1(EPOLL_CLOEXEC)),
        address_(tf::bench::ipv4_address(options.host, options.port)) {}

  bool run() {
    connections_.resize(static_cast<size_t>(options_.connections));
    for (size_t index = 0; index < connections_.size(); ++index) {
      if (!connect_one(index)) return false;
    }
    const int64_t start = now_ns();
    measure_from_ = start + static_cast<int64_t>(options_.warmup * 1e9);
    const int64_t end = measure_from_ + static_cast<int64_t>(options_.duration * 1e9);
    const double interval_ns = 1e9 / options_.rate;
    uint64_t next_request = 0;
    std::vector<epoll_event> events(256);
    for (;;) {
      const int64_t now = now_ns();
      if (now >= end) break;
      for (;;) {
        const int64_t due =
            start + static_cast<int64_t>(static_cast<double>(next_request) * interval_ns);
        if (due > now) break;
        const size_t index = next_request % connections_.size();
        ++next_request;
        if (due >= measure_from_) ++issued_;
        connections_[index].due_times.push_back(due);
        if (!connections_[index].in_flight) send_next(index);
      }
      const int64_t next_due =
          start + static_cast<int64_t>(static_cast<double>(next_request) * interval_ns);
      const int64_t wait_ns = std::max<int64_t>(0, std::min(next_due, end) - now_ns());
      timespec timeout{wait_ns / 1'000'000'000, wait_ns % 1'000'000'000};
      const int ready = epoll_pwait2(epoll_.get(), events.data(), static_cast<int>(events.size()),
                                     &timeout, nullptr);
      for (int i = 0; i < ready; ++i) on_readable(events[i].data.u64);
    }
    for (const ClientConnection& connection : connections_) {
      for (int64_t due : connection.due_times) {
        if (due >= measure_from_) ++unanswered_;
      }
    }
    report();
    return true;
  }

 private:
  bool connect_one(size_t index) {
    ClientConnection& connection = connections_[index];
    connection.fd = tf::bench::connect_tcp(address_);
    if (!connection.fd) {
      std::fprintf(stderr, "rate_client: connect: %s\n", std::strerror(errno));
      return false;
    }
    tf::bench::watch_readable(epoll_.get(), connection.fd.get(), index);
    connection.in_flight = false;
    connection.input.clear();
    return true;
  }

  void send_next(size_t index) {
    ClientConnection& connection = connections_[index];
    if (connection.due_times.empty()) return;
    const ssize_t sent =
        ::send(connection.fd.get(), request_.data(), request_.size(), MSG_NOSIGNAL);
    if (sent != static_cast<ssize_t>(request_.size())) {
      fail(index);
      return;
    }
    connection.in_flight = true;
  }

  // The connection broke or answered something unusable: count the request as an error and
  // reconnect; requests queued behind it are sent on the new connection.
  void fail(size_t index) {
    ClientConnection& connection = connections_[index];
    ++errors_;
    if (!connection.due_times.empty()) connection.due_times.pop_front();
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection.fd.get(), nullptr);
    if (!connect_one(index)) {
      connection.due_times.clear();
      return;
    }
    send_next(index);
  }

  void on_readable(size_t index) {
    ClientConnection& connection = connections_[index];
    char buffer[65536];
    const ssize_t received = ::recv(connection.fd.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (received < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (received <= 0) {
      fail(index);
      return;
    }
    connection.input.append(buffer, static_cast<size_t>(received));
    for (;;) {
      const size_t head_end = connection.input.find("\r\n\r\n");
      if (head_end == std::string::npos) return;
      const std::string_view head(connection.input.data(), head_end);
      const long length = content_length(head);
      if (length < 0 || head.size() < 12) {
        fail(index);
        return;
      }
      const size_t total = head_end + 4 + static_cast<size_t>(length);
      if (connection.input.size() < total) return;
      if (!connection.in_flight || connection.due_times.empty()) {
        fail(index);  // a response nobody asked for
        return;
      }
      const int status = std::atoi(head.data() + 9);
      const int64_t due = connection.due_times.front();
      connection.due_times.pop_front();
      connection.in_flight = false;
      if (due >= measure_from_) {
        if (status < 200 || status > 299) ++non_2xx_;
        latencies_ns_.push_back(now_ns() - due);
      }
      connection.input.erase(0, total);
      if (closes(head)) {
        // The server ends the connection after this response (no keep-alive): reconnect without
        // counting an error, then send what is queued.
        epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection.fd.get(), nullptr);
        if (!connect_one(index)) {
          ++errors_;
          connection.due_times.clear();
          return;
        }
        send_next(index);
        return;
      }
      if (!connection.due_times.empty()) send_next(index);
    }
  }

  // True when the response head carries "Connection: close" (any case).
  static bool closes(std::string_view head) {
    std::string lowered(head);
    for (char& character : lowered) {
      character = static_cast<char>(std::tolower(static_cast<unsigned char>(character)));
    }
    return lowered.find("\r\nconnection: close") != std::string::npos;
  }

  static long content_length(std::string_view head) {
    size_t position = 0;
    while ((position = head.find("\r\n", position)) != std::string_view::npos) {
      position += 2;
      constexpr std::string_view name = "content-length:";
      if (head.size() - position < name.size()) break;
      bool match = true;
      for (size_t i = 0; i < name.size() && match; ++i) {
        match = std::tolower(static_cast<unsigned char>(head[position + i])) == name[i];
      }
      if (match) return std::strtol(head.data() + position + name.size(), nullptr, 10);
    }
    return -1;
  }

  void report() {
    std::sort(latencies_ns_.begin(), latencies_ns_.end());
    auto percentile = [&](double fraction) {
      return tf::bench::percentile_ms(latencies_ns_, fraction);
    };
    std::printf(
        "{\"requests\": %zu, \"issued\": %llu, \"unanswered\": %llu, \"errors\": %llu, "
        "\"non_2xx\": %llu, \"achieved_rate\": %.1f, \"target_rate\": %.1f, \"p50\": %.3f, "
        "\"p90\": %.3f, \"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}\n",
        latencies_ns_.size(), static_cast<unsigned long long>(issued_),
        static_cast<unsigned long long>(unanswered_), static_cast<unsigned long long>(errors_),
        static_cast<unsigned long long>(non_2xx_),
        static_cast<double>(latencies_ns_.size()) / options_.duration, options_.rate,
        percentile(0.50), percentile(0.90), percentile(0.99), percentile(0.999),
        latencies_ns_.empty() ? 0.0 : static_cast<double>(latencies_ns_.back()) / 1e6);
  }

  Options options_;
  std::string request_;
  UniqueFd epoll_;
  sockaddr_in address_{};
  std::vector<ClientConnection> connections_;
  int64_t measure_from_ = 0;
  std::vector<int64_t> latencies_ns_;
  uint64_t issued_ = 0;
  uint64_t unanswered_ = 0;
  uint64_t errors_ = 0;
  uint64_t non_2xx_ = 0;
};

int usage(const char* program) {
  std::fprintf(stderr,
               "usage: %s --port N --rate R [--host ADDR] [--path /] [--connections 64] "
               "[--duration 10] [--warmup 2]\n",
               program);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view argument = argv[i];
    if (i + 1 >= argc) return usage(argv[0]);
    const char* value = argv[++i];
    if (tf::bench::set_target_option(argument, value, options)) continue;
    if (argument == "--rate") {
      options.rate = std::atof(value);
    } else {
      return usage(argv[0]);
    }
  }
  if (!tf::bench::target_options_valid(options) || options.rate <= 0) return usage(argv[0]);
  LoadGenerator generator(options);
  return generator.run() ? 0 : 1;
}
