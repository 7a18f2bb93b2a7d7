// Tests of src/core/websocket/deflate: negotiation of permessage-deflate offers (RFC 7692 §7),
// round trips in every context-takeover mode and window size, the size limit, corrupt input, and
// the zlib state held between messages.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/websocket/deflate.hpp"

namespace tf::ws {
namespace {

struct Negotiated {
  bool accepted = false;
  DeflateParameters parameters;
  std::string response;
};

Negotiated negotiate(std::vector<std::string> values, DeflatePolicy policy = {}) {
  std::vector<http::Header> headers;
  for (const std::string& value : values) headers.push_back({"Sec-WebSocket-Extensions", value});
  Negotiated out;
  out.accepted = negotiate_deflate(headers, policy, out.parameters, out.response);
  return out;
}

TEST(DeflateNegotiation, PlainOfferGetsOurWindow) {
  Negotiated result = negotiate({"permessage-deflate"});
  ASSERT_TRUE(result.accepted);
  EXPECT_EQ(result.response, "permessage-deflate; server_max_window_bits=12");
  EXPECT_EQ(result.parameters.server_window_bits, 12);
  EXPECT_EQ(result.parameters.client_window_bits, 15);  // not offered: we may not limit it
  EXPECT_FALSE(result.parameters.server_no_context_takeover);
}

TEST(DeflateNegotiation, ClientWindowAndContextTakeover) {
  Negotiated result =
      negotiate({"permessage-deflate; client_max_window_bits; server_no_context_takeover; "
                 "client_no_context_takeover"});
  ASSERT_TRUE(result.accepted);
  EXPECT_EQ(result.response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12");
  EXPECT_TRUE(result.parameters.server_no_context_takeover);
  EXPECT_TRUE(result.parameters.client_no_context_takeover);
  EXPECT_EQ(result.parameters.client_window_bits, 12);
  result = negotiate({"permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"});
  ASSERT_TRUE(result.accepted);
  EXPECT_EQ(result.parameters.server_window_bits, 10);
  EXPECT_EQ(result.parameters.client_window_bits, 9);
  EXPECT_EQ(result.response,
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9");
  result = negotiate({"permessage-deflate; server_max_window_bits=\"11\""});
  ASSERT_TRUE(result.accepted);
  EXPECT_EQ(result.parameters.server_window_bits, 11);
}

TEST(DeflateNegotiation, BadOffersAreDeclinedAndTheNextIsTaken) {
  for (const char* bad :
       {"permessage-deflate; unknown", "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover; "
        "client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=8", "x-webkit-deflate-frame"}) {
    EXPECT_FALSE(negotiate({bad}).accepted) << bad;
    Negotiated fallback = negotiate({std::string(bad) + ", permessage-deflate; "
                                                        "client_no_context_takeover"});
    ASSERT_TRUE(fallback.accepted) << bad;
    EXPECT_TRUE(fallback.parameters.client_no_context_takeover) << bad;
  }
  EXPECT_TRUE(negotiate({"foo", "PerMessage-Deflate"}).accepted);
}

std::string sample(size_t size) {
  std::string text;
  while (text.size() < size) text += "The quick brown fox " + std::to_string(text.size()) + ". ";
  return text.substr(0, size);
}

TEST(DeflateSession, RoundTripsInEveryMode) {
  for (bool no_takeover : {false, true}) {
    for (int bits : {9, 12, 15}) {
      DeflateParameters parameters{no_takeover, no_takeover, bits, bits};
      DeflateSession server(parameters, DeflatePolicy{});
      // The client side of the same parameters, seen from the other end.
      DeflateSession client(DeflateParameters{no_takeover, no_takeover, bits, bits},
                            DeflatePolicy{});
      for (size_t size : {0u, 1u, 100u, 5000u, 200000u}) {
        std::string message = sample(size);
        std::string compressed, back;
        ASSERT_TRUE(server.compress(message, compressed));
        if (size >= 5000) EXPECT_LT(compressed.size(), message.size() / 2);
        ASSERT_EQ(client.decompress(compressed, 0, back), InflateStatus::ok);
        EXPECT_EQ(back, message) << size << " bits " << bits;
      }
      if (no_takeover) {
        EXPECT_EQ(server.state_bytes(), 0u);  // nothing kept between messages
        EXPECT_EQ(client.state_bytes(), 0u);
      }
    }
  }
}

TEST(DeflateSession, MemoryIsSized) {
  DeflateSession session(DeflateParameters{false, false, 12, 12}, DeflatePolicy{});
  std::string compressed, back;
  ASSERT_TRUE(session.compress(sample(1000), compressed));
  ASSERT_EQ(session.decompress(compressed, 0, back), InflateStatus::ok);
  // zlib's defaults would hold ~256 KiB + ~40 KiB here.
  EXPECT_LT(session.state_bytes(), 64u * 1024u);
  EXPECT_GT(session.state_bytes(), 0u);
}

TEST(DeflateSession, LimitAndCorruptInput) {
  DeflateSession sender(DeflateParameters{}, DeflatePolicy{});
  std::string compressed, out;
  ASSERT_TRUE(sender.compress(std::string(100000, 'a'), compressed));
  DeflateSession limited(DeflateParameters{}, DeflatePolicy{});
  EXPECT_EQ(limited.decompress(compressed, 1000, out), InflateStatus::too_big);
  DeflateSession receiver(DeflateParameters{}, DeflatePolicy{});
  EXPECT_EQ(receiver.decompress("\xff\xff\xff\xff garbage", 0, out), InflateStatus::error);
}

}  // namespace
}  // namespace tf::ws
