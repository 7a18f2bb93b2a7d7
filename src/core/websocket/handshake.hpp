// The server side of the WebSocket opening handshake (RFC 6455 §4.2): validation of the client's
// upgrade request, the Sec-WebSocket-Accept key, and subprotocol selection. Pure: no I/O.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "core/http/http_parser.hpp"

namespace tf::ws {

// The fields of a valid upgrade request the answer needs. Views point into the parsed headers.
struct UpgradeRequest {
  std::string_view key;  // Sec-WebSocket-Key as sent (24 base64 characters)
};

// http_status 0: the request is a valid upgrade. Otherwise the status to answer (400, or 426
// with "Sec-WebSocket-Version: 13" for a missing or unsupported version) and a static reason.
struct HandshakeResult {
  int http_status = 0;
  const char* reason = "";
};

// Checks a parsed request head against RFC 6455 §4.2.1: method GET, HTTP/1.1, "Upgrade:
// websocket" (a token of the list, case-insensitive), "upgrade" among the Connection tokens,
// exactly one Sec-WebSocket-Key decoding to 16 bytes, and Sec-WebSocket-Version 13. Fills `out`
// on success.
HandshakeResult validate_upgrade(const http::RequestHead& head,
                                 std::span<const http::Header> headers, UpgradeRequest& out);

// Sec-WebSocket-Accept for a key: base64(SHA-1(key + the RFC's GUID)).
std::string accept_key(std::string_view key);

// Whether the comma-separated token list `list` holds `token` (case-insensitive, surrounding
// whitespace ignored).
bool has_token(std::string_view list, std::string_view token) noexcept;

// The first subprotocol the client offers (in its order of preference, across every
// Sec-WebSocket-Protocol header) that `supported` holds (exact, case-sensitive match as RFC 6455
// §4.1 makes them); empty when none matches.
std::string_view select_subprotocol(std::span<const http::Header> headers,
                                    std::span<const std::string_view> supported);

}  // namespace tf::ws
