// WebSocket framing (see frame.hpp).
#include "core/websocket/frame.hpp"

#include <algorithm>
#include <cstring>

namespace tf::ws {

namespace {

bool is_control(Opcode opcode) noexcept {
  return (static_cast<uint8_t>(opcode) & 0x8) != 0;
}

bool is_known(uint8_t opcode) noexcept {
  return opcode <= 0x2 || (opcode >= 0x8 && opcode <= 0xA);
}

}  // namespace

FrameResult parse_frame_header(std::string_view data, const FrameRules& rules, FrameHeader& out) {
  if (data.size() < 2) return {FrameStatus::incomplete};
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  const uint8_t first = bytes[0];
  const uint8_t second = bytes[1];
  const uint8_t opcode = first & 0x0F;
  FrameHeader header;
  header.fin = (first & 0x80) != 0;
  header.rsv1 = (first & 0x40) != 0;
  header.opcode = static_cast<Opcode>(opcode);
  header.masked = (second & 0x80) != 0;
  if ((first & 0x30) != 0) return {FrameStatus::error, kCloseProtocolError, "RSV2/RSV3 set"};
  if (!is_known(opcode)) return {FrameStatus::error, kCloseProtocolError, "reserved opcode"};
  const bool control = is_control(header.opcode);
  if (header.rsv1 && (!rules.allow_rsv1 || control)) {
    return {FrameStatus::error, kCloseProtocolError, "RSV1 set without an extension"};
  }
  if (control && !header.fin) {
    return {FrameStatus::error, kCloseProtocolError, "fragmented control frame"};
  }
  if (rules.require_mask && !header.masked) {
    return {FrameStatus::error, kCloseProtocolError, "unmasked client frame"};
  }
  const uint8_t length7 = second & 0x7F;
  size_t position = 2;
  if (length7 < 126) {
    header.payload_length = length7;
  } else if (length7 == 126) {
    if (data.size() < 4) return {FrameStatus::incomplete};
    header.payload_length = (uint64_t{bytes[2]} << 8) | bytes[3];
    position = 4;
    if (header.payload_length < 126) {
      return {FrameStatus::error, kCloseProtocolError, "frame length not minimally encoded"};
    }
  } else {
    if (data.size() < 10) return {FrameStatus::incomplete};
    uint64_t length = 0;
    for (int i = 0; i < 8; ++i) length = (length << 8) | bytes[2 + i];
    position = 10;
    if ((length >> 63) != 0) {
      return {FrameStatus::error, kCloseProtocolError, "frame length with the top bit set"};
    }
    if (length <= 0xFFFF) {
      return {FrameStatus::error, kCloseProtocolError, "frame length not minimally encoded"};
    }
    header.payload_length = length;
  }
  if (control && header.payload_length > kMaxControlPayload) {
    return {FrameStatus::error, kCloseProtocolError, "control frame longer than 125 bytes"};
  }
  if (header.masked) {
    if (data.size() < position + 4) return {FrameStatus::incomplete};
    std::memcpy(header.mask.data(), bytes + position, 4);
    position += 4;
  }
  header.header_length = position;
  out = header;
  return {FrameStatus::complete};
}

void apply_mask(char* data, size_t size, const std::array<uint8_t, 4>& mask,
                uint64_t offset) noexcept {
  // Rotate the mask to the offset, then XOR eight bytes at a time.
  uint8_t rotated[8];
  for (int i = 0; i < 8; ++i) rotated[i] = mask[(offset + static_cast<uint64_t>(i)) & 3];
  uint64_t wide;
  std::memcpy(&wide, rotated, 8);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, data + i, 8);
    chunk ^= wide;
    std::memcpy(data + i, &chunk, 8);
  }
  for (; i < size; ++i) data[i] = static_cast<char>(data[i] ^ rotated[i & 7]);
}

void append_frame_header(std::string& out, Opcode opcode, uint64_t payload_length, bool fin,
                         bool rsv1) {
  char header[10];
  size_t size = 2;
  header[0] =
      static_cast<char>((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | static_cast<uint8_t>(opcode));
  if (payload_length < 126) {
    header[1] = static_cast<char>(payload_length);
  } else if (payload_length <= 0xFFFF) {
    header[1] = 126;
    header[2] = static_cast<char>(payload_length >> 8);
    header[3] = static_cast<char>(payload_length);
    size = 4;
  } else {
    header[1] = 127;
    for (int i = 0; i < 8; ++i) header[2 + i] = static_cast<char>(payload_length >> (56 - 8 * i));
    size = 10;
  }
  out.append(header, size);
}

void append_frame(std::string& out, Opcode opcode, std::string_view payload, bool fin, bool rsv1) {
  append_frame_header(out, opcode, payload.size(), fin, rsv1);
  out.append(payload);
}

void append_close_payload(std::string& out, uint16_t code, std::string_view reason) {
  out += static_cast<char>(code >> 8);
  out += static_cast<char>(code & 0xFF);
  size_t cut = std::min<size_t>(reason.size(), kMaxControlPayload - 2);
  // Back off to a character boundary (never end inside a multi-byte sequence).
  while (cut < reason.size() && cut > 0 && (static_cast<uint8_t>(reason[cut]) & 0xC0) == 0x80) {
    --cut;
  }
  out.append(reason.substr(0, cut));
}

bool is_valid_close_code(uint16_t code) noexcept {
  if (code >= 3000 && code <= 4999) return true;
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014);
}

uint16_t parse_close_payload(std::string_view payload, CloseFrame& out) noexcept {
  out = CloseFrame{};
  if (payload.empty()) return 0;
  if (payload.size() == 1) return kCloseProtocolError;
  const auto* bytes = reinterpret_cast<const uint8_t*>(payload.data());
  uint16_t code = static_cast<uint16_t>((bytes[0] << 8) | bytes[1]);
  if (!is_valid_close_code(code)) return kCloseProtocolError;
  std::string_view reason = payload.substr(2);
  if (!is_valid_utf8(reason)) return kCloseInvalidData;
  out.code = code;
  out.reason = reason;
  return 0;
}

bool Utf8Validator::feed(std::string_view data) noexcept {
  if (failed_) return false;
  const auto* bytes = reinterpret_cast<const uint8_t*>(data.data());
  const size_t size = data.size();
  size_t i = 0;
  while (i < size) {
    if (pending_ == 0) {
      // ASCII runs, eight bytes at a time.
      while (i + 8 <= size) {
        uint64_t chunk;
        std::memcpy(&chunk, bytes + i, 8);
        if ((chunk & 0x8080808080808080ull) != 0) break;
        i += 8;
      }
      if (i >= size) break;
      const uint8_t lead = bytes[i++];
      if (lead < 0x80) continue;
      low_ = 0x80;
      high_ = 0xBF;
      if (lead >= 0xC2 && lead <= 0xDF) {
        pending_ = 1;
      } else if (lead >= 0xE0 && lead <= 0xEF) {
        pending_ = 2;
        if (lead == 0xE0) low_ = 0xA0;   // no overlong three-byte forms
        if (lead == 0xED) high_ = 0x9F;  // no surrogates
      } else if (lead >= 0xF0 && lead <= 0xF4) {
        pending_ = 3;
        if (lead == 0xF0) low_ = 0x90;   // no overlong four-byte forms
        if (lead == 0xF4) high_ = 0x8F;  // nothing above U+10FFFF
      } else {
        failed_ = true;
        return false;
      }
      continue;
    }
    const uint8_t next = bytes[i++];
    if (next < low_ || next > high_) {
      failed_ = true;
      return false;
    }
    low_ = 0x80;
    high_ = 0xBF;
    --pending_;
  }
  return true;
}

bool is_valid_utf8(std::string_view data) noexcept {
  Utf8Validator validator;
  return validator.feed(data) && validator.complete();
}

ReadEvent MessageReader::fail(uint16_t code, const char* reason, size_t consumed) noexcept {
  error_code_ = code;
  error_reason_ = reason;
  return {ReadKind::error, consumed, code, reason};
}

void MessageReader::scan_complete_messages(std::string_view input, size_t limit,
                                           QueueScan& scan) const noexcept {
  if (error_code_ != 0) return;
  size_t count = scan.messages;
  size_t position = scan.position;
  if (position > input.size()) count = position = 0;  // not the input scanned before: restart
  if (position == 0 && in_frame_) {
    // The rest of the frame feed() is in the middle of.
    if (input.size() < frame_remaining_) return;
    position = static_cast<size_t>(frame_remaining_);
    if (frame_.fin) ++count;
  }
  while (count < limit) {
    FrameHeader header;
    const FrameResult result = parse_frame_header(input.substr(position), rules_, header);
    if (result.status != FrameStatus::complete) break;
    const size_t frame_size = header.header_length + header.payload_length;
    if (input.size() - position < frame_size) break;
    position += frame_size;
    if (header.fin && !is_control(header.opcode)) ++count;
  }
  scan.position = position;
  scan.messages = count;
}

ReadEvent MessageReader::feed(std::string_view input) {
  if (error_code_ != 0) return {ReadKind::error, 0, error_code_, error_reason_};
  if (deliver_clears_) {
    deliver_clears_ = false;
    message_.clear();
    // A large message's buffer is not kept for an idle connection.
    if (message_.capacity() > 64 * 1024) std::string().swap(message_);
  }
  size_t position = 0;
  while (true) {
    if (!in_frame_) {
      FrameHeader header;
      FrameResult result = parse_frame_header(input.substr(position), rules_, header);
      if (result.status == FrameStatus::incomplete) return {ReadKind::need_more, position};
      if (result.status == FrameStatus::error) {
        return fail(result.close_code, result.reason, position);
      }
      if (is_control(header.opcode)) {
        const size_t frame_size = header.header_length + header.payload_length;
        if (input.size() - position < frame_size) return {ReadKind::need_more, position};
        control_.assign(input.data() + position + header.header_length, header.payload_length);
        if (header.masked) apply_mask(control_.data(), control_.size(), header.mask, 0);
        position += frame_size;
        if (header.opcode == Opcode::ping) return {ReadKind::ping, position};
        if (header.opcode == Opcode::pong) return {ReadKind::pong, position};
        uint16_t error = parse_close_payload(control_, close_);
        if (error != 0) return fail(error, "invalid close frame", position);
        return {ReadKind::close, position};
      }
      if (header.opcode == Opcode::continuation) {
        if (!in_message()) {
          return fail(kCloseProtocolError, "continuation frame without a message", position);
        }
        if (header.rsv1) {
          return fail(kCloseProtocolError, "RSV1 set on a continuation frame", position);
        }
      } else {
        if (in_message()) {
          return fail(kCloseProtocolError, "new message before the previous one ended", position);
        }
        message_opcode_ = header.opcode;
        compressed_ = header.rsv1;
        message_.clear();
        utf8_.reset();
      }
      if (max_message_size_ != 0 &&
          header.payload_length >
              max_message_size_ - std::min<uint64_t>(message_.size(), max_message_size_)) {
        return fail(kCloseTooBig, "message larger than the limit", position);
      }
      position += header.header_length;
      frame_ = header;
      frame_remaining_ = header.payload_length;
      frame_offset_ = 0;
      in_frame_ = true;
    }
    const size_t take =
        static_cast<size_t>(std::min<uint64_t>(frame_remaining_, input.size() - position));
    if (take > 0) {
      const size_t start = message_.size();
      message_.append(input.data() + position, take);
      if (frame_.masked) apply_mask(message_.data() + start, take, frame_.mask, frame_offset_);
      position += take;
      frame_offset_ += take;
      frame_remaining_ -= take;
      if (message_opcode_ == Opcode::text && !compressed_ &&
          !utf8_.feed(std::string_view(message_).substr(start))) {
        return fail(kCloseInvalidData, "text message is not valid UTF-8", position);
      }
    }
    if (frame_remaining_ > 0) return {ReadKind::need_more, position};
    in_frame_ = false;
    if (!frame_.fin) {
      if (position == input.size()) return {ReadKind::need_more, position};
      continue;
    }
    const Opcode opcode = message_opcode_;
    message_opcode_ = Opcode::continuation;
    if (opcode == Opcode::text && !compressed_ && !utf8_.complete()) {
      return fail(kCloseInvalidData, "text message is not valid UTF-8", position);
    }
    deliver_clears_ = true;
    return {opcode == Opcode::text ? ReadKind::text : ReadKind::binary, position};
  }
}

}  // namespace tf::ws
