// PROXY protocol v1/v2 parsing (see proxy_protocol.hpp; the specification is HAProxy's
// "proxy-protocol.txt").
#include "core/http/proxy_protocol.hpp"

#include <algorithm>
#include <cstring>

namespace tf::http {

namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::string_view kV2Signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr size_t kV2FixedLength = 16;
// Address block sizes of the v2 families (RFC-like layout: sources, destinations, ports).
constexpr size_t kInetBlock = 12;
constexpr size_t kInet6Block = 36;
constexpr size_t kUnixBlock = 216;

ProxyResult fail(const char* reason) noexcept {
  return {ProxyStatus::error, 0, reason};
}

// Whether `data` and `expected` agree on their common prefix.
bool prefix_matches(std::string_view data, std::string_view expected) noexcept {
  const size_t n = std::min(data.size(), expected.size());
  return data.substr(0, n) == expected.substr(0, n);
}

// A v1 port: "0".."65535", no leading zero. -1 when invalid.
int v1_port(std::string_view text) noexcept {
  if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return -1;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value <= 65535 ? value : -1;
}

ProxyResult parse_v1(std::string_view data, ProxyHeader& out) noexcept {
  if (!prefix_matches(data, kV1Prefix)) return fail("not a PROXY protocol header");
  const size_t window = std::min(data.size(), kMaxProxyV1Length);
  size_t end = std::string_view::npos;
  for (size_t i = 0; i < window; ++i) {
    const char c = data[i];
    if (c == '\r') {
      if (i + 1 == data.size()) break;  // the LF may come next
      if (data[i + 1] != '\n') return fail("PROXY v1: CR without LF");
      if (i + 2 > kMaxProxyV1Length) break;
      end = i;
      break;
    }
    if (c < 0x20 || c > 0x7e) return fail("PROXY v1: invalid character");
  }
  if (end == std::string_view::npos) {
    if (data.size() >= kMaxProxyV1Length) return fail("PROXY v1: header longer than 107 bytes");
    return {ProxyStatus::incomplete};
  }
  std::string_view line = data.substr(kV1Prefix.size(), end - kV1Prefix.size());
  std::string_view fields[5];
  size_t count = 0;
  while (true) {
    size_t space = line.find(' ');
    std::string_view field = line.substr(0, space);
    if (count == 0 && field == "UNKNOWN") {
      out = ProxyHeader{};
      out.version = 1;
      return {ProxyStatus::complete, end + 2};
    }
    if (field.empty() || count == 5) return fail("PROXY v1: wrong number of fields");
    fields[count++] = field;
    if (space == std::string_view::npos) break;
    line.remove_prefix(space + 1);
  }
  if (count != 5) return fail("PROXY v1: wrong number of fields");
  const bool v4 = fields[0] == "TCP4";
  if (!v4 && fields[0] != "TCP6") return fail("PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
  const bool has_colon_source = fields[1].find(':') != std::string_view::npos;
  const bool has_colon_destination = fields[2].find(':') != std::string_view::npos;
  std::optional<IpAddress> source = parse_ip(fields[1]);
  std::optional<IpAddress> destination = parse_ip(fields[2]);
  if (!source || !destination || has_colon_source == v4 || has_colon_destination == v4) {
    return fail("PROXY v1: address does not match the protocol");
  }
  const int source_port = v1_port(fields[3]);
  const int destination_port = v1_port(fields[4]);
  if (source_port < 0 || destination_port < 0) return fail("PROXY v1: bad port");
  out = ProxyHeader{};
  out.version = 1;
  out.keep_peer = false;
  out.family = v4 ? ProxyHeader::Family::inet : ProxyHeader::Family::inet6;
  out.source = *source;
  out.destination = *destination;
  out.source_port = static_cast<uint16_t>(source_port);
  out.destination_port = static_cast<uint16_t>(destination_port);
  return {ProxyStatus::complete, end + 2};
}

uint16_t load_be16(const char* bytes) noexcept {
  return static_cast<uint16_t>((static_cast<uint8_t>(bytes[0]) << 8) |
                               static_cast<uint8_t>(bytes[1]));
}

ProxyResult parse_v2(std::string_view data, ProxyHeader& out) noexcept {
  if (!prefix_matches(data, kV2Signature)) return fail("not a PROXY protocol header");
  if (data.size() > 12) {
    const auto version_command = static_cast<uint8_t>(data[12]);
    if ((version_command >> 4) != 2) return fail("PROXY v2: unsupported version");
    if ((version_command & 0x0f) > 1) return fail("PROXY v2: unknown command");
  }
  if (data.size() > 13) {
    const auto family = static_cast<uint8_t>(data[13]);
    if ((family >> 4) > 3 || (family & 0x0f) > 2) return fail("PROXY v2: unknown family");
  }
  if (data.size() < kV2FixedLength) return {ProxyStatus::incomplete};
  const size_t length = load_be16(data.data() + 14);
  if (length > kMaxProxyV2Length) return fail("PROXY v2: header too long");
  if (data.size() < kV2FixedLength + length) return {ProxyStatus::incomplete};
  const size_t consumed = kV2FixedLength + length;
  const bool local = (static_cast<uint8_t>(data[12]) & 0x0f) == 0;
  const auto family = static_cast<uint8_t>(data[13]);
  std::string_view payload = data.substr(kV2FixedLength, length);
  out = ProxyHeader{};
  out.version = 2;
  if (local) return {ProxyStatus::complete, consumed};  // LOCAL: health check, real peer kept
  const uint8_t address_family = family >> 4;
  const uint8_t transport = family & 0x0f;
  if (address_family == 0) return {ProxyStatus::complete, consumed};  // UNSPEC: real peer kept
  if (transport != 1) return fail("PROXY v2: transport is not STREAM");
  size_t block = 0;
  const char* bytes = payload.data();
  switch (address_family) {
    case 1:
      block = kInetBlock;
      if (length < block) return fail("PROXY v2: address block truncated");
      out.family = ProxyHeader::Family::inet;
      std::memset(out.source.bytes.data() + 10, 0xff, 2);
      std::memset(out.destination.bytes.data() + 10, 0xff, 2);
      std::memcpy(out.source.bytes.data() + 12, bytes, 4);
      std::memcpy(out.destination.bytes.data() + 12, bytes + 4, 4);
      out.source_port = load_be16(bytes + 8);
      out.destination_port = load_be16(bytes + 10);
      break;
    case 2:
      block = kInet6Block;
      if (length < block) return fail("PROXY v2: address block truncated");
      out.family = ProxyHeader::Family::inet6;
      std::memcpy(out.source.bytes.data(), bytes, 16);
      std::memcpy(out.destination.bytes.data(), bytes + 16, 16);
      out.source_port = load_be16(bytes + 32);
      out.destination_port = load_be16(bytes + 34);
      break;
    default:
      block = kUnixBlock;
      if (length < block) return fail("PROXY v2: address block truncated");
      out.family = ProxyHeader::Family::unix_socket;
      break;
  }
  // TLVs: type (1 byte), length (2 bytes, big-endian), value; each must fit in the payload.
  size_t offset = block;
  while (offset < length) {
    if (length - offset < 3) return fail("PROXY v2: truncated TLV");
    const size_t value_length = load_be16(bytes + offset + 1);
    if (length - offset - 3 < value_length) return fail("PROXY v2: TLV longer than the header");
    offset += 3 + value_length;
  }
  out.keep_peer = false;
  return {ProxyStatus::complete, consumed};
}

}  // namespace

ProxyResult parse_proxy_header(std::string_view data, ProxyHeader& out) noexcept {
  if (data.empty()) return {ProxyStatus::incomplete};
  if (data[0] == 'P') return parse_v1(data, out);
  if (data[0] == '\r') return parse_v2(data, out);
  return fail("not a PROXY protocol header");
}

}  // namespace tf::http
