// libFuzzer target of src/core/websocket: runs MessageReader over the input fed whole and fed in
// two pieces split at a point derived from the input, and checks that both give the same events
// (kinds, payloads, close codes); checks the frame-header parser's prefix invariance, the UTF-8
// validator against a split feed, base64 round trips, the close-payload writer, and
// permessage-deflate: the offer negotiation over the input as a header value, and the input
// decompressed as a message (bounded output, no crash, a round trip of what decompressed).
// Any broken invariant traps, which libFuzzer reports as a crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/websocket/deflate.hpp"
#include "core/websocket/frame.hpp"
#include "core/websocket/sha1.hpp"

namespace {

using tf::ws::FrameHeader;
using tf::ws::FrameResult;
using tf::ws::FrameRules;
using tf::ws::FrameStatus;
using tf::ws::MessageReader;
using tf::ws::ReadEvent;
using tf::ws::ReadKind;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

size_t split_point(std::string_view input) {
  if (input.empty()) return 0;
  uint64_t hash = 1469598103934665603ull;
  for (const char c : input) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return static_cast<size_t>(hash % input.size());
}

struct Event {
  ReadKind kind;
  std::string payload;
  uint16_t code;
  bool operator==(const Event&) const = default;
};

// Feeds `pieces` in order, as a connection receives them; collects the events.
std::vector<Event> run(const std::vector<std::string_view>& pieces, bool compression) {
  MessageReader reader(4096, FrameRules{.require_mask = true, .allow_rsv1 = compression});
  std::vector<Event> events;
  std::string buffer;
  size_t next = 0;
  while (true) {
    ReadEvent event = reader.feed(buffer);
    check(event.consumed <= buffer.size());
    buffer.erase(0, event.consumed);
    if (event.kind == ReadKind::need_more) {
      if (next == pieces.size()) break;
      buffer.append(pieces[next++]);
      continue;
    }
    Event out{event.kind, "", event.close_code};
    switch (event.kind) {
      case ReadKind::text:
        check(reader.compressed() || tf::ws::is_valid_utf8(reader.message()));
        [[fallthrough]];
      case ReadKind::binary:
        check(reader.message().size() <= 4096);
        out.payload = reader.message();
        break;
      case ReadKind::ping:
      case ReadKind::pong:
        check(reader.control().size() <= tf::ws::kMaxControlPayload);
        out.payload = reader.control();
        break;
      case ReadKind::close:
        out.code = reader.close_frame().code;
        out.payload = std::string(reader.close_frame().reason);
        break;
      case ReadKind::error:
        check(event.close_code == tf::ws::kCloseProtocolError ||
              event.close_code == tf::ws::kCloseInvalidData ||
              event.close_code == tf::ws::kCloseTooBig);
        break;
      case ReadKind::need_more:
        break;
    }
    events.push_back(std::move(out));
    if (event.kind == ReadKind::error || event.kind == ReadKind::close) break;
  }
  return events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = split_point(input);
  const bool compression = size > 0 && (data[0] & 1) != 0;
  const std::vector<Event> whole = run({input}, compression);
  const std::vector<Event> halves = run({input.substr(0, split), input.substr(split)}, compression);
  check(whole == halves);

  // Frame header: a prefix of a complete header answers incomplete.
  FrameHeader header;
  FrameResult result = tf::ws::parse_frame_header(input, FrameRules{}, header);
  if (result.status == FrameStatus::complete) {
    check(header.header_length <= size && header.header_length <= tf::ws::kMaxHeaderSize);
    for (size_t cut = 0; cut < header.header_length; ++cut) {
      FrameHeader partial;
      check(tf::ws::parse_frame_header(input.substr(0, cut), FrameRules{}, partial).status ==
            FrameStatus::incomplete);
    }
  }

  // UTF-8: a split feed agrees with the whole.
  tf::ws::Utf8Validator validator;
  const bool split_valid = validator.feed(input.substr(0, split)) &&
                           validator.feed(input.substr(split)) && validator.complete();
  check(split_valid == tf::ws::is_valid_utf8(input));

  // base64: whatever decodes encodes back to the same text.
  std::string decoded;
  if (tf::ws::base64_decode(input, decoded)) check(tf::ws::base64_encode(decoded) == input);
  check(tf::ws::base64_decode(tf::ws::base64_encode(input), decoded) && decoded == input);

  // A close payload we write is always one we accept (for a code a peer may send).
  std::string payload;
  tf::ws::append_close_payload(payload, 1000, input);
  check(payload.size() <= tf::ws::kMaxControlPayload);
  if (tf::ws::is_valid_utf8(input)) {
    tf::ws::CloseFrame close;
    check(tf::ws::parse_close_payload(payload, close) == 0);
  }
  // permessage-deflate: any offer text negotiates to sane parameters or is declined.
  const tf::http::Header offer{"Sec-WebSocket-Extensions", input};
  tf::ws::DeflateParameters parameters;
  std::string response;
  if (tf::ws::negotiate_deflate(std::span<const tf::http::Header>(&offer, 1),
                                tf::ws::DeflatePolicy{}, parameters, response)) {
    check(parameters.server_window_bits >= 9 && parameters.server_window_bits <= 12);
    check(parameters.client_window_bits >= 8 && parameters.client_window_bits <= 15);
    check(response.starts_with("permessage-deflate"));
  }
  // The input as a compressed message: bounded output; what decompresses recompresses and
  // decompresses back to itself.
  tf::ws::DeflateSession receiver(tf::ws::DeflateParameters{}, tf::ws::DeflatePolicy{});
  std::string inflated;
  if (receiver.decompress(input, 65536, inflated) == tf::ws::InflateStatus::ok) {
    check(inflated.size() <= 65536);
    tf::ws::DeflateSession sender(tf::ws::DeflateParameters{}, tf::ws::DeflatePolicy{});
    tf::ws::DeflateSession peer(tf::ws::DeflateParameters{}, tf::ws::DeflatePolicy{});
    std::string compressed, back;
    check(sender.compress(inflated, compressed));
    check(peer.decompress(compressed, 0, back) == tf::ws::InflateStatus::ok && back == inflated);
  }
  return 0;
}
