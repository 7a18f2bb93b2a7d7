// WebSocket framing (RFC 6455 §5): a stateless frame-header parser over the caller's buffer, the
// payload mask, the server's frame writer, close payloads, incremental UTF-8 validation, and
// MessageReader, which turns a byte stream into messages and control frames. Pure: no I/O, no
// Python. Every protocol error carries the close code to answer with (1002, 1007, 1009).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tf::ws {

enum class Opcode : uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

// Close codes this code sends (RFC 6455 §7.4.1).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseProtocolError = 1002;
inline constexpr uint16_t kCloseNoStatus = 1005;  // never sent: "the close frame had no code"
inline constexpr uint16_t kCloseAbnormal = 1006;  // never sent: "no close frame at all"
inline constexpr uint16_t kCloseInvalidData = 1007;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;
inline constexpr uint16_t kCloseInternalError = 1011;

// The largest control-frame payload (RFC 6455 §5.5).
inline constexpr size_t kMaxControlPayload = 125;
// The largest frame header: 2 + 8 (64-bit length) + 4 (mask).
inline constexpr size_t kMaxHeaderSize = 14;

struct FrameHeader {
  bool fin = false;
  bool rsv1 = false;  // "compressed" under permessage-deflate
  Opcode opcode = Opcode::continuation;
  bool masked = false;
  std::array<uint8_t, 4> mask{};
  uint64_t payload_length = 0;
  size_t header_length = 0;  // bytes of the header, the payload follows
};

enum class FrameStatus : uint8_t { complete, incomplete, error };

// On error, close_code is the code to close with and reason a static explanation.
struct FrameResult {
  FrameStatus status;
  uint16_t close_code = 0;
  const char* reason = "";
};

// What the receiving side accepts.
struct FrameRules {
  bool require_mask = true;  // a server requires masked frames from clients (§5.1)
  bool allow_rsv1 = false;   // an extension (permessage-deflate) gave RSV1 a meaning
};

// Parses the frame header at the start of `data`. Stateless and allocation-free; never reads
// outside `data`; a prefix of a valid header answers `incomplete`. Errors (close 1002): RSV2 or
// RSV3 set, RSV1 without an extension or on a control frame, a reserved opcode, a fragmented or
// longer than 125 bytes control frame, an unmasked frame when a mask is required, a 64-bit length
// with its top bit set, or a length not in its shortest encoding.
FrameResult parse_frame_header(std::string_view data, const FrameRules& rules, FrameHeader& out);

// XORs `data` with `mask`, the first byte being at `offset` in the payload (so a payload may be
// unmasked in pieces).
void apply_mask(char* data, size_t size, const std::array<uint8_t, 4>& mask,
                uint64_t offset) noexcept;

// Appends an unmasked frame header (the server's frames are never masked) to `out`.
void append_frame_header(std::string& out, Opcode opcode, uint64_t payload_length, bool fin = true,
                         bool rsv1 = false);

// Appends a whole unmasked frame.
void append_frame(std::string& out, Opcode opcode, std::string_view payload, bool fin = true,
                  bool rsv1 = false);

// Appends a close frame's payload: the big-endian code then the UTF-8 reason. The reason is cut
// at 123 bytes (on a character boundary), so the frame stays a valid control frame.
void append_close_payload(std::string& out, uint16_t code, std::string_view reason);

// Whether a peer may send `code` in a close frame (RFC 6455 §7.4 and the IANA registry:
// 1000-1003, 1007-1014,
// 3000-4999; 1004-1006, 1015 and unassigned codes are not).
bool is_valid_close_code(uint16_t code) noexcept;

struct CloseFrame {
  uint16_t code = kCloseNoStatus;  // 1005 when the payload was empty
  std::string_view reason;         // a view into the payload
};

// Parses a received close payload. On error (one byte, an invalid code: 1002; a reason that is
// not UTF-8: 1007) returns the code to close with; 0 when valid.
uint16_t parse_close_payload(std::string_view payload, CloseFrame& out) noexcept;

// Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF),
// fed in pieces cut anywhere.
class Utf8Validator {
 public:
  // Feeds the next bytes. False once the input seen so far can no longer be valid UTF-8 (every
  // later call answers false too until reset()).
  bool feed(std::string_view data) noexcept;
  // The input ended on a character boundary (valid when everything fed was accepted).
  bool complete() const noexcept { return pending_ == 0 && !failed_; }
  void reset() noexcept { *this = Utf8Validator(); }

 private:
  uint8_t pending_ = 0;  // continuation bytes still expected
  uint8_t low_ = 0x80;   // the range of the next continuation byte
  uint8_t high_ = 0xBF;
  bool failed_ = false;
};

// UTF-8 validity of a whole string.
bool is_valid_utf8(std::string_view data) noexcept;

// What MessageReader::feed found.
enum class ReadKind : uint8_t {
  need_more,  // every byte given was consumed (or a control frame is still partial): feed more
  text,       // a complete text message is in message() (valid UTF-8)
  binary,     // a complete binary message is in message()
  ping,       // control() holds the ping's payload
  pong,       // control() holds the pong's payload
  close,      // close_frame() holds the peer's code and reason (views into control())
  error,      // protocol error: close with close_code; every later call answers it again
};

struct ReadEvent {
  ReadKind kind = ReadKind::need_more;
  size_t consumed = 0;  // bytes of the input used; the caller drops them before the next call
  uint16_t close_code = 0;
  const char* reason = "";
};

// The receiving half of a connection: frames -> messages, with fragmentation, interleaved control
// frames, UTF-8 validation of text as it arrives (an invalid byte fails the message at once, not
// at its end) and a message size limit. Keeps only the current message's payload; data frames are
// unmasked into it as their bytes arrive, so a frame need not be buffered whole.
class MessageReader {
 public:
  // `max_message_size`: a message whose payload would exceed it fails with 1009 as soon as a frame
  // header proves it (0: no limit).
  explicit MessageReader(uint64_t max_message_size, FrameRules rules = {}) noexcept
      : max_message_size_(max_message_size), rules_(rules) {}

  // Consumes a prefix of `input` and reports at most one event.
  ReadEvent feed(std::string_view input);

  // The last text/binary message. The caller may move from it; the next feed clears it.
  std::string& message() noexcept { return message_; }
  const std::string& control() const noexcept { return control_; }
  const CloseFrame& close_frame() const noexcept { return close_; }
  // A data message is partly received (fragments or a frame's payload pending).
  bool in_message() const noexcept { return message_opcode_ != Opcode::continuation; }
  // The last message's first frame had RSV1 set (permessage-deflate): message() is compressed and
  // its UTF-8 was not checked (the caller checks after inflating).
  bool compressed() const noexcept { return compressed_; }
  // Turns on RSV1 (negotiated permessage-deflate).
  void allow_compression(bool allow) noexcept { rules_.allow_rsv1 = allow; }
  // Counts the data messages whose last frame is wholly in `input`, the bytes that follow what
  // feed() consumed: the messages waiting to be read. Reads frame headers only and changes
  // nothing; stops at `limit` messages or at an incomplete or invalid frame (feed() reports the
  // error). `scan` carries the count and the position reached, so that a later call over more
  // input (the same bytes, more appended) resumes there: reset it whenever feed() consumed.
  struct QueueScan {
    size_t position = 0;
    size_t messages = 0;
  };
  void scan_complete_messages(std::string_view input, size_t limit, QueueScan& scan) const noexcept;
  // The same, from the start: the number of messages waiting (at most `limit`).
  size_t count_complete_messages(std::string_view input, size_t limit) const noexcept {
    QueueScan scan;
    scan_complete_messages(input, limit, scan);
    return scan.messages;
  }

 private:
  ReadEvent fail(uint16_t code, const char* reason, size_t consumed) noexcept;

  uint64_t max_message_size_;
  FrameRules rules_;
  std::string message_;
  std::string control_;
  CloseFrame close_;
  Utf8Validator utf8_;
  FrameHeader frame_{};
  uint64_t frame_remaining_ = 0;  // payload bytes of the current data frame still to come
  uint64_t frame_offset_ = 0;     // payload bytes of the current data frame already unmasked
  bool in_frame_ = false;
  bool compressed_ = false;
  bool deliver_clears_ = false;                   // message_ was delivered; clear on next feed
  Opcode message_opcode_ = Opcode::continuation;  // text/binary while a message is open
  uint16_t error_code_ = 0;
  const char* error_reason_ = "";
};

}  // namespace tf::ws
