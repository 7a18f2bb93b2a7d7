// HTTP/1.1 request parsing (RFC 9112): a stateless, allocation-free parser of the request head and
// an incremental decoder of chunked request bodies. Pure: no I/O, no Python, no global state.
//
// Strictness choices (each one is covered by tests/cpp/http/test_http_parser.cpp):
//  - Lines end with CRLF only. A bare LF (LF not preceded by CR) anywhere in the head or in the
//    chunked framing is rejected with 400, as llhttp does by default (h11 accepts it); a CR not
//    followed by LF is rejected with 400 too. Accepting LF-only lines in one place and not another
//    is how request smuggling starts, so neither is accepted anywhere.
//  - Empty lines (CRLF) before the request line are skipped (RFC 9112 §2.2) and count toward
//    head_length and max_header_size.
//  - The request line is `method SP request-target SP HTTP/D.D CRLF` with single spaces. A
//    well-formed version other than HTTP/1.0 and HTTP/1.1 answers 505; anything else malformed
//    answers 400. The target must be visible ASCII (0x21-0x7E).
//  - Transfer-Encoding: "chunked" alone is the only coding accepted. "chunked" anywhere but last
//    answers 400; any other coding (e.g. "gzip", "gzip, chunked") answers 501. Transfer-Encoding in
//    an HTTP/1.0 request, or together with Content-Length, answers 400.
//  - An HTTP/1.1 request needs exactly one Host header (400 when missing or repeated).
//  - Errors are reported as soon as the bytes seen prove them, in the order they appear in the
//    input, so a call on any prefix of the input answers `incomplete` or the same as the whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tf::http {

// Size limits of one request, each with the status that exceeding it answers.
struct Limits {
  size_t max_request_line = 8192;    // request line (without CRLF) longer -> 414
  size_t max_header_size = 32768;    // whole head (request line + headers + CRLFs) larger -> 431
  size_t max_headers = 100;          // more header lines -> 431
  uint64_t max_body_size = 1 << 20;  // Content-Length or decoded chunked body larger -> 413
};

// One header field. Both views point into the buffer given to parse_request; the value has its
// leading and trailing whitespace removed.
struct Header {
  std::string_view name;
  std::string_view value;
};

enum class BodyFraming : uint8_t { none, content_length, chunked };

// The parsed head of one request. Every view points into the buffer given to parse_request,
// except `path` for an absolute-form target without a path, which is the static string "/".
struct RequestHead {
  std::string_view method;
  std::string_view target;    // as sent (origin-form, absolute-form, authority-form or "*")
  std::string_view path;      // undecoded path of the target: the path after the authority for
                              // absolute-form, "*" for asterisk-form, empty for CONNECT's
                              // authority-form
  std::string_view query;     // after '?', without it; empty when none
  uint8_t version_minor = 1;  // HTTP/1.0 or HTTP/1.1
  size_t header_count = 0;    // headers are in the caller's storage[0..header_count)
  BodyFraming framing = BodyFraming::none;
  uint64_t content_length = 0;   // meaningful when framing == content_length
  bool keep_alive = true;        // HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with
                                 // "Connection: keep-alive" (token list, case-insensitive)
  bool expect_continue = false;  // "Expect: 100-continue" (HTTP/1.1 only)
  size_t head_length = 0;        // bytes consumed by empty lines + request line + headers + CRLF
};

enum class ParseStatus : uint8_t { complete, incomplete, error };

// On error, http_status is the status to answer (400, 413, 414, 431, 501, 505) and reason a
// static, human-readable explanation.
struct ParseResult {
  ParseStatus status;
  int http_status = 0;
  const char* reason = "";
};

// Parses the head of one request from the start of `data` into `out`, storing the headers in
// `storage` (at most min(limits.max_headers, storage.size()) of them; more answers 431).
// Stateless and allocation-free; never reads outside `data`. `out` and `storage` are meaningful
// only when the result is `complete`. Calling it again with more bytes appended gives the same
// answer as one call with all bytes; an incomplete head already longer than a limit answers that
// limit's status.
//
// `scan_from` (optional hint for a buffer that grows between calls): the size of `data` at the
// previous call on this buffer, which answered `incomplete`. When the bytes added since hold no LF
// and no limit can have been crossed, the call answers `incomplete` without parsing, so a client
// trickling a head byte by byte costs a memchr per call instead of a re-parse. The price: an error
// in an unfinished line is then reported when its line ends (or a limit is reached) rather than at
// once. A complete head is never missed: its last byte is a LF.
ParseResult parse_request(std::string_view data, const Limits& limits, RequestHead& out,
                          std::span<Header> storage, size_t scan_from = 0);

enum class ChunkStatus : uint8_t { need_more, done, error };

// On error, http_status is 400 (malformed framing), 413 (body larger than allowed) or 431
// (trailer section larger than allowed), and reason a static explanation.
struct ChunkResult {
  ChunkStatus status;
  size_t consumed = 0;
  int http_status = 0;
  const char* reason = "";
};

// Incremental decoder of one chunked request body (RFC 9112 §7.1). Feed it the bytes that follow
// the head, in pieces of any size.
class ChunkedDecoder {
 public:
  // `max_body_size`: a decoded body larger than this is refused with 413 as soon as a chunk size
  // proves it (before its data arrives). `max_trailer_size`: trailer section bytes allowed (431).
  explicit ChunkedDecoder(uint64_t max_body_size, size_t max_trailer_size = 32768) noexcept;

  // Consumes a prefix of `input` (result.consumed bytes) and appends the decoded payload to
  // `body`. need_more: all of `input` was consumed, feed the next bytes. done: the body ended; the
  // bytes after `consumed` belong to the next request. error: the body is malformed or too large;
  // every later call answers the same error. Chunk extensions are validated and skipped; trailer
  // fields are validated and dropped.
  ChunkResult feed(std::string_view input, std::string& body);

  // Decoded payload bytes so far.
  uint64_t decoded_size() const noexcept { return decoded_size_; }

 private:
  enum class State : uint8_t {
    size_start,       // expecting the first hex digit of a chunk size
    size,             // inside the hex digits
    size_whitespace,  // after the digits, spaces before ';' or CRLF
    extension,        // inside chunk extensions, until CR
    size_line_lf,     // CR seen at the end of the size line, expecting LF
    data,             // inside chunk data
    data_cr,          // after chunk data, expecting CR
    data_lf,          // after chunk data and CR, expecting LF
    trailer_start,    // at the start of a trailer line (or the final CRLF)
    trailer_name,     // inside a trailer field name
    trailer_value,    // inside a trailer field value, until CR
    trailer_lf,       // CR seen at the end of a trailer line, expecting LF
    final_lf,         // CR of the final empty line seen, expecting LF
    done,
    error,
  };

  ChunkResult fail(int http_status, const char* reason, size_t consumed) noexcept;

  uint64_t max_body_size_;
  size_t max_trailer_size_;
  uint64_t decoded_size_ = 0;
  uint64_t chunk_remaining_ = 0;  // size digits so far (State::size), then data bytes left
  size_t size_line_length_ = 0;   // bytes of the current chunk-size line, bounded
  size_t trailer_size_ = 0;       // bytes of the trailer section so far
  bool last_chunk_ = false;       // the current size line is the last chunk (size 0)
  State state_ = State::size_start;
  int error_status_ = 0;
  const char* error_reason_ = "";
};

// Percent-decodes a path ("%2F" -> "/", "+" stays "+"). Invalid or truncated escapes ("%zz",
// "%4") are kept literally.
std::string percent_decode(std::string_view text);

}  // namespace tf::http
