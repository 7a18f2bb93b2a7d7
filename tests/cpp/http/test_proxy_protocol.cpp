// Tests of src/core/http/proxy_protocol: v1 and v2 headers from the specification's layouts
// (known-good byte strings written out by hand), every refusal, and the incremental contract
// (every prefix of a valid header answers incomplete; the bytes after it are not consumed).
#include <gtest/gtest.h>

#include <string>

#include "core/http/proxy_protocol.hpp"
#include "guarded_buffer.hpp"

namespace tf::http {
namespace {

using namespace std::string_literals;

const std::string kSignature = "\r\n\r\n\0\r\nQUIT\n"s;

ProxyResult parse(std::string_view data, ProxyHeader& header) {
  return parse_proxy_header(data, header);
}

// Every proper prefix answers incomplete, the whole answers complete with its length.
void expect_incremental(const std::string& header_bytes) {
  for (size_t n = 0; n < header_bytes.size(); ++n) {
    ProxyHeader header;
    EXPECT_EQ(parse(std::string_view(header_bytes).substr(0, n), header).status,
              ProxyStatus::incomplete)
        << "prefix of " << n << " bytes";
  }
  ProxyHeader header;
  ProxyResult result = parse(header_bytes + "GET / HTTP/1.1\r\n", header);
  EXPECT_EQ(result.status, ProxyStatus::complete);
  EXPECT_EQ(result.consumed, header_bytes.size());
}

TEST(ProxyV1, Tcp4) {
  const std::string bytes = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  ProxyHeader header;
  ProxyResult result = parse(bytes + "GET /", header);
  ASSERT_EQ(result.status, ProxyStatus::complete);
  EXPECT_EQ(result.consumed, bytes.size());
  EXPECT_EQ(header.version, 1);
  EXPECT_FALSE(header.keep_peer);
  EXPECT_EQ(header.family, ProxyHeader::Family::inet);
  EXPECT_EQ(format_ip(header.source), "192.168.0.1");
  EXPECT_EQ(format_ip(header.destination), "192.168.0.11");
  EXPECT_EQ(header.source_port, 56324);
  EXPECT_EQ(header.destination_port, 443);
  expect_incremental(bytes);
}

TEST(ProxyV1, Tcp6) {
  const std::string bytes = "PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n";
  ProxyHeader header;
  ASSERT_EQ(parse(bytes, header).status, ProxyStatus::complete);
  EXPECT_EQ(header.family, ProxyHeader::Family::inet6);
  EXPECT_EQ(format_ip(header.source), "2001:db8::1");
  EXPECT_EQ(header.source_port, 4711);
  expect_incremental(bytes);
}

TEST(ProxyV1, UnknownKeepsThePeer) {
  for (std::string bytes : {"PROXY UNKNOWN\r\n"s, "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"s}) {
    ProxyHeader header;
    ProxyResult result = parse(bytes, header);
    ASSERT_EQ(result.status, ProxyStatus::complete) << bytes;
    EXPECT_TRUE(header.keep_peer);
    EXPECT_EQ(result.consumed, bytes.size());
  }
}

TEST(ProxyV1, LongestHeaderFits) {
  // TCP6 with the longest addresses is 104 bytes; UNKNOWN may fill the 107 with anything.
  std::string bytes = "PROXY UNKNOWN " + std::string(107 - 16, 'x') + "\r\n";
  ASSERT_EQ(bytes.size(), 107u);
  ProxyHeader header;
  EXPECT_EQ(parse(bytes, header).status, ProxyStatus::complete);
  std::string longer = "PROXY UNKNOWN " + std::string(107 - 15, 'x') + "\r\n";
  EXPECT_EQ(parse(longer, header).status, ProxyStatus::error);
  EXPECT_EQ(parse(longer.substr(0, 107), header).status, ProxyStatus::error);
}

TEST(ProxyV1, Refusals) {
  const char* cases[] = {
      "GET / HTTP/1.1\r\n",                                   // not a proxy at all
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",        // a field missing
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",  // one too many
      "PROXY TCP4 2001:db8::1 192.168.0.11 1 2\r\n",          // family mismatch
      "PROXY TCP6 192.168.0.1 2001:db8::2 1 2\r\n",           // family mismatch
      "PROXY TCP4 192.168.0.256 192.168.0.11 1 2\r\n",        // not an address
      "PROXY TCP4 192.168.0.1 192.168.0.11 65536 2\r\n",      // port too large
      "PROXY TCP4 192.168.0.1 192.168.0.11 01 2\r\n",         // leading zero
      "PROXY TCP4 192.168.0.1 192.168.0.11 -1 2\r\n",         // not a number
      "PROXY TCP4  192.168.0.1 192.168.0.11 1 2\r\n",         // double space
      "PROXY UDP4 192.168.0.1 192.168.0.11 1 2\r\n",          // not TCP
      "PROXY TCP4 192.168.0.1 192.168.0.11 1 2\n",            // LF alone
      "PROXY TCP4 192.168.0.1 192.168.0.11 1 2\rX",           // CR alone
      "PROXY TCP4 192.168.0.1\t192.168.0.11 1 2\r\n",         // control character
      "proxy TCP4 192.168.0.1 192.168.0.11 1 2\r\n",          // case matters
  };
  for (const char* bytes : cases) {
    ProxyHeader header;
    EXPECT_EQ(parse(bytes, header).status, ProxyStatus::error) << bytes;
  }
}

TEST(ProxyV1, RefusedAtTheFirstWrongByte) {
  ProxyHeader header;
  EXPECT_EQ(parse("G", header).status, ProxyStatus::error);
  EXPECT_EQ(parse("PROXX", header).status, ProxyStatus::error);
  EXPECT_EQ(parse("PROXY", header).status, ProxyStatus::incomplete);
}

// The specification's example layout: PROXY command, TCP over IPv4, 192.168.0.1:56324 ->
// 192.168.0.11:443 (0xdc04 = 56324, 0x01bb = 443).
const std::string kV2Tcp4 = kSignature + "\x21\x11\x00\x0c"s + "\xc0\xa8\x00\x01"s +
                            "\xc0\xa8\x00\x0b"s + "\xdc\x04\x01\xbb"s;

TEST(ProxyV2, Tcp4) {
  ProxyHeader header;
  ProxyResult result = parse(kV2Tcp4 + "GET /", header);
  ASSERT_EQ(result.status, ProxyStatus::complete);
  EXPECT_EQ(result.consumed, 28u);
  EXPECT_EQ(header.version, 2);
  EXPECT_FALSE(header.keep_peer);
  EXPECT_EQ(header.family, ProxyHeader::Family::inet);
  EXPECT_EQ(format_ip(header.source), "192.168.0.1");
  EXPECT_EQ(format_ip(header.destination), "192.168.0.11");
  EXPECT_EQ(header.source_port, 56324);
  EXPECT_EQ(header.destination_port, 443);
  expect_incremental(kV2Tcp4);
}

TEST(ProxyV2, Tcp6WithTlvs) {
  std::string addresses = "\x20\x01\x0d\xb8"s + std::string(11, '\0') + "\x01"s +  // 2001:db8::1
                          "\x20\x01\x0d\xb8"s + std::string(11, '\0') + "\x02"s +  // 2001:db8::2
                          "\x12\x67\x00\x50"s;                                     // 4711, 80
  // PP2_TYPE_ALPN "h2", PP2_TYPE_NOOP with 4 bytes, PP2_TYPE_UNIQUE_ID empty.
  std::string tlvs = "\x01\x00\x02h2"s + "\x04\x00\x04\0\0\0\0"s + "\x05\x00\x00"s;
  const size_t length = addresses.size() + tlvs.size();
  std::string bytes = kSignature + "\x21\x21"s + static_cast<char>(length >> 8) +
                      static_cast<char>(length & 0xff) + addresses + tlvs;
  ProxyHeader header;
  ProxyResult result = parse(bytes, header);
  ASSERT_EQ(result.status, ProxyStatus::complete);
  EXPECT_EQ(result.consumed, bytes.size());
  EXPECT_EQ(header.family, ProxyHeader::Family::inet6);
  EXPECT_EQ(format_ip(header.source), "2001:db8::1");
  EXPECT_EQ(header.source_port, 4711);
  EXPECT_EQ(header.destination_port, 80);
  expect_incremental(bytes);
}

TEST(ProxyV2, LocalKeepsThePeer) {
  // LOCAL (0x20), UNSPEC: what HAProxy's health checks send with check-send-proxy.
  std::string bytes = kSignature + "\x20\x00\x00\x00"s;
  ProxyHeader header;
  ProxyResult result = parse(bytes, header);
  ASSERT_EQ(result.status, ProxyStatus::complete);
  EXPECT_TRUE(header.keep_peer);
  EXPECT_EQ(result.consumed, 16u);
  // LOCAL with an address block: the addresses are ignored.
  std::string with_block = kSignature + "\x20\x11\x00\x0c"s + std::string(12, '\x7f');
  ASSERT_EQ(parse(with_block, header).status, ProxyStatus::complete);
  EXPECT_TRUE(header.keep_peer);
}

TEST(ProxyV2, UnixFamily) {
  std::string block(216, '\0');
  block.replace(0, 9, "/tmp/sock");
  std::string bytes = kSignature + "\x21\x31\x00\xd8"s + block;
  ProxyHeader header;
  ASSERT_EQ(parse(bytes, header).status, ProxyStatus::complete);
  EXPECT_FALSE(header.keep_peer);
  EXPECT_EQ(header.family, ProxyHeader::Family::unix_socket);
}

TEST(ProxyV2, UnspecProxyKeepsThePeer) {
  ProxyHeader header;
  ASSERT_EQ(parse(kSignature + "\x21\x00\x00\x00"s, header).status, ProxyStatus::complete);
  EXPECT_TRUE(header.keep_peer);
}

TEST(ProxyV2, Refusals) {
  std::string cases[] = {
      kSignature + "\x11\x11\x00\x0c"s + std::string(12, '\0'),  // version 1 in a v2 header
      kSignature + "\x22\x11\x00\x0c"s + std::string(12, '\0'),  // command 2
      kSignature + "\x21\x41\x00\x0c"s + std::string(12, '\0'),  // family 4
      kSignature + "\x21\x13\x00\x0c"s + std::string(12, '\0'),  // transport 3
      kSignature + "\x21\x12\x00\x0c"s + std::string(12, '\0'),  // DGRAM
      kSignature + "\x21\x10\x00\x0c"s + std::string(12, '\0'),  // INET without a transport
      kSignature + "\x21\x11\x00\x0b"s + std::string(11, '\0'),  // INET block truncated
      kSignature + "\x21\x21\x00\x0c"s + std::string(12, '\0'),  // INET6 block truncated
      kSignature + "\x21\x31\x00\x0c"s + std::string(12, '\0'),  // UNIX block truncated
      kSignature + "\x21\x11\x00\x0e"s + std::string(14, '\0'),  // 2 bytes: a truncated TLV
      kSignature + "\x21\x11\x00\x10"s + std::string(12, '\0') + "\x01\x00\x02x"s,  // TLV overflow
      kSignature + "\x21\x11\x10\x01"s,  // declared length over kMaxProxyV2Length
      "\r\n\r\n\0\r\nQUIX\n"s,           // signature off by one byte
  };
  for (const std::string& bytes : cases) {
    ProxyHeader header;
    EXPECT_EQ(parse(bytes, header).status, ProxyStatus::error) << testing::PrintToString(bytes);
  }
}

TEST(ProxyV2, RefusedBeforeTheWholeHeaderArrives) {
  ProxyHeader header;
  EXPECT_EQ(parse(kSignature + "\x31"s, header).status, ProxyStatus::error);  // version 3
  EXPECT_EQ(parse("\r\n\r\nX"s, header).status, ProxyStatus::error);
  // The largest accepted length waits for its bytes rather than failing.
  std::string largest = kSignature + "\x21\x11\x10\x00"s + std::string(100, '\0');
  EXPECT_EQ(parse(largest, header).status, ProxyStatus::incomplete);
}

TEST(ProxyGuardPage, NoReadPastTheInput) {
  GuardedBuffer buffer;
  ASSERT_TRUE(buffer.valid());
  const std::string inputs[] = {
      "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
      "PROXY TCP6 2001:db8::1 2001:db8::2 4711 80\r\n",
      "PROXY UNKNOWN\r\n",
      kV2Tcp4,
      kSignature + "\x21\x11\x00\x10"s + std::string(12, '\0') + "\x01\x00\x01x"s,
      kSignature + "\x21\x11\x00\x0e"s + std::string(14, '\0'),
  };
  for (const std::string& input : inputs) {
    for (size_t length = 0; length <= input.size(); ++length) {
      ProxyHeader header;
      parse_proxy_header(buffer.place(std::string_view(input).substr(0, length)), header);
    }
  }
}

}  // namespace
}  // namespace tf::http
