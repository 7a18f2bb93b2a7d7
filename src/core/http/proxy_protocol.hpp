// The PROXY protocol (HAProxy, versions 1 and 2): the header a load balancer sends before the
// client's bytes, naming the original client. Pure: bytes in, a header view out; no I/O, no
// Python, no allocation.
//
// parse_proxy_header is incremental over a growing buffer (the connection's first bytes): called
// on any prefix of a valid header it answers `incomplete`; it answers `error` as soon as the bytes
// seen cannot start a valid header, so a client that is not a proxy is refused at its first byte.
//
// Accepted (each covered by tests/cpp/http/test_proxy_protocol.cpp):
//  - v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN[...]\r\n";
//    at most 107 bytes; addresses must be of the named family, ports decimal 0-65535 with no
//    leading zero.
//  - v2: the 12-byte signature, version 2, command LOCAL (addresses ignored: the real peer is kept)
//    or PROXY; families UNSPEC (real peer kept), INET, INET6, UNIX over STREAM (DGRAM refused);
//    the address block must fit in the declared length; TLVs after it are walked (each must fit)
//    and skipped. The declared length is at most kMaxProxyV2Length.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/http/forwarded.hpp"

namespace tf::http {

// Largest v1 header, CRLF included (the specification's bound).
constexpr size_t kMaxProxyV1Length = 107;
// Largest v2 payload (after the 16-byte fixed part) accepted: addresses plus TLVs.
constexpr size_t kMaxProxyV2Length = 4096;

enum class ProxyStatus : uint8_t { complete, incomplete, error };

// The parsed header. When `keep_peer` is true (v2 LOCAL, UNSPEC family, v1 UNKNOWN) the
// connection's own peer stays the client; otherwise `family` names the client's address.
struct ProxyHeader {
  uint8_t version = 0;  // 1 or 2
  bool keep_peer = true;
  enum class Family : uint8_t {
    unspecified,
    inet,
    inet6,
    unix_socket
  } family = Family::unspecified;
  IpAddress source{};  // inet / inet6
  IpAddress destination{};
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
};

struct ProxyResult {
  ProxyStatus status;
  size_t consumed = 0;      // bytes of the header (complete only): the request starts after them
  const char* reason = "";  // static explanation (error only)
};

// Parses the PROXY header at the start of `data` into `out` (meaningful when complete).
ProxyResult parse_proxy_header(std::string_view data, ProxyHeader& out) noexcept;

}  // namespace tf::http
