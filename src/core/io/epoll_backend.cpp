// epoll backend: io_uring's completion model emulated with non-blocking syscalls.
//
// Every operation lives in a pooled slot (ops_) and, while it waits, in the FIFO list of its fd
// (fds_, a flat vector indexed by fd). An fd is in the level-triggered epoll set exactly while
// operations wait on it, with EPOLLIN when any of them needs to read and EPOLLOUT when any needs
// to write. On readiness the waiting operations retry their syscall in queue order; EAGAIN keeps
// an operation waiting. Completions go to ready_ and are handed out by wait().
#include "core/io/epoll_backend.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <climits>
#include <system_error>
#include <utility>

#include "core/io/fd.hpp"
#include "core/io/mapped_memory.hpp"

namespace tf::core {
namespace {

// epoll_event.data of the wake-up eventfd (real fds are small non-negative integers).
constexpr uint64_t kWakeKey = UINT64_MAX;
// "No operation" in the intrusive lists.
constexpr uint32_t kNone = UINT32_MAX;
// The same limit as io_uring's provided-buffer rings, so both backends accept the same options.
constexpr unsigned kMaxBufferCount = 32768;
// How many connections / messages one readiness event may take for a multishot operation before
// other fds get their turn (the level-triggered set reports the rest on the next wait).
constexpr int kMultishotBatch = 32;

[[noreturn]] void throw_error(int error, const char* what) {
  throw std::system_error(error, std::generic_category(), what);
}

// Token -> operation index for cancel(): open addressing with linear probing and backward-shift
// deletion, so that steady-state queueing and finishing never allocate.
class TokenIndex {
 public:
  TokenIndex() { slots_.assign(64, Slot{}); }

  // Maps `token` to `index`, replacing an earlier mapping of the same token.
  void insert(uint64_t token, uint32_t index) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    size_t position = home(token);
    while (slots_[position].token != kEmpty && slots_[position].token != token) {
      position = (position + 1) & mask();
    }
    if (slots_[position].token == kEmpty) ++size_;
    slots_[position] = Slot{token, index};
  }

  // The index mapped to `token`, or kNone.
  uint32_t find(uint64_t token) const noexcept {
    for (size_t position = home(token);; position = (position + 1) & mask()) {
      if (slots_[position].token == token) return slots_[position].index;
      if (slots_[position].token == kEmpty) return kNone;
    }
  }

  // Removes the mapping of `token` if it maps to `index`.
  void erase(uint64_t token, uint32_t index) noexcept {
    size_t hole = home(token);
    while (slots_[hole].token != token) {
      if (slots_[hole].token == kEmpty) return;
      hole = (hole + 1) & mask();
    }
    if (slots_[hole].index != index) return;
    --size_;
    // Shift later members of the probe run back so that no search stops early at the hole.
    for (size_t next = (hole + 1) & mask(); slots_[next].token != kEmpty;
         next = (next + 1) & mask()) {
      const size_t wanted = home(slots_[next].token);
      const bool movable =
          hole <= next ? (wanted <= hole || wanted > next) : (wanted <= hole && wanted > next);
      if (movable) {
        slots_[hole] = slots_[next];
        hole = next;
      }
    }
    slots_[hole] = Slot{};
  }

 private:
  // Tokens are below kReservedTokenBit, so this never collides with a real one.
  static constexpr uint64_t kEmpty = UINT64_MAX;
  struct Slot {
    uint64_t token = kEmpty;
    uint32_t index = kNone;
  };

  size_t mask() const noexcept { return slots_.size() - 1; }
  size_t home(uint64_t token) const noexcept {
    return static_cast<size_t>((token * 0x9E3779B97F4A7C15ull) >> 32) & mask();
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2, Slot{});
    old.swap(slots_);
    size_ = 0;
    for (const Slot& slot : old) {
      if (slot.token != kEmpty) insert(slot.token, slot.index);
    }
  }

  std::vector<Slot> slots_;
  size_t size_ = 0;
};

enum class OperationKind : uint8_t {
  accept,
  accept_multishot,
  recv,
  recv_multishot,
  sendmsg,
  connect,
  poll,
};

// What one attempt of an operation's syscall led to.
enum class Outcome : uint8_t {
  finished,     // its final completion was emitted
  would_block,  // it keeps waiting (a multishot one may have emitted completions first)
};

struct Operation {
  uint64_t token = 0;
  int fd = -1;
  OperationKind kind = OperationKind::recv;
  bool connecting = false;          // connect: EINPROGRESS seen, the result comes from SO_ERROR
  int flags = 0;                    // recv / sendmsg flags
  uint32_t events = 0;              // poll: the requested POLLIN / POLLOUT mask
  void* buffer = nullptr;           // recv
  size_t length = 0;                // recv
  const msghdr* message = nullptr;  // sendmsg
  sockaddr* address = nullptr;      // accept (may be null)
  socklen_t* address_length = nullptr;
  const sockaddr* peer = nullptr;  // connect
  socklen_t peer_length = 0;
  uint32_t previous = kNone;  // neighbours in the fd's waiting list
  uint32_t next = kNone;
};

// The operations waiting on one fd and what the epoll set knows about it.
struct FdState {
  uint32_t head = kNone;
  uint32_t tail = kNone;
  uint32_t readers = 0;     // waiting operations that need EPOLLIN
  uint32_t writers = 0;     // waiting operations that need EPOLLOUT
  uint32_t registered = 0;  // events in the epoll set; 0: not in the set
};

bool needs_read(const Operation& operation) noexcept {
  switch (operation.kind) {
    case OperationKind::accept:
    case OperationKind::accept_multishot:
    case OperationKind::recv:
    case OperationKind::recv_multishot:
      return true;
    case OperationKind::poll:
      return (operation.events & POLLIN) != 0;
    default:
      return false;
  }
}

bool needs_write(const Operation& operation) noexcept {
  switch (operation.kind) {
    case OperationKind::sendmsg:
    case OperationKind::connect:
      return true;
    case OperationKind::poll:
      return (operation.events & POLLOUT) != 0;
    default:
      return false;
  }
}

bool would_block(int error) noexcept {
  return error == EAGAIN || error == EWOULDBLOCK;
}

class EpollBackend final : public Backend {
 public:
  explicit EpollBackend(const BackendOptions& options)
      : buffer_count_(options.buffer_count), buffer_size_(options.buffer_size) {
    if (buffer_count_ > kMaxBufferCount || (buffer_count_ & (buffer_count_ - 1)) != 0) {
      throw_error(EINVAL, "buffer_count must be a power of two up to 32768");
    }
    epoll_fd_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_fd_) throw_error(errno, "epoll_create1 failed");
    wake_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_fd_) throw_error(errno, "eventfd failed");
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kWakeKey;
    if (::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, wake_fd_.get(), &event) != 0) {
      throw_error(errno, "epoll_ctl of the wake-up eventfd failed");
    }
    if (buffer_size_ > 0) {
      buffer_memory_ =
          std::make_unique<MappedMemory>(static_cast<size_t>(buffer_count_) * buffer_size_);
      free_buffers_.reserve(buffer_count_);
      for (unsigned id = buffer_count_; id > 0; --id) {
        free_buffers_.push_back(static_cast<int32_t>(id - 1));
      }
    }
    ready_.reserve(256);
  }

  BackendKind kind() const noexcept override { return BackendKind::epoll; }

  void accept(int fd, sockaddr* addr, socklen_t* addrlen, uint64_t token) override {
    Operation& operation = allocate(fd, OperationKind::accept, token);
    operation.address = addr;
    operation.address_length = addrlen;
    start(operation);
  }

  void accept_multishot(int fd, uint64_t token) override {
    start(allocate(fd, OperationKind::accept_multishot, token));
  }

  void recv(int fd, void* buf, size_t len, uint64_t token, int flags) override {
    Operation& operation = allocate(fd, OperationKind::recv, token);
    operation.buffer = buf;
    operation.length = len;
    operation.flags = flags;
    start(operation);
  }

  void recv_multishot(int fd, uint64_t token) override {
    start(allocate(fd, OperationKind::recv_multishot, token));
  }

  std::span<std::byte> buffer_data(int32_t id) noexcept override {
    return {buffer_memory_->data() + static_cast<size_t>(id) * buffer_size_, buffer_size_};
  }

  void release_buffer(int32_t id) noexcept override {
    // Capacity was reserved for every buffer: this never allocates.
    free_buffers_.push_back(id);
  }

  void sendmsg(int fd, const msghdr* msg, uint64_t token, int flags) override {
    Operation& operation = allocate(fd, OperationKind::sendmsg, token);
    operation.message = msg;
    operation.flags = flags;
    start(operation);
  }

  void connect(int fd, const sockaddr* addr, socklen_t len, uint64_t token) override {
    Operation& operation = allocate(fd, OperationKind::connect, token);
    operation.peer = addr;
    operation.peer_length = len;
    start(operation);
  }

  void poll(int fd, uint32_t events, uint64_t token) override {
    Operation& operation = allocate(fd, OperationKind::poll, token);
    operation.events = events;
    start(operation);
  }

  void cancel(uint64_t token) override {
    const uint32_t index = waiting_by_token_.find(token);
    if (index == kNone) return;  // finished already (or never queued)
    const int fd = operations_[index].fd;
    finish_waiting(index, -ECANCELED);
    update_interest(fd);
  }

  void cancel_fd(int fd) override {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    while (fds_[fd].head != kNone) finish_waiting(fds_[fd].head, -ECANCELED);
    update_interest(fd);  // leaves the epoll set while fd is still open
  }

  size_t wait(int64_t timeout_ns, std::vector<Completion>& out) override {
    bool woken = false;
    timespec deadline{};
    if (timeout_ns > 0) deadline = monotonic_deadline_after(timeout_ns);
    for (;;) {
      const int count = wait_for_events(ready_.empty() ? timeout_ns : 0);
      const bool interrupted = count < 0;
      for (int i = 0; i < count; ++i) {
        const epoll_event& event = events_[static_cast<size_t>(i)];
        if (event.data.u64 == kWakeKey) {
          uint64_t value;
          [[maybe_unused]] ssize_t read_bytes = ::read(wake_fd_.get(), &value, sizeof value);
          woken = true;
        } else {
          handle_readiness(static_cast<int>(event.data.u64), event.events);
        }
      }
      if (!ready_.empty()) return deliver(out);
      if (woken || interrupted || timeout_ns == 0) return 0;
      // Readiness that led to no completion (a spurious wake-up): wait for the rest of the time.
      if (timeout_ns > 0) {
        timeout_ns = nanoseconds_until(deadline);
        if (timeout_ns <= 0) return 0;
      }
    }
  }

  void wake() noexcept override {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t written = ::write(wake_fd_.get(), &one, sizeof one);
  }

  size_t in_flight() const noexcept override { return in_flight_; }

 private:
  Operation& allocate(int fd, OperationKind kind, uint64_t token) {
    uint32_t index;
    if (free_operations_.empty()) {
      index = static_cast<uint32_t>(operations_.size());
      operations_.emplace_back();
    } else {
      index = free_operations_.back();
      free_operations_.pop_back();
      operations_[index] = Operation{};
    }
    Operation& operation = operations_[index];
    operation.token = token;
    operation.fd = fd;
    operation.kind = kind;
    ++in_flight_;
    return operation;
  }

  uint32_t index_of(const Operation& operation) const noexcept {
    return static_cast<uint32_t>(&operation - operations_.data());
  }

  void release(uint32_t index) { free_operations_.push_back(index); }

  // Tries a new operation at once unless others wait in the same direction on its fd (they come
  // first); otherwise, or when it would block, it joins the fd's waiting list.
  void start(Operation& operation) {
    const int fd = operation.fd;
    if (fd < 0) {
      emit(operation.token, -EBADF);
      release(index_of(operation));
      return;
    }
    const FdState* state = static_cast<size_t>(fd) < fds_.size() ? &fds_[fd] : nullptr;
    const bool queue_first = state != nullptr && ((needs_read(operation) && state->readers > 0) ||
                                                  (needs_write(operation) && state->writers > 0));
    if (!queue_first && attempt(operation, 0) == Outcome::finished) {
      release(index_of(operation));
      return;
    }
    enqueue(index_of(operation));
    update_interest(fd);
  }

  // One attempt of the operation's syscall. `revents` is the epoll readiness that triggered it,
  // or 0 for the first attempt when queued.
  Outcome attempt(Operation& operation, uint32_t revents) {
    switch (operation.kind) {
      case OperationKind::accept:
        return attempt_accept(operation);
      case OperationKind::accept_multishot:
        return attempt_accept_multishot(operation);
      case OperationKind::recv:
        return finish_unless_blocked(operation,
                                     ::recv(operation.fd, operation.buffer, operation.length,
                                            operation.flags | MSG_DONTWAIT));
      case OperationKind::recv_multishot:
        return attempt_recv_multishot(operation);
      case OperationKind::sendmsg:
        return finish_unless_blocked(operation,
                                     ::sendmsg(operation.fd, operation.message,
                                               operation.flags | MSG_DONTWAIT | MSG_NOSIGNAL));
      case OperationKind::connect:
        return attempt_connect(operation);
      case OperationKind::poll:
        return attempt_poll(operation, revents);
    }
    return Outcome::would_block;
  }

  // Emits `result` (or -errno when it is negative) as the final completion unless the syscall
  // would have blocked.
  Outcome finish_unless_blocked(Operation& operation, ssize_t result) {
    if (result >= 0) {
      emit(operation.token, static_cast<int32_t>(result));
      return Outcome::finished;
    }
    const int error = errno;
    if (would_block(error)) return Outcome::would_block;
    if (error == EINTR) return attempt(operation, 0);
    emit(operation.token, -error);
    return Outcome::finished;
  }

  Outcome attempt_accept(Operation& operation) {
    return finish_unless_blocked(
        operation, ::accept4(operation.fd, operation.address, operation.address_length,
                             SOCK_CLOEXEC | SOCK_NONBLOCK));
  }

  Outcome attempt_accept_multishot(Operation& operation) {
    for (int round = 0; round < kMultishotBatch; ++round) {
      const int accepted = ::accept4(operation.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (accepted >= 0) {
        emit(operation.token, accepted, true);
        continue;
      }
      const int error = errno;
      if (would_block(error)) return Outcome::would_block;
      if (error == EINTR || error == ECONNABORTED) continue;  // the next one may be fine
      emit(operation.token, -error);
      return Outcome::finished;
    }
    return Outcome::would_block;  // more may be pending: the level-triggered set says so later
  }

  Outcome attempt_recv_multishot(Operation& operation) {
    for (int round = 0; round < kMultishotBatch; ++round) {
      if (free_buffers_.empty()) {
        // Like io_uring: -ENOBUFS only once data arrived with no buffer to put it in.
        char probe;
        const ssize_t peeked = ::recv(operation.fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
        if (peeked > 0) {
          emit(operation.token, -ENOBUFS);
          return Outcome::finished;
        }
        return finish_unless_blocked(operation, peeked);
      }
      const int32_t id = free_buffers_.back();
      const ssize_t received =
          ::recv(operation.fd, buffer_data(id).data(), buffer_size_, MSG_DONTWAIT);
      if (received > 0) {
        free_buffers_.pop_back();
        emit(operation.token, static_cast<int32_t>(received), true, id);
        continue;
      }
      if (received < 0 && errno == EINTR) continue;
      return finish_unless_blocked(operation, received);
    }
    return Outcome::would_block;
  }

  Outcome attempt_connect(Operation& operation) {
    if (operation.connecting) {
      int error = 0;
      socklen_t length = sizeof error;
      if (::getsockopt(operation.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
      emit(operation.token, -error);
      return Outcome::finished;
    }
    if (::connect(operation.fd, operation.peer, operation.peer_length) == 0) {
      emit(operation.token, 0);
      return Outcome::finished;
    }
    const int error = errno;
    if (error == EINPROGRESS || error == EINTR) {
      operation.connecting = true;  // the kernel goes on; writability tells when it is done
      return Outcome::would_block;
    }
    if (would_block(error)) return Outcome::would_block;  // a full UNIX backlog: try again
    emit(operation.token, error == EISCONN ? 0 : -error);
    return Outcome::finished;
  }

  Outcome attempt_poll(Operation& operation, uint32_t revents) {
    const uint32_t wanted = operation.events | POLLERR | POLLHUP;
    if (revents == 0) {
      pollfd query{operation.fd, static_cast<short>(operation.events), 0};
      const int count = ::poll(&query, 1, 0);
      if (count < 0) {
        emit(operation.token, -errno);
        return Outcome::finished;
      }
      if ((query.revents & POLLNVAL) != 0) {
        emit(operation.token, -EBADF);
        return Outcome::finished;
      }
      revents = static_cast<uint16_t>(query.revents);
    }
    const uint32_t reported = revents & wanted;
    if (reported == 0) return Outcome::would_block;
    emit(operation.token, static_cast<int32_t>(reported));
    return Outcome::finished;
  }

  void emit(uint64_t token, int32_t result, bool more = false, int32_t buffer = -1) {
    ready_.push_back(Completion{token, result, more, buffer});
  }

  size_t deliver(std::vector<Completion>& out) {
    for (const Completion& completion : ready_) {
      if (!completion.more) --in_flight_;
    }
    out.insert(out.end(), ready_.begin(), ready_.end());
    const size_t count = ready_.size();
    ready_.clear();
    return count;
  }

  FdState& state_of(int fd) {
    if (static_cast<size_t>(fd) >= fds_.size()) fds_.resize(static_cast<size_t>(fd) + 1);
    return fds_[fd];
  }

  void enqueue(uint32_t index) {
    Operation& operation = operations_[index];
    FdState& state = state_of(operation.fd);
    operation.previous = state.tail;
    operation.next = kNone;
    if (state.tail == kNone) {
      state.head = index;
    } else {
      operations_[state.tail].next = index;
    }
    state.tail = index;
    if (needs_read(operation)) ++state.readers;
    if (needs_write(operation)) ++state.writers;
    waiting_by_token_.insert(operation.token, index);
  }

  void unlink(uint32_t index) {
    Operation& operation = operations_[index];
    FdState& state = fds_[operation.fd];
    if (operation.previous == kNone) {
      state.head = operation.next;
    } else {
      operations_[operation.previous].next = operation.next;
    }
    if (operation.next == kNone) {
      state.tail = operation.previous;
    } else {
      operations_[operation.next].previous = operation.previous;
    }
    if (needs_read(operation)) --state.readers;
    if (needs_write(operation)) --state.writers;
    waiting_by_token_.erase(operation.token, index);
  }

  // Ends a waiting operation with `result` (the caller updates the fd's interest afterwards).
  void finish_waiting(uint32_t index, int32_t result) {
    unlink(index);
    emit(operations_[index].token, result);
    release(index);
  }

  // Makes the epoll set match what the operations waiting on `fd` need.
  void update_interest(int fd) {
    FdState& state = fds_[fd];
    const uint32_t wanted =
        (state.readers > 0 ? EPOLLIN : 0u) | (state.writers > 0 ? EPOLLOUT : 0u);
    if (wanted == state.registered) return;
    if (wanted == 0) {
      // EBADF / ENOENT: closed behind our back, and the kernel dropped it already.
      ::epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
      state.registered = 0;
      return;
    }
    epoll_event event{};
    event.events = wanted;
    event.data.u64 = static_cast<uint64_t>(fd);
    int result = ::epoll_ctl(epoll_fd_.get(), state.registered == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD,
                             fd, &event);
    if (result != 0 && (errno == EEXIST || errno == ENOENT)) {
      result =
          ::epoll_ctl(epoll_fd_.get(), errno == EEXIST ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event);
    }
    if (result == 0) {
      state.registered = wanted;
      return;
    }
    // epoll cannot watch this fd: EPERM for regular files (always ready), else a real error.
    const int error = errno;
    state.registered = 0;
    while (state.head != kNone) {
      const uint32_t index = state.head;
      const Operation& operation = operations_[index];
      int32_t outcome = -error;
      if (error == EPERM && operation.kind == OperationKind::poll) {
        outcome = static_cast<int32_t>(operation.events & (POLLIN | POLLOUT));
      }
      finish_waiting(index, outcome);
    }
  }

  // Retries the operations waiting on `fd` after epoll reported `revents` for it.
  void handle_readiness(int fd, uint32_t revents) {
    if (fd < 0 || static_cast<size_t>(fd) >= fds_.size()) return;
    const bool errors = (revents & (EPOLLERR | EPOLLHUP)) != 0;
    bool read_blocked = (revents & EPOLLIN) == 0 && !errors;
    bool write_blocked = (revents & EPOLLOUT) == 0 && !errors;
    uint32_t index = fds_[fd].head;
    while (index != kNone) {
      const uint32_t next = operations_[index].next;
      Operation& operation = operations_[index];
      if (operation.kind == OperationKind::poll) {
        if (attempt_poll(operation, revents) == Outcome::finished) retire(index);
      } else {
        bool& blocked = needs_read(operation) ? read_blocked : write_blocked;
        if (!blocked) {
          if (attempt(operation, revents) == Outcome::finished) {
            retire(index);
          } else {
            blocked = true;  // the operations behind it would block too
          }
        }
      }
      index = next;
    }
    update_interest(fd);
  }

  // Removes an operation that emitted its final completion from its fd's list and frees it.
  void retire(uint32_t index) {
    unlink(index);
    release(index);
  }

  // epoll_wait with nanosecond timeouts where the kernel has epoll_pwait2. Returns the number of
  // events in events_, or -1 when a signal interrupted the wait. epoll_pwait2 is called as a
  // system call rather than through glibc's wrapper (glibc 2.35), so that the module loads with
  // glibc 2.34 (the wheels' manylinux_2_34 tag); without a signal mask its last argument, the mask
  // size, is not read.
  int wait_for_events(int64_t timeout_ns) {
    int count;
    if (timeout_ns > 0 && has_epoll_pwait2_) {
      timespec timeout{static_cast<time_t>(timeout_ns / 1'000'000'000),
                       static_cast<long>(timeout_ns % 1'000'000'000)};
      count = static_cast<int>(::syscall(SYS_epoll_pwait2, epoll_fd_.get(), events_.data(),
                                         static_cast<int>(events_.size()), &timeout, nullptr, 0));
      if (count < 0 && errno == ENOSYS) {
        has_epoll_pwait2_ = false;
        return wait_for_events(timeout_ns);
      }
    } else {
      int timeout_ms = -1;
      if (timeout_ns >= 0) {
        // Rounded up, so that a short timeout does not turn into a busy loop.
        const int64_t rounded = (timeout_ns + 999'999) / 1'000'000;
        timeout_ms = rounded > INT_MAX ? INT_MAX : static_cast<int>(rounded);
      }
      count = ::epoll_wait(epoll_fd_.get(), events_.data(), static_cast<int>(events_.size()),
                           timeout_ms);
    }
    if (count >= 0) return count;
    if (errno == EINTR) return -1;
    throw_error(errno, "epoll_wait failed");
  }

  unsigned buffer_count_;
  unsigned buffer_size_;
  std::unique_ptr<MappedMemory> buffer_memory_;
  std::vector<int32_t> free_buffers_;  // ids of provided buffers nobody holds
  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;
  std::vector<Operation> operations_;  // slots, reused through free_operations_
  std::vector<uint32_t> free_operations_;
  std::vector<FdState> fds_;       // indexed by fd
  TokenIndex waiting_by_token_;    // waiting operations, for cancel()
  std::vector<Completion> ready_;  // emitted, not yet handed out by wait()
  std::array<epoll_event, 256> events_{};
  size_t in_flight_ = 0;
  bool has_epoll_pwait2_ = true;
};

}  // namespace

std::unique_ptr<Backend> make_epoll_backend(const BackendOptions& options) {
  return std::make_unique<EpollBackend>(options);
}

}  // namespace tf::core
