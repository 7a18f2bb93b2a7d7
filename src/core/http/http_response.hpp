// Response serialization helpers: the writer side of HTTP/1.x, used on every response.
//
// Everything here is pure (no I/O, no locale, no exceptions except std::bad_alloc from growing the
// output string) and appends to a caller-owned std::string so that one response head is built in
// one buffer without intermediate allocations.
#pragma once

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace tf::http {

// Standard reason phrase for a registered status code (RFC 9110 plus common IANA ones: 100-103,
// 200-208, 226, 300-308, 400-418, 421-426, 428, 429, 431, 451, 500-508, 510, 511); "" for an
// unregistered code (including anything outside 100..599).
std::string_view reason_phrase(int status) noexcept;

// True for a status code that may appear on a status line: three digits, 100..999.
bool is_valid_status(int status) noexcept;

// True when `name` is a non-empty RFC 9110 token (tchar: ALPHA, DIGIT, "!#$%&'*+-.^_`|~").
bool is_valid_header_name(std::string_view name) noexcept;

// True when `value` contains no control character other than HTAB: no NUL, CR, LF, no other byte
// below 0x20 and no DEL (0x7F). Bytes >= 0x80 (obs-text) are allowed. The empty value is valid.
bool is_valid_header_value(std::string_view value) noexcept;

// False for 1xx, 204 and 304, which never carry a body (RFC 9110 6.4.1); true otherwise.
bool status_allows_body(int status) noexcept;

// Appends "HTTP/1.<minor> <status> <reason>\r\n". `version_minor` 0 writes HTTP/1.0, anything else
// HTTP/1.1. Registered codes come from a precomputed table; other codes in 100..999 get the reason
// "Unknown". A status outside 100..999 is a caller bug (check is_valid_status first) and is written
// as 500 Internal Server Error rather than as a malformed status line.
void append_status_line(std::string& out, int status, int version_minor);

// Appends "name: value\r\n". No validation: call is_valid_header_name/_value first.
void append_header(std::string& out, std::string_view name, std::string_view value);

// Appends the size line of one chunk of a chunked body: lowercase hex, no leading zeros, then CRLF
// ("1a2b\r\n"; "0\r\n" for zero, although a zero-size chunk ends the body: use kLastChunk).
void append_chunk_size(std::string& out, size_t size);

// Written after each chunk's data.
inline constexpr std::string_view kChunkEnd = "\r\n";
// Ends a chunked body (last chunk, no trailers).
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Appends `value` in decimal, without locale (for Content-Length).
void append_decimal(std::string& out, uint64_t value);

// Length of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
inline constexpr size_t kImfFixdateLength = 29;

// The value of the Date header as an IMF-fixdate, formatted only when the second changes and
// cached otherwise. Not thread-safe: keep one per thread (one per hub).
class DateCache {
 public:
  DateCache() noexcept = default;

  // The current time (CLOCK_REALTIME_COARSE). The view points into this object and stays valid
  // until the next call that changes the second, or until the object is destroyed.
  std::string_view now() noexcept;

  // The given time (seconds since the epoch), through the same cache; for tests and for callers
  // that already read the clock. Times before 1970 or after 9999-12-31T23:59:59Z are clamped to
  // those bounds (an IMF-fixdate has a four-digit year). Same lifetime rule as now().
  std::string_view at(time_t seconds) noexcept;

 private:
  void format(time_t seconds) noexcept;

  time_t cached_seconds_ = 0;
  bool has_value_ = false;
  char text_[kImfFixdateLength] = {};
};

// Case-insensitive ASCII comparison (for header names); bytes >= 0x80 compare exactly.
bool iequals(std::string_view a, std::string_view b) noexcept;

// The text without leading and trailing optional whitespace (spaces and tabs, RFC 9110 OWS).
std::string_view trim_ows(std::string_view text) noexcept;

}  // namespace tf::http
