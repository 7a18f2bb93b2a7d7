// libFuzzer target of src/core/http/proxy_protocol and src/core/http/forwarded: parses the input
// as a PROXY header and checks the incremental contract (every prefix of a complete header answers
// incomplete, a prefix of an erroneous input answers incomplete or error, consumed never exceeds
// the input), then reads the input as forwarding header values and a trusted-network list, which
// must never crash or read outside their bytes.
// Any broken invariant traps, which libFuzzer reports as a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/http/forwarded.hpp"
#include "core/http/proxy_protocol.hpp"

namespace {

using tf::http::ProxyHeader;
using tf::http::ProxyResult;
using tf::http::ProxyStatus;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void fuzz_proxy(std::string_view input) {
  ProxyHeader header;
  const ProxyResult whole = tf::http::parse_proxy_header(input, header);
  if (whole.status == ProxyStatus::complete) {
    check(whole.consumed > 0 && whole.consumed <= input.size());
    check(header.version == 1 || header.version == 2);
    // Every proper prefix of the header is incomplete; the header alone is complete.
    for (size_t n = 0; n < whole.consumed; ++n) {
      ProxyHeader partial;
      check(tf::http::parse_proxy_header(input.substr(0, n), partial).status ==
            ProxyStatus::incomplete);
    }
    ProxyHeader alone;
    const ProxyResult exact = tf::http::parse_proxy_header(input.substr(0, whole.consumed), alone);
    check(exact.status == ProxyStatus::complete && exact.consumed == whole.consumed);
  } else if (whole.status == ProxyStatus::error) {
    // A prefix never answers complete when the whole is an error.
    for (size_t n = 0; n < input.size(); n += 1 + n / 8) {
      ProxyHeader partial;
      check(tf::http::parse_proxy_header(input.substr(0, n), partial).status !=
            ProxyStatus::complete);
    }
  }
}

void fuzz_forwarded(std::string_view input) {
  const size_t cut = input.empty() ? 0 : static_cast<unsigned char>(input[0]) % input.size();
  std::string error;
  auto trusted = tf::http::TrustedNetworks::parse(input.substr(0, cut), error);
  const tf::http::TrustedNetworks networks = trusted.value_or(tf::http::TrustedNetworks{});
  std::string_view value = input.substr(cut);
  const tf::http::Header headers[] = {
      {"Forwarded", value},        {"X-Forwarded-For", value},  {"X-Forwarded-Proto", value},
      {"X-Forwarded-Host", value}, {"X-Forwarded-Port", value},
  };
  tf::http::ForwardedInfo with_rfc7239 = tf::http::resolve_forwarded(headers, networks);
  tf::http::ForwardedInfo without =
      tf::http::resolve_forwarded(std::span<const tf::http::Header>(headers).subspan(1), networks);
  for (const tf::http::ForwardedInfo& info : {with_rfc7239, without}) {
    check(info.scheme.empty() || info.scheme == "http" || info.scheme == "https");
    check(info.host.empty() || tf::http::valid_host(info.host));
    check(info.port >= 0 && info.port <= 65535);
    check(!info.has_client || tf::http::parse_ip(info.client_host).has_value());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  fuzz_proxy(input);
  fuzz_forwarded(input);
  return 0;
}
