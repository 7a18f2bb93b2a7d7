#include "core/http/http_response.hpp"

#include <array>
#include <cstring>

namespace tf::http {
namespace {

constexpr int kFirstTabledStatus = 100;
constexpr int kLastTabledStatus = 599;
constexpr int kTabledStatusCount = kLastTabledStatus - kFirstTabledStatus + 1;

constexpr std::string_view registered_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 101:
      return "Switching Protocols";
    case 102:
      return "Processing";
    case 103:
      return "Early Hints";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 203:
      return "Non-Authoritative Information";
    case 204:
      return "No Content";
    case 205:
      return "Reset Content";
    case 206:
      return "Partial Content";
    case 207:
      return "Multi-Status";
    case 208:
      return "Already Reported";
    case 226:
      return "IM Used";
    case 300:
      return "Multiple Choices";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 304:
      return "Not Modified";
    case 305:
      return "Use Proxy";
    case 306:
      return "(Unused)";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 402:
      return "Payment Required";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 406:
      return "Not Acceptable";
    case 407:
      return "Proxy Authentication Required";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 418:
      return "I'm a teapot";
    case 421:
      return "Misdirected Request";
    case 422:
      return "Unprocessable Content";
    case 423:
      return "Locked";
    case 424:
      return "Failed Dependency";
    case 425:
      return "Too Early";
    case 426:
      return "Upgrade Required";
    case 428:
      return "Precondition Required";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 451:
      return "Unavailable For Legal Reasons";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    case 506:
      return "Variant Also Negotiates";
    case 507:
      return "Insufficient Storage";
    case 508:
      return "Loop Detected";
    case 510:
      return "Not Extended";
    case 511:
      return "Network Authentication Required";
    default:
      return "";
  }
}

constexpr std::string_view kStatusLinePrefix = "HTTP/1.1 ";
// Index of the minor version digit in kStatusLinePrefix.
constexpr size_t kMinorVersionOffset = 7;
constexpr size_t kMaxStatusLineLength = 48;

// "HTTP/1.1 <code> <reason>\r\n" for every registered code, built at compile time. HTTP/1.0 lines
// are the same bytes with the minor digit patched after appending.
struct StatusLineTable {
  std::array<std::array<char, kMaxStatusLineLength>, kTabledStatusCount> lines{};
  std::array<uint8_t, kTabledStatusCount> lengths{};
};

constexpr StatusLineTable build_status_line_table() {
  StatusLineTable table;
  for (int status = kFirstTabledStatus; status <= kLastTabledStatus; ++status) {
    std::string_view reason = registered_reason(status);
    if (reason.empty()) continue;
    auto& line = table.lines[status - kFirstTabledStatus];
    size_t length = 0;
    for (char c : kStatusLinePrefix) line[length++] = c;
    line[length++] = static_cast<char>('0' + status / 100);
    line[length++] = static_cast<char>('0' + status / 10 % 10);
    line[length++] = static_cast<char>('0' + status % 10);
    line[length++] = ' ';
    for (char c : reason) line[length++] = c;
    line[length++] = '\r';
    line[length++] = '\n';
    table.lengths[status - kFirstTabledStatus] = static_cast<uint8_t>(length);
  }
  return table;
}

constexpr StatusLineTable kStatusLines = build_status_line_table();

constexpr bool is_tchar(unsigned char c) {
  if (c >= '0' && c <= '9') return true;
  if (c >= 'a' && c <= 'z') return true;
  if (c >= 'A' && c <= 'Z') return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

constexpr bool is_field_value_byte(unsigned char c) {
  if (c == '\t') return true;
  return c >= 0x20 && c != 0x7F;
}

template <bool (*Predicate)(unsigned char)>
constexpr std::array<bool, 256> build_byte_table() {
  std::array<bool, 256> table{};
  for (int byte = 0; byte < 256; ++byte) table[byte] = Predicate(static_cast<unsigned char>(byte));
  return table;
}

constexpr std::array<bool, 256> kTokenBytes = build_byte_table<is_tchar>();
constexpr std::array<bool, 256> kFieldValueBytes = build_byte_table<is_field_value_byte>();

constexpr unsigned char ascii_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + ('a' - 'A')) : c;
}

constexpr std::string_view kDayNames[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::string_view kMonthNames[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
// 9999-12-31T23:59:59Z.
constexpr time_t kLatestFormattableSecond = 253402300799;

void write_two_digits(char* destination, int value) {
  destination[0] = static_cast<char>('0' + value / 10);
  destination[1] = static_cast<char>('0' + value % 10);
}

}  // namespace

std::string_view reason_phrase(int status) noexcept {
  if (status < kFirstTabledStatus || status > kLastTabledStatus) return {};
  return registered_reason(status);
}

bool is_valid_status(int status) noexcept {
  return status >= 100 && status <= 999;
}

bool is_valid_header_name(std::string_view name) noexcept {
  if (name.empty()) return false;
  for (char c : name) {
    if (!kTokenBytes[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool is_valid_header_value(std::string_view value) noexcept {
  for (char c : value) {
    if (!kFieldValueBytes[static_cast<unsigned char>(c)]) return false;
  }
  return true;
}

bool status_allows_body(int status) noexcept {
  return !(status >= 100 && status < 200) && status != 204 && status != 304;
}

void append_status_line(std::string& out, int status, int version_minor) {
  if (!is_valid_status(status)) status = 500;
  const size_t start = out.size();
  const size_t tabled_length =
      status <= kLastTabledStatus ? kStatusLines.lengths[status - kFirstTabledStatus] : 0;
  if (tabled_length != 0) {
    out.append(kStatusLines.lines[status - kFirstTabledStatus].data(), tabled_length);
  } else {
    char code[4] = {static_cast<char>('0' + status / 100),
                    static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10),
                    ' '};
    out.reserve(start + kStatusLinePrefix.size() + sizeof(code) + 9);
    out.append(kStatusLinePrefix);
    out.append(code, sizeof(code));
    out.append("Unknown\r\n");
  }
  if (version_minor == 0) out[start + kMinorVersionOffset] = '0';
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  const size_t start = out.size();
  out.resize(start + name.size() + 2 + value.size() + 2);
  char* cursor = out.data() + start;
  std::memcpy(cursor, name.data(), name.size());
  cursor += name.size();
  *cursor++ = ':';
  *cursor++ = ' ';
  if (!value.empty()) std::memcpy(cursor, value.data(), value.size());
  cursor += value.size();
  *cursor++ = '\r';
  *cursor = '\n';
}

void append_chunk_size(std::string& out, size_t size) {
  static constexpr char kHexDigits[] = "0123456789abcdef";
  char buffer[2 * sizeof(size_t) + 2];
  char* end = buffer + sizeof(buffer);
  char* cursor = end;
  *--cursor = '\n';
  *--cursor = '\r';
  do {
    *--cursor = kHexDigits[size & 0xF];
    size >>= 4;
  } while (size != 0);
  out.append(cursor, static_cast<size_t>(end - cursor));
}

void append_decimal(std::string& out, uint64_t value) {
  char buffer[20];  // UINT64_MAX has 20 digits.
  char* end = buffer + sizeof(buffer);
  char* cursor = end;
  do {
    *--cursor = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  out.append(cursor, static_cast<size_t>(end - cursor));
}

std::string_view DateCache::now() noexcept {
  timespec current{};
  clock_gettime(CLOCK_REALTIME_COARSE, &current);
  return at(current.tv_sec);
}

std::string_view DateCache::at(time_t seconds) noexcept {
  if (seconds < 0) seconds = 0;
  if (seconds > kLatestFormattableSecond) seconds = kLatestFormattableSecond;
  if (!has_value_ || seconds != cached_seconds_) {
    format(seconds);
    cached_seconds_ = seconds;
    has_value_ = true;
  }
  return {text_, kImfFixdateLength};
}

void DateCache::format(time_t seconds) noexcept {
  tm broken_down{};
  gmtime_r(&seconds, &broken_down);  // Cannot fail: seconds is clamped to years 1970..9999.
  // "Sun, 06 Nov 1994 08:49:37 GMT"
  //  0123456789012345678901234567 8
  char* text = text_;
  std::memcpy(text, kDayNames[broken_down.tm_wday].data(), 3);
  text[3] = ',';
  text[4] = ' ';
  write_two_digits(text + 5, broken_down.tm_mday);
  text[7] = ' ';
  std::memcpy(text + 8, kMonthNames[broken_down.tm_mon].data(), 3);
  text[11] = ' ';
  const int year = broken_down.tm_year + 1900;
  write_two_digits(text + 12, year / 100);
  write_two_digits(text + 14, year % 100);
  text[16] = ' ';
  write_two_digits(text + 17, broken_down.tm_hour);
  text[19] = ':';
  write_two_digits(text + 20, broken_down.tm_min);
  text[22] = ':';
  write_two_digits(text + 23, broken_down.tm_sec);
  std::memcpy(text + 25, " GMT", 4);
}

std::string_view trim_ows(std::string_view text) noexcept {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t index = 0; index < a.size(); ++index) {
    if (ascii_lower(static_cast<unsigned char>(a[index])) !=
        ascii_lower(static_cast<unsigned char>(b[index]))) {
      return false;
    }
  }
  return true;
}

}  // namespace tf::http
