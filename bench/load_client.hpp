// What the benchmark's C++ load generators (rate_client, ws_client) share: the clock, TCP
// connections to the server under test, epoll registration and latency percentiles.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "core/io/fd.hpp"

namespace tf::bench {

// The options every client takes: where to connect, what to ask, how many connections, how long.
struct TargetOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string path = "/";
  int connections = 64;
  double duration = 5;  // seconds measured, after the warm-up
  double warmup = 1;    // seconds
};

// Sets the shared option `name` (--host, --port, --path, --connections, --duration, --warmup)
// from `value`; false when `name` is none of them.
inline bool set_target_option(std::string_view name, const char* value, TargetOptions& options) {
  if (name == "--host") {
    options.host = value;
  } else if (name == "--port") {
    options.port = std::atoi(value);
  } else if (name == "--path") {
    options.path = value;
  } else if (name == "--connections") {
    options.connections = std::atoi(value);
  } else if (name == "--duration") {
    options.duration = std::atof(value);
  } else if (name == "--warmup") {
    options.warmup = std::atof(value);
  } else {
    return false;
  }
  return true;
}

// True when the shared options can run: a port, connections, a duration, no negative warm-up.
inline bool target_options_valid(const TargetOptions& options) {
  return options.port > 0 && options.connections > 0 && options.duration > 0 && options.warmup >= 0;
}

// CLOCK_MONOTONIC in nanoseconds.
inline int64_t now_ns() {
  timespec time{};
  clock_gettime(CLOCK_MONOTONIC, &time);
  return int64_t{time.tv_sec} * 1'000'000'000 + time.tv_nsec;
}

// The IPv4 address `host`:`port` (`host` in dotted form).
inline sockaddr_in ipv4_address(const std::string& host, int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &address.sin_addr);
  return address;
}

// A blocking TCP connection to `address` with TCP_NODELAY; an empty fd (errno set) on failure.
inline tf::core::UniqueFd connect_tcp(const sockaddr_in& address) {
  tf::core::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    fd.reset();
    errno = error;
    return fd;
  }
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Registers `fd` with `epoll` for reading, `index` as its event data; false (errno set) on failure.
inline bool watch_readable(int epoll, int fd, size_t index) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = index;
  return epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) == 0;
}

// The `fraction` percentile of `sorted_ns` (ascending nanoseconds), in milliseconds; 0 if empty.
inline double percentile_ms(const std::vector<int64_t>& sorted_ns, double fraction) {
  if (sorted_ns.empty()) return 0.0;
  size_t rank = static_cast<size_t>(fraction * static_cast<double>(sorted_ns.size()));
  rank = std::min(rank, sorted_ns.size() - 1);
  return static_cast<double>(sorted_ns[rank]) / 1e6;
}

}  // namespace tf::bench
