// libFuzzer target of src/core/http/http_parser: parses the input with small limits, checks the
// result's invariants and its split invariance (a prefix answers incomplete or the same, also with
// the scan_from hint), and runs the chunked decoder over the body that follows a chunked head (or
// over the whole input when there is none), comparing one feed with two feeds split at a point
// derived from the input.
// Any broken invariant traps, which libFuzzer reports as a crash.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/http/http_parser.hpp"

namespace {

using tf::http::BodyFraming;
using tf::http::ChunkedDecoder;
using tf::http::ChunkResult;
using tf::http::ChunkStatus;
using tf::http::Header;
using tf::http::Limits;
using tf::http::ParseResult;
using tf::http::ParseStatus;
using tf::http::RequestHead;

constexpr Limits kLimits{
    .max_request_line = 256, .max_header_size = 1024, .max_headers = 16, .max_body_size = 4096};

void check(bool condition) {
  if (!condition) __builtin_trap();
}

// A split point that depends on every byte, so that mutations move it around.
size_t split_point(std::string_view input) {
  if (input.empty()) return 0;
  uint64_t hash = 1469598103934665603ull;
  for (const char c : input) hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return static_cast<size_t>(hash % input.size());
}

bool inside(std::string_view view, std::string_view buffer) {
  return view.empty() || (view.data() >= buffer.data() &&
                          view.data() + view.size() <= buffer.data() + buffer.size());
}

void check_complete_head(std::string_view input, const RequestHead& head,
                         const std::array<Header, 16>& storage) {
  check(head.head_length > 0 && head.head_length <= input.size());
  check(head.head_length <= kLimits.max_header_size);
  check(head.header_count <= storage.size());
  check(!head.method.empty() && !head.target.empty());
  check(head.version_minor <= 1);
  check(inside(head.method, input) && inside(head.target, input) && inside(head.query, input));
  check(head.path == "/" || inside(head.path, input));
  for (size_t i = 0; i < head.header_count; ++i) {
    check(!storage[i].name.empty());
    check(inside(storage[i].name, input) && inside(storage[i].value, input));
  }
  if (head.framing == BodyFraming::content_length) {
    check(head.content_length <= kLimits.max_body_size);
  }
  check(tf::http::percent_decode(head.path).size() <= head.path.size());
}

void check_error(const ParseResult& result) {
  const int status = result.http_status;
  check(status == 400 || status == 413 || status == 414 || status == 431 || status == 501 ||
        status == 505);
  check(result.reason != nullptr && result.reason[0] != '\0');
}

// Decodes `body` in one feed and in two feeds split at `split`; both must agree.
void check_chunked(std::string_view body, size_t split) {
  ChunkedDecoder whole_decoder(kLimits.max_body_size);
  std::string whole_body;
  const ChunkResult whole = whole_decoder.feed(body, whole_body);
  check(whole.consumed <= body.size());
  check(whole_body.size() == whole_decoder.decoded_size());
  check(whole_body.size() <= kLimits.max_body_size);
  if (whole.status == ChunkStatus::need_more) check(whole.consumed == body.size());
  if (whole.status == ChunkStatus::error) {
    check(whole.http_status == 400 || whole.http_status == 413 || whole.http_status == 431);
  }

  if (split > body.size()) split = body.size();
  ChunkedDecoder split_decoder(kLimits.max_body_size);
  std::string split_body;
  ChunkResult result = split_decoder.feed(body.substr(0, split), split_body);
  size_t consumed = result.consumed;
  if (result.status == ChunkStatus::need_more) {
    check(consumed == split);
    result = split_decoder.feed(body.substr(split), split_body);
    consumed += result.consumed;
  }
  check(result.status == whole.status);
  check(result.http_status == whole.http_status);
  check(split_body == whole_body);
  if (whole.status == ChunkStatus::done) check(consumed == whole.consumed);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t split = split_point(input);

  RequestHead head;
  std::array<Header, 16> storage;
  const ParseResult whole = tf::http::parse_request(input, kLimits, head, storage);
  if (whole.status == ParseStatus::complete) check_complete_head(input, head, storage);
  if (whole.status == ParseStatus::error) check_error(whole);

  // Split invariance: the prefix answers incomplete or exactly the same.
  RequestHead prefix_head;
  std::array<Header, 16> prefix_storage;
  const ParseResult prefix =
      tf::http::parse_request(input.substr(0, split), kLimits, prefix_head, prefix_storage);
  if (prefix.status == ParseStatus::incomplete) {
    check(!(whole.status == ParseStatus::complete && split >= head.head_length));
  } else {
    check(prefix.status == whole.status);
    check(prefix.http_status == whole.http_status);
    check(std::strcmp(prefix.reason, whole.reason) == 0);
    if (whole.status == ParseStatus::complete) {
      check(prefix_head.head_length == head.head_length);
      check(prefix_head.header_count == head.header_count);
      check(prefix_head.framing == head.framing);
      check(prefix_head.content_length == head.content_length);
      check(prefix_head.keep_alive == head.keep_alive);
      check(prefix_head.target == head.target);
    }
  }

  // The scan_from hint, as a server passes it after an incomplete prefix: the answer is
  // incomplete or the same, and a complete head is never missed.
  if (prefix.status == ParseStatus::incomplete) {
    RequestHead hinted_head;
    std::array<Header, 16> hinted_storage;
    const ParseResult hinted =
        tf::http::parse_request(input, kLimits, hinted_head, hinted_storage, split);
    if (hinted.status == ParseStatus::incomplete) {
      check(whole.status != ParseStatus::complete);
    } else {
      check(hinted.status == whole.status);
      check(hinted.http_status == whole.http_status);
      if (whole.status == ParseStatus::complete) {
        check(hinted_head.head_length == head.head_length);
      }
    }
  }

  if (whole.status == ParseStatus::complete && head.framing == BodyFraming::chunked) {
    const std::string_view body = input.substr(head.head_length);
    check_chunked(body, split > head.head_length ? split - head.head_length : 0);
  } else {
    check_chunked(input, split);
  }
  return 0;
}
