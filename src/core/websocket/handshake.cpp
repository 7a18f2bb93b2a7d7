// The WebSocket opening handshake (see handshake.hpp).
#include "core/websocket/handshake.hpp"

#include "core/http/http_response.hpp"
#include "core/websocket/sha1.hpp"

namespace tf::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// Calls visit(item) for each trimmed, non-empty item of a comma-separated list; stops early when
// visit returns true. Returns whether it did.
template <typename Visit>
bool for_each_item(std::string_view list, Visit&& visit) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view item = http::trim_ows(list.substr(0, comma));
    if (!item.empty() && visit(item)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

bool has_token(std::string_view list, std::string_view token) noexcept {
  return for_each_item(list, [&](std::string_view item) { return http::iequals(item, token); });
}

HandshakeResult validate_upgrade(const http::RequestHead& head,
                                 std::span<const http::Header> headers, UpgradeRequest& out) {
  if (head.method != "GET") return {400, "a WebSocket handshake must use GET"};
  if (head.version_minor != 1) return {400, "a WebSocket handshake needs HTTP/1.1"};
  bool upgrade = false, connection_upgrade = false, version_seen = false, version_13 = false;
  int keys = 0;
  std::string_view key;
  for (const http::Header& header : headers) {
    if (http::iequals(header.name, "upgrade")) {
      upgrade = upgrade || has_token(header.value, "websocket");
    } else if (http::iequals(header.name, "connection")) {
      connection_upgrade = connection_upgrade || has_token(header.value, "upgrade");
    } else if (http::iequals(header.name, "sec-websocket-key")) {
      ++keys;
      key = header.value;
    } else if (http::iequals(header.name, "sec-websocket-version")) {
      version_13 = (version_seen ? version_13 : true) && header.value == "13";
      version_seen = true;
    }
  }
  if (!upgrade) return {400, "missing \"Upgrade: websocket\""};
  if (!connection_upgrade) return {400, "missing \"Connection: Upgrade\""};
  if (!version_seen || !version_13) return {426, "unsupported Sec-WebSocket-Version (13 expected)"};
  if (keys != 1) return {400, "exactly one Sec-WebSocket-Key is required"};
  std::string decoded;
  if (!base64_decode(key, decoded) || decoded.size() != 16) {
    return {400, "Sec-WebSocket-Key must be 16 bytes in base64"};
  }
  out.key = key;
  return {};
}

std::string accept_key(std::string_view key) {
  std::string input;
  input.reserve(key.size() + kGuid.size());
  input.append(key);
  input.append(kGuid);
  auto digest = sha1(input);
  return base64_encode(
      std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string_view select_subprotocol(std::span<const http::Header> headers,
                                    std::span<const std::string_view> supported) {
  std::string_view chosen;
  for (const http::Header& header : headers) {
    if (!http::iequals(header.name, "sec-websocket-protocol")) continue;
    bool found = for_each_item(header.value, [&](std::string_view item) {
      for (std::string_view candidate : supported) {
        if (candidate == item) {
          chosen = candidate;
          return true;
        }
      }
      return false;
    });
    if (found) break;
  }
  return chosen;
}

}  // namespace tf::ws
