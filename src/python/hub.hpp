// The hub: one event loop per thread that runs greenlets over a core::Backend.
//
// Switching rules (enforced here; violations raise the named exceptions of _core.pyi):
//  1. The hub greenlet runs the loop and is the parent of every greenlet it schedules. It never
//     makes a blocking call itself: a blocking call from the hub greenlet raises HubSwitchError.
//  2. A greenlet that blocks reserves an operation slot, queues its operation with the slot's
//     token, and switches to the hub. Only the hub resumes it, and only through that slot: the
//     completion (or its timer) marks the slot done and queues exactly that greenlet. A greenlet
//     that finds its slot not done after resuming was switched to by someone else: HubSwitchError.
//  3. Tokens carry the slot's generation; a completion for a freed or reused slot is dropped.
//  4. Anything the kernel reads or writes by pointer lives in the slot (or in a C++ object that
//     outlives the operation), never on a greenlet stack: greenlet moves stacks to the heap.
//  5. A waiting greenlet that is killed or thrown into leaves its slot "orphaned": the slot keeps
//     the buffers alive, the operation is cancelled, and the final completion frees the slot (and
//     closes an fd that an orphaned accept returned). No later completion resumes the greenlet.
//  6. Timers that expire cancel their operation and resume the greenlet only when the kernel has
//     delivered the final completion, so data that raced with the timeout is never lost.
//  7. Submissions are batched: operations are queued during a loop iteration and submitted by the
//     backend's wait(), which also reaps completions in bulk.
//  8. Greenlets woken by their timer (sleep, or a wait that timed out without a kernel operation)
//     run after the other ready greenlets, and I/O is polled every kWakeupsPerPoll of them: work
//     that arrives while many timers fire is not queued behind all of them.
#pragma once

#include <Python.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/io/backend.hpp"
#include "core/io/timer_heap.hpp"
#include "python/pyref.hpp"

namespace tf::py {

// Bytes of one heartbeat cell (Hub::set_heartbeat): the loop iteration count, then the
// CLOCK_MONOTONIC time in ns, two native-endian uint64. _core.HEARTBEAT_CELL_SIZE in Python.
inline constexpr size_t kHeartbeatCellSize = 2 * sizeof(uint64_t);
static_assert(kHeartbeatCellSize == 16);

// Receives the completions of operations queued by C++ code (HTTP connections) rather than by a
// waiting greenlet. Called in the hub greenlet: must not block or switch; may queue operations.
class CompletionHandler {
 public:
  // `completion.result` is -ETIME for a timer added with Hub::add_handler_timer.
  virtual void on_completion(const core::Completion& completion) = 0;

 protected:
  ~CompletionHandler() = default;
};

enum class OpKind : uint8_t {
  timer,
  event,
  accept,
  recv,
  send,
  connect,
  poll,
  handler_op,
  handler_timer
};
enum class SlotState : uint8_t { free, waiting, orphaned };

// One operation in flight. Addresses are stable (slots live in fixed blocks).
struct Slot {
  uint32_t generation = 1;
  SlotState state = SlotState::free;
  OpKind kind = OpKind::timer;
  bool completed = false;         // final result stored, waiter queued
  bool timed_out = false;         // its timer fired
  bool cancel_requested = false;  // backend cancel sent
  bool kernel_op = false;         // an operation is in the backend (not a pure timer)
  int32_t result = 0;
  PyObject* waiter = nullptr;  // the waiting greenlet (strong reference) or null
  CompletionHandler* handler = nullptr;
  core::TimerId timer = core::kNoTimer;
  int fd = -1;
  sockaddr_storage address{};
  socklen_t address_length = 0;
  msghdr message{};
  std::vector<iovec> iov;
  std::vector<Py_buffer> views;  // buffers the kernel uses; released when the slot is freed
  PyRef keepalive;               // e.g. the bytes object a recv fills
};

class Hub {
 public:
  // Builds the backend. Throws std::system_error (io_uring forced but unavailable, or setup
  // failure) and std::invalid_argument (unknown backend name).
  Hub(core::BackendChoice choice, unsigned entries);
  ~Hub();
  Hub(const Hub&) = delete;
  Hub& operator=(const Hub&) = delete;

  // The hub running in the calling thread, or null.
  static Hub* current() noexcept;

  core::Backend& backend() noexcept { return *backend_; }
  const std::string& fallback_reason() const noexcept { return fallback_reason_; }
  // The Python Hub object wrapping this hub (borrowed; it outlives the hub).
  PyObject* python_object = nullptr;
  bool running() const noexcept { return hub_greenlet_ != nullptr; }
  // Slots in use (waiting or orphaned), excluding the hub's own signal wakeup.
  size_t pending() const noexcept;

  // Runs the loop (see Hub.run in _core.pyi). Returns a new reference or null with an exception.
  PyObject* run(PyObject* main, PyObject* args, PyObject* kwargs);
  // Thread- and async-signal-safe.
  void request_stop() noexcept;

  // Heartbeat for a supervisor: every loop iteration stores, into the first kHeartbeatCellSize
  // bytes of `buffer` (writable, e.g. shared memory), the iteration count and the CLOCK_MONOTONIC
  // time in nanoseconds (two native-endian uint64). The loop then wakes at least every `interval`
  // seconds, so only a loop that is stuck (a handler that never yields) stops the clock.
  // A null buffer turns it off. 0 or -1 with an exception set.
  int set_heartbeat(PyObject* buffer, double interval);

  // --- Scheduling (hub thread only) ------------------------------------------------------------
  // New greenlet (parent: the hub) that runs fn(*args, **kwargs) soon. New reference or null.
  PyObject* spawn(PyObject* fn, PyObject* args, PyObject* kwargs);
  // Queues g to be switched to with value. 0 or -1 with exception.
  int schedule(PyObject* g, PyObject* value);
  // Suspends the current greenlet (not in any slot) until something schedules it; returns the
  // scheduled value (new reference) or null with the exception thrown into it. For pools of
  // parked greenlets owned by C++ code.
  PyObject* suspend();
  // Queues a throw of `exception` (instance or class; null = GreenletExit) into g. 0 or -1.
  int kill(PyObject* g, PyObject* exception);

  // --- Blocking calls for the current greenlet --------------------------------------------------
  // Each returns 0 (or a result >= 0) on success, or -1 with a Python exception set (TimeoutError,
  // OSError, the exception thrown into the greenlet, HubSwitchError). timeout < 0: none.
  // Checks that the caller may block. 0 or -1 with NoHubError/HubSwitchError set.
  static Hub* for_blocking_call();
  int sleep(double seconds);
  // Returns the accepted fd; fills address.
  int accept(int fd, double timeout, sockaddr_storage& address, socklen_t& address_length);
  // recv into buffer (kept alive through `owner`, which the slot references while in flight).
  // `adopt_view`, when given, is taken over by the slot (released when the kernel is done).
  Py_ssize_t recv(int fd, void* buffer, size_t length, PyObject* owner, Py_buffer* adopt_view,
                  double timeout);
  // One sendmsg of the given buffers (views are taken over by the slot, released on completion).
  Py_ssize_t send(int fd, std::vector<Py_buffer>& views, size_t skip, double timeout);
  int connect(int fd, const sockaddr* address, socklen_t length, double timeout);
  // poll: returns revents (0 on timeout when timeout_is_error is false).
  int poll(int fd, uint32_t events, double timeout);
  // Waits for any of the fds; fills ready masks. Returns number ready (0 on timeout).
  int poll_many(const std::vector<int>& fds, const std::vector<uint32_t>& events,
                std::vector<uint32_t>& revents, double timeout);
  // Cancels every waiter on fd (they see EBADF) and closes it. Returns 0 or -errno of close(2).
  int close_fd(int fd);

  // --- Events: a greenlet waits until C++ code signals it ---------------------------------------
  // Reserves the wait (the caller publishes the token where the signaller finds it), then
  // wait_event() suspends until complete_event(token, result) or the timeout (TimeoutError).
  // Returns the result passed to complete_event, or -1 with an exception set.
  uint64_t prepare_event();
  int wait_event(uint64_t token, double timeout);
  // Wakes the greenlet waiting on `token` with `result` (>= 0). Harmless on a stale token.
  void complete_event(uint64_t token, int32_t result) noexcept;

  // --- Operations driven by C++ handlers (HTTP connections) -------------------------------------
  // Reserves a slot whose completions go to `handler`; returns the token to queue the operation
  // with. The slot frees itself after delivering the final completion.
  uint64_t reserve_handler_slot(CompletionHandler* handler);
  // A one-shot timer delivering Completion{token, -ETIME} to handler at deadline_ns (monotonic).
  uint64_t add_handler_timer(int64_t deadline_ns, CompletionHandler* handler);
  // Cancels a handler timer (no completion is delivered); harmless if it already fired.
  void cancel_handler_timer(uint64_t token) noexcept;

 private:
  struct ReadyEntry {
    enum class Kind : uint8_t { start, resume, value, raise } kind;
    PyObject* greenlet;  // strong
    PyObject* first;     // start: args tuple; value: value; raise: exception (strong)
    PyObject* second;    // start: kwargs or null (strong)
    uint64_t token;      // resume: the slot the greenlet waits on
  };

  static constexpr uint32_t kBlockBits = 10;
  static constexpr uint32_t kBlockSize = 1u << kBlockBits;

  Slot& slot_at(uint32_t index) noexcept {
    return blocks_[index >> kBlockBits][index & (kBlockSize - 1)];
  }
  static uint64_t make_token(uint32_t index, uint32_t generation) noexcept {
    return (static_cast<uint64_t>(generation) << 32) | index;
  }
  // Slot for a token, or null when stale.
  Slot* lookup(uint64_t token) noexcept;
  uint32_t acquire_slot(OpKind kind);
  void free_slot(uint32_t index) noexcept;

  // Registers the current greenlet as waiter of slot `index` with an optional timeout, switches
  // to the hub and returns when the slot completed (0, result in slot) or with -1 (exception set;
  // the slot has been orphaned or freed). On success the caller frees the slot.
  int wait_for_slot(uint32_t index, double timeout);
  // Frees a completed slot and returns its result (>= 0), or -1 with the Python exception for a
  // failed one (OSError from -errno, TimeoutError after its timer).
  int finish_result(uint32_t index);
  // wait_for_slot, then finish_result.
  int wait_for_result(uint32_t index, double timeout);
  // Orphans a waiting slot (the greenlet gives up): cancels its operation and timer.
  void abandon_slot(uint32_t index) noexcept;
  // Python exception for a failed operation result (-errno), or TimeoutError.
  void set_error_from_result(const Slot& slot);

  PyObject* loop();  // the hub greenlet's body
  static PyObject* loop_entry(PyObject* self, PyObject* unused);
  void dispatch_ready(ReadyEntry& entry);
  // Dispatches the ready entries queued before the call (not those they queue meanwhile).
  void run_ready();
  // Dispatches the timer wake-ups queued before the call, polling I/O every kWakeupsPerPoll.
  void run_timer_wakeups();
  // Waits up to timeout_ns (0: a non-blocking look, -1: no limit) with the GIL released and
  // handles the completions. False after a backend failure (stored; the loop must stop).
  bool poll_io(int64_t timeout_ns);
  void after_switch(PyObject* target, PyObject* result);
  void handle_completion(const core::Completion& completion);
  void expire_timers();
  void finish_slot_waiter(uint32_t index, Slot& slot, bool timer_expired = false);
  void report_greenlet_error();
  void shutdown_waiters();
  void drain_orphans();
  void check_signals();
  void store_exception();
  void install_signal_wakeup();
  void restore_signal_wakeup();
  void arm_signal_wakeup();
  // The callable set with _core._configure(error_handler=...), or null (then the exception is
  // logged to configuration.logger).
  static PyObject* error_handler() noexcept;

  std::unique_ptr<core::Backend> backend_;
  std::string fallback_reason_;
  core::TimerHeap timers_;
  std::vector<std::unique_ptr<Slot[]>> blocks_;
  std::vector<uint32_t> free_slots_;
  size_t slots_in_use_ = 0;
  std::deque<ReadyEntry> ready_;
  std::deque<ReadyEntry> timer_ready_;  // greenlets whose sleep or wait timer fell due
  static constexpr size_t kWakeupsPerPoll = 4;
  std::vector<core::Completion> completions_;
  std::vector<uint64_t> expired_;

  PyObject* hub_greenlet_ = nullptr;   // strong, while running
  PyObject* main_greenlet_ = nullptr;  // strong, while running with a main function
  PyRef main_result_;
  bool main_done_ = false;
  PyObject* stored_exc_type_ = nullptr;  // exception to re-raise from run()
  PyObject* stored_exc_value_ = nullptr;
  PyObject* stored_exc_traceback_ = nullptr;
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;
  std::thread::id thread_;
  PyRef empty_tuple_;
  PyRef loop_function_;
  // Signal wakeup: Python's C-level signal handler writes to this pipe (signal.set_wakeup_fd), so
  // a signal arriving right before the backend blocks still wakes it.
  int signal_pipe_[2] = {-1, -1};
  uint64_t signal_token_ = 0;
  PyRef previous_wakeup_fd_;
  char signal_drain_[64];
  class SignalHandler;
  std::unique_ptr<SignalHandler> signal_handler_;
  Py_buffer heartbeat_view_{};
  bool heartbeat_enabled_ = false;
  int64_t heartbeat_interval_ns_ = 1'000'000'000;
  uint64_t heartbeat_count_ = 0;
  void beat() noexcept;
};

// Module-level registration of the Hub type, exceptions and green I/O functions.
int init_hub(PyObject* module);

// Exceptions (new references owned by the module).
extern PyObject* HubError;
extern PyObject* NoHubError;
extern PyObject* HubSwitchError;
extern PyObject* BackendUnavailableError;

// Seconds from a Python float/None argument: -1 for None. Returns -2 with an exception set for a
// negative or non-numeric value.
double timeout_from_object(PyObject* object);

}  // namespace tf::py
