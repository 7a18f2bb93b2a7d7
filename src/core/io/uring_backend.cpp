// io_uring backend: every operation is one SQE whose user_data is the caller's token; completions
// are reaped from the CQ in bulk. Internal SQEs (the wake-up read on an eventfd, cancellation
// requests) carry tokens with kReservedTokenBit set and are handled here, never reported.
#include "core/io/uring_backend.hpp"

#include <liburing.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "core/io/fd.hpp"
#include "core/io/mapped_memory.hpp"

namespace tf::core {
namespace {

// Completes the read armed on the wake-up eventfd.
constexpr uint64_t kWakeToken = kReservedTokenBit | 1;
// Completes a cancellation request (cancel / cancel_fd); its result is of no interest.
constexpr uint64_t kCancelToken = kReservedTokenBit | 2;
// The one provided-buffer group of the backend.
constexpr uint16_t kBufferGroup = 0;
// The kernel's limit on the entries of a provided-buffer ring.
constexpr unsigned kMaxBufferCount = 32768;

[[noreturn]] void throw_error(int error, const char* what) {
  throw std::system_error(error, std::generic_category(), what);
}

// Owns an initialised struct io_uring; io_uring_queue_exit on destruction.
class Ring {
 public:
  Ring() noexcept = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() {
    if (initialised_) io_uring_queue_exit(&ring_);
  }

  // Creates the ring with the most capable flag set this kernel accepts. Throws on failure.
  void setup(unsigned entries) {
    constexpr unsigned kCommon = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
    // Newest features first; each EINVAL drops the newest remaining one (older kernels).
    const unsigned flag_sets[] = {
        kCommon | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        kCommon | IORING_SETUP_SINGLE_ISSUER,
        kCommon,
        IORING_SETUP_SUBMIT_ALL,
        0,
    };
    int result = -EINVAL;
    for (unsigned flags : flag_sets) {
      io_uring_params params{};
      // A CQ four times the SQ leaves room for multishot operations; IORING_FEAT_NODROP keeps
      // whatever does not fit in the kernel until reap() flushes it.
      params.flags = flags | IORING_SETUP_CQSIZE;
      params.cq_entries = entries * 4;
      result = io_uring_queue_init_params(entries, &ring_, &params);
      if (result != -EINVAL) break;
    }
    if (result < 0) throw_error(-result, "io_uring_setup failed");
    initialised_ = true;
  }

  io_uring* get() noexcept { return &ring_; }

 private:
  io_uring ring_{};
  bool initialised_ = false;
};

class UringBackend final : public Backend {
 public:
  explicit UringBackend(const BackendOptions& options)
      : buffer_count_(options.buffer_count), buffer_size_(options.buffer_size) {
    if (buffer_count_ > kMaxBufferCount || (buffer_count_ & (buffer_count_ - 1)) != 0) {
      throw_error(EINVAL, "buffer_count must be a power of two up to 32768");
    }
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC));
    if (!wake_fd_) throw_error(errno, "eventfd failed");
    ring_.setup(options.entries == 0 ? 1 : options.entries);
    if (buffer_count_ > 0 && buffer_size_ > 0) setup_buffer_ring();
    arm_wake_read();
  }

  BackendKind kind() const noexcept override { return BackendKind::io_uring; }

  void accept(int fd, sockaddr* addr, socklen_t* addrlen, uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_accept(sqe, fd, addr, addrlen, SOCK_CLOEXEC | SOCK_NONBLOCK);
    track(sqe, token);
  }

  void accept_multishot(int fd, uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_multishot_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    track(sqe, token);
  }

  void recv(int fd, void* buf, size_t len, uint64_t token, int flags) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    track(sqe, token);
  }

  void recv_multishot(int fd, uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = kBufferGroup;
    track(sqe, token);
  }

  std::span<std::byte> buffer_data(int32_t id) noexcept override {
    return {buffer_memory_.data() + static_cast<size_t>(id) * buffer_size_, buffer_size_};
  }

  void release_buffer(int32_t id) noexcept override {
    io_uring_buf_ring_add(buffer_ring_, buffer_data(id).data(), buffer_size_,
                          static_cast<unsigned short>(id), io_uring_buf_ring_mask(buffer_count_),
                          0);
    io_uring_buf_ring_advance(buffer_ring_, 1);
  }

  void sendmsg(int fd, const msghdr* msg, uint64_t token, int flags) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_sendmsg(sqe, fd, msg, static_cast<unsigned>(flags | MSG_NOSIGNAL));
    track(sqe, token);
  }

  void connect(int fd, const sockaddr* addr, socklen_t len, uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_connect(sqe, fd, addr, len);
    track(sqe, token);
  }

  void poll(int fd, uint32_t events, uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_poll_add(sqe, fd, events);
    track(sqe, token);
  }

  void cancel(uint64_t token) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel64(sqe, token, 0);
    io_uring_sqe_set_data64(sqe, kCancelToken);
  }

  void cancel_fd(int fd) override {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, kCancelToken);
    // The kernel resolves `fd` when it issues the request, and the caller closes it next: submit
    // now. (Operations hold a reference on their file, so closing alone would not end them.)
    submit();
  }

  size_t wait(int64_t timeout_ns, std::vector<Completion>& out) override {
    size_t appended = 0;
    if (!pending_.empty()) {
      // Reaped while flushing a full SQ; deliver them now and only look for more.
      out.insert(out.end(), pending_.begin(), pending_.end());
      appended = pending_.size();
      pending_.clear();
      timeout_ns = 0;
    }
    if (woken_) timeout_ns = 0;  // a wake-up was reaped while flushing a full SQ
    timespec deadline{};
    if (timeout_ns > 0) deadline = monotonic_deadline_after(timeout_ns);
    for (;;) {
      const int result = enter(timeout_ns);
      appended += reap(out);
      if (appended > 0 || woken_ || timeout_ns == 0 || result == -ETIME || result == -EINTR) {
        woken_ = false;
        return appended;
      }
      // Only internal completions (cancellation results): keep waiting for the rest of the time.
      if (timeout_ns > 0) {
        timeout_ns = nanoseconds_until(deadline);
        if (timeout_ns <= 0) return 0;
      }
    }
  }

  void wake() noexcept override {
    const uint64_t one = 1;
    // Cannot block: the counter would need 2^64 - 2 unread wake-ups first.
    [[maybe_unused]] ssize_t written = ::write(wake_fd_.get(), &one, sizeof one);
  }

  size_t in_flight() const noexcept override { return in_flight_; }

 private:
  void setup_buffer_ring() {
    buffer_ring_memory_ = MappedMemory(buffer_count_ * sizeof(io_uring_buf));
    buffer_memory_ = MappedMemory(static_cast<size_t>(buffer_count_) * buffer_size_);
    buffer_ring_ = reinterpret_cast<io_uring_buf_ring*>(buffer_ring_memory_.data());
    io_uring_buf_reg registration{};
    registration.ring_addr = reinterpret_cast<uintptr_t>(buffer_ring_);
    registration.ring_entries = buffer_count_;
    registration.bgid = kBufferGroup;
    const int result = io_uring_register_buf_ring(ring_.get(), &registration, 0);
    if (result < 0) throw_error(-result, "io_uring_register_buf_ring failed");
    io_uring_buf_ring_init(buffer_ring_);
    const int mask = io_uring_buf_ring_mask(buffer_count_);
    for (unsigned id = 0; id < buffer_count_; ++id) {
      io_uring_buf_ring_add(buffer_ring_, buffer_data(static_cast<int32_t>(id)).data(),
                            buffer_size_, static_cast<unsigned short>(id), mask,
                            static_cast<int>(id));
    }
    io_uring_buf_ring_advance(buffer_ring_, static_cast<int>(buffer_count_));
  }

  // A free SQE; flushes the SQ to the kernel when it is full. Never returns null.
  io_uring_sqe* get_sqe() {
    for (;;) {
      if (io_uring_sqe* sqe = io_uring_get_sqe(ring_.get())) return sqe;
      submit();
    }
  }

  // Hands every queued SQE to the kernel without waiting. Completions the kernel wants reaped
  // first (CQ overflow on older kernels) are kept in pending_ for the next wait().
  void submit() {
    while (io_uring_sq_ready(ring_.get()) > 0) {
      const int result = io_uring_submit(ring_.get());
      if (result > 0 || result == -EINTR) continue;
      if (result == 0) return;
      if (result == -EAGAIN || result == -EBUSY) {
        reap(pending_);
        io_uring_get_events(ring_.get());
        continue;
      }
      throw_error(-result, "io_uring_submit failed");
    }
  }

  // Labels a user operation's SQE with its token and counts it in flight.
  void track(io_uring_sqe* sqe, uint64_t token) noexcept {
    io_uring_sqe_set_data64(sqe, token);
    ++in_flight_;
  }

  void arm_wake_read() {
    io_uring_sqe* sqe = get_sqe();
    io_uring_prep_read(sqe, wake_fd_.get(), &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(sqe, kWakeToken);
  }

  // Submits and waits as wait() asks. Returns io_uring's result (>= 0, -ETIME, -EINTR, ...);
  // throws on errors that mean the ring is unusable (e.g. used from the wrong thread).
  int enter(int64_t timeout_ns) {
    int result;
    if (timeout_ns == 0) {
      result = io_uring_submit_and_get_events(ring_.get());
    } else if (timeout_ns < 0) {
      result = io_uring_submit_and_wait(ring_.get(), 1);
    } else {
      __kernel_timespec timeout{};
      timeout.tv_sec = timeout_ns / 1'000'000'000;
      timeout.tv_nsec = timeout_ns % 1'000'000'000;
      io_uring_cqe* ignored = nullptr;
      result = io_uring_submit_and_wait_timeout(ring_.get(), &ignored, 1, &timeout, nullptr);
    }
    if (result >= 0 || result == -ETIME || result == -EINTR || result == -EAGAIN ||
        result == -EBUSY) {
      return result;
    }
    throw_error(-result, "io_uring_enter failed");
  }

  // Moves every ready CQE into `out` (user operations) or handles it (internal ones), including
  // those the kernel kept aside after a CQ overflow. Returns how many were appended to `out`.
  size_t reap(std::vector<Completion>& out) {
    io_uring* ring = ring_.get();
    size_t appended = 0;
    for (;;) {
      unsigned head;
      unsigned seen = 0;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(ring, head, cqe) {
        ++seen;
        const uint64_t token = cqe->user_data;
        if ((token & kReservedTokenBit) != 0) {
          handle_internal(token, cqe->res);
          continue;
        }
        Completion completion;
        completion.token = token;
        completion.result = cqe->res;
        completion.more = (cqe->flags & IORING_CQE_F_MORE) != 0;
        if ((cqe->flags & IORING_CQE_F_BUFFER) != 0) {
          completion.buffer = static_cast<int32_t>(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        }
        if (!completion.more) --in_flight_;
        out.push_back(completion);
        ++appended;
      }
      io_uring_cq_advance(ring, seen);
      if (!io_uring_cq_has_overflow(ring)) return appended;
      // Completions wait in the kernel's overflow list: have them flushed into the CQ.
      io_uring_get_events(ring);
    }
  }

  void handle_internal(uint64_t token, int result) {
    if (token != kWakeToken) return;  // cancellation results and liburing's own timeouts
    woken_ = true;
    if (result >= 0 || result == -EINTR || result == -ECANCELED) arm_wake_read();
  }

  // Declaration order matters: the ring is destroyed first, before the memory it points into.
  unsigned buffer_count_;
  unsigned buffer_size_;
  MappedMemory buffer_ring_memory_;
  MappedMemory buffer_memory_;
  io_uring_buf_ring* buffer_ring_ = nullptr;
  UniqueFd wake_fd_;
  uint64_t wake_value_ = 0;  // the wake-up read's target
  bool woken_ = false;
  size_t in_flight_ = 0;
  std::vector<Completion> pending_;  // reaped by get_sqe(), delivered by the next wait()
  Ring ring_;
};

}  // namespace

std::unique_ptr<Backend> make_uring_backend(const BackendOptions& options) {
  return std::make_unique<UringBackend>(options);
}

}  // namespace tf::core
