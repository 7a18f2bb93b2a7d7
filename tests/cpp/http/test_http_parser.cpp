// Tests of src/core/http/http_parser: every strictness rule, every request form, split invariance,
// reads right before an unreadable page, and the chunked decoder fed in pieces of every size.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/http/http_parser.hpp"
#include "guarded_buffer.hpp"

namespace tf::http {
namespace {

using namespace std::string_literals;

// One parse with its own header storage, so the result can be inspected after the call.
struct Parsed {
  ParseResult result{ParseStatus::incomplete};
  RequestHead head;
  std::vector<Header> headers;

  std::string header(std::string_view name) const {
    for (size_t i = 0; i < head.header_count; ++i) {
      if (headers[i].name == name) return std::string(headers[i].value);
    }
    return "<absent>";
  }
};

Parsed parse(std::string_view data, const Limits& limits = {}, size_t storage_size = 0) {
  Parsed parsed;
  parsed.headers.resize(storage_size != 0 ? storage_size : limits.max_headers);
  parsed.result = parse_request(data, limits, parsed.head, parsed.headers);
  return parsed;
}

// Expects `data` to be refused with `status`.
void expect_error(std::string_view data, int status, const Limits& limits = {}) {
  const Parsed parsed = parse(data, limits);
  EXPECT_EQ(parsed.result.status, ParseStatus::error) << testing::PrintToString(std::string(data));
  EXPECT_EQ(parsed.result.http_status, status)
      << testing::PrintToString(std::string(data)) << " reason: " << parsed.result.reason;
}

Parsed expect_complete(std::string_view data, const Limits& limits = {}) {
  Parsed parsed = parse(data, limits);
  EXPECT_EQ(parsed.result.status, ParseStatus::complete)
      << testing::PrintToString(std::string(data)) << " reason: " << parsed.result.reason;
  return parsed;
}

// ---------------------------------------------------------------------------------------------
// Valid requests of every form

TEST(HttpParser, SimpleGet) {
  const std::string data = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
  const Parsed parsed = expect_complete(data);
  EXPECT_EQ(parsed.head.method, "GET");
  EXPECT_EQ(parsed.head.target, "/index.html");
  EXPECT_EQ(parsed.head.path, "/index.html");
  EXPECT_EQ(parsed.head.query, "");
  EXPECT_EQ(parsed.head.version_minor, 1);
  ASSERT_EQ(parsed.head.header_count, 2u);
  EXPECT_EQ(parsed.headers[0].name, "Host");
  EXPECT_EQ(parsed.headers[0].value, "example.com");
  EXPECT_EQ(parsed.headers[1].name, "Accept");
  EXPECT_EQ(parsed.headers[1].value, "*/*");
  EXPECT_EQ(parsed.head.framing, BodyFraming::none);
  EXPECT_EQ(parsed.head.content_length, 0u);
  EXPECT_TRUE(parsed.head.keep_alive);
  EXPECT_FALSE(parsed.head.expect_continue);
  EXPECT_EQ(parsed.head.head_length, data.size());
}

TEST(HttpParser, ViewsPointIntoTheCallersBuffer) {
  const std::string data = "GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n";
  const Parsed parsed = expect_complete(data);
  const auto inside = [&](std::string_view view) {
    return view.data() >= data.data() && view.data() + view.size() <= data.data() + data.size();
  };
  EXPECT_TRUE(inside(parsed.head.method));
  EXPECT_TRUE(inside(parsed.head.target));
  EXPECT_TRUE(inside(parsed.head.path));
  EXPECT_TRUE(inside(parsed.head.query));
  EXPECT_TRUE(inside(parsed.headers[0].name));
  EXPECT_TRUE(inside(parsed.headers[0].value));
}

TEST(HttpParser, HeadLengthStopsBeforeTheBody) {
  const std::string head = "POST /submit HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
  const Parsed parsed = expect_complete(head + "helloGET / HTTP/1.1\r\n");
  EXPECT_EQ(parsed.head.head_length, head.size());
  EXPECT_EQ(parsed.head.framing, BodyFraming::content_length);
  EXPECT_EQ(parsed.head.content_length, 5u);
}

TEST(HttpParser, ContentLengthZero) {
  const Parsed parsed = expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(parsed.head.framing, BodyFraming::content_length);
  EXPECT_EQ(parsed.head.content_length, 0u);
}

TEST(HttpParser, ChunkedFraming) {
  const Parsed parsed =
      expect_complete("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
  EXPECT_EQ(parsed.head.framing, BodyFraming::chunked);
  const Parsed upper =
      expect_complete("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  CHUNKED \r\n\r\n");
  EXPECT_EQ(upper.head.framing, BodyFraming::chunked);
  // Empty list elements are ignored (RFC 9110 §5.6.1).
  const Parsed list =
      expect_complete("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n");
  EXPECT_EQ(list.head.framing, BodyFraming::chunked);
}

TEST(HttpParser, OriginFormWithQueryAndFragment) {
  Parsed parsed = expect_complete("GET /a/b%20c?x=1&y=%2F HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/a/b%20c");
  EXPECT_EQ(parsed.head.query, "x=1&y=%2F");
  parsed = expect_complete("GET /? HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/");
  EXPECT_EQ(parsed.head.query, "");
  parsed = expect_complete("GET /p?q#frag HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.target, "/p?q#frag");
  EXPECT_EQ(parsed.head.path, "/p");
  EXPECT_EQ(parsed.head.query, "q");
  parsed = expect_complete("GET /p#frag?notquery HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/p");
  EXPECT_EQ(parsed.head.query, "");
}

TEST(HttpParser, AbsoluteForm) {
  Parsed parsed =
      expect_complete("GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.target, "http://example.com:8080/a/b?c=d");
  EXPECT_EQ(parsed.head.path, "/a/b");
  EXPECT_EQ(parsed.head.query, "c=d");
  parsed = expect_complete("GET https://example.com HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/");
  EXPECT_EQ(parsed.head.query, "");
  parsed = expect_complete("GET http://example.com?x=1 HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/");
  EXPECT_EQ(parsed.head.query, "x=1");
  parsed = expect_complete("GET svn+ssh://host/repo HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.path, "/repo");
}

TEST(HttpParser, AsteriskForm) {
  const Parsed parsed = expect_complete("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.method, "OPTIONS");
  EXPECT_EQ(parsed.head.target, "*");
  EXPECT_EQ(parsed.head.path, "*");
  EXPECT_EQ(parsed.head.query, "");
}

TEST(HttpParser, AuthorityFormOnlyForConnect) {
  const Parsed parsed =
      expect_complete("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  EXPECT_EQ(parsed.head.target, "example.com:443");
  EXPECT_EQ(parsed.head.path, "");
  expect_error("GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET foo HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(HttpParser, ExtensionMethodsAreTokens) {
  const Parsed parsed = expect_complete("M-SEARCH! / HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_EQ(parsed.head.method, "M-SEARCH!");
}

TEST(HttpParser, Http10) {
  Parsed parsed = expect_complete("GET / HTTP/1.0\r\n\r\n");  // no Host needed
  EXPECT_EQ(parsed.head.version_minor, 0);
  EXPECT_FALSE(parsed.head.keep_alive);
  parsed = expect_complete("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
  EXPECT_TRUE(parsed.head.keep_alive);
  parsed = expect_complete("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n");
  EXPECT_FALSE(parsed.head.keep_alive);
}

TEST(HttpParser, ConnectionTokens) {
  Parsed parsed = expect_complete("GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(parsed.head.keep_alive);
  parsed = expect_complete("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade ,  CLOSE\r\n\r\n");
  EXPECT_FALSE(parsed.head.keep_alive);
  parsed =
      expect_complete("GET / HTTP/1.1\r\nHost: h\r\nConnection: a\r\nConnection: close\r\n\r\n");
  EXPECT_FALSE(parsed.head.keep_alive);
  parsed = expect_complete("GET / HTTP/1.1\r\nHost: h\r\nConnection: closed\r\n\r\n");
  EXPECT_TRUE(parsed.head.keep_alive);
  parsed = expect_complete("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(parsed.head.keep_alive);
}

TEST(HttpParser, ExpectContinue) {
  Parsed parsed = expect_complete(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n");
  EXPECT_TRUE(parsed.head.expect_continue);
  parsed = expect_complete("POST / HTTP/1.0\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_FALSE(parsed.head.expect_continue);
  parsed = expect_complete("POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n");
  EXPECT_FALSE(parsed.head.expect_continue);
}

TEST(HttpParser, HeaderValuesAreTrimmedAndMayHoldTabsAndObsText) {
  // The views point into `data`, which must outlive `parsed`.
  const std::string data =
      "GET / HTTP/1.1\r\nHost: h\r\nX-A: \t a\tb \t\r\nX-Empty:\r\nX-Blank:   \r\nX-Obs: "
      "caf\xc3\xa9\xff\r\nX-Long: " +
      std::string(100, 'v') + "\t" + std::string(40, 'w') + "\r\n\r\n";
  const Parsed parsed = expect_complete(data);
  EXPECT_EQ(parsed.header("X-A"), "a\tb");
  EXPECT_EQ(parsed.header("X-Empty"), "");
  EXPECT_EQ(parsed.header("X-Blank"), "");
  EXPECT_EQ(parsed.header("X-Obs"), "caf\xc3\xa9\xff");
  EXPECT_EQ(parsed.header("X-Long"), std::string(100, 'v') + "\t" + std::string(40, 'w'));
}

TEST(HttpParser, LeadingEmptyLinesAreSkipped) {
  const std::string data = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
  const Parsed parsed = expect_complete(data);
  EXPECT_EQ(parsed.head.method, "GET");
  EXPECT_EQ(parsed.head.head_length, data.size());
  EXPECT_EQ(parse("\r\n").result.status, ParseStatus::incomplete);
  EXPECT_EQ(parse("\r").result.status, ParseStatus::incomplete);
  EXPECT_EQ(parse("").result.status, ParseStatus::incomplete);
  expect_error("\n GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(HttpParser, ContentLengthListOfIdenticalValues) {
  Parsed parsed = expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n");
  EXPECT_EQ(parsed.head.content_length, 5u);
  parsed = expect_complete(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
  EXPECT_EQ(parsed.head.content_length, 7u);
  parsed = expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n");
  EXPECT_EQ(parsed.head.content_length, 7u);
}

// ---------------------------------------------------------------------------------------------
// Strictness: each rule with its status

TEST(HttpParserStrict, TransferEncodingWithContentLength) {
  expect_error(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400);
  expect_error(
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(HttpParserStrict, DifferingContentLengths) {
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400);
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", 400);
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nContent-Length: 6\r\n\r\n",
               400);
}

TEST(HttpParserStrict, MalformedContentLength) {
  for (const char* value : {"", "abc", "5a", "+5", "-5", "0x10", "5 5", "5,", ",5", "5,,5", "1.0",
                            "18446744073709551616", "99999999999999999999999", "5\x01"}) {
    SCOPED_TRACE(value);
    const std::string data = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: "s + value + "\r\n\r\n";
    expect_error(data, 400, Limits{.max_body_size = std::numeric_limits<uint64_t>::max()});
  }
  // The largest representable value parses (and is then only limited by max_body_size).
  const Parsed parsed =
      expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n",
                      Limits{.max_body_size = std::numeric_limits<uint64_t>::max()});
  EXPECT_EQ(parsed.head.content_length, std::numeric_limits<uint64_t>::max());
}

TEST(HttpParserStrict, ObsFold) {
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\n Host: h\r\n\r\n", 400);
}

TEST(HttpParserStrict, BareCarriageReturn) {
  expect_error("GET / HTTP/1.1\rHost: h\r\n\r\n", 400);
  expect_error("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GE\rT / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHo\rst: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\n\rX", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\n\r\r", 400);
}

// Bare LF is refused everywhere, like llhttp does by default (h11 accepts it).
TEST(HttpParserStrict, BareLineFeedIsRefused) {
  expect_error("GET / HTTP/1.1\nHost: h\n\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\n\n", 400);
  expect_error("GET / HTTP/1.1\r\nX-A: a\nb\r\nHost: h\r\n\r\n", 400);
  expect_error("GET /\n HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET\n/ HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
}

TEST(HttpParserStrict, ControlCharacters) {
  expect_error("GET /a\0b HTTP/1.1\r\nHost: h\r\n\r\n"s, 400);
  expect_error("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET /a\tb HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n"s, 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: \x1b[31m\r\n\r\n", 400);
  // Long values exercise the vectorised scan.
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(37, 'a') + '\0' +
                   std::string(20, 'b') + "\r\n\r\n",
               400);
  expect_error("GET /" + std::string(37, 'a') + '\x01' + std::string(20, 'b') +
                   " HTTP/1.1\r\nHost: h\r\n\r\n",
               400);
}

TEST(HttpParserStrict, InvalidTokenCharacters) {
  expect_error("G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GÉT / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX\"A: b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX\x80: b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400);
}

TEST(HttpParserStrict, WhitespaceBeforeColon) {
  expect_error("GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 400);
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length : 5\r\n\r\n", 400);
}

TEST(HttpParserStrict, RequestLineShape) {
  expect_error(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400);
  expect_error("GET /\r\nHost: h\r\n\r\n", 400);  // HTTP/0.9
  expect_error("GET\r\n\r\n", 400);
}

TEST(HttpParserStrict, TransferCodings) {
  const auto with_encoding = [](std::string_view value) {
    return "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "s + std::string(value) + "\r\n\r\n";
  };
  expect_error(with_encoding("gzip"), 501);
  expect_error(with_encoding("identity"), 501);
  expect_error(with_encoding("gzip, chunked"), 501);
  expect_error(with_encoding("chunked, gzip"), 400);
  expect_error(with_encoding("chunked, chunked"), 400);
  expect_error(with_encoding("chunked;foo=bar"), 400);
  expect_error(with_encoding(""), 400);
  expect_error(with_encoding(" , "), 400);
  expect_error(with_encoding("chun ked"), 400);
  expect_error(with_encoding("chunked\"x"), 400);
  // Across header lines the codings form one list.
  expect_error(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
      400);
  expect_error(
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
      501);
  // Transfer-Encoding in an HTTP/1.0 request cannot be trusted (RFC 9112 §6.1).
  expect_error("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

TEST(HttpParserStrict, Versions) {
  expect_error("GET / HTTP/1.x\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / http/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTP/1.1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/11\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/1\r\nHost: h\r\n\r\n", 400);
  expect_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505);
  expect_error("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505);
  expect_error("GET / HTTP/1.2\r\nHost: h\r\n\r\n", 505);
}

TEST(HttpParserStrict, Host) {
  expect_error("GET / HTTP/1.1\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
  expect_complete("GET / HTTP/1.1\r\nHost:\r\n\r\n");  // empty Host is allowed (RFC 9112 §3.2)
}

TEST(HttpParserStrict, RequestLineTooLong) {
  const Limits limits{.max_request_line = 64};
  // The request line "GET /aaa... HTTP/1.1" is exactly 64 bytes long.
  const std::string path = "/" + std::string(64 - 13 - 1, 'a');
  const std::string at_limit = "GET " + path + " HTTP/1.1\r\nHost: h\r\n\r\n";
  expect_complete(at_limit, limits);
  expect_error("GET " + path + "a HTTP/1.1\r\nHost: h\r\n\r\n", 414, limits);
  // Incomplete, but already longer than the limit.
  expect_error("GET /" + std::string(100, 'a'), 414, limits);
  EXPECT_EQ(parse("GET /" + std::string(50, 'a'), limits).result.status, ParseStatus::incomplete);
  // With default limits too.
  expect_error("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: h\r\n\r\n", 414);
  // A request line longer than the whole head limit still says 414.
  expect_error("GET /" + std::string(200, 'a'), 414,
               Limits{.max_request_line = 64, .max_header_size = 100});
}

TEST(HttpParserStrict, HeadTooLarge) {
  const Limits limits{.max_header_size = 100};
  std::string data = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  data += std::string(100 - data.size() - 4, 'v') + "\r\n\r\n";
  ASSERT_EQ(data.size(), 100u);
  expect_complete(data, limits);
  data.insert(data.find("vvv"), "v");
  expect_error(data, 431, limits);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(200, 'v'), 431, limits);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(40000, 'v'), 431);
  // Only empty lines: still bounded.
  std::string empty_lines;
  for (int i = 0; i < 60; ++i) empty_lines += "\r\n";
  expect_error(empty_lines, 431, limits);
}

TEST(HttpParserStrict, TooManyHeaders) {
  std::string data = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 1; i < 10; ++i) data += "X-" + std::to_string(i) + ": v\r\n";
  expect_complete(data + "\r\n", Limits{.max_headers = 10});
  expect_error(data + "X-10: v\r\n\r\n", 431, Limits{.max_headers = 10});
  // Known as soon as the eleventh line starts.
  expect_error(data + "X", 431, Limits{.max_headers = 10});
  // Storage smaller than max_headers bounds the count as well.
  Parsed parsed = parse(data + "\r\n", Limits{}, 5);
  EXPECT_EQ(parsed.result.status, ParseStatus::error);
  EXPECT_EQ(parsed.result.http_status, 431);
}

TEST(HttpParserStrict, ContentLengthAboveMaximum) {
  const Limits limits{.max_body_size = 1000};
  expect_complete("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1000\r\n\r\n", limits);
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n\r\n", 413, limits);
  // Known from the header line, before the head is complete.
  expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1001\r\n", 413, limits);
}

TEST(HttpParserStrict, ErrorsAreReportedBeforeTheHeadIsComplete) {
  expect_error("G@", 400);
  expect_error("GET /\x01", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nBad Name", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nX: \x01", 400);
  expect_error("GET / HTTX", 400);
  expect_error("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n", 400);
}

// ---------------------------------------------------------------------------------------------
// Split invariance: any prefix answers incomplete or exactly what the whole input answers.

const std::vector<std::string>& sample_requests() {
  static const std::vector<std::string> requests = {
      "GET / HTTP/1.1\r\nHost: h\r\n\r\n",
      "\r\n\r\nGET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
      "POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\nExpect: 100-continue\r\n\r\n"
      "hello",
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      "GET http://example.com/x HTTP/1.0\r\nConnection: keep-alive\r\nX-Tab:\ta\tb\t\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Long: " + std::string(300, 'x') + "\r\n\r\n",
      "CONNECT host:443 HTTP/1.1\r\nHost: host:443\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\rX\r\n\r\n",
      "GET / HTTP/2.0\r\nHost: h\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999\r\n\r\n",
      "GET / HTTP/1.1\r\n\r\n",
      "GET /" + std::string(200, 'p') + " HTTP/1.1\r\nHost: h\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v') + "\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n",
      "GET / HTTP/1.1\nHost: h\n\n",
  };
  return requests;
}

void expect_split_invariance(const std::string& data, const Limits& limits) {
  const Parsed whole = parse(data, limits);
  for (size_t split = 0; split < data.size(); ++split) {
    const Parsed prefix = parse(std::string_view(data).substr(0, split), limits);
    if (prefix.result.status == ParseStatus::incomplete) {
      EXPECT_FALSE(whole.result.status == ParseStatus::complete && split >= whole.head.head_length)
          << "prefix of " << split << " bytes holds the whole head: " << data;
      continue;
    }
    ASSERT_EQ(prefix.result.status, whole.result.status) << split << " of " << data;
    EXPECT_EQ(prefix.result.http_status, whole.result.http_status) << split << " of " << data;
    EXPECT_STREQ(prefix.result.reason, whole.result.reason) << split << " of " << data;
    if (whole.result.status == ParseStatus::complete) {
      EXPECT_EQ(prefix.head.head_length, whole.head.head_length);
      EXPECT_EQ(prefix.head.header_count, whole.head.header_count);
      EXPECT_EQ(prefix.head.method, whole.head.method);
      EXPECT_EQ(prefix.head.target, whole.head.target);
      EXPECT_EQ(prefix.head.framing, whole.head.framing);
    }
  }
}

TEST(HttpParserIncremental, EveryPrefixIsIncompleteOrTheSameAnswer) {
  for (const std::string& data : sample_requests()) {
    expect_split_invariance(data, Limits{});
    expect_split_invariance(data, Limits{.max_request_line = 40,
                                         .max_header_size = 120,
                                         .max_headers = 3,
                                         .max_body_size = 100});
  }
}

TEST(HttpParserIncremental, CompleteHeadsAreIncompleteUntilTheirLastByte) {
  for (const std::string& data : sample_requests()) {
    const Parsed whole = parse(data);
    if (whole.result.status != ParseStatus::complete) continue;
    for (size_t split = 0; split < whole.head.head_length; ++split) {
      EXPECT_EQ(parse(std::string_view(data).substr(0, split)).result.status,
                ParseStatus::incomplete)
          << split << " of " << data;
    }
  }
}

// Feeds `data` in growing prefixes of `step` more bytes, passing the previous size as the
// scan_from hint while the answers are incomplete, as a server would.
void expect_hint_agrees(const std::string& data, const Limits& limits, size_t step) {
  const Parsed whole = parse(data, limits);
  size_t previous = 0;
  for (size_t length = std::min(step, data.size());;
       length = std::min(length + step, data.size())) {
    Parsed hinted;
    hinted.headers.resize(limits.max_headers);
    hinted.result = parse_request(std::string_view(data).substr(0, length), limits, hinted.head,
                                  hinted.headers, previous);
    if (hinted.result.status != ParseStatus::incomplete) {
      ASSERT_EQ(hinted.result.status, whole.result.status) << length << " of " << data;
      EXPECT_EQ(hinted.result.http_status, whole.result.http_status) << length << " of " << data;
      if (whole.result.status == ParseStatus::complete) {
        EXPECT_EQ(hinted.head.head_length, whole.head.head_length);
        EXPECT_EQ(hinted.head.header_count, whole.head.header_count);
      }
      return;
    }
    if (length == data.size()) {
      // Deferred to the end of a line that never came: only errors may be deferred.
      EXPECT_NE(whole.result.status, ParseStatus::complete) << data;
      return;
    }
    previous = length;
  }
}

TEST(HttpParserIncremental, ScanFromHintGivesTheSameAnswers) {
  const Limits small{
      .max_request_line = 40, .max_header_size = 120, .max_headers = 3, .max_body_size = 100};
  for (const std::string& data : sample_requests()) {
    for (const size_t step : {1, 2, 7, 64}) {
      expect_hint_agrees(data, Limits{}, step);
      expect_hint_agrees(data, small, step);
    }
  }
}

TEST(HttpParserIncremental, ScanFromHintDefersErrorsToTheEndOfTheLine) {
  Parsed parsed;
  parsed.headers.resize(100);
  const std::string data = "G@T / HTTP/1.1\r\nHost: h\r\n\r\n";
  // Without the hint the error is known at once.
  EXPECT_EQ(parse(data.substr(0, 2)).result.http_status, 400);
  parsed.result =
      parse_request(std::string_view(data).substr(0, 2), Limits{}, parsed.head, parsed.headers, 1);
  EXPECT_EQ(parsed.result.status, ParseStatus::incomplete);
  parsed.result =
      parse_request(std::string_view(data).substr(0, 16), Limits{}, parsed.head, parsed.headers, 2);
  EXPECT_EQ(parsed.result.http_status, 400);
  // Limits are still enforced without a line end: the request line, after leading empty lines...
  const std::string long_line = "\r\n\r\nGET /" + std::string(100, 'a');
  const Limits limits{.max_request_line = 64};
  parsed.result = parse_request(long_line, limits, parsed.head, parsed.headers, 80);
  EXPECT_EQ(parsed.result.http_status, 414);
  // ... and the whole head.
  const std::string long_header = "GET / HTTP/1.1\r\nX: " + std::string(200, 'v');
  parsed.result =
      parse_request(long_header, Limits{.max_header_size = 100}, parsed.head, parsed.headers, 150);
  EXPECT_EQ(parsed.result.http_status, 431);
  // A hint beyond the data is ignored.
  parsed.result = parse_request(data, Limits{}, parsed.head, parsed.headers, 1000);
  EXPECT_EQ(parsed.result.http_status, 400);
}

// ---------------------------------------------------------------------------------------------
// Reads right before an unreadable page: any read past the input faults.

TEST(HttpParserGuardPage, NoReadPastTheInput) {
  GuardedBuffer buffer;
  ASSERT_TRUE(buffer.valid());
  std::vector<std::string> inputs = sample_requests();
  inputs.push_back("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(1000, 'v'));
  inputs.push_back("GET /" + std::string(1000, 'p'));
  for (const std::string& data : inputs) {
    ASSERT_LE(data.size(), buffer.capacity());
    for (size_t length = 0; length <= data.size(); ++length) {
      const std::string_view placed = buffer.place(std::string_view(data).substr(0, length));
      RequestHead head;
      std::vector<Header> storage(100);
      const ParseResult result = parse_request(placed, Limits{}, head, storage);
      const Parsed copy = parse(std::string_view(data).substr(0, length));
      EXPECT_EQ(result.status, copy.result.status);
      EXPECT_EQ(result.http_status, copy.result.http_status);
      ParseResult limited = parse_request(
          placed,
          Limits{
              .max_request_line = 30, .max_header_size = 90, .max_headers = 2, .max_body_size = 10},
          head, storage);
      (void)limited;
    }
  }
}

TEST(HttpParserGuardPage, ChunkedDecoderNoReadPastTheInput) {
  GuardedBuffer buffer;
  ASSERT_TRUE(buffer.valid());
  const std::string body = "4;ext=1\r\nWiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t length = 0; length <= body.size(); ++length) {
    const std::string_view placed = buffer.place(std::string_view(body).substr(0, length));
    ChunkedDecoder decoder(1000);
    std::string decoded;
    const ChunkResult result = decoder.feed(placed, decoded);
    EXPECT_NE(result.status, ChunkStatus::error) << length;
  }
}

// ---------------------------------------------------------------------------------------------
// Chunked decoder

struct Decoded {
  ChunkResult result{ChunkStatus::need_more};
  std::string body;
  size_t consumed = 0;  // total over all feeds
};

Decoded decode_all_at_once(std::string_view input, uint64_t max_body = 1 << 20) {
  Decoded decoded;
  ChunkedDecoder decoder(max_body);
  decoded.result = decoder.feed(input, decoded.body);
  decoded.consumed = decoded.result.consumed;
  return decoded;
}

Decoded decode_byte_by_byte(std::string_view input, uint64_t max_body = 1 << 20) {
  Decoded decoded;
  ChunkedDecoder decoder(max_body);
  for (size_t i = 0; i < input.size(); ++i) {
    decoded.result = decoder.feed(input.substr(i, 1), decoded.body);
    decoded.consumed += decoded.result.consumed;
    if (decoded.result.status != ChunkStatus::need_more) break;
  }
  return decoded;
}

TEST(ChunkedDecoder, DecodesAndStopsAtTheEnd) {
  const std::string framed = "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
  const Decoded decoded = decode_all_at_once(framed + "GET / HTTP/1.1\r\n");
  EXPECT_EQ(decoded.result.status, ChunkStatus::done);
  EXPECT_EQ(decoded.body, "Wikipedia in\r\n\r\nchunks.");
  EXPECT_EQ(decoded.consumed, framed.size());
}

TEST(ChunkedDecoder, ExtensionsAndTrailers) {
  const std::string framed =
      "a;name=value;other=\"quoted\"\r\n0123456789\r\nA \t; x\r\nabcdefghij\r\n"
      "0;last\r\nExpires: never\r\nX-Checksum:\tabc \r\n\r\n";
  const Decoded decoded = decode_all_at_once(framed);
  EXPECT_EQ(decoded.result.status, ChunkStatus::done) << decoded.result.reason;
  EXPECT_EQ(decoded.body, "0123456789abcdefghij");
  EXPECT_EQ(decoded.consumed, framed.size());
}

TEST(ChunkedDecoder, ByteByByteMatchesAllAtOnce) {
  const std::vector<std::string> inputs = {
      "4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\nnext",
      "1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n",
      "000010\r\n0123456789abcdef\r\n0000\r\n\r\n",
      "0\r\n\r\n",
      "5\r\nhelloX",
      "5\r\nhello\r\nZ\r\n",
      "5\n",
      "5\r\nhello\r\n0\r\nBad Trailer: x\r\n\r\n",
      "5\r\nhello\r\n0\r\n folded\r\n\r\n",
      "fffffffffffffffffff\r\n",
      "400\r\n",
  };
  for (const std::string& input : inputs) {
    SCOPED_TRACE(input);
    const Decoded whole = decode_all_at_once(input, 1000);
    const Decoded bytes = decode_byte_by_byte(input, 1000);
    EXPECT_EQ(whole.result.status, bytes.result.status);
    EXPECT_EQ(whole.result.http_status, bytes.result.http_status);
    EXPECT_EQ(whole.body, bytes.body);
    if (whole.result.status == ChunkStatus::done) {
      EXPECT_EQ(whole.consumed, bytes.consumed);
    }
  }
}

TEST(ChunkedDecoder, EverySplitInTwoMatches) {
  const std::string input = "3;e=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nrest";
  const Decoded whole = decode_all_at_once(input);
  ASSERT_EQ(whole.result.status, ChunkStatus::done);
  for (size_t split = 0; split <= input.size(); ++split) {
    ChunkedDecoder decoder(1 << 20);
    std::string body;
    ChunkResult first = decoder.feed(std::string_view(input).substr(0, split), body);
    size_t consumed = first.consumed;
    if (first.status == ChunkStatus::need_more) {
      const ChunkResult second = decoder.feed(std::string_view(input).substr(split), body);
      EXPECT_EQ(second.status, ChunkStatus::done);
      consumed += second.consumed;
    }
    EXPECT_EQ(body, whole.body) << split;
    EXPECT_EQ(consumed, whole.consumed) << split;
  }
}

TEST(ChunkedDecoder, Errors) {
  const auto expect_decode_error = [](std::string_view input, int status,
                                      uint64_t max_body = 1 << 20) {
    SCOPED_TRACE(testing::PrintToString(std::string(input)));
    const Decoded whole = decode_all_at_once(input, max_body);
    EXPECT_EQ(whole.result.status, ChunkStatus::error);
    EXPECT_EQ(whole.result.http_status, status) << whole.result.reason;
    const Decoded bytes = decode_byte_by_byte(input, max_body);
    EXPECT_EQ(bytes.result.status, ChunkStatus::error);
    EXPECT_EQ(bytes.result.http_status, status);
  };
  expect_decode_error("x\r\n", 400);
  expect_decode_error("\r\n", 400);
  expect_decode_error(" 5\r\nhello\r\n", 400);
  expect_decode_error("-5\r\n", 400);
  expect_decode_error("0x5\r\n", 400);
  expect_decode_error("5 x\r\n", 400);
  expect_decode_error("5\rhello", 400);
  expect_decode_error("5\nhello", 400);
  expect_decode_error("5\r\nhelloX\r\n", 400);
  expect_decode_error("5\r\nhello\rX", 400);
  expect_decode_error("5\r\nhello\n0\r\n\r\n", 400);
  expect_decode_error("5;a\x01\r\n", 400);
  expect_decode_error("0\r\nX: a\x7f\r\n\r\n", 400);
  expect_decode_error("0\r\n: a\r\n\r\n", 400);
  expect_decode_error("0\r\nX : a\r\n\r\n", 400);
  expect_decode_error("0\r\nX: a\n\r\n", 400);
  expect_decode_error("0\r\n\n", 400);
  expect_decode_error("0\r\n\r\r", 400);
  expect_decode_error("0\r\n\tfolded\r\n\r\n", 400);
  expect_decode_error("1;" + std::string(5000, 'e') + "\r\n", 400);
  // Overflow: more hex digits than 64 bits hold, with no body limit in the way.
  expect_decode_error("10000000000000000\r\n", 400, std::numeric_limits<uint64_t>::max());
  // Too large: one chunk, or the sum of chunks.
  expect_decode_error("3e9\r\n", 413, 1000);
  expect_decode_error("1f4\r\n" + std::string(500, 'a') + "\r\n1f5\r\n", 413, 1000);
}

TEST(ChunkedDecoder, AtTheSizeLimit) {
  const std::string input =
      "1f4\r\n" + std::string(500, 'a') + "\r\n1f4\r\n" + std::string(500, 'b') + "\r\n0\r\n\r\n";
  const Decoded decoded = decode_all_at_once(input, 1000);
  EXPECT_EQ(decoded.result.status, ChunkStatus::done);
  EXPECT_EQ(decoded.body.size(), 1000u);
}

TEST(ChunkedDecoder, TooLargeIsReportedBeforeTheData) {
  ChunkedDecoder decoder(10);
  std::string body;
  const ChunkResult result = decoder.feed("b", body);
  EXPECT_EQ(result.status, ChunkStatus::error);
  EXPECT_EQ(result.http_status, 413);
  EXPECT_TRUE(body.empty());
}

TEST(ChunkedDecoder, TrailerSectionIsBounded) {
  ChunkedDecoder decoder(100, 64);
  std::string body;
  const ChunkResult result = decoder.feed("0\r\nX: " + std::string(100, 'v') + "\r\n\r\n", body);
  EXPECT_EQ(result.status, ChunkStatus::error);
  EXPECT_EQ(result.http_status, 431);
}

TEST(ChunkedDecoder, StateAfterTheEnd) {
  ChunkedDecoder decoder(100);
  std::string body;
  ChunkResult result = decoder.feed("3\r\nabc\r\n0\r\n\r\nmore", body);
  ASSERT_EQ(result.status, ChunkStatus::done);
  EXPECT_EQ(result.consumed, 13u);
  EXPECT_EQ(decoder.decoded_size(), 3u);
  result = decoder.feed("more", body);
  EXPECT_EQ(result.status, ChunkStatus::done);
  EXPECT_EQ(result.consumed, 0u);
  EXPECT_EQ(body, "abc");

  ChunkedDecoder failing(100);
  result = failing.feed("zz", body);
  ASSERT_EQ(result.status, ChunkStatus::error);
  result = failing.feed("0\r\n\r\n", body);
  EXPECT_EQ(result.status, ChunkStatus::error);
  EXPECT_EQ(result.http_status, 400);
  EXPECT_EQ(result.consumed, 0u);
}

TEST(ChunkedDecoder, EmptyInputNeedsMore) {
  ChunkedDecoder decoder(100);
  std::string body;
  const ChunkResult result = decoder.feed("", body);
  EXPECT_EQ(result.status, ChunkStatus::need_more);
  EXPECT_EQ(result.consumed, 0u);
}

// ---------------------------------------------------------------------------------------------
// percent_decode

TEST(PercentDecode, Decodes) {
  EXPECT_EQ(percent_decode("/a%2Fb"), "/a/b");
  EXPECT_EQ(percent_decode("%41%62%63"), "Abc");
  EXPECT_EQ(percent_decode("%e2%82%ac"), "\xe2\x82\xac");
  EXPECT_EQ(percent_decode("a+b"), "a+b");
  EXPECT_EQ(percent_decode("%00"), "\0"s);
  EXPECT_EQ(percent_decode(""), "");
}

TEST(PercentDecode, KeepsInvalidEscapes) {
  EXPECT_EQ(percent_decode("%"), "%");
  EXPECT_EQ(percent_decode("%4"), "%4");
  EXPECT_EQ(percent_decode("a%zzb"), "a%zzb");
  EXPECT_EQ(percent_decode("%%41"), "%A");
  EXPECT_EQ(percent_decode("%4g"), "%4g");
  EXPECT_EQ(percent_decode("100%"), "100%");
}

}  // namespace
}  // namespace tf::http
