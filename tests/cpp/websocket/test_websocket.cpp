// Tests of src/core/websocket: SHA-1/base64 against published vectors, the upgrade validation of
// RFC 6455 §4.2.1, the frame-header rules of §5, UTF-8 validation across arbitrary cuts, and the
// MessageReader fed whole and byte by byte (fragmentation, interleaved control frames, limits).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/http/http_parser.hpp"
#include "core/websocket/frame.hpp"
#include "core/websocket/handshake.hpp"
#include "core/websocket/sha1.hpp"

namespace tf::ws {
namespace {

using namespace std::string_literals;

std::string hex(const std::array<uint8_t, 20>& digest) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t byte : digest) {
    out += digits[byte >> 4];
    out += digits[byte & 15];
  }
  return out;
}

// A client frame: masked with a fixed key unless `masked` is false.
std::string client_frame(uint8_t first_byte, std::string_view payload, bool masked = true) {
  std::string frame;
  append_frame_header(frame, static_cast<Opcode>(first_byte & 0x0F), payload.size(),
                      (first_byte & 0x80) != 0, (first_byte & 0x40) != 0);
  frame[0] = static_cast<char>(first_byte);
  if (!masked) return frame + std::string(payload);
  frame[1] = static_cast<char>(frame[1] | 0x80);
  const std::array<uint8_t, 4> mask{0x37, 0xfa, 0x21, 0x3d};
  frame.append(reinterpret_cast<const char*>(mask.data()), 4);
  std::string body(payload);
  apply_mask(body.data(), body.size(), mask, 0);
  return frame + body;
}

TEST(Sha1, KnownVectors) {
  EXPECT_EQ(hex(sha1("")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
  EXPECT_EQ(hex(sha1("abc")), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(hex(sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  EXPECT_EQ(hex(sha1(std::string(1000000, 'a'))), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
  // Lengths around the padding boundary (55, 56, 63, 64 bytes) (vectors from Python hashlib).
  EXPECT_EQ(hex(sha1(std::string(55, 'x'))), "cef734ba81a024479e09eb5a75b6ddae62e6abf1");
  EXPECT_EQ(hex(sha1(std::string(64, 'x'))), "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163");
}

TEST(Base64, RoundTripAndStrictness) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  std::string out;
  EXPECT_TRUE(base64_decode("Zm9vYmE=", out));
  EXPECT_EQ(out, "fooba");
  EXPECT_TRUE(base64_decode("Zg==", out));
  EXPECT_EQ(out, "f");
  EXPECT_FALSE(base64_decode("Zg=", out));       // length
  EXPECT_FALSE(base64_decode("Z===", out));      // too much padding
  EXPECT_FALSE(base64_decode("Zh==", out));      // non-zero dropped bits
  EXPECT_FALSE(base64_decode("Zm9v YmE", out));  // whitespace
  EXPECT_FALSE(base64_decode("Zg==Zg==", out));  // padding in the middle
}

TEST(Handshake, AcceptKeyOfTheRfc) {
  EXPECT_EQ(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

struct Request {
  http::RequestHead head;
  std::vector<http::Header> headers;
  std::string text;
};

Request parse(std::string text) {
  Request request;
  request.text = std::move(text);
  request.headers.resize(32);
  http::ParseResult result =
      http::parse_request(request.text, http::Limits{}, request.head, request.headers);
  EXPECT_EQ(result.status, http::ParseStatus::complete) << request.text;
  request.headers.resize(request.head.header_count);
  return request;
}

const std::string kValid =
    "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

int status_of(const std::string& text) {
  Request request = parse(text);
  UpgradeRequest upgrade;
  return validate_upgrade(request.head, request.headers, upgrade).http_status;
}

std::string replace(std::string text, const std::string& from, const std::string& to) {
  size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  return text.replace(at, from.size(), to);
}

TEST(Handshake, ValidRequest) {
  Request request = parse(kValid);
  UpgradeRequest upgrade;
  HandshakeResult result = validate_upgrade(request.head, request.headers, upgrade);
  EXPECT_EQ(result.http_status, 0);
  EXPECT_EQ(upgrade.key, "dGhlIHNhbXBsZSBub25jZQ==");
  // Case-insensitive tokens.
  EXPECT_EQ(status_of(replace(replace(kValid, "websocket", "WebSocket"), "Upgrade\r", "UPGRADE\r")),
            0);
}

TEST(Handshake, Errors) {
  EXPECT_EQ(status_of(replace(kValid, "GET", "POST")), 400);
  EXPECT_EQ(status_of(replace(kValid, "HTTP/1.1\r\nHost: x\r\n", "HTTP/1.0\r\n")), 400);
  EXPECT_EQ(status_of(replace(kValid, "Upgrade: websocket\r\n", "")), 400);
  EXPECT_EQ(status_of(replace(kValid, "Upgrade: websocket", "Upgrade: h2c")), 400);
  EXPECT_EQ(status_of(replace(kValid, "keep-alive, Upgrade", "keep-alive")), 400);
  EXPECT_EQ(status_of(replace(kValid, "Sec-WebSocket-Version: 13\r\n", "")), 426);
  EXPECT_EQ(status_of(replace(kValid, "Version: 13", "Version: 8")), 426);
  EXPECT_EQ(
      status_of(replace(kValid, "Version: 13\r\n", "Version: 13\r\nSec-WebSocket-Version: 8\r\n")),
      426);
  EXPECT_EQ(status_of(replace(kValid, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")), 400);
  EXPECT_EQ(status_of(replace(kValid, "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")), 400);
  EXPECT_EQ(status_of(replace(kValid, "dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!!")),
            400);
  EXPECT_EQ(status_of(replace(kValid, "Version: 13\r\n",
                              "Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")),
            400);
}

TEST(Handshake, Subprotocols) {
  Request request = parse(replace(kValid, "Version: 13\r\n",
                                  "Version: 13\r\nSec-WebSocket-Protocol: chat, superchat\r\n"
                                  "Sec-WebSocket-Protocol: v3\r\n"));
  std::vector<std::string_view> supported{"v3", "superchat"};
  EXPECT_EQ(select_subprotocol(request.headers, supported), "superchat");
  std::vector<std::string_view> only_v3{"v3"};
  EXPECT_EQ(select_subprotocol(request.headers, only_v3), "v3");
  std::vector<std::string_view> none{"Chat"};  // case-sensitive
  EXPECT_EQ(select_subprotocol(request.headers, none), "");
}

TEST(Frame, HeaderLengthsAndMask) {
  for (uint64_t length : {0ull, 125ull, 126ull, 65535ull, 65536ull, (1ull << 40)}) {
    std::string frame;
    append_frame_header(frame, Opcode::binary, length);
    frame[1] = static_cast<char>(frame[1] | 0x80);
    frame += "abcd";
    FrameHeader header;
    FrameResult result = parse_frame_header(frame, FrameRules{}, header);
    ASSERT_EQ(result.status, FrameStatus::complete) << length;
    EXPECT_EQ(header.payload_length, length);
    EXPECT_EQ(header.header_length, frame.size());
    EXPECT_EQ(header.mask[0], 'a');
    for (size_t cut = 0; cut < frame.size(); ++cut) {
      EXPECT_EQ(
          parse_frame_header(std::string_view(frame).substr(0, cut), FrameRules{}, header).status,
          FrameStatus::incomplete);
    }
  }
}

uint16_t header_error(const std::string& frame, FrameRules rules = {}) {
  FrameHeader header;
  FrameResult result = parse_frame_header(frame, rules, header);
  return result.status == FrameStatus::error ? result.close_code : 0;
}

TEST(Frame, HeaderErrors) {
  EXPECT_EQ(header_error(client_frame(0x81, "hi")), 0);
  EXPECT_EQ(header_error(client_frame(0x81, "hi", false)), kCloseProtocolError);  // unmasked
  EXPECT_EQ(header_error(client_frame(0x81, "hi", false), FrameRules{.require_mask = false}), 0);
  EXPECT_EQ(header_error(client_frame(0xA1, "hi")), kCloseProtocolError);  // RSV2
  EXPECT_EQ(header_error(client_frame(0x91, "hi")), kCloseProtocolError);  // RSV3
  EXPECT_EQ(header_error(client_frame(0xC1, "hi")), kCloseProtocolError);  // RSV1, no extension
  EXPECT_EQ(header_error(client_frame(0xC1, "hi"), FrameRules{.allow_rsv1 = true}), 0);
  EXPECT_EQ(header_error(client_frame(0xC9, "hi"), FrameRules{.allow_rsv1 = true}),
            kCloseProtocolError);  // RSV1 on a control frame
  for (uint8_t opcode : {3, 4, 5, 6, 7, 11, 12, 13, 14, 15}) {
    EXPECT_EQ(header_error(client_frame(static_cast<uint8_t>(0x80 | opcode), "")),
              kCloseProtocolError)
        << int(opcode);
  }
  EXPECT_EQ(header_error(client_frame(0x09, "")), kCloseProtocolError);  // fragmented ping
  EXPECT_EQ(header_error(client_frame(0x89, std::string(126, 'x'))), kCloseProtocolError);
  EXPECT_EQ(header_error(client_frame(0x89, std::string(125, 'x'))), 0);
  EXPECT_EQ(header_error("\x82\xFE\x00\x7D"
                         "abcd"s),
            kCloseProtocolError);  // 16-bit for 125
  EXPECT_EQ(header_error("\x82\xFF\x00\x00\x00\x00\x00\x00\xFF\xFF"
                         "abcd"s),
            kCloseProtocolError);  // 64-bit for 65535
  EXPECT_EQ(header_error("\x82\xFF\x80\x00\x00\x00\x00\x00\x00\x00"
                         "abcd"s),
            kCloseProtocolError);  // top bit
}

TEST(Frame, MaskInPieces) {
  const std::array<uint8_t, 4> mask{1, 2, 3, 4};
  std::string data = "The quick brown fox jumps over the lazy dog";
  std::string whole = data;
  apply_mask(whole.data(), whole.size(), mask, 0);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    std::string pieces = data;
    apply_mask(pieces.data(), cut, mask, 0);
    apply_mask(pieces.data() + cut, pieces.size() - cut, mask, cut);
    EXPECT_EQ(pieces, whole) << cut;
  }
  apply_mask(whole.data(), whole.size(), mask, 0);
  EXPECT_EQ(whole, data);
}

TEST(Frame, ClosePayloads) {
  CloseFrame close;
  EXPECT_EQ(parse_close_payload("", close), 0);
  EXPECT_EQ(close.code, kCloseNoStatus);
  EXPECT_EQ(parse_close_payload("\x03", close), kCloseProtocolError);
  EXPECT_EQ(parse_close_payload("\x03\xe8"
                                "bye",
                                close),
            0);
  EXPECT_EQ(close.code, 1000);
  EXPECT_EQ(close.reason, "bye");
  EXPECT_EQ(parse_close_payload("\x03\xe8\xff", close), kCloseInvalidData);
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000}) {
    std::string payload;
    append_close_payload(payload, code, "");
    EXPECT_EQ(parse_close_payload(payload, close), kCloseProtocolError) << code;
  }
  for (uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1014, 3000, 4999}) {
    std::string payload;
    append_close_payload(payload, code, "é");
    EXPECT_EQ(parse_close_payload(payload, close), 0) << code;
  }
  // A long reason is cut to fit a control frame, on a character boundary.
  std::string payload;
  append_close_payload(payload, 1000, std::string(200, 'a') + "é");
  EXPECT_EQ(payload.size(), 125u);
  std::string boundary;
  std::string reason;
  for (int i = 0; i < 70; ++i) reason += "é";  // 140 bytes of two-byte characters
  append_close_payload(boundary, 1000, reason);
  EXPECT_EQ(boundary.size(), 2u + 122u);
  EXPECT_TRUE(is_valid_utf8(std::string_view(boundary).substr(2)));
}

TEST(Utf8, ValidAndInvalidAcrossEveryCut) {
  const std::vector<std::string> valid = {"",
                                          "hello",
                                          "κόσμε",
                                          "\xF0\x90\x80\x80",
                                          "\xF4\x8F\xBF\xBF",
                                          "\xEF\xBF\xBF",
                                          "\xED\x9F\xBF",
                                          "Hello-µ@ßöäüàá-UTF-8!!"};
  const std::vector<std::string> invalid = {
      "\xC0\xAF",          // overlong '/'
      "\xE0\x80\xAF",      // overlong
      "\xED\xA0\x80",      // surrogate
      "\xF4\x90\x80\x80",  // above U+10FFFF
      "\xF5\x80\x80\x80", "\xFF", "\x80", "\xC2", "κόσμε\xED\xA0\x80edited"};
  for (const std::string& text : valid) {
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      Utf8Validator validator;
      EXPECT_TRUE(validator.feed(std::string_view(text).substr(0, cut)));
      EXPECT_TRUE(validator.feed(std::string_view(text).substr(cut)));
      EXPECT_TRUE(validator.complete()) << text;
    }
  }
  for (const std::string& text : invalid) {
    for (size_t cut = 0; cut <= text.size(); ++cut) {
      Utf8Validator validator;
      bool ok = validator.feed(std::string_view(text).substr(0, cut)) &&
                validator.feed(std::string_view(text).substr(cut)) && validator.complete();
      EXPECT_FALSE(ok) << text << " cut " << cut;
    }
  }
  // Fail fast: the first impossible byte is reported, not the end of the message.
  Utf8Validator validator;
  EXPECT_FALSE(validator.feed("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xF4\x90"));
  // Long ASCII runs take the wide path and still catch a bad byte anywhere.
  std::string ascii(1000, 'a');
  EXPECT_TRUE(is_valid_utf8(ascii));
  for (size_t at : {0u, 7u, 8u, 500u, 999u}) {
    std::string bad = ascii;
    bad[at] = '\xFF';
    EXPECT_FALSE(is_valid_utf8(bad)) << at;
  }
}

struct Event {
  ReadKind kind;
  std::string payload;
  uint16_t code = 0;
};

// Feeds `stream` to a reader `step` bytes at a time (0: all at once) and collects its events.
std::vector<Event> read_all(const std::string& stream, size_t step, uint64_t limit = 0) {
  MessageReader reader(limit);
  std::vector<Event> events;
  std::string buffer;
  size_t fed = 0;
  while (true) {
    ReadEvent event = reader.feed(buffer);
    buffer.erase(0, event.consumed);
    if (event.kind == ReadKind::need_more) {
      if (fed == stream.size()) break;
      size_t take = step == 0 ? stream.size() : std::min(step, stream.size() - fed);
      buffer.append(stream, fed, take);
      fed += take;
      continue;
    }
    Event out{event.kind, "", event.close_code};
    if (event.kind == ReadKind::text || event.kind == ReadKind::binary)
      out.payload = reader.message();
    if (event.kind == ReadKind::ping || event.kind == ReadKind::pong)
      out.payload = reader.control();
    if (event.kind == ReadKind::close) {
      out.code = reader.close_frame().code;
      out.payload = std::string(reader.close_frame().reason);
    }
    events.push_back(out);
    if (event.kind == ReadKind::error || event.kind == ReadKind::close) break;
  }
  return events;
}

TEST(MessageReader, FragmentsAndControlFramesInAnyPieces) {
  std::string stream = client_frame(0x81, "Hello") + client_frame(0x02, "ab") +
                       client_frame(0x89, "ping!") + client_frame(0x00, "") +
                       client_frame(0x8A, "pong") + client_frame(0x80, "cd") +
                       client_frame(0x82, std::string(70000, 'z')) + client_frame(0x01, "κό") +
                       client_frame(0x80, "σμε") +
                       client_frame(0x88,
                                    "\x03\xe8"
                                    "done"s);
  for (size_t step : {0u, 1u, 2u, 3u, 7u, 125u, 4096u}) {
    std::vector<Event> events = read_all(stream, step);
    ASSERT_EQ(events.size(), 7u) << step;
    EXPECT_EQ(events[0].kind, ReadKind::text);
    EXPECT_EQ(events[0].payload, "Hello");
    EXPECT_EQ(events[1].kind, ReadKind::ping);
    EXPECT_EQ(events[1].payload, "ping!");
    EXPECT_EQ(events[2].kind, ReadKind::pong);
    EXPECT_EQ(events[3].kind, ReadKind::binary);
    EXPECT_EQ(events[3].payload, "abcd");
    EXPECT_EQ(events[4].payload, std::string(70000, 'z'));
    EXPECT_EQ(events[5].kind, ReadKind::text);
    EXPECT_EQ(events[5].payload, "κόσμε");
    EXPECT_EQ(events[6].kind, ReadKind::close);
    EXPECT_EQ(events[6].code, 1000);
    EXPECT_EQ(events[6].payload, "done");
  }
}

uint16_t error_of(const std::string& stream, uint64_t limit = 0) {
  for (size_t step : {0u, 1u}) {
    std::vector<Event> events = read_all(stream, step, limit);
    if (events.empty() || events.back().kind != ReadKind::error) return 0;
    if (step == 1) return events.back().code;
  }
  return 0;
}

TEST(MessageReader, ProtocolErrors) {
  EXPECT_EQ(error_of(client_frame(0x80, "x")), kCloseProtocolError);  // continuation first
  EXPECT_EQ(error_of(client_frame(0x01, "a") + client_frame(0x81, "b")), kCloseProtocolError);
  EXPECT_EQ(error_of(client_frame(0x81, "\xff")), kCloseInvalidData);
  EXPECT_EQ(error_of(client_frame(0x81, "\xC3")), kCloseInvalidData);  // truncated at the end
  // Invalid UTF-8 in a first fragment fails before the message ends (fail fast).
  EXPECT_EQ(error_of(client_frame(0x01, "ok\xC0\xAF")), kCloseInvalidData);
  EXPECT_EQ(error_of(client_frame(0x88, "\x03")), kCloseProtocolError);
  EXPECT_EQ(error_of(client_frame(0x88, "\x03\xed")), kCloseProtocolError);  // 1005 sent
  EXPECT_EQ(error_of(client_frame(0x88, "\x03\xe8\xff")), kCloseInvalidData);
  // Size limit: one frame, or fragments adding up.
  EXPECT_EQ(error_of(client_frame(0x82, std::string(11, 'a')), 10), kCloseTooBig);
  EXPECT_EQ(error_of(client_frame(0x82, std::string(10, 'a')), 10), 0);
  EXPECT_EQ(error_of(client_frame(0x02, std::string(6, 'a')) + client_frame(0x80, "abcde"), 10),
            kCloseTooBig);
  // The limit is enforced from the header, before the payload arrives.
  std::string header;
  append_frame_header(header, Opcode::binary, 1ull << 40);
  header[1] = static_cast<char>(header[1] | 0x80);
  header += "abcd";
  std::vector<Event> events = read_all(header, 0, 1 << 20);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].code, kCloseTooBig);
}

TEST(MessageReader, ErrorIsSticky) {
  MessageReader reader(0);
  std::string bad = client_frame(0x81, "hi", false);
  EXPECT_EQ(reader.feed(bad).kind, ReadKind::error);
  EXPECT_EQ(reader.feed(client_frame(0x81, "hi")).kind, ReadKind::error);
}

TEST(MessageReader, BigMessageBufferIsReleased) {
  MessageReader reader(0);
  std::string big = client_frame(0x82, std::string(200000, 'b'));
  ReadEvent event = reader.feed(big);
  ASSERT_EQ(event.kind, ReadKind::binary);
  EXPECT_EQ(reader.feed("").kind, ReadKind::need_more);
  EXPECT_LT(reader.message().capacity(), 1000u);
}

TEST(MessageReader, CountsCompleteMessagesWaiting) {
  MessageReader reader(0);
  // Two whole messages (one fragmented, with a ping between its fragments), then a third whose
  // last frame is not all there: two are waiting; control frames do not count.
  const std::string stream = client_frame(0x81, "one") + client_frame(0x02, "t") +
                             client_frame(0x89, "") + client_frame(0x80, "wo") +
                             client_frame(0x82, "three");
  EXPECT_EQ(reader.count_complete_messages(stream, 10), 3u);
  EXPECT_EQ(reader.count_complete_messages(stream.substr(0, stream.size() - 1), 10), 2u);
  EXPECT_EQ(reader.count_complete_messages(stream, 1), 1u);  // stops at the limit
  EXPECT_EQ(reader.count_complete_messages(client_frame(0x89, "ping"), 10), 0u);
  // In the middle of a frame: its rest comes first, and completes a message when it is final.
  const std::string frame = client_frame(0x82, "abcdef");
  ReadEvent event = reader.feed(std::string_view(frame).substr(0, frame.size() - 3));
  ASSERT_EQ(event.kind, ReadKind::need_more);
  const std::string rest = frame.substr(frame.size() - 3) + client_frame(0x81, "next");
  EXPECT_EQ(reader.count_complete_messages(rest, 10), 2u);
  EXPECT_EQ(reader.count_complete_messages(rest.substr(0, 2), 10), 0u);
}

TEST(MessageReader, MessageScanResumesOverMoreInput) {
  const MessageReader reader(0);
  std::string stream;
  for (int i = 0; i < 50; ++i) stream += client_frame(0x89, "") + client_frame(0x81, "m");
  for (size_t step : {1u, 3u, 8u, 64u}) {
    MessageReader::QueueScan scan;
    for (size_t end = 0; end <= stream.size(); end += step) {
      reader.scan_complete_messages(std::string_view(stream).substr(0, end), 1000, scan);
      EXPECT_EQ(scan.messages, reader.count_complete_messages(stream.substr(0, end), 1000));
    }
    reader.scan_complete_messages(stream, 1000, scan);
    EXPECT_EQ(scan.messages, 50u) << step;
  }
}

}  // namespace
}  // namespace tf::ws
