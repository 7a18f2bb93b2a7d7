// Tests of src/core/http/forwarded: address and network parsing, trusted-network matching, the
// right-most-untrusted walk of X-Forwarded-For and Forwarded, RFC 7239's quoted and IPv6 forms
// (the RFC's own examples), and malformed values being ignored one by one.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/http/forwarded.hpp"
#include "guarded_buffer.hpp"

namespace tf::http {
namespace {

TrustedNetworks networks(std::string_view list) {
  std::string error;
  std::optional<TrustedNetworks> parsed = TrustedNetworks::parse(list, error);
  EXPECT_TRUE(parsed.has_value()) << error;
  return parsed.value_or(TrustedNetworks{});
}

ForwardedInfo resolve(std::vector<Header> headers, std::string_view trusted = "127.0.0.1,::1") {
  return resolve_forwarded(headers, networks(trusted));
}

TEST(IpAddress, ParsesAndFormats) {
  EXPECT_EQ(format_ip(*parse_ip("192.0.2.1")), "192.0.2.1");
  EXPECT_TRUE(parse_ip("192.0.2.1")->is_v4());
  EXPECT_EQ(format_ip(*parse_ip("2001:DB8:0:0:0:0:0:1")), "2001:db8::1");
  EXPECT_FALSE(parse_ip("2001:db8::1")->is_v4());
  EXPECT_EQ(*parse_ip("::ffff:127.0.0.1"), *parse_ip("127.0.0.1"));
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4x", "[::1]",
                          "fe80::1%eth0", "localhost", " 1.2.3.4"}) {
    EXPECT_FALSE(parse_ip(bad).has_value()) << bad;
  }
}

TEST(TrustedNetworks, AddressesNetworksAndStar) {
  TrustedNetworks trusted = networks(" 127.0.0.1 , ::1,10.0.0.0/8, 2001:db8::/32,192.168.1.7/31");
  EXPECT_TRUE(trusted.contains_text("127.0.0.1"));
  EXPECT_TRUE(trusted.contains_text("::ffff:127.0.0.1"));
  EXPECT_FALSE(trusted.contains_text("127.0.0.2"));
  EXPECT_TRUE(trusted.contains_text("::1"));
  EXPECT_TRUE(trusted.contains_text("10.255.1.2"));
  EXPECT_FALSE(trusted.contains_text("11.0.0.1"));
  EXPECT_TRUE(trusted.contains_text("2001:db8:ffff::5"));
  EXPECT_FALSE(trusted.contains_text("2001:db9::5"));
  EXPECT_TRUE(trusted.contains_text("192.168.1.6"));
  EXPECT_FALSE(trusted.contains_text("192.168.1.8"));
  EXPECT_FALSE(trusted.contains_text("not an address"));
  EXPECT_TRUE(networks("*").contains_text("203.0.113.9"));
  EXPECT_TRUE(networks("0.0.0.0/0").contains_text("203.0.113.9"));
  EXPECT_FALSE(networks("0.0.0.0/0").contains_text("2001:db8::1"));
  EXPECT_FALSE(networks("").contains_text("127.0.0.1"));
}

TEST(TrustedNetworks, RefusesBadEntries) {
  for (const char* bad : {"127.0.0.1,example.com", "10.0.0.0/33", "::/129", "10.0.0.0/", "10/8",
                          "10.0.0.0/x", "unix"}) {
    std::string error;
    EXPECT_FALSE(TrustedNetworks::parse(bad, error).has_value()) << bad;
    EXPECT_FALSE(error.empty());
  }
}

TEST(Forwarding, HeaderNames) {
  for (const char* name : {"Forwarded", "X-Forwarded-For", "x-forwarded-proto", "X-FORWARDED-HOST",
                           "X-Forwarded-Port"}) {
    EXPECT_TRUE(is_forwarding_header(name)) << name;
  }
  for (const char* name :
       {"Host", "X-Forwarded", "X-Forwarded-Fox", "Forwarded-For", "X-Real-IP"}) {
    EXPECT_FALSE(is_forwarding_header(name)) << name;
  }
}

TEST(XForwardedFor, RightMostUntrustedHop) {
  // A client-supplied spoof on the left; the trusted proxy appended the real client.
  ForwardedInfo info = resolve({{"X-Forwarded-For", "6.6.6.6, 203.0.113.7, 127.0.0.1"}});
  ASSERT_TRUE(info.has_client);
  EXPECT_EQ(info.client_host, "203.0.113.7");
  EXPECT_EQ(info.client_port, 0);
  EXPECT_EQ(info.malformed, nullptr);
  // Several lines are one list, in order.
  info = resolve({{"X-Forwarded-For", "6.6.6.6"}, {"X-Forwarded-For", "198.51.100.2"}});
  EXPECT_EQ(info.client_host, "198.51.100.2");
  // Every hop trusted: the left-most.
  info = resolve({{"X-Forwarded-For", "127.0.0.1, ::1"}});
  EXPECT_EQ(info.client_host, "127.0.0.1");
  // Trusted networks are skipped too.
  info = resolve({{"X-Forwarded-For", "192.0.2.1, 10.1.1.1, 10.2.2.2"}}, "127.0.0.1,10.0.0.0/8");
  EXPECT_EQ(info.client_host, "192.0.2.1");
}

TEST(XForwardedFor, PortsAndIpv6) {
  EXPECT_EQ(resolve({{"X-Forwarded-For", "2001:db8::7"}}).client_host, "2001:db8::7");
  ForwardedInfo info = resolve({{"X-Forwarded-For", "[2001:db8::7]:4711"}});
  EXPECT_EQ(info.client_host, "2001:db8::7");
  EXPECT_EQ(info.client_port, 4711);
  info = resolve({{"X-Forwarded-For", "192.0.2.1:8080"}});
  EXPECT_EQ(info.client_host, "192.0.2.1");
  EXPECT_EQ(info.client_port, 8080);
}

TEST(XForwardedFor, MalformedAndUnknownAreIgnored) {
  for (const char* value : {"not-an-ip", "192.0.2.1, garbage", "192.0.2.1,", "[::1", "1.2.3.4:0",
                            "1.2.3.4:99999", "[1.2.3.4]"}) {
    ForwardedInfo info = resolve({{"X-Forwarded-For", value}});
    EXPECT_FALSE(info.has_client) << value;
    EXPECT_NE(info.malformed, nullptr) << value;
  }
  ForwardedInfo info = resolve({{"X-Forwarded-For", "192.0.2.1, unknown"}});
  EXPECT_FALSE(info.has_client);
  EXPECT_EQ(info.malformed, nullptr);
  // A malformed value does not spoil the others.
  info = resolve({{"X-Forwarded-For", "bad"}, {"X-Forwarded-Proto", "https"}});
  EXPECT_EQ(info.scheme, "https");
}

TEST(XForwarded, ProtoHostPort) {
  ForwardedInfo info = resolve({{"X-Forwarded-Proto", "HTTPS"},
                                {"X-Forwarded-Host", "example.com"},
                                {"X-Forwarded-Port", "8443"}});
  EXPECT_EQ(info.scheme, "https");
  EXPECT_EQ(info.host, "example.com");
  EXPECT_EQ(info.port, 8443);
  EXPECT_FALSE(info.has_client);
  // The right-most value (set by the nearest proxy).
  info = resolve({{"X-Forwarded-Proto", "http, https"}, {"X-Forwarded-Host", "a.test, b.test:81"}});
  EXPECT_EQ(info.scheme, "https");
  EXPECT_EQ(info.host, "b.test:81");
  for (const char* host : {"exa mple.com", "a/b", "user@host", "[::1", "host:0", "host:x", ""}) {
    info = resolve({{"X-Forwarded-Host", host}});
    EXPECT_EQ(info.host, "") << host;
  }
  info = resolve({{"X-Forwarded-Proto", "gopher"}});
  EXPECT_EQ(info.scheme, "");
  EXPECT_NE(info.malformed, nullptr);
  info = resolve({{"X-Forwarded-Port", "70000"}});
  EXPECT_EQ(info.port, 0);
  EXPECT_NE(info.malformed, nullptr);
  EXPECT_TRUE(valid_host("[2001:db8::1]:8080"));
  EXPECT_TRUE(valid_host("127.0.0.1"));
}

TEST(Rfc7239, ExamplesFromTheRfc) {
  // RFC 7239 section 4 and 7.x examples.
  ForwardedInfo info = resolve({{"Forwarded", "for=\"_gazonk\""}});
  EXPECT_FALSE(info.has_client);
  EXPECT_EQ(info.malformed, nullptr);
  info = resolve({{"Forwarded", "For=\"[2001:db8:cafe::17]:4711\""}});
  ASSERT_TRUE(info.has_client);
  EXPECT_EQ(info.client_host, "2001:db8:cafe::17");
  EXPECT_EQ(info.client_port, 4711);
  info = resolve({{"Forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"}});
  EXPECT_EQ(info.client_host, "192.0.2.60");
  EXPECT_EQ(info.scheme, "http");
  info = resolve({{"Forwarded", "for=192.0.2.43, for=198.51.100.17"}});
  EXPECT_EQ(info.client_host, "198.51.100.17");
  info = resolve({{"Forwarded", "for=unknown"}});
  EXPECT_FALSE(info.has_client);
  EXPECT_EQ(info.malformed, nullptr);
}

TEST(Rfc7239, WalksPastTrustedElementsAndTakesTheirProtoAndHost) {
  ForwardedInfo info = resolve(
      {{"Forwarded", "for=6.6.6.6;proto=http, for=203.0.113.5;proto=https;host=\"shop.test\""},
       {"Forwarded", "for=127.0.0.1;proto=http;host=internal"}});
  ASSERT_TRUE(info.has_client);
  EXPECT_EQ(info.client_host, "203.0.113.5");
  EXPECT_EQ(info.scheme, "https");
  EXPECT_EQ(info.host, "shop.test");
  // Forwarded wins over X-Forwarded-*.
  info = resolve({{"X-Forwarded-For", "198.51.100.1"}, {"Forwarded", "for=192.0.2.1"}});
  EXPECT_EQ(info.client_host, "192.0.2.1");
  // Quoted strings may hold separators and escapes.
  info = resolve({{"Forwarded", "host=\"a\\.test\";for=\"192.0.2.9\" ; proto=\"https\""}});
  EXPECT_EQ(info.client_host, "192.0.2.9");
  EXPECT_EQ(info.host, "a.test");
  EXPECT_EQ(info.scheme, "https");
}

TEST(Rfc7239, MalformedIsIgnored) {
  for (const char* value : {"for", "for=", "for=\"192.0.2.1", "for=192.0.2.1 x", "=x",
                            "for=\"[2001:db8::1\"", "for=2001:db8::1:80x", "for=1.2.3.4:\"80\""}) {
    ForwardedInfo info = resolve({{"Forwarded", value}});
    EXPECT_FALSE(info.has_client) << value;
    EXPECT_NE(info.malformed, nullptr) << value;
  }
  // The RFC wants a bracketed IPv6 node quoted; the unquoted form is read the same (leniently).
  ForwardedInfo info = resolve({{"Forwarded", "for=[2001:db8::1]:80"}});
  EXPECT_EQ(info.client_host, "2001:db8::1");
  EXPECT_EQ(info.client_port, 80);
}

TEST(ForwardedGuardPage, NoReadPastTheValues) {
  GuardedBuffer buffer;
  ASSERT_TRUE(buffer.valid());
  const TrustedNetworks trusted = networks("127.0.0.1, 10.0.0.0/8");
  const std::string values[] = {
      "6.6.6.6, 203.0.113.7, 127.0.0.1",
      "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=\"a\\.test\"",
      "[2001:db8::7]:4711",
      "https",
      "shop.test:8443",
  };
  const char* names[] = {"X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto",
                         "X-Forwarded-Port"};
  for (const std::string& value : values) {
    for (size_t length = 0; length <= value.size(); ++length) {
      for (const char* name : names) {
        std::string_view placed = buffer.place(std::string_view(value).substr(0, length));
        const Header headers[] = {{name, placed}};
        resolve_forwarded(headers, trusted);
        parse_forwarded_node(placed);
        valid_host(placed);
        std::string error;
        TrustedNetworks::parse(placed, error);
      }
    }
  }
}

}  // namespace
}  // namespace tf::http
