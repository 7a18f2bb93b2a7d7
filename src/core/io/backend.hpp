// Backend: the kernel interface of the hub. Operations are queued with a caller-chosen token and
// finish as Completions reaped by wait(). Two implementations: io_uring (default) and epoll (for
// kernels or sandboxes where io_uring_setup is refused).
//
// Contract shared by every implementation:
//  - Single-threaded: every method except wake() is called from the hub's thread only.
//  - Queueing (accept, recv, ...) never blocks and never fails for lack of queue space: a full
//    submission queue is flushed and the operation queued again.
//  - Every queued operation ends with exactly one *final* completion (more == false), including
//    cancelled ones (result -ECANCELED unless the operation finished first). Multishot operations
//    may deliver any number of completions with more == true before their final one.
//  - Pointers handed to an operation (buffers, sockaddr, msghdr and its iovecs) must stay valid and
//    unmoved until that operation's final completion has been reaped. They must never point into a
//    greenlet's stack.
//  - Tokens are chosen by the caller and must be below kReservedTokenBit; the backend uses tokens
//    with that bit set internally and never reports them.
//  - Errors at construction throw std::system_error; operations report -errno in
//    Completion::result.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace tf::core {

inline constexpr uint64_t kReservedTokenBit = uint64_t{1} << 63;

// One finished (or, for multishot operations, one progressed) operation.
struct Completion {
  uint64_t token = 0;   // as passed when the operation was queued
  int32_t result = 0;   // the syscall's return value, or -errno
  bool more = false;    // true: a multishot operation that will complete again
  int32_t buffer = -1;  // provided-buffer id holding `result` bytes (recv_multishot), else -1
};

enum class BackendKind { io_uring, epoll };

// Which backend to build. Automatic picks io_uring and falls back to epoll when io_uring_setup
// fails with ENOSYS, EPERM or EACCES.
enum class BackendChoice { automatic, io_uring, epoll };

struct BackendOptions {
  BackendChoice choice = BackendChoice::automatic;
  unsigned entries = 256;            // submission queue size (io_uring)
  unsigned buffer_count = 256;       // provided buffers for recv_multishot (power of two)
  unsigned buffer_size = 16 * 1024;  // bytes per provided buffer
};

class Backend {
 public:
  virtual ~Backend() = default;
  Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  virtual BackendKind kind() const noexcept = 0;

  // accept4(fd, addr, addrlen, SOCK_CLOEXEC | SOCK_NONBLOCK). addr/addrlen may be null.
  // Result: the new fd. `fd` must be non-blocking (the epoll backend calls accept4 on readiness).
  virtual void accept(int fd, sockaddr* addr, socklen_t* addrlen, uint64_t token) = 0;

  // Multishot accept: one completion (more == true) per accepted connection, new fds are
  // SOCK_CLOEXEC | SOCK_NONBLOCK; ends (final completion) only on error or cancel.
  virtual void accept_multishot(int fd, uint64_t token) = 0;

  // recv(fd, buf, len, flags). Result: bytes received, 0 at end of stream.
  virtual void recv(int fd, void* buf, size_t len, uint64_t token, int flags = 0) = 0;

  // Multishot receive into the backend's provided buffers: each completion's `buffer` names the
  // buffer holding `result` bytes; the caller reads it with buffer_data() and must hand it back
  // with release_buffer(). Ends with result 0 (end of stream), an error, -ENOBUFS when no buffer
  // was free (queue it again after releasing some), or -ECANCELED.
  virtual void recv_multishot(int fd, uint64_t token) = 0;

  // The bytes of a provided buffer; valid until release_buffer(id).
  virtual std::span<std::byte> buffer_data(int32_t id) noexcept = 0;
  // Returns a provided buffer to the pool.
  virtual void release_buffer(int32_t id) noexcept = 0;

  // sendmsg(fd, msg, flags | MSG_NOSIGNAL). Result: bytes sent (may be fewer than asked).
  virtual void sendmsg(int fd, const msghdr* msg, uint64_t token, int flags = 0) = 0;

  // connect(fd, addr, len). Result: 0 or -errno. `fd` must be non-blocking.
  virtual void connect(int fd, const sockaddr* addr, socklen_t len, uint64_t token) = 0;

  // One-shot readiness wait; events are POLLIN / POLLOUT. Result: the revents mask (POLLERR and
  // POLLHUP are reported too) or -errno.
  virtual void poll(int fd, uint32_t events, uint64_t token) = 0;

  // Requests cancellation of the operation queued with `token`. Harmless when it already finished.
  // The operation still delivers its final completion (usually -ECANCELED).
  virtual void cancel(uint64_t token) = 0;

  // Requests cancellation of every operation queued on `fd` (used before close).
  virtual void cancel_fd(int fd) = 0;

  // Submits what was queued, then waits until at least one completion is ready, `timeout_ns`
  // nanoseconds pass (-1: no limit, 0: do not wait) or wake() is called. Appends what is ready to
  // `out` and returns how many were appended. May block (that is its purpose).
  virtual size_t wait(int64_t timeout_ns, std::vector<Completion>& out) = 0;

  // Makes a current or the next wait() return. Thread-safe and async-signal-safe.
  virtual void wake() noexcept = 0;

  // Number of operations queued or in flight in the kernel (excludes internal ones).
  virtual size_t in_flight() const noexcept = 0;
};

// Builds a backend. For BackendChoice::automatic, an io_uring that cannot be set up (ENOSYS,
// EPERM, EACCES) yields the epoll backend and `fallback_reason` (if given) says why; forcing
// io_uring where it is unavailable throws std::system_error.
std::unique_ptr<Backend> make_backend(const BackendOptions& options,
                                      std::string* fallback_reason = nullptr);

// Parses "io_uring", "epoll", "auto" or "" (automatic). Returns false for anything else.
bool parse_backend_choice(std::string_view text, BackendChoice& out) noexcept;

const char* backend_name(BackendKind kind) noexcept;

// CLOCK_MONOTONIC now plus timeout_ns, and the nanoseconds left until such a deadline (negative
// once it has passed): a backend's wait() re-waits for what is left after EINTR with these.
timespec monotonic_deadline_after(int64_t timeout_ns) noexcept;
int64_t nanoseconds_until(const timespec& deadline) noexcept;

}  // namespace tf::core
