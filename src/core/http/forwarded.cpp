// Trusted networks and the forwarding headers (see forwarded.hpp for the rules).
#include "core/http/forwarded.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "core/http/http_response.hpp"

namespace tf::http {

namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool all_digits(std::string_view text) noexcept {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "1".."65535" (at most 5 digits); 0 for anything else.
int parse_port(std::string_view text) noexcept {
  if (!all_digits(text) || text.size() > 5) return 0;
  int value = 0;
  for (char c : text) value = value * 10 + (c - '0');
  return value <= 65535 ? value : 0;
}

// The right-most comma-separated item of `value` (a header's value), trimmed.
std::string_view last_item(std::string_view value) noexcept {
  size_t comma = value.rfind(',');
  return trim_ows(comma == std::string_view::npos ? value : value.substr(comma + 1));
}

// Whether the header name `name` equals `lower` (lower-case letters and '-') ignoring case. Only
// for token names, as the parser delivers them: OR-ing 0x20 folds the case of letters, and the
// only other byte it maps onto '-' is CR, which no token holds. Branch-free, unlike iequals's
// per-byte lowering (about 15 instructions a byte, measured with callgrind): it runs on the names
// of every request with --proxy-headers.
bool name_equals(std::string_view name, std::string_view lower) noexcept {
  if (name.size() != lower.size()) return false;
  unsigned difference = 0;
  for (size_t index = 0; index < name.size(); ++index) {
    difference |= static_cast<unsigned char>((name[index] | 0x20) ^ lower[index]);
  }
  return difference == 0;
}

// Which forwarding header a name is (one length switch and at most one comparison).
enum class Forwarding : uint8_t { none, forwarded, for_, proto, host, port };

Forwarding forwarding_kind(std::string_view name) noexcept {
  switch (name.size()) {
    case 9:
      return name_equals(name, "forwarded") ? Forwarding::forwarded : Forwarding::none;
    case 15:
      return name_equals(name, "x-forwarded-for") ? Forwarding::for_ : Forwarding::none;
    case 16:
      if ((name[12] | 0x20) == 'h') {
        return name_equals(name, "x-forwarded-host") ? Forwarding::host : Forwarding::none;
      }
      return name_equals(name, "x-forwarded-port") ? Forwarding::port : Forwarding::none;
    case 17:
      return name_equals(name, "x-forwarded-proto") ? Forwarding::proto : Forwarding::none;
    default:
      return Forwarding::none;
  }
}

// What one pass over the headers found: the last line of each single-valued header, and where
// the X-Forwarded-For lines are.
struct Found {
  bool rfc7239 = false;
  size_t first_for = SIZE_MAX;  // index of the first X-Forwarded-For line
  size_t last_for = SIZE_MAX;   // index of the last one
  std::string_view proto, host, port;
  bool has_proto = false, has_host = false, has_port = false;
};

Found find_forwarding(std::span<const Header> headers) noexcept {
  Found found;
  for (size_t index = 0; index < headers.size(); ++index) {
    const Header& header = headers[index];
    switch (forwarding_kind(header.name)) {
      case Forwarding::forwarded:
        found.rfc7239 = true;
        break;
      case Forwarding::for_:
        if (found.first_for == SIZE_MAX) found.first_for = index;
        found.last_for = index;
        break;
      case Forwarding::proto:
        found.proto = header.value;
        found.has_proto = true;
        break;
      case Forwarding::host:
        found.host = header.value;
        found.has_host = true;
        break;
      case Forwarding::port:
        found.port = header.value;
        found.has_port = true;
        break;
      case Forwarding::none:
        break;
    }
  }
  return found;
}

// "http" or "https" (case-insensitive), lower-cased; empty for anything else.
std::string scheme_of(std::string_view text) {
  if (iequals(text, "http")) return "http";
  if (iequals(text, "https")) return "https";
  return {};
}

// One element of a Forwarded header: its pairs' values, unquoted.
struct ForwardedElement {
  std::string for_value;
  std::string proto;
  std::string host;
  bool has_for = false;
};

// Splits the Forwarded header lines into elements. False when the syntax is malformed (a pair
// without "=", an unterminated quoted string, a bad character in a token).
bool split_forwarded(std::span<const Header> headers, std::vector<ForwardedElement>& out) {
  for (const Header& header : headers) {
    if (forwarding_kind(header.name) != Forwarding::forwarded) continue;
    std::string_view text = header.value;
    size_t i = 0;
    ForwardedElement element;
    bool element_has_pair = false;
    while (true) {
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (i >= text.size() || text[i] == ',' || text[i] == ';') {
        // End of a pair position: an empty pair is allowed by the grammar ([pair]).
        const bool end_of_element = i >= text.size() || text[i] == ',';
        if (end_of_element) {
          if (element_has_pair) out.push_back(std::move(element));
          element = ForwardedElement{};
          element_has_pair = false;
        }
        if (i >= text.size()) break;
        ++i;
        continue;
      }
      size_t name_start = i;
      while (i < text.size() && text[i] != '=' && text[i] != ';' && text[i] != ',' &&
             text[i] != ' ' && text[i] != '"') {
        ++i;
      }
      if (i >= text.size() || text[i] != '=' || i == name_start) return false;
      std::string_view name = text.substr(name_start, i - name_start);
      ++i;  // '='
      std::string value;
      if (i < text.size() && text[i] == '"') {
        ++i;
        bool closed = false;
        while (i < text.size()) {
          char c = text[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\') {
            if (i >= text.size()) return false;
            c = text[i++];
          }
          value += c;
        }
        if (!closed) return false;
      } else {
        size_t value_start = i;
        while (i < text.size() && text[i] != ';' && text[i] != ',' && text[i] != ' ' &&
               text[i] != '\t') {
          if (text[i] == '"') return false;
          ++i;
        }
        value.assign(text.substr(value_start, i - value_start));
        if (value.empty()) return false;
      }
      element_has_pair = true;
      if (iequals(name, "for")) {
        element.for_value = std::move(value);
        element.has_for = true;
      } else if (iequals(name, "proto")) {
        element.proto = std::move(value);
      } else if (iequals(name, "host")) {
        element.host = std::move(value);
      }
      while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
      if (i < text.size() && text[i] != ',' && text[i] != ';') return false;
    }
  }
  return true;
}

void set_client(ForwardedInfo& info, const ForwardedNode& node) {
  info.client_host = format_ip(node.address);
  info.client_port = node.port;
  info.has_client = true;
}

void note(ForwardedInfo& info, const char* what) noexcept {
  if (info.malformed == nullptr) info.malformed = what;
}

void resolve_rfc7239(std::span<const Header> headers, const TrustedNetworks& trusted,
                     ForwardedInfo& info) {
  std::vector<ForwardedElement> elements;
  if (!split_forwarded(headers, elements)) {
    note(info, "Forwarded: malformed syntax");
    return;
  }
  if (elements.empty()) return;
  // Walk from the right past elements whose for= is a trusted address.
  size_t chosen = 0;
  ForwardedNode node;
  for (size_t k = elements.size(); k-- > 0;) {
    chosen = k;
    if (!elements[k].has_for) {
      node = ForwardedNode{};
      node.kind = ForwardedNode::Kind::hidden;
      break;
    }
    node = parse_forwarded_node(elements[k].for_value);
    if (node.kind != ForwardedNode::Kind::address || !trusted.contains(node.address)) break;
  }
  const ForwardedElement& element = elements[chosen];
  if (node.kind == ForwardedNode::Kind::address) {
    set_client(info, node);
  } else if (node.kind == ForwardedNode::Kind::malformed) {
    note(info, "Forwarded: malformed for=");
  }
  if (!element.proto.empty()) {
    info.scheme = scheme_of(element.proto);
    if (info.scheme.empty()) note(info, "Forwarded: proto= is not http or https");
  }
  if (!element.host.empty()) {
    if (valid_host(element.host)) {
      info.host = element.host;
    } else {
      note(info, "Forwarded: malformed host=");
    }
  }
}

void resolve_x_forwarded(std::span<const Header> headers, const Found& found,
                         const TrustedNetworks& trusted, ForwardedInfo& info) {
  // X-Forwarded-For: every line in order is one list; walked from its right end, line by line
  // from the last, without copying.
  bool done = found.first_for == SIZE_MAX;
  for (size_t line = found.last_for + 1; !done && line-- > found.first_for;) {
    if (forwarding_kind(headers[line].name) != Forwarding::for_) continue;
    std::string_view rest = headers[line].value;
    while (true) {
      const size_t comma = rest.rfind(',');
      const std::string_view item =
          trim_ows(comma == std::string_view::npos ? rest : rest.substr(comma + 1));
      const bool leftmost = comma == std::string_view::npos && line == found.first_for;
      ForwardedNode node = parse_forwarded_node(item);
      if (node.kind == ForwardedNode::Kind::malformed) {
        note(info, "X-Forwarded-For: malformed address");
        done = true;
      } else if (node.kind == ForwardedNode::Kind::hidden) {
        done = true;
      } else if (leftmost || !trusted.contains(node.address)) {
        set_client(info, node);
        done = true;
      }
      if (done || comma == std::string_view::npos) break;
      rest = rest.substr(0, comma);
    }
  }
  if (found.has_proto) {
    info.scheme = scheme_of(last_item(found.proto));
    if (info.scheme.empty()) note(info, "X-Forwarded-Proto: not http or https");
  }
  if (found.has_host) {
    std::string_view host = last_item(found.host);
    if (valid_host(host)) {
      info.host.assign(host);
    } else {
      note(info, "X-Forwarded-Host: malformed host");
    }
  }
}

}  // namespace

bool IpAddress::is_v4() const noexcept {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin());
}

std::optional<IpAddress> parse_ip(std::string_view text) noexcept {
  char buffer[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof(buffer)) return std::nullopt;
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  IpAddress address;
  if (text.find(':') == std::string_view::npos) {
    in_addr v4{};
    if (inet_pton(AF_INET, buffer, &v4) != 1) return std::nullopt;
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), address.bytes.begin());
    std::memcpy(address.bytes.data() + 12, &v4, 4);
    return address;
  }
  if (inet_pton(AF_INET6, buffer, address.bytes.data()) != 1) return std::nullopt;
  return address;
}

std::string format_ip(const IpAddress& address) {
  if (address.is_v4()) {
    // Dotted quad by hand: glibc's inet_ntop formats IPv4 with sprintf (about 1,500 instructions).
    char text[16];
    size_t length = 0;
    for (size_t index = 12; index < 16; ++index) {
      const unsigned octet = address.bytes[index];
      if (octet >= 100) text[length++] = static_cast<char>('0' + octet / 100);
      if (octet >= 10) text[length++] = static_cast<char>('0' + octet / 10 % 10);
      text[length++] = static_cast<char>('0' + octet % 10);
      if (index < 15) text[length++] = '.';
    }
    return std::string(text, length);
  }
  char buffer[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, address.bytes.data(), buffer, sizeof(buffer));
  return buffer;
}

std::optional<TrustedNetworks> TrustedNetworks::parse(std::string_view list, std::string& error) {
  TrustedNetworks networks;
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view entry = trim_ows(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (entry.empty()) continue;
    if (entry == "*") {
      networks.all_ = true;
      continue;
    }
    size_t slash = entry.find('/');
    std::optional<IpAddress> address = parse_ip(entry.substr(0, slash));
    if (!address) {
      error = "not an IP address or network: '" + std::string(entry) + "'";
      return std::nullopt;
    }
    const unsigned width = address->is_v4() ? 32 : 128;
    unsigned prefix = width;
    if (slash != std::string_view::npos) {
      std::string_view bits = entry.substr(slash + 1);
      if (!all_digits(bits) || bits.size() > 3 ||
          static_cast<unsigned>(std::stoi(std::string(bits))) > width) {
        error = "bad network prefix: '" + std::string(entry) + "'";
        return std::nullopt;
      }
      prefix = static_cast<unsigned>(std::stoi(std::string(bits)));
    }
    networks.networks_.push_back({*address, prefix + (128 - width)});
  }
  return networks;
}

bool TrustedNetworks::contains(const IpAddress& address) const noexcept {
  if (all_) return true;
  for (const Network& network : networks_) {
    unsigned full = network.prefix / 8;
    unsigned rest = network.prefix % 8;
    if (!std::equal(address.bytes.begin(), address.bytes.begin() + full,
                    network.address.bytes.begin())) {
      continue;
    }
    if (rest != 0) {
      const auto mask = static_cast<uint8_t>(0xff << (8 - rest));
      if ((address.bytes[full] & mask) != (network.address.bytes[full] & mask)) continue;
    }
    return true;
  }
  return false;
}

bool TrustedNetworks::contains_text(std::string_view text) const noexcept {
  std::optional<IpAddress> address = parse_ip(text);
  return address && contains(*address);
}

bool is_forwarding_header(std::string_view name) noexcept {
  return forwarding_kind(name) != Forwarding::none;
}

ForwardedNode parse_forwarded_node(std::string_view text) noexcept {
  ForwardedNode node;
  if (text.empty()) return node;
  if (text.front() == '_' || iequals(text, "unknown")) {
    node.kind = ForwardedNode::Kind::hidden;
    return node;
  }
  std::string_view host = text;
  std::string_view port;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return node;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return node;
      port = rest.substr(1);
      if (port.empty()) return node;
    }
    if (host.find(':') == std::string_view::npos) return node;  // brackets are for IPv6 only
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    size_t colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) return node;
  }
  std::optional<IpAddress> address = parse_ip(host);
  if (!address) return node;
  if (!port.empty() && port.front() != '_') {  // an obfuscated port is ignored
    int value = parse_port(port);
    if (value == 0) return node;
    node.port = value;
  }
  node.address = *address;
  node.kind = ForwardedNode::Kind::address;
  return node;
}

bool valid_host(std::string_view text) noexcept {
  if (text.empty() || text.size() > 255) return false;
  std::string_view name = text;
  std::string_view port;
  if (text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos || !parse_ip(text.substr(1, close - 1))) return false;
    std::string_view rest = text.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    return parse_port(rest.substr(1)) != 0;
  }
  size_t colon = text.find(':');
  if (colon != std::string_view::npos) {
    name = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (parse_port(port) == 0) return false;
  }
  if (name.empty()) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == '~';
  });
}

ForwardedInfo resolve_forwarded(std::span<const Header> headers, const TrustedNetworks& trusted) {
  ForwardedInfo info;
  const Found found = find_forwarding(headers);
  if (found.rfc7239) {
    resolve_rfc7239(headers, trusted, info);
  } else {
    resolve_x_forwarded(headers, found, trusted, info);
  }
  if (found.has_port) {
    info.port = parse_port(last_item(found.port));
    if (info.port == 0) note(info, "X-Forwarded-Port: not a port number");
  }
  return info;
}

}  // namespace tf::http
