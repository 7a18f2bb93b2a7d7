// Trusted proxies: IP addresses and CIDR networks, and what the forwarding headers of a trusted
// peer say (X-Forwarded-For/-Proto/-Host/-Port, RFC 7239 Forwarded). Pure: no I/O, no Python.
//
// Choices (each covered by tests/cpp/http/test_forwarded.cpp):
//  - Addresses are kept as 16 bytes; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so a dual-stack
//    socket's "::ffff:127.0.0.1" peer matches "127.0.0.1" and "127.0.0.0/8".
//  - The client is the right-most hop that is not trusted, walking from the right past trusted
//    addresses (a client can prepend anything; only what trusted proxies appended counts). When
//    every hop is trusted, the left-most one is the client.
//  - `Forwarded` wins over the X-Forwarded-* headers when both are present. Its proto and host are
//    taken from the element chosen for the client (the one the first trusted proxy appended).
//  - X-Forwarded-Proto/-Host/-Port: the right-most value (the one the nearest proxy set).
//  - A malformed value is ignored (only that value: the others still apply); `malformed` names the
//    first one for a debug log. Obfuscated ("_hidden") and "unknown" nodes are ignored, not errors.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/http/http_parser.hpp"

namespace tf::http {

// An IPv4 or IPv6 address in network byte order; IPv4 is stored IPv4-mapped (::ffff:a.b.c.d).
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  bool operator==(const IpAddress&) const = default;
  // Whether it is an IPv4(-mapped) address.
  bool is_v4() const noexcept;
};

// Parses a textual IPv4 ("192.0.2.1") or IPv6 ("2001:db8::1", no brackets, no zone) address.
std::optional<IpAddress> parse_ip(std::string_view text) noexcept;
// The address as text: dotted quad for IPv4(-mapped), RFC 5952 form for IPv6.
std::string format_ip(const IpAddress& address);

// A list of trusted addresses and networks ("127.0.0.1,::1,10.0.0.0/8", "*" for every address).
class TrustedNetworks {
 public:
  // An empty list (trusts nobody).
  TrustedNetworks() = default;
  // Parses a comma-separated list; whitespace around entries is ignored, empty entries skipped.
  // nullopt with `error` naming the bad entry.
  static std::optional<TrustedNetworks> parse(std::string_view list, std::string& error);
  // Whether `address` is in one of the networks.
  bool contains(const IpAddress& address) const noexcept;
  // Whether `text` is an IP address in one of the networks (false for anything else).
  bool contains_text(std::string_view text) const noexcept;
  // The list is "*".
  bool trusts_all() const noexcept { return all_; }

 private:
  struct Network {
    IpAddress address;
    unsigned prefix;  // leading bits that must match, over the 128-bit form
  };
  std::vector<Network> networks_;
  bool all_ = false;
};

// Whether `name` (a token, as the parser delivers header names) is one of the forwarding headers
// (Forwarded, X-Forwarded-For/-Proto/-Host/-Port), case-insensitively. Cheap: a length switch per
// header, and one branch-free comparison for a name of a matching length.
bool is_forwarding_header(std::string_view name) noexcept;

// What the forwarding headers of one request say. Empty fields: not said (or malformed).
struct ForwardedInfo {
  std::string client_host;  // the client's address as text (IPv6 without brackets)
  int client_port = 0;      // 0 when no port was given
  bool has_client = false;
  std::string scheme;               // "http" or "https"
  std::string host;                 // host[:port] as a Host header would carry it
  int port = 0;                     // X-Forwarded-Port (0: none)
  const char* malformed = nullptr;  // static text naming the first malformed value, or null
};

// Resolves the forwarding headers among `headers` (sent by a peer the caller trusts; names are
// tokens, as the parser delivers them); `trusted` decides which hops of X-Forwarded-For /
// Forwarded for= are skipped. Never fails.
ForwardedInfo resolve_forwarded(std::span<const Header> headers, const TrustedNetworks& trusted);

// One node of X-Forwarded-For or Forwarded for=: "192.0.2.1", "192.0.2.1:80", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:4711" (quotes already removed).
struct ForwardedNode {
  enum class Kind : uint8_t { address, hidden, malformed } kind = Kind::malformed;
  IpAddress address{};
  int port = 0;  // 0: no port
};
ForwardedNode parse_forwarded_node(std::string_view text) noexcept;

// Whether `text` is acceptable as a Host value: a name or IPv4 address ([A-Za-z0-9.-_~]) or a
// bracketed IPv6 literal, optionally followed by ":port" (1-65535).
bool valid_host(std::string_view text) noexcept;

}  // namespace tf::http
