// SHA-1 (FIPS 180-4) and base64 (RFC 4648), the two primitives of the WebSocket accept key.
// SHA-1 is used here only because RFC 6455 prescribes it for Sec-WebSocket-Accept; it is not a
// security mechanism. Pure: no I/O, no allocation beyond the returned strings.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tf::ws {

// The 20-byte SHA-1 digest of `data`.
std::array<uint8_t, 20> sha1(std::string_view data) noexcept;

// Standard base64 with padding of `data`.
std::string base64_encode(std::string_view data);

// Decodes standard base64 with mandatory padding (length a multiple of 4, no whitespace) into
// `out`. False on any other input (out is then unspecified).
bool base64_decode(std::string_view text, std::string& out);

}  // namespace tf::ws
