// permessage-deflate (see deflate.hpp).
#include "core/websocket/deflate.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/http/http_response.hpp"

namespace tf::ws {

namespace {

// A window-bits value: 8..15, digits only (a quoted value is allowed by RFC 7692 §7.1.2).
int parse_bits(std::string_view value) noexcept {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  if (value.empty() || value.size() > 2) return -1;
  int bits = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return -1;
    bits = bits * 10 + (c - '0');
  }
  if (value.size() == 2 && value[0] == '0') return -1;
  return bits >= 8 && bits <= 15 ? bits : -1;
}

// One offer ("permessage-deflate; a; b=1"): true with `out` and the response text when acceptable.
bool accept_offer(std::string_view offer, const DeflatePolicy& policy, DeflateParameters& out,
                  std::string& response) {
  size_t semicolon = offer.find(';');
  if (!http::iequals(http::trim_ows(offer.substr(0, semicolon)), "permessage-deflate"))
    return false;
  bool seen_server_nct = false, seen_client_nct = false, seen_server_bits = false,
       seen_client_bits = false;
  int server_bits = 15;
  int client_bits = -1;  // -1: not offered (we may not limit it)
  while (semicolon != std::string_view::npos) {
    offer.remove_prefix(semicolon + 1);
    semicolon = offer.find(';');
    std::string_view parameter = http::trim_ows(offer.substr(0, semicolon));
    size_t equals = parameter.find('=');
    std::string_view name = http::trim_ows(parameter.substr(0, equals));
    std::string_view value = equals == std::string_view::npos
                                 ? std::string_view()
                                 : http::trim_ows(parameter.substr(equals + 1));
    const bool has_value = equals != std::string_view::npos;
    if (http::iequals(name, "server_no_context_takeover")) {
      if (seen_server_nct || has_value) return false;
      seen_server_nct = true;
    } else if (http::iequals(name, "client_no_context_takeover")) {
      if (seen_client_nct || has_value) return false;
      seen_client_nct = true;
    } else if (http::iequals(name, "server_max_window_bits")) {
      if (seen_server_bits || !has_value) return false;
      seen_server_bits = true;
      server_bits = parse_bits(value);
      if (server_bits < 0) return false;
    } else if (http::iequals(name, "client_max_window_bits")) {
      if (seen_client_bits) return false;
      seen_client_bits = true;
      client_bits = has_value ? parse_bits(value) : 15;
      if (client_bits < 0) return false;
    } else {
      return false;
    }
  }
  if (server_bits == 8) return false;  // zlib's raw deflate needs at least 9
  const int limit = std::clamp(policy.max_window_bits, 9, 15);
  DeflateParameters chosen;
  chosen.server_no_context_takeover = seen_server_nct || policy.no_context_takeover;
  chosen.client_no_context_takeover = seen_client_nct || policy.no_context_takeover;
  chosen.server_window_bits = std::min(server_bits, limit);
  chosen.client_window_bits = client_bits < 0 ? 15 : std::min(client_bits, limit);
  response = "permessage-deflate";
  if (chosen.server_no_context_takeover) response += "; server_no_context_takeover";
  if (chosen.client_no_context_takeover) response += "; client_no_context_takeover";
  if (seen_server_bits || chosen.server_window_bits < 15) {
    response += "; server_max_window_bits=" + std::to_string(chosen.server_window_bits);
  }
  if (client_bits >= 0) {
    response += "; client_max_window_bits=" + std::to_string(chosen.client_window_bits);
  }
  out = chosen;
  return true;
}

constexpr unsigned char kTail[4] = {0x00, 0x00, 0xFF, 0xFF};

}  // namespace

bool negotiate_deflate(std::span<const http::Header> headers, const DeflatePolicy& policy,
                       DeflateParameters& out, std::string& response) {
  for (const http::Header& header : headers) {
    if (!http::iequals(header.name, "sec-websocket-extensions")) continue;
    std::string_view list = header.value;
    while (!list.empty()) {
      // Offers are separated by commas (parameter values never contain one).
      size_t comma = list.find(',');
      if (accept_offer(list.substr(0, comma), policy, out, response)) return true;
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
  }
  return false;
}

// zlib allocates through these so that state_bytes() knows what is held.
voidpf DeflateSession::allocate(voidpf opaque, uInt items, uInt size) {
  const size_t bytes = static_cast<size_t>(items) * size;
  auto* block = static_cast<size_t*>(std::malloc(bytes + sizeof(size_t) * 2));
  if (block == nullptr) return Z_NULL;
  block[0] = bytes;
  static_cast<DeflateSession*>(opaque)->state_bytes_ += bytes;
  return block + 2;
}

void DeflateSession::free_memory(voidpf opaque, voidpf address) {
  if (address == Z_NULL) return;
  auto* block = static_cast<size_t*>(address) - 2;
  static_cast<DeflateSession*>(opaque)->state_bytes_ -= block[0];
  std::free(block);
}

DeflateSession::~DeflateSession() {
  end_deflate();
  end_inflate();
}

bool DeflateSession::start_deflate() noexcept {
  if (deflating_) return true;
  deflate_ = z_stream{};
  deflate_.zalloc = &DeflateSession::allocate;
  deflate_.zfree = &DeflateSession::free_memory;
  deflate_.opaque = this;
  const int bits = std::max(9, std::min(parameters_.server_window_bits, 15));
  if (deflateInit2(&deflate_, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -bits,
                   std::clamp(policy_.mem_level, 1, 9), Z_DEFAULT_STRATEGY) != Z_OK) {
    return false;
  }
  deflating_ = true;
  return true;
}

bool DeflateSession::start_inflate() noexcept {
  if (inflating_) return true;
  inflate_ = z_stream{};
  inflate_.zalloc = &DeflateSession::allocate;
  inflate_.zfree = &DeflateSession::free_memory;
  inflate_.opaque = this;
  // A window of 8 bits is inflated with 9 (zlib's smallest for raw inflate; larger is safe).
  const int bits = std::max(9, std::min(parameters_.client_window_bits, 15));
  if (inflateInit2(&inflate_, -bits) != Z_OK) return false;
  inflating_ = true;
  return true;
}

void DeflateSession::end_deflate() noexcept {
  if (!deflating_) return;
  deflateEnd(&deflate_);
  deflating_ = false;
}

void DeflateSession::end_inflate() noexcept {
  if (!inflating_) return;
  inflateEnd(&inflate_);
  inflating_ = false;
}

bool DeflateSession::compress(std::string_view message, std::string& out) {
  out.clear();
  if (!start_deflate()) return false;
  deflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  deflate_.avail_in = static_cast<uInt>(message.size());
  size_t produced = 0;
  while (true) {
    out.resize(produced + std::max<size_t>(64, deflateBound(&deflate_, deflate_.avail_in) + 16));
    deflate_.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    deflate_.avail_out = static_cast<uInt>(out.size() - produced);
    const int status = deflate(&deflate_, Z_SYNC_FLUSH);
    produced = out.size() - deflate_.avail_out;
    if (status != Z_OK && status != Z_BUF_ERROR) {
      end_deflate();
      return false;
    }
    if (deflate_.avail_in == 0 && deflate_.avail_out > 0) break;
  }
  out.resize(produced);
  if (out.size() >= 4 && std::memcmp(out.data() + out.size() - 4, kTail, 4) == 0) {
    out.resize(out.size() - 4);
  }
  if (parameters_.server_no_context_takeover) end_deflate();
  return true;
}

InflateStatus DeflateSession::decompress(std::string_view payload, uint64_t max_size,
                                         std::string& out) {
  out.clear();
  if (!start_inflate()) return InflateStatus::error;
  InflateStatus result = InflateStatus::ok;
  size_t produced = 0;
  // The payload, then the 00 00 FF FF the sender removed.
  for (int part = 0; part < 2 && result == InflateStatus::ok; ++part) {
    std::string_view input =
        part == 0 ? payload : std::string_view(reinterpret_cast<const char*>(kTail), 4);
    inflate_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    inflate_.avail_in = static_cast<uInt>(input.size());
    while (inflate_.avail_in > 0) {
      if (out.size() - produced < 1024) {
        out.resize(std::max<size_t>(out.size() * 2, produced + 16 * 1024));
      }
      inflate_.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      inflate_.avail_out = static_cast<uInt>(out.size() - produced);
      const int status = inflate(&inflate_, Z_SYNC_FLUSH);
      produced = out.size() - inflate_.avail_out;
      if (max_size != 0 && produced > max_size) {
        result = InflateStatus::too_big;
        break;
      }
      if (status == Z_STREAM_END) {
        // A final block: nothing may follow it in this message (and the context ends).
        if (inflate_.avail_in > 0 && part == 0) result = InflateStatus::error;
        inflateReset(&inflate_);
        break;
      }
      if (status != Z_OK && status != Z_BUF_ERROR) {
        result = InflateStatus::error;
        break;
      }
      if (status == Z_BUF_ERROR && inflate_.avail_out > 0) break;  // no progress possible
    }
  }
  out.resize(produced);
  if (result != InflateStatus::ok || parameters_.client_no_context_takeover) end_inflate();
  return result;
}

}  // namespace tf::ws
