// permessage-deflate (RFC 7692): negotiation of the extension's parameters from the client's
// offers, and the per-connection compressor and decompressor over zlib (raw deflate).
//
// Memory is sized deliberately: zlib's defaults (window 2^15, memLevel 8) cost ~256 KiB to
// compress and ~40 KiB to decompress per connection. Here the server compresses with a 2^12
// window and memLevel 5 (~32 KiB, allocated on the first compressed send), asks clients that
// allow it for a 2^12 window too (client_max_window_bits), and keeps no zlib state at all between
// messages when the negotiation says no context takeover. Pure: no I/O, no Python.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/http/http_parser.hpp"

namespace tf::ws {

// What the server is willing to do.
struct DeflatePolicy {
  int max_window_bits = 12;  // largest window either side is asked to use (9..15)
  int mem_level = 5;         // zlib memLevel of our compressor (1..9)
  // Answer with server_no_context_takeover and client_no_context_takeover whatever the offer
  // says (RFC 7692 §7.1.1 lets a server ask for both): no zlib state outlives a message, so an
  // idle connection holds none, at the price of compressing each message alone.
  bool no_context_takeover = false;
};

// Negotiated parameters, as seen from the server.
struct DeflateParameters {
  bool server_no_context_takeover = false;  // we reset our compressor after each message
  bool client_no_context_takeover = false;  // the client resets: we may drop our inflater
  int server_window_bits = 15;              // our compressor's window
  int client_window_bits = 15;              // the client's window (our inflater's)
};

// Picks the first acceptable permessage-deflate offer among the Sec-WebSocket-Extensions headers
// (offers in the client's order of preference). An offer with an unknown or repeated parameter, or
// a bad value, is declined (RFC 7692 §5). Fills `out` and the response's extension text (e.g.
// "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12") and returns true;
// false when no offer is acceptable (the server then answers without the extension). An offer of
// server_max_window_bits=8 is declined: zlib cannot produce raw deflate with a 256-byte window.
bool negotiate_deflate(std::span<const http::Header> headers, const DeflatePolicy& policy,
                       DeflateParameters& out, std::string& response);

enum class InflateStatus : uint8_t { ok, too_big, error };

// One connection's compression state. zlib streams are created on first use and, without
// context takeover, released after each message.
class DeflateSession {
 public:
  DeflateSession(const DeflateParameters& parameters, const DeflatePolicy& policy) noexcept
      : parameters_(parameters), policy_(policy) {}
  ~DeflateSession();
  DeflateSession(const DeflateSession&) = delete;
  DeflateSession& operator=(const DeflateSession&) = delete;

  // Compresses one whole message into `out` (replacing it): the deflate stream flushed to a
  // byte boundary with the final 00 00 FF FF removed (RFC 7692 §7.2.1). False when zlib fails
  // (out of memory).
  bool compress(std::string_view message, std::string& out);

  // Decompresses one whole message (the payload of its frames, concatenated) into `out`
  // (replacing it). too_big: the output would exceed `max_size` (0: no limit; close 1009);
  // error: the data is not a valid deflate stream (close 1007).
  InflateStatus decompress(std::string_view payload, uint64_t max_size, std::string& out);

  // Bytes of zlib state held now (for memory accounting in tests and benchmarks).
  size_t state_bytes() const noexcept { return state_bytes_; }

 private:
  static voidpf allocate(voidpf opaque, uInt items, uInt size);
  static void free_memory(voidpf opaque, voidpf address);
  bool start_deflate() noexcept;
  bool start_inflate() noexcept;
  void end_deflate() noexcept;
  void end_inflate() noexcept;

  DeflateParameters parameters_;
  DeflatePolicy policy_;
  z_stream deflate_{};
  z_stream inflate_{};
  bool deflating_ = false;
  bool inflating_ = false;
  size_t state_bytes_ = 0;
};

}  // namespace tf::ws
