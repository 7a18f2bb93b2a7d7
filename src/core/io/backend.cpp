// make_backend and the small helpers declared in backend.hpp.
#include "core/io/backend.hpp"

#include <cerrno>
#include <string_view>
#include <system_error>

#include "core/io/epoll_backend.hpp"
#include "core/io/uring_backend.hpp"

namespace tf::core {

std::unique_ptr<Backend> make_backend(const BackendOptions& options, std::string* fallback_reason) {
  switch (options.choice) {
    case BackendChoice::io_uring:
      return make_uring_backend(options);
    case BackendChoice::epoll:
      return make_epoll_backend(options);
    case BackendChoice::automatic:
      break;
  }
  try {
    return make_uring_backend(options);
  } catch (const std::system_error& error) {
    const int code = error.code().value();
    if (error.code().category() != std::generic_category() ||
        (code != ENOSYS && code != EPERM && code != EACCES)) {
      throw;
    }
    if (fallback_reason != nullptr) *fallback_reason = error.what();
  }
  return make_epoll_backend(options);
}

bool parse_backend_choice(std::string_view text, BackendChoice& out) noexcept {
  if (text.empty() || text == "auto") {
    out = BackendChoice::automatic;
  } else if (text == "io_uring") {
    out = BackendChoice::io_uring;
  } else if (text == "epoll") {
    out = BackendChoice::epoll;
  } else {
    return false;
  }
  return true;
}

const char* backend_name(BackendKind kind) noexcept {
  switch (kind) {
    case BackendKind::io_uring:
      return "io_uring";
    case BackendKind::epoll:
      return "epoll";
  }
  return "unknown";
}

timespec monotonic_deadline_after(int64_t timeout_ns) noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  const int64_t total = now.tv_nsec + timeout_ns % 1'000'000'000;
  now.tv_sec += static_cast<time_t>(timeout_ns / 1'000'000'000 + total / 1'000'000'000);
  now.tv_nsec = static_cast<long>(total % 1'000'000'000);
  return now;
}

int64_t nanoseconds_until(const timespec& deadline) noexcept {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return (static_cast<int64_t>(deadline.tv_sec) - now.tv_sec) * 1'000'000'000 +
         (deadline.tv_nsec - now.tv_nsec);
}

}  // namespace tf::core
