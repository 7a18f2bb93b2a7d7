// HTTP/1.1 request head parser and chunked body decoder. See http_parser.hpp for the contract and
// the strictness choices.
//
// The head parser walks the input once, left to right, and reports the first violation it meets.
// Because every decision depends only on bytes already passed, a prefix of the input answers either
// `incomplete` or exactly what the whole input answers. Limits are applied by parsing a window of
// the input capped at the limit: a head that does not end inside the window is too large.
#include "core/http/http_parser.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tf::http {
namespace {

// Character classes of the 256-entry table.
constexpr uint8_t kTokenChar = 1;   // tchar (RFC 9110 §5.6.2): methods, field names, codings
constexpr uint8_t kValueChar = 2;   // field-value bytes: HTAB, SP, VCHAR, obs-text (0x80-0xFF)
constexpr uint8_t kTargetChar = 4;  // request-target bytes: visible ASCII 0x21-0x7E

constexpr std::array<uint8_t, 256> make_char_table() {
  std::array<uint8_t, 256> table{};
  constexpr std::string_view token_punctuation = "!#$%&'*+-.^_`|~";
  for (unsigned c = 0; c < 256; ++c) {
    uint8_t classes = 0;
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    if (alpha || digit || token_punctuation.find(static_cast<char>(c)) != std::string_view::npos) {
      classes |= kTokenChar;
    }
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) classes |= kValueChar;
    if (c > 0x20 && c < 0x7f) classes |= kTargetChar;
    table[c] = classes;
  }
  return table;
}

constexpr std::array<uint8_t, 256> kCharTable = make_char_table();

inline bool has_class(char c, uint8_t char_class) {
  return (kCharTable[static_cast<unsigned char>(c)] & char_class) != 0;
}
inline bool is_token_char(char c) {
  return has_class(c, kTokenChar);
}
inline bool is_whitespace(char c) {
  return c == ' ' || c == '\t';
}
inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
inline char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// Case-insensitive comparison with a lower-case literal.
bool equals_lower(std::string_view text, std::string_view lower_literal) {
  if (text.size() != lower_literal.size()) return false;
  for (size_t i = 0; i < text.size(); ++i) {
    if (to_lower(text[i]) != lower_literal[i]) return false;
  }
  return true;
}

// Index of the first byte in [position, end) that is not a field-value byte, or end.
size_t skip_value_chars(const char* data, size_t position, size_t end) {
  for (;;) {
#if defined(__SSE2__)
    const __m128i sign_flip = _mm_set1_epi8(static_cast<char>(0x80));
    const __m128i space_flipped = _mm_set1_epi8(static_cast<char>(0x20 ^ 0x80));
    const __m128i delete_char = _mm_set1_epi8(0x7f);
    while (end - position >= 16) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + position));
      // Unsigned byte < 0x20 is a signed comparison after flipping the sign bit.
      const __m128i control = _mm_cmplt_epi8(_mm_xor_si128(bytes, sign_flip), space_flipped);
      const __m128i stop = _mm_or_si128(control, _mm_cmpeq_epi8(bytes, delete_char));
      const int mask = _mm_movemask_epi8(stop);
      if (mask != 0) {
        position += static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
        break;
      }
      position += 16;
    }
#endif
    while (position < end && has_class(data[position], kValueChar) && data[position] != '\t') {
      ++position;
    }
    if (position < end && data[position] == '\t') {
      ++position;  // allowed, but stops the vector loop; go on scanning
      continue;
    }
    return position;
  }
}

// Index of the first byte in [position, end) that is not a request-target byte, or end.
size_t skip_target_chars(const char* data, size_t position, size_t end) {
#if defined(__SSE2__)
  const __m128i above_space = _mm_set1_epi8(0x20);
  const __m128i delete_char = _mm_set1_epi8(0x7f);
  while (end - position >= 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + position));
    // Signed comparison: bytes >= 0x80 are negative and fail the first test.
    const __m128i good =
        _mm_and_si128(_mm_cmpgt_epi8(bytes, above_space), _mm_cmplt_epi8(bytes, delete_char));
    const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(good));
    if (mask != 0xffff) return position + static_cast<size_t>(__builtin_ctz(~mask));
    position += 16;
  }
#endif
  while (position < end && has_class(data[position], kTargetChar)) ++position;
  return position;
}

constexpr ParseResult kIncomplete{ParseStatus::incomplete};

ParseResult parse_error(int http_status, const char* reason) {
  return ParseResult{ParseStatus::error, http_status, reason};
}

std::string_view trim_whitespace(std::string_view text) {
  while (!text.empty() && is_whitespace(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_whitespace(text.back())) text.remove_suffix(1);
  return text;
}

// Parses a Content-Length value: 1*DIGIT, or a list of identical such values ("5, 5").
// Returns nullptr on success, else the reason of the 400.
const char* parse_content_length(std::string_view value, uint64_t& result) {
  size_t i = 0;
  bool have_value = false;
  for (;;) {
    if (i == value.size() || !is_digit(value[i])) return "invalid Content-Length";
    uint64_t element = 0;
    while (i < value.size() && is_digit(value[i])) {
      const auto digit = static_cast<uint64_t>(value[i] - '0');
      if (element > (std::numeric_limits<uint64_t>::max() - digit) / 10) {
        return "Content-Length overflows";
      }
      element = element * 10 + digit;
      ++i;
    }
    if (have_value && element != result) return "differing Content-Length values";
    result = element;
    have_value = true;
    while (i < value.size() && is_whitespace(value[i])) ++i;
    if (i == value.size()) return nullptr;
    if (value[i] != ',') return "invalid Content-Length";
    ++i;
    while (i < value.size() && is_whitespace(value[i])) ++i;
  }
}

// The head parser of one call: the state that lives only while parse_request runs.
class HeadParser {
 public:
  HeadParser(std::string_view window, const Limits& limits, RequestHead& out,
             std::span<Header> storage)
      : data_(window.data()),
        size_(window.size()),
        limits_(limits),
        out_(out),
        storage_(storage),
        max_header_count_(std::min(limits.max_headers, storage.size())) {}

  ParseResult run();

  // Where the parse stopped when it answered incomplete: inside the request line, and where that
  // line starts.
  bool stopped_in_request_line() const noexcept { return in_request_line_; }
  size_t request_line_start() const noexcept { return request_line_start_; }

 private:
  ParseResult parse_request_line();
  ParseResult split_target();
  ParseResult parse_header_line();
  ParseResult apply_header(std::string_view name, std::string_view value);
  ParseResult apply_transfer_encoding(std::string_view value);
  void apply_connection(std::string_view value);
  ParseResult finish();

  const char* data_;
  size_t size_;
  const Limits& limits_;
  RequestHead& out_;
  std::span<Header> storage_;
  size_t max_header_count_;
  size_t position_ = 0;

  bool in_request_line_ = false;
  size_t request_line_start_ = 0;
  unsigned host_count_ = 0;
  bool content_length_seen_ = false;
  bool transfer_encoding_seen_ = false;
  bool chunked_is_last_ = false;  // the last transfer coding seen so far is "chunked"
  bool other_coding_seen_ = false;
  bool connection_close_ = false;
  bool connection_keep_alive_ = false;
};

ParseResult HeadParser::run() {
  out_ = RequestHead{};
  // Empty lines before the request line (RFC 9112 §2.2).
  for (;;) {
    if (position_ == size_) return kIncomplete;
    if (data_[position_] != '\r') break;
    if (position_ + 1 == size_) return kIncomplete;
    if (data_[position_ + 1] != '\n') return parse_error(400, "bare CR in request head");
    position_ += 2;
  }
  in_request_line_ = true;
  request_line_start_ = position_;
  if (ParseResult result = parse_request_line(); result.status != ParseStatus::complete) {
    return result;
  }
  in_request_line_ = false;
  for (;;) {
    if (position_ == size_) return kIncomplete;
    const char first = data_[position_];
    if (first == '\r') {
      if (position_ + 1 == size_) return kIncomplete;
      if (data_[position_ + 1] != '\n') return parse_error(400, "bare CR in request head");
      position_ += 2;
      return finish();
    }
    if (ParseResult result = parse_header_line(); result.status != ParseStatus::complete) {
      return result;
    }
  }
}

ParseResult HeadParser::parse_request_line() {
  // The line is parsed inside a window of max_request_line bytes plus CRLF: a line that does not
  // end inside it is too long.
  const size_t room = size_ - position_;
  const size_t end = limits_.max_request_line >= room
                         ? size_
                         : position_ + std::min(room, limits_.max_request_line + 2);
  const auto line_incomplete = [&]() {
    return end < size_ ? parse_error(414, "request line too long") : kIncomplete;
  };

  size_t i = position_;
  while (i < end && is_token_char(data_[i])) ++i;
  if (i == end) return line_incomplete();
  if (data_[i] != ' ') {
    if (data_[i] == '\n') return parse_error(400, "bare LF in request head");
    return parse_error(400, "invalid character in method");
  }
  if (i == position_) return parse_error(400, "empty method");
  out_.method = std::string_view(data_ + position_, i - position_);

  const size_t target_start = ++i;
  i = skip_target_chars(data_, i, end);
  if (i == end) return line_incomplete();
  if (data_[i] != ' ') {
    if (data_[i] == '\n') return parse_error(400, "bare LF in request head");
    if (data_[i] == '\r') return parse_error(400, "request line has no HTTP version");
    return parse_error(400, "invalid character in request target");
  }
  if (i == target_start) return parse_error(400, "empty request target");
  out_.target = std::string_view(data_ + target_start, i - target_start);

  // "HTTP/" DIGIT "." DIGIT CRLF, checked byte by byte as far as the input goes.
  static constexpr std::string_view kVersionPattern = "HTTP/0.0";
  ++i;
  for (size_t k = 0; k < kVersionPattern.size(); ++k, ++i) {
    if (i == end) return line_incomplete();
    const char c = data_[i];
    const char expected = kVersionPattern[k];
    const bool matches = expected == '0' ? is_digit(c) : c == expected;
    if (!matches) {
      if (c == '\n') return parse_error(400, "bare LF in request head");
      return parse_error(400, "invalid HTTP version");
    }
  }
  if (i == end) return line_incomplete();
  if (data_[i] != '\r') {
    if (data_[i] == '\n') return parse_error(400, "bare LF in request head");
    return parse_error(400, "invalid HTTP version");
  }
  if (i + 1 == end) return line_incomplete();
  if (data_[i + 1] != '\n') return parse_error(400, "bare CR in request head");
  const char major = data_[i - 3];
  const char minor = data_[i - 1];
  position_ = i + 2;
  if (major != '1' || (minor != '0' && minor != '1')) {
    return parse_error(505, "HTTP version not supported");
  }
  out_.version_minor = static_cast<uint8_t>(minor - '0');
  return split_target();
}

ParseResult HeadParser::split_target() {
  const std::string_view target = out_.target;
  std::string_view path_and_query;
  if (target.front() == '/') {
    path_and_query = target;
  } else if (target == "*") {
    out_.path = target;
    return ParseResult{ParseStatus::complete};
  } else {
    // absolute-form: scheme "://" authority [path-abempty] ["?" query]
    size_t i = 0;
    const auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (is_alpha(target[0])) {
      i = 1;
      while (i < target.size() && (is_alpha(target[i]) || is_digit(target[i]) || target[i] == '+' ||
                                   target[i] == '-' || target[i] == '.')) {
        ++i;
      }
    }
    if (i > 0 && target.substr(i, 3) == "://") {
      const size_t authority_end = target.find_first_of("/?#", i + 3);
      if (authority_end == std::string_view::npos) {
        out_.path = "/";
        return ParseResult{ParseStatus::complete};
      }
      path_and_query = target.substr(authority_end);
      if (path_and_query.front() != '/') {
        // "http://host?query": the path is empty, which means "/".
        out_.path = "/";
        if (path_and_query.front() == '?') {
          out_.query = path_and_query.substr(1, path_and_query.find('#') - 1);
        }
        return ParseResult{ParseStatus::complete};
      }
    } else if (out_.method == "CONNECT") {
      return ParseResult{ParseStatus::complete};  // authority-form: no path
    } else {
      return parse_error(400, "invalid request target");
    }
  }
  // The fragment, if a client sent one, belongs to neither path nor query.
  const size_t fragment = path_and_query.find('#');
  path_and_query = path_and_query.substr(0, fragment);
  const size_t question_mark = path_and_query.find('?');
  out_.path = path_and_query.substr(0, question_mark);
  if (question_mark != std::string_view::npos)
    out_.query = path_and_query.substr(question_mark + 1);
  return ParseResult{ParseStatus::complete};
}

ParseResult HeadParser::parse_header_line() {
  const char first = data_[position_];
  if (first == '\n') return parse_error(400, "bare LF in request head");
  if (is_whitespace(first)) return parse_error(400, "obsolete line folding");
  if (out_.header_count == max_header_count_) return parse_error(431, "too many headers");

  const size_t name_start = position_;
  size_t i = position_;
  while (i < size_ && is_token_char(data_[i])) ++i;
  if (i == size_) return kIncomplete;
  if (data_[i] != ':') {
    if (is_whitespace(data_[i])) return parse_error(400, "whitespace before colon in header");
    if (data_[i] == '\n') return parse_error(400, "bare LF in request head");
    if (data_[i] == '\r') return parse_error(400, "header line without colon");
    return parse_error(400, "invalid character in header name");
  }
  if (i == name_start) return parse_error(400, "empty header name");
  const std::string_view name(data_ + name_start, i - name_start);

  ++i;
  while (i < size_ && is_whitespace(data_[i])) ++i;
  const size_t value_start = i;
  i = skip_value_chars(data_, i, size_);
  if (i == size_) return kIncomplete;
  if (data_[i] != '\r') {
    if (data_[i] == '\n') return parse_error(400, "bare LF in request head");
    return parse_error(400, "invalid character in header value");
  }
  if (i + 1 == size_) return kIncomplete;
  if (data_[i + 1] != '\n') return parse_error(400, "bare CR in request head");
  size_t value_end = i;
  while (value_end > value_start && is_whitespace(data_[value_end - 1])) --value_end;
  const std::string_view value(data_ + value_start, value_end - value_start);
  position_ = i + 2;

  storage_[out_.header_count++] = Header{name, value};
  return apply_header(name, value);
}

ParseResult HeadParser::apply_header(std::string_view name, std::string_view value) {
  switch (name.size()) {
    case 4:
      if (equals_lower(name, "host") && ++host_count_ > 1) {
        return parse_error(400, "more than one Host header");
      }
      break;
    case 6:
      if (equals_lower(name, "expect") && out_.version_minor == 1 &&
          equals_lower(value, "100-continue")) {
        out_.expect_continue = true;
      }
      break;
    case 10:
      if (equals_lower(name, "connection")) apply_connection(value);
      break;
    case 14:
      if (equals_lower(name, "content-length")) {
        uint64_t length = 0;
        if (const char* reason = parse_content_length(value, length)) {
          return parse_error(400, reason);
        }
        if (content_length_seen_ && length != out_.content_length) {
          return parse_error(400, "differing Content-Length values");
        }
        if (transfer_encoding_seen_) {
          return parse_error(400, "both Transfer-Encoding and Content-Length");
        }
        content_length_seen_ = true;
        out_.content_length = length;
        if (length > limits_.max_body_size) return parse_error(413, "body too large");
      }
      break;
    case 17:
      if (equals_lower(name, "transfer-encoding")) return apply_transfer_encoding(value);
      break;
    default:
      break;
  }
  return ParseResult{ParseStatus::complete};
}

ParseResult HeadParser::apply_transfer_encoding(std::string_view value) {
  if (out_.version_minor == 0) return parse_error(400, "Transfer-Encoding in an HTTP/1.0 request");
  if (content_length_seen_) return parse_error(400, "both Transfer-Encoding and Content-Length");
  transfer_encoding_seen_ = true;
  bool any_coding = false;
  size_t i = 0;
  while (i < value.size()) {
    // One list element: token [ OWS ";" parameters ], or empty.
    while (i < value.size() && (is_whitespace(value[i]) || value[i] == ',')) ++i;
    if (i == value.size()) break;
    const size_t coding_start = i;
    while (i < value.size() && is_token_char(value[i])) ++i;
    if (i == coding_start) return parse_error(400, "invalid Transfer-Encoding");
    const std::string_view coding = value.substr(coding_start, i - coding_start);
    any_coding = true;
    if (chunked_is_last_) return parse_error(400, "chunked is not the final transfer coding");
    const bool chunked = equals_lower(coding, "chunked");
    while (i < value.size() && is_whitespace(value[i])) ++i;
    if (i < value.size() && value[i] == ';') {
      if (chunked) return parse_error(400, "parameters on the chunked transfer coding");
      while (i < value.size() && value[i] != ',') ++i;  // parameters of a coding refused below
    }
    if (i < value.size() && value[i] != ',') return parse_error(400, "invalid Transfer-Encoding");
    if (chunked) {
      chunked_is_last_ = true;
    } else {
      other_coding_seen_ = true;
    }
  }
  if (!any_coding) return parse_error(400, "empty Transfer-Encoding");
  return ParseResult{ParseStatus::complete};
}

void HeadParser::apply_connection(std::string_view value) {
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view option = trim_whitespace(value.substr(start, comma - start));
    if (equals_lower(option, "close")) {
      connection_close_ = true;
    } else if (equals_lower(option, "keep-alive")) {
      connection_keep_alive_ = true;
    }
    start = comma + 1;
  }
}

ParseResult HeadParser::finish() {
  if (out_.version_minor == 1 && host_count_ == 0) return parse_error(400, "missing Host header");
  if (transfer_encoding_seen_) {
    if (other_coding_seen_) return parse_error(501, "unsupported transfer coding");
    out_.framing = BodyFraming::chunked;
  } else if (content_length_seen_) {
    out_.framing = BodyFraming::content_length;
  }
  out_.keep_alive = !connection_close_ && (out_.version_minor == 1 || connection_keep_alive_);
  out_.head_length = position_;
  return ParseResult{ParseStatus::complete};
}

}  // namespace

ParseResult parse_request(std::string_view data, const Limits& limits, RequestHead& out,
                          std::span<Header> storage, size_t scan_from) {
  if (scan_from > 0 && scan_from < data.size() && data.size() <= limits.max_header_size &&
      std::memchr(data.data() + scan_from, '\n', data.size() - scan_from) == nullptr) {
    // No new line ended, and the head limit is not crossed. The request line limit could be,
    // unless the request line has already ended.
    size_t request_line_start = 0;
    while (request_line_start + 1 < scan_from && data[request_line_start] == '\r' &&
           data[request_line_start + 1] == '\n') {
      request_line_start += 2;
    }
    const bool request_line_ended = std::memchr(data.data() + request_line_start, '\n',
                                                scan_from - request_line_start) != nullptr;
    if (request_line_ended || data.size() - request_line_start <= limits.max_request_line) {
      return kIncomplete;
    }
  }
  const std::string_view window = data.substr(0, std::min(data.size(), limits.max_header_size));
  HeadParser parser(window, limits, out, storage);
  const ParseResult result = parser.run();
  if (result.status == ParseStatus::incomplete && data.size() > window.size()) {
    // The head does not end inside max_header_size bytes.
    if (parser.stopped_in_request_line() &&
        window.size() - parser.request_line_start() > limits.max_request_line) {
      return parse_error(414, "request line too long");
    }
    return parse_error(431, "request head too large");
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// ChunkedDecoder

namespace {

// A chunk-size line (size, extensions, CRLF) longer than this is refused: extensions carry nothing
// the server uses, and an endless one would otherwise be read forever.
constexpr size_t kMaxChunkSizeLine = 4096;

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

ChunkedDecoder::ChunkedDecoder(uint64_t max_body_size, size_t max_trailer_size) noexcept
    : max_body_size_(max_body_size), max_trailer_size_(max_trailer_size) {}

ChunkResult ChunkedDecoder::fail(int http_status, const char* reason, size_t consumed) noexcept {
  state_ = State::error;
  error_status_ = http_status;
  error_reason_ = reason;
  return ChunkResult{ChunkStatus::error, consumed, http_status, reason};
}

ChunkResult ChunkedDecoder::feed(std::string_view input, std::string& body) {
  if (state_ == State::error)
    return ChunkResult{ChunkStatus::error, 0, error_status_, error_reason_};
  if (state_ == State::done) return ChunkResult{ChunkStatus::done, 0};
  size_t position = 0;
  const size_t size = input.size();
  while (position < size) {
    if (state_ == State::data) {
      const size_t take =
          static_cast<size_t>(std::min<uint64_t>(size - position, chunk_remaining_));
      body.append(input.data() + position, take);
      position += take;
      chunk_remaining_ -= take;
      decoded_size_ += take;
      if (chunk_remaining_ == 0) state_ = State::data_cr;
      continue;
    }
    const char c = input[position];
    switch (state_) {
      case State::size_start:
      case State::size: {
        const int digit = hex_value(c);
        if (digit >= 0) {
          if (state_ == State::size_start) {
            state_ = State::size;
            chunk_remaining_ = 0;
            size_line_length_ = 0;
          }
          if (chunk_remaining_ > (std::numeric_limits<uint64_t>::max() >> 4)) {
            return fail(400, "chunk size overflows", position);
          }
          chunk_remaining_ = (chunk_remaining_ << 4) | static_cast<uint64_t>(digit);
          if (chunk_remaining_ > max_body_size_ - decoded_size_) {
            return fail(413, "body too large", position);
          }
        } else if (state_ == State::size_start) {
          return fail(400, "invalid chunk size", position);
        } else if (is_whitespace(c)) {
          state_ = State::size_whitespace;
        } else if (c == ';') {
          state_ = State::extension;
        } else if (c == '\r') {
          state_ = State::size_line_lf;
        } else {
          return fail(400, "invalid chunk size", position);
        }
        break;
      }
      case State::size_whitespace:
        if (c == ';') {
          state_ = State::extension;
        } else if (c == '\r') {
          state_ = State::size_line_lf;
        } else if (!is_whitespace(c)) {
          return fail(400, "invalid chunk size line", position);
        }
        break;
      case State::extension:
        if (c == '\r') {
          state_ = State::size_line_lf;
        } else if (!has_class(c, kValueChar)) {
          return fail(400, "invalid character in chunk extension", position);
        }
        break;
      case State::size_line_lf:
        if (c != '\n') return fail(400, "bare CR in chunk size line", position);
        if (chunk_remaining_ == 0) {
          state_ = State::trailer_start;
          last_chunk_ = true;
        } else {
          state_ = State::data;
        }
        break;
      case State::data_cr:
        if (c != '\r') return fail(400, "missing CRLF after chunk data", position);
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return fail(400, "missing CRLF after chunk data", position);
        state_ = State::size_start;
        break;
      case State::trailer_start:
        if (c == '\r') {
          state_ = State::final_lf;
        } else if (is_token_char(c)) {
          state_ = State::trailer_name;
        } else if (is_whitespace(c)) {
          return fail(400, "obsolete line folding in trailer", position);
        } else {
          return fail(400, "invalid trailer field", position);
        }
        break;
      case State::trailer_name:
        if (c == ':') {
          state_ = State::trailer_value;
        } else if (!is_token_char(c)) {
          return fail(400, "invalid trailer field", position);
        }
        break;
      case State::trailer_value:
        if (c == '\r') {
          state_ = State::trailer_lf;
        } else if (!has_class(c, kValueChar)) {
          return fail(400, "invalid character in trailer field", position);
        }
        break;
      case State::trailer_lf:
        if (c != '\n') return fail(400, "bare CR in trailer", position);
        state_ = State::trailer_start;
        break;
      case State::final_lf:
        if (c != '\n') return fail(400, "bare CR in trailer", position);
        state_ = State::done;
        return ChunkResult{ChunkStatus::done, position + 1};
      case State::data:
      case State::done:
      case State::error:
        break;  // handled above
    }
    ++position;
    if (state_ == State::size || state_ == State::size_whitespace || state_ == State::extension ||
        state_ == State::size_line_lf) {
      if (++size_line_length_ > kMaxChunkSizeLine) {
        return fail(400, "chunk size line too long", position);
      }
    } else if (last_chunk_) {
      if (++trailer_size_ > max_trailer_size_)
        return fail(431, "trailer section too large", position);
    }
  }
  return ChunkResult{ChunkStatus::need_more, size};
}

// ---------------------------------------------------------------------------------------------

std::string percent_decode(std::string_view text) {
  std::string decoded;
  decoded.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
        hex_value(text[i + 2]) >= 0) {
      decoded.push_back(static_cast<char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2])));
      i += 2;
    } else {
      decoded.push_back(text[i]);
    }
  }
  return decoded;
}

}  // namespace tf::http
