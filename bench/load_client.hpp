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
#include <ctime>
#include <string>
#include <vector>

#include "core/io/fd.hpp"

namespace tf::bench {

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
