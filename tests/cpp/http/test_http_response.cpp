#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "core/http/http_response.hpp"

namespace tf::http {
namespace {

TEST(ReasonPhrase, EveryRegisteredCode) {
  const std::pair<int, std::string_view> expected[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {102, "Processing"},
      {103, "Early Hints"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {203, "Non-Authoritative Information"},
      {204, "No Content"},
      {205, "Reset Content"},
      {206, "Partial Content"},
      {207, "Multi-Status"},
      {208, "Already Reported"},
      {226, "IM Used"},
      {300, "Multiple Choices"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {305, "Use Proxy"},
      {306, "(Unused)"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {402, "Payment Required"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {406, "Not Acceptable"},
      {407, "Proxy Authentication Required"},
      {408, "Request Timeout"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {415, "Unsupported Media Type"},
      {416, "Range Not Satisfiable"},
      {417, "Expectation Failed"},
      {418, "I'm a teapot"},
      {421, "Misdirected Request"},
      {422, "Unprocessable Content"},
      {423, "Locked"},
      {424, "Failed Dependency"},
      {425, "Too Early"},
      {426, "Upgrade Required"},
      {428, "Precondition Required"},
      {429, "Too Many Requests"},
      {431, "Request Header Fields Too Large"},
      {451, "Unavailable For Legal Reasons"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
      {506, "Variant Also Negotiates"},
      {507, "Insufficient Storage"},
      {508, "Loop Detected"},
      {510, "Not Extended"},
      {511, "Network Authentication Required"},
  };
  size_t registered_count = 0;
  for (int status = -5; status < 1100; ++status) {
    if (!reason_phrase(status).empty()) ++registered_count;
  }
  EXPECT_EQ(registered_count, std::size(expected));
  for (const auto& [status, reason] : expected) {
    EXPECT_EQ(reason_phrase(status), reason) << status;
    std::string line;
    append_status_line(line, status, 1);
    EXPECT_EQ(line, "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) + "\r\n");
  }
}

TEST(ReasonPhrase, UnregisteredCodesAreEmpty) {
  for (int status : {0,
                     -1,
                     99,
                     104,
                     199,
                     209,
                     225,
                     227,
                     299,
                     309,
                     419,
                     420,
                     427,
                     430,
                     432,
                     450,
                     452,
                     499,
                     509,
                     512,
                     599,
                     600,
                     999,
                     1000,
                     std::numeric_limits<int>::min(),
                     std::numeric_limits<int>::max()}) {
    EXPECT_EQ(reason_phrase(status), "") << status;
  }
}

TEST(StatusLine, VersionsAndUnknownCodes) {
  std::string out = "prefix";
  append_status_line(out, 200, 1);
  append_status_line(out, 404, 0);
  EXPECT_EQ(out, "prefixHTTP/1.1 200 OK\r\nHTTP/1.0 404 Not Found\r\n");

  out.clear();
  append_status_line(out, 299, 1);
  EXPECT_EQ(out, "HTTP/1.1 299 Unknown\r\n");
  out.clear();
  append_status_line(out, 999, 0);
  EXPECT_EQ(out, "HTTP/1.0 999 Unknown\r\n");
  out.clear();
  append_status_line(out, 600, 1);
  EXPECT_EQ(out, "HTTP/1.1 600 Unknown\r\n");
  out.clear();
  append_status_line(out, 100, 1);
  EXPECT_EQ(out, "HTTP/1.1 100 Continue\r\n");
}

TEST(StatusLine, InvalidCodeIsWrittenAs500) {
  for (int status : {-1, 0, 99, 1000, std::numeric_limits<int>::max()}) {
    EXPECT_FALSE(is_valid_status(status));
    std::string out;
    append_status_line(out, status, 1);
    EXPECT_EQ(out, "HTTP/1.1 500 Internal Server Error\r\n") << status;
  }
  EXPECT_TRUE(is_valid_status(100));
  EXPECT_TRUE(is_valid_status(999));
}

TEST(HeaderName, AllByteValues) {
  const std::string_view separators = "!#$%&'*+-.^_`|~";
  for (int byte = 0; byte < 256; ++byte) {
    const char c = static_cast<char>(byte);
    const bool expected = (byte >= '0' && byte <= '9') || (byte >= 'a' && byte <= 'z') ||
                          (byte >= 'A' && byte <= 'Z') ||
                          separators.find(c) != std::string_view::npos;
    const std::string alone(1, c);
    EXPECT_EQ(is_valid_header_name(alone), expected) << byte;
    // The byte anywhere in an otherwise valid name decides alone.
    EXPECT_EQ(is_valid_header_name("X-" + alone + "-Name"), expected) << byte;
    EXPECT_EQ(is_valid_header_name("Name" + alone), expected) << byte;
  }
}

TEST(HeaderName, EmptyAndTypicalNames) {
  EXPECT_FALSE(is_valid_header_name(""));
  EXPECT_TRUE(is_valid_header_name("Content-Type"));
  EXPECT_TRUE(is_valid_header_name("x-request-id"));
  EXPECT_FALSE(is_valid_header_name("Content Type"));
  EXPECT_FALSE(is_valid_header_name("Content-Type:"));
  EXPECT_FALSE(is_valid_header_name(std::string_view("X\0Y", 3)));
}

TEST(HeaderValue, AllByteValues) {
  for (int byte = 0; byte < 256; ++byte) {
    const char c = static_cast<char>(byte);
    const bool expected = byte == '\t' || (byte >= 0x20 && byte != 0x7F);
    const std::string alone(1, c);
    EXPECT_EQ(is_valid_header_value(alone), expected) << byte;
    EXPECT_EQ(is_valid_header_value("text/html; " + alone + " charset=utf-8"), expected) << byte;
  }
}

TEST(HeaderValue, TypicalValuesAndInjection) {
  EXPECT_TRUE(is_valid_header_value(""));
  EXPECT_TRUE(is_valid_header_value("text/plain; charset=utf-8"));
  EXPECT_TRUE(is_valid_header_value("caf\xc3\xa9"));
  EXPECT_FALSE(is_valid_header_value("ok\r\nSet-Cookie: evil=1"));
  EXPECT_FALSE(is_valid_header_value("ok\nX: y"));
  EXPECT_FALSE(is_valid_header_value("ok\r"));
  EXPECT_FALSE(is_valid_header_value(std::string_view("a\0b", 3)));
}

TEST(StatusAllowsBody, InformationalNoContentNotModified) {
  for (int status = 100; status < 200; ++status) EXPECT_FALSE(status_allows_body(status)) << status;
  EXPECT_FALSE(status_allows_body(204));
  EXPECT_FALSE(status_allows_body(304));
  for (int status :
       {200, 201, 202, 203, 205, 206, 226, 301, 302, 303, 305, 307, 400, 404, 500, 599, 999}) {
    EXPECT_TRUE(status_allows_body(status)) << status;
  }
}

TEST(AppendHeader, Format) {
  std::string out;
  append_header(out, "Content-Length", "12");
  append_header(out, "X-Empty", "");
  EXPECT_EQ(out, "Content-Length: 12\r\nX-Empty: \r\n");
}

TEST(AppendDecimal, EdgeValues) {
  std::string out;
  append_decimal(out, 0);
  EXPECT_EQ(out, "0");
  out.clear();
  append_decimal(out, 1);
  EXPECT_EQ(out, "1");
  out.clear();
  append_decimal(out, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(out, "18446744073709551615");
  out = "len=";
  append_decimal(out, 1234567890);
  EXPECT_EQ(out, "len=1234567890");
  for (uint64_t value = 1; value < std::numeric_limits<uint64_t>::max() / 10; value *= 10) {
    out.clear();
    append_decimal(out, value - 1);
    append_decimal(out, value);
    EXPECT_EQ(out, std::to_string(value - 1) + std::to_string(value));
  }
}

TEST(ChunkSize, Hex) {
  std::string out;
  append_chunk_size(out, 0);
  EXPECT_EQ(out, "0\r\n");
  out.clear();
  append_chunk_size(out, 0x1a2b);
  EXPECT_EQ(out, "1a2b\r\n");
  out.clear();
  append_chunk_size(out, 15);
  append_chunk_size(out, 16);
  append_chunk_size(out, 4096);
  EXPECT_EQ(out, "f\r\n10\r\n1000\r\n");
  out.clear();
  append_chunk_size(out, std::numeric_limits<size_t>::max());
  EXPECT_EQ(out, std::string(2 * sizeof(size_t), 'f') + "\r\n");
  EXPECT_EQ(kChunkEnd, "\r\n");
  EXPECT_EQ(kLastChunk, "0\r\n\r\n");
}

TEST(DateCache, KnownTimestamp) {
  DateCache cache;
  EXPECT_EQ(cache.at(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(cache.at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(cache.at(951782400), "Tue, 29 Feb 2000 00:00:00 GMT");
  EXPECT_EQ(cache.at(1709251199), "Thu, 29 Feb 2024 23:59:59 GMT");
  EXPECT_EQ(cache.at(253402300799), "Fri, 31 Dec 9999 23:59:59 GMT");
}

TEST(DateCache, OutOfRangeIsClamped) {
  DateCache cache;
  EXPECT_EQ(cache.at(-1), "Thu, 01 Jan 1970 00:00:00 GMT");
  EXPECT_EQ(cache.at(253402300800), "Fri, 31 Dec 9999 23:59:59 GMT");
  EXPECT_EQ(cache.at(std::numeric_limits<time_t>::max()), "Fri, 31 Dec 9999 23:59:59 GMT");
  EXPECT_EQ(cache.at(std::numeric_limits<time_t>::min()), "Thu, 01 Jan 1970 00:00:00 GMT");
}

TEST(DateCache, EverySecondOfADayMatchesStrftime) {
  DateCache cache;
  for (time_t seconds = 1700000000; seconds < 1700000000 + 86400 * 3; seconds += 7) {
    tm broken_down{};
    gmtime_r(&seconds, &broken_down);
    char expected[64];
    const size_t length = strftime(expected, sizeof(expected), "%a, %d %b %Y %H:%M:%S GMT",
                                   &broken_down);  // the test runs in the C locale
    ASSERT_EQ(cache.at(seconds), std::string_view(expected, length)) << seconds;
  }
}

TEST(DateCache, RecomputedOnlyWhenTheSecondChanges) {
  DateCache cache;
  const std::string_view first = cache.at(784111777);
  const char* storage = first.data();
  EXPECT_EQ(cache.at(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(cache.at(784111778), "Sun, 06 Nov 1994 08:49:38 GMT");
  EXPECT_EQ(cache.at(784111778).data(), storage);  // same buffer, no allocation
}

time_t coarse_realtime_seconds() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME_COARSE, &now);
  return now.tv_sec;
}

TEST(DateCache, NowFollowsTheCoarseClock) {
  DateCache cache;
  DateCache reference;
  // Watch now() across one second boundary (bounded at ~3 s of wall time): every value is the
  // formatting of the coarse clock second read just before or just after it (so it cannot change
  // within a second), and it does change once that second moves on.
  const time_t start = coarse_realtime_seconds();
  const std::string first(cache.now());
  std::string current = first;
  while (current == first && coarse_realtime_seconds() < start + 3) {
    const time_t before = coarse_realtime_seconds();
    current = cache.now();
    const time_t after = coarse_realtime_seconds();
    ASSERT_TRUE(current == reference.at(before) || current == reference.at(after)) << current;
    if (before == after) {
      ASSERT_EQ(current, reference.at(before));
    }
  }
  EXPECT_NE(current, first);
}

TEST(Iequals, Cases) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("CONTENT-LENGTH", "content-length"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Content-Length", "Content-Lengt"));
  EXPECT_FALSE(iequals("a", "b"));
  // Only ASCII letters fold: '@' (0x40) and '`' (0x60) differ by 0x20 but are not letters.
  EXPECT_FALSE(iequals("@", "`"));
  EXPECT_FALSE(iequals("[", "{"));
  EXPECT_FALSE(iequals("\xc3\xa9", "\xc3\x89"));
  for (int byte = 0; byte < 256; ++byte) {
    const std::string c(1, static_cast<char>(byte));
    EXPECT_TRUE(iequals(c, c));
  }
}

}  // namespace
}  // namespace tf::http
