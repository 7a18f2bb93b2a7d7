// The hub's loop and its blocking-call machinery. The switching rules are in hub.hpp.
#include "python/hub.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "python/configuration.hpp"
#include "python/greenlet_api.hpp"

namespace tf::py {

using greenlet::api;

namespace {

thread_local Hub* t_running_hub = nullptr;

int64_t deadline_after(double seconds) {
  double ns = seconds * 1e9;
  if (ns > 9e18) ns = 9e18;
  return core::monotonic_ns() + static_cast<int64_t>(ns);
}

}  // namespace

// Drains the signal-wakeup socket and re-arms its receive; the loop then runs Python's signal
// handlers (check_signals) in the hub greenlet.
class Hub::SignalHandler final : public CompletionHandler {
 public:
  explicit SignalHandler(Hub& hub) : hub_(hub) {}
  void on_completion(const core::Completion& completion) override {
    hub_.signal_token_ = 0;
    if (completion.result > 0 && !hub_.stopping_) hub_.arm_signal_wakeup();
  }

 private:
  Hub& hub_;
};

Hub::Hub(core::BackendChoice choice, unsigned entries) {
  core::BackendOptions options;
  options.choice = choice;
  options.entries = entries;
  backend_ = core::make_backend(options, &fallback_reason_);
  empty_tuple_ = PyRef(PyTuple_New(0));
  signal_handler_ = std::make_unique<SignalHandler>(*this);
}

Hub::~Hub() {
  if (heartbeat_enabled_) PyBuffer_Release(&heartbeat_view_);
  // The kernel must be done with every buffer before the slots release them.
  backend_.reset();
  for (uint32_t index = 0; index < blocks_.size() * kBlockSize; ++index) {
    Slot& slot = slot_at(index);
    if (slot.state != SlotState::free) {
      if (slot.kind == OpKind::accept && slot.completed && slot.result >= 0) ::close(slot.result);
      free_slot(index);
    }
  }
  for (int& fd : signal_pipe_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

Hub* Hub::current() noexcept {
  return t_running_hub;
}

// ---------------------------------------------------------------------------------------------
// Slots

Slot* Hub::lookup(uint64_t token) noexcept {
  uint32_t index = static_cast<uint32_t>(token);
  uint32_t generation = static_cast<uint32_t>(token >> 32);
  if (index >= blocks_.size() * kBlockSize) return nullptr;
  Slot& slot = slot_at(index);
  if (slot.generation != generation || slot.state == SlotState::free) return nullptr;
  return &slot;
}

uint32_t Hub::acquire_slot(OpKind kind) {
  if (free_slots_.empty()) {
    uint32_t base = static_cast<uint32_t>(blocks_.size() * kBlockSize);
    blocks_.push_back(std::make_unique<Slot[]>(kBlockSize));
    free_slots_.reserve(free_slots_.size() + kBlockSize);
    for (uint32_t offset = kBlockSize; offset-- > 0;) free_slots_.push_back(base + offset);
  }
  uint32_t index = free_slots_.back();
  free_slots_.pop_back();
  Slot& slot = slot_at(index);
  slot.state = SlotState::waiting;
  slot.kind = kind;
  slot.completed = false;
  slot.timed_out = false;
  slot.cancel_requested = false;
  slot.kernel_op = false;
  slot.result = 0;
  slot.waiter = nullptr;
  slot.handler = nullptr;
  slot.timer = core::kNoTimer;
  slot.fd = -1;
  ++slots_in_use_;
  return index;
}

void Hub::free_slot(uint32_t index) noexcept {
  Slot& slot = slot_at(index);
  if (slot.timer != core::kNoTimer) {
    timers_.remove(slot.timer);
    slot.timer = core::kNoTimer;
  }
  Py_CLEAR(slot.waiter);
  for (Py_buffer& view : slot.views) PyBuffer_Release(&view);
  slot.views.clear();
  slot.keepalive.reset();
  slot.handler = nullptr;
  slot.state = SlotState::free;
  if (++slot.generation == 0) slot.generation = 1;
  free_slots_.push_back(index);
  --slots_in_use_;
}

void Hub::abandon_slot(uint32_t index) noexcept {
  Slot& slot = slot_at(index);
  if (slot.timer != core::kNoTimer) {
    timers_.remove(slot.timer);
    slot.timer = core::kNoTimer;
  }
  Py_CLEAR(slot.waiter);
  if (!slot.kernel_op) {
    if (slot.kind == OpKind::accept && slot.completed && slot.result >= 0) ::close(slot.result);
    free_slot(index);
    return;
  }
  slot.state = SlotState::orphaned;
  if (!slot.cancel_requested) {
    slot.cancel_requested = true;
    backend_->cancel(make_token(index, slot.generation));
  }
}

// ---------------------------------------------------------------------------------------------
// Blocking calls

Hub* Hub::for_blocking_call() {
  Hub* hub = t_running_hub;
  if (hub == nullptr) {
    PyErr_SetString(NoHubError, "no hub is running in this thread");
    return nullptr;
  }
  PyObject* current = api.current();
  bool is_hub = current == hub->hub_greenlet_;
  Py_XDECREF(current);
  if (is_hub) {
    PyErr_SetString(HubSwitchError,
                    "blocking call from the hub greenlet (signal handlers and completion "
                    "callbacks must not block: spawn a greenlet instead)");
    return nullptr;
  }
  return hub;
}

int Hub::wait_for_slot(uint32_t index, double timeout) {
  Slot& slot = slot_at(index);
  const uint32_t generation = slot.generation;
  const uint64_t token = make_token(index, generation);
  if (slot.completed) return 0;  // an event signalled before its greenlet got here
  slot.waiter = api.current();
  if (timeout >= 0) slot.timer = timers_.add(deadline_after(timeout), token);

  PyObject* switched = api.switch_to(hub_greenlet_, empty_tuple_.get(), nullptr);
  if (switched == nullptr) {
    // Killed or thrown into while waiting.
    abandon_slot(index);
    return -1;
  }
  Py_DECREF(switched);
  if (slot.completed) return 0;
  abandon_slot(index);
  PyErr_SetString(HubSwitchError,
                  "a greenlet waiting on the hub was switched to by something other than the hub");
  return -1;
}

int Hub::finish_result(uint32_t index) {
  Slot& slot = slot_at(index);
  const int result = slot.result;
  if (result < 0) set_error_from_result(slot);
  free_slot(index);
  return result < 0 ? -1 : result;
}

int Hub::wait_for_result(uint32_t index, double timeout) {
  if (wait_for_slot(index, timeout) < 0) return -1;
  return finish_result(index);
}

void Hub::set_error_from_result(const Slot& slot) {
  int error = -slot.result;
  if (slot.timed_out && (error == ECANCELED || error == ETIME || error == EINTR)) {
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return;
  }
  if (error == ECANCELED) error = EBADF;  // cancelled by close(fd)
  errno = error;
  PyErr_SetFromErrno(PyExc_OSError);
}

int Hub::sleep(double seconds) {
  uint32_t index = acquire_slot(OpKind::timer);
  if (wait_for_slot(index, seconds < 0 ? 0 : seconds) < 0) return -1;
  free_slot(index);
  return 0;
}

namespace {

// Puts fd in non-blocking mode (the epoll backend calls accept4/connect on readiness, which must
// not block if another process took the connection first). 0, or -1 with OSError set.
int ensure_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || (!(flags & O_NONBLOCK) && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  return 0;
}

}  // namespace

int Hub::accept(int fd, double timeout, sockaddr_storage& address, socklen_t& address_length) {
  if (ensure_nonblocking(fd) < 0) return -1;
  uint32_t index = acquire_slot(OpKind::accept);
  Slot& slot = slot_at(index);
  slot.fd = fd;
  slot.address_length = sizeof(slot.address);
  backend_->accept(fd, reinterpret_cast<sockaddr*>(&slot.address), &slot.address_length,
                   make_token(index, slot.generation));
  slot.kernel_op = true;
  if (wait_for_slot(index, timeout) < 0) return -1;
  if (slot.result >= 0) {
    address = slot.address;
    address_length = slot.address_length;
  }
  return finish_result(index);
}

Py_ssize_t Hub::recv(int fd, void* buffer, size_t length, PyObject* owner, Py_buffer* adopt_view,
                     double timeout) {
  uint32_t index = acquire_slot(OpKind::recv);
  Slot& slot = slot_at(index);
  slot.fd = fd;
  slot.keepalive = PyRef::borrow(owner);
  if (adopt_view != nullptr) slot.views.push_back(*adopt_view);
  backend_->recv(fd, buffer, length, make_token(index, slot.generation));
  slot.kernel_op = true;
  return wait_for_result(index, timeout);
}

Py_ssize_t Hub::send(int fd, std::vector<Py_buffer>& views, size_t skip, double timeout) {
  // Fast path: most sends fit in the socket buffer and need no trip through the loop.
  std::vector<iovec> iov;
  iov.reserve(views.size());
  for (Py_buffer& view : views) {
    size_t length = static_cast<size_t>(view.len);
    if (skip >= length) {
      skip -= length;
      continue;
    }
    iov.push_back({static_cast<char*>(view.buf) + skip, length - skip});
    skip = 0;
    if (iov.size() == IOV_MAX) break;
  }
  if (iov.empty()) return 0;
  msghdr message{};
  message.msg_iov = iov.data();
  message.msg_iovlen = iov.size();
  ssize_t sent = ::sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent >= 0) return sent;
  if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }

  uint32_t index = acquire_slot(OpKind::send);
  Slot& slot = slot_at(index);
  slot.fd = fd;
  slot.views.swap(views);  // the slot keeps the buffers exported while the kernel reads them
  slot.iov = std::move(iov);
  slot.message = msghdr{};
  slot.message.msg_iov = slot.iov.data();
  slot.message.msg_iovlen = slot.iov.size();
  backend_->sendmsg(fd, &slot.message, make_token(index, slot.generation));
  slot.kernel_op = true;
  if (wait_for_slot(index, timeout) < 0) return -1;
  views.swap(slot.views);
  return finish_result(index);
}

int Hub::connect(int fd, const sockaddr* address, socklen_t length, double timeout) {
  if (ensure_nonblocking(fd) < 0) return -1;
  uint32_t index = acquire_slot(OpKind::connect);
  Slot& slot = slot_at(index);
  slot.fd = fd;
  std::memcpy(&slot.address, address, length);
  slot.address_length = length;
  backend_->connect(fd, reinterpret_cast<sockaddr*>(&slot.address), length,
                    make_token(index, slot.generation));
  slot.kernel_op = true;
  return wait_for_result(index, timeout) < 0 ? -1 : 0;
}

int Hub::poll(int fd, uint32_t events, double timeout) {
  uint32_t index = acquire_slot(OpKind::poll);
  Slot& slot = slot_at(index);
  slot.fd = fd;
  backend_->poll(fd, events, make_token(index, slot.generation));
  slot.kernel_op = true;
  return wait_for_result(index, timeout);
}

int Hub::poll_many(const std::vector<int>& fds, const std::vector<uint32_t>& events,
                   std::vector<uint32_t>& revents, double timeout) {
  revents.assign(fds.size(), 0);
  std::vector<uint32_t> indices;
  indices.reserve(fds.size() + 1);
  PyObject* current = api.current();
  for (size_t i = 0; i < fds.size(); ++i) {
    uint32_t index = acquire_slot(OpKind::poll);
    Slot& slot = slot_at(index);
    slot.fd = fds[i];
    slot.waiter = Py_NewRef(current);
    backend_->poll(fds[i], events[i], make_token(index, slot.generation));
    slot.kernel_op = true;
    indices.push_back(index);
  }
  uint32_t timer_index = UINT32_MAX;
  if (timeout >= 0) {
    timer_index = acquire_slot(OpKind::timer);
    Slot& slot = slot_at(timer_index);
    slot.waiter = Py_NewRef(current);
    slot.timer = timers_.add(deadline_after(timeout), make_token(timer_index, slot.generation));
  }
  Py_DECREF(current);

  PyObject* switched = api.switch_to(hub_greenlet_, empty_tuple_.get(), nullptr);
  bool any_completed = false;
  for (uint32_t index : indices) any_completed |= slot_at(index).completed;
  if (timer_index != UINT32_MAX) any_completed |= slot_at(timer_index).completed;

  int ready = 0;
  int first_error = 0;
  for (size_t i = 0; i < indices.size(); ++i) {
    Slot& slot = slot_at(indices[i]);
    if (slot.completed) {
      if (slot.result > 0) {
        revents[i] = static_cast<uint32_t>(slot.result);
        ++ready;
      } else if (slot.result < 0 && first_error == 0) {
        first_error = -slot.result;
      }
      free_slot(indices[i]);
    } else {
      abandon_slot(indices[i]);
    }
  }
  if (timer_index != UINT32_MAX) abandon_slot(timer_index);

  if (switched == nullptr) return -1;
  Py_DECREF(switched);
  if (!any_completed) {
    PyErr_SetString(
        HubSwitchError,
        "a greenlet waiting on the hub was switched to by something other than the hub");
    return -1;
  }
  if (ready == 0 && first_error != 0) {
    errno = first_error == ECANCELED ? EBADF : first_error;
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
  }
  return ready;
}

int Hub::close_fd(int fd) {
  backend_->cancel_fd(fd);
  if (::close(fd) < 0 && errno != EINTR) return -errno;
  return 0;
}

uint64_t Hub::prepare_event() {
  uint32_t index = acquire_slot(OpKind::event);
  return make_token(index, slot_at(index).generation);
}

int Hub::wait_event(uint64_t token, double timeout) {
  const uint32_t index = static_cast<uint32_t>(token);
  if (wait_for_slot(index, timeout) < 0) return -1;
  Slot& slot = slot_at(index);
  if (slot.timed_out) {
    free_slot(index);
    PyErr_SetString(PyExc_TimeoutError, "timed out");
    return -1;
  }
  int result = slot.result;
  free_slot(index);
  return result;
}

void Hub::complete_event(uint64_t token, int32_t result) noexcept {
  Slot* slot = lookup(token);
  if (slot == nullptr || slot->kind != OpKind::event || slot->state != SlotState::waiting ||
      slot->completed) {
    return;
  }
  slot->result = result;
  slot->completed = true;
  finish_slot_waiter(static_cast<uint32_t>(token), *slot);
}

// ---------------------------------------------------------------------------------------------
// Handler-driven operations

uint64_t Hub::reserve_handler_slot(CompletionHandler* handler) {
  uint32_t index = acquire_slot(OpKind::handler_op);
  Slot& slot = slot_at(index);
  slot.handler = handler;
  slot.kernel_op = true;
  return make_token(index, slot.generation);
}

uint64_t Hub::add_handler_timer(int64_t deadline_ns, CompletionHandler* handler) {
  uint32_t index = acquire_slot(OpKind::handler_timer);
  Slot& slot = slot_at(index);
  slot.handler = handler;
  uint64_t token = make_token(index, slot.generation);
  slot.timer = timers_.add(deadline_ns, token);
  return token;
}

void Hub::cancel_handler_timer(uint64_t token) noexcept {
  Slot* slot = lookup(token);
  if (slot == nullptr || slot->kind != OpKind::handler_timer) return;
  free_slot(static_cast<uint32_t>(token));
}

// ---------------------------------------------------------------------------------------------
// Scheduling

PyObject* Hub::spawn(PyObject* fn, PyObject* args, PyObject* kwargs) {
  if (hub_greenlet_ == nullptr) {
    PyErr_SetString(NoHubError, "spawn needs a running hub");
    return nullptr;
  }
  PyObject* g = api.create(fn, hub_greenlet_);
  if (g == nullptr) return nullptr;
  Py_INCREF(g);
  Py_XINCREF(args);
  Py_XINCREF(kwargs);
  ready_.push_back(
      {ReadyEntry::Kind::start, g, args ? args : Py_NewRef(empty_tuple_.get()), kwargs, 0});
  return g;
}

int Hub::schedule(PyObject* g, PyObject* value) {
  if (!greenlet::is_greenlet(g)) {
    PyErr_SetString(PyExc_TypeError, "schedule() needs a greenlet");
    return -1;
  }
  PyObject* args = PyTuple_Pack(1, value ? value : Py_None);
  if (args == nullptr) return -1;
  ready_.push_back({ReadyEntry::Kind::value, Py_NewRef(g), args, nullptr, 0});
  return 0;
}

PyObject* Hub::suspend() {
  return api.switch_to(hub_greenlet_, empty_tuple_.get(), nullptr);
}

int Hub::kill(PyObject* g, PyObject* exception) {
  if (!greenlet::is_greenlet(g)) {
    PyErr_SetString(PyExc_TypeError, "kill() needs a greenlet");
    return -1;
  }
  if (exception == nullptr || exception == Py_None) exception = api.exit_type;
  if (!PyExceptionInstance_Check(exception) &&
      !(PyType_Check(exception) && PyExceptionClass_Check(exception))) {
    PyErr_SetString(PyExc_TypeError, "kill() needs an exception class or instance");
    return -1;
  }
  ready_.push_back({ReadyEntry::Kind::raise, Py_NewRef(g), Py_NewRef(exception), nullptr, 0});
  return 0;
}

void Hub::request_stop() noexcept {
  stop_requested_.store(true, std::memory_order_release);
  if (backend_) backend_->wake();
}

// ---------------------------------------------------------------------------------------------
// The loop

PyObject* Hub::loop_entry(PyObject* self, PyObject*) {
  Hub* hub = static_cast<Hub*>(PyCapsule_GetPointer(self, "theframework.hub"));
  if (hub == nullptr) return nullptr;
  return hub->loop();
}

PyObject* Hub::run(PyObject* main, PyObject* args, PyObject* kwargs) {
  if (hub_greenlet_ != nullptr) {
    PyErr_SetString(HubError, "this hub is already running");
    return nullptr;
  }
  if (t_running_hub != nullptr) {
    PyErr_SetString(HubError, "another hub is already running in this thread");
    return nullptr;
  }
  if (!loop_function_) {
    static PyMethodDef loop_def = {"hub_loop", reinterpret_cast<PyCFunction>(&Hub::loop_entry),
                                   METH_NOARGS, nullptr};
    PyRef capsule(PyCapsule_New(this, "theframework.hub", nullptr));
    if (!capsule) return nullptr;
    loop_function_ = PyRef(PyCFunction_New(&loop_def, capsule.get()));
    if (!loop_function_) return nullptr;
  }
  PyRef caller(api.current());
  hub_greenlet_ = api.create(loop_function_.get(), caller.get());
  if (hub_greenlet_ == nullptr) return nullptr;

  t_running_hub = this;
  thread_ = std::this_thread::get_id();
  stop_requested_.store(false);
  stopping_ = false;
  main_done_ = false;
  main_result_.reset();
  if (main != nullptr && main != Py_None) {
    main_greenlet_ = spawn(main, args, kwargs);
    if (main_greenlet_ == nullptr) {
      t_running_hub = nullptr;
      Py_CLEAR(hub_greenlet_);
      return nullptr;
    }
  }
  install_signal_wakeup();

  PyObject* result = api.switch_to(hub_greenlet_, empty_tuple_.get(), nullptr);
  bool hub_finished = greenlet::is_dead(hub_greenlet_);
  restore_signal_wakeup();
  t_running_hub = nullptr;
  Py_CLEAR(hub_greenlet_);
  PyRef main_greenlet(main_greenlet_);
  main_greenlet_ = nullptr;
  if (result == nullptr) return nullptr;
  Py_DECREF(result);
  if (!hub_finished) {
    PyErr_SetString(HubSwitchError,
                    "the greenlet that called Hub.run was switched to while the hub was running");
    return nullptr;
  }
  if (stored_exc_type_ != nullptr) {
    PyErr_Restore(stored_exc_type_, stored_exc_value_, stored_exc_traceback_);
    stored_exc_type_ = stored_exc_value_ = stored_exc_traceback_ = nullptr;
    return nullptr;
  }
  if (main_result_ &&
      !PyObject_TypeCheck(main_result_.get(), reinterpret_cast<PyTypeObject*>(api.exit_type))) {
    return main_result_.release();
  }
  main_result_.reset();
  Py_RETURN_NONE;
}

void Hub::install_signal_wakeup() {
  if (signal_pipe_[0] < 0 &&
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, signal_pipe_) < 0) {
    signal_pipe_[0] = signal_pipe_[1] = -1;
    return;
  }
  PyRef signal_module(PyImport_ImportModule("signal"));
  if (!signal_module) {
    PyErr_Clear();
    return;
  }
  PyRef setter(PyObject_GetAttrString(signal_module.get(), "set_wakeup_fd"));
  PyRef args(Py_BuildValue("(i)", signal_pipe_[1]));
  PyRef kwargs(Py_BuildValue("{s:O}", "warn_on_full_buffer", Py_False));
  PyRef previous;
  if (setter && args && kwargs)
    previous = PyRef(PyObject_Call(setter.get(), args.get(), kwargs.get()));
  if (!previous) {
    PyErr_Clear();  // not the main thread: Python runs no signal handlers here anyway
    return;
  }
  previous_wakeup_fd_ = std::move(previous);
  arm_signal_wakeup();
}

void Hub::restore_signal_wakeup() {
  if (!previous_wakeup_fd_) return;
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyRef signal_module(PyImport_ImportModule("signal"));
  PyRef restored;
  if (signal_module) {
    restored = PyRef(
        PyObject_CallMethod(signal_module.get(), "set_wakeup_fd", "O", previous_wakeup_fd_.get()));
  }
  if (!restored) PyErr_Clear();
  previous_wakeup_fd_.reset();
  PyErr_Restore(type, value, traceback);
}

void Hub::arm_signal_wakeup() {
  if (signal_pipe_[0] < 0 || signal_token_ != 0) return;
  signal_token_ = reserve_handler_slot(signal_handler_.get());
  backend_->recv(signal_pipe_[0], signal_drain_, sizeof(signal_drain_), signal_token_);
}

size_t Hub::pending() const noexcept {
  return slots_in_use_ - (signal_token_ != 0 ? 1 : 0);
}

int Hub::set_heartbeat(PyObject* buffer, double interval) {
  if (heartbeat_enabled_) {
    PyBuffer_Release(&heartbeat_view_);
    heartbeat_enabled_ = false;
  }
  if (buffer == nullptr || buffer == Py_None) return 0;
  if (!(interval > 0) || interval > 3600) {
    PyErr_SetString(PyExc_ValueError, "heartbeat interval must be in (0, 3600] seconds");
    return -1;
  }
  if (PyObject_GetBuffer(buffer, &heartbeat_view_, PyBUF_WRITABLE) < 0) return -1;
  if (heartbeat_view_.len < static_cast<Py_ssize_t>(kHeartbeatCellSize) ||
      reinterpret_cast<uintptr_t>(heartbeat_view_.buf) % alignof(uint64_t) != 0) {
    PyBuffer_Release(&heartbeat_view_);
    PyErr_Format(PyExc_ValueError, "heartbeat buffer must be 8-byte aligned, %zu bytes or more",
                 kHeartbeatCellSize);
    return -1;
  }
  heartbeat_enabled_ = true;
  heartbeat_interval_ns_ = static_cast<int64_t>(interval * 1e9);
  beat();
  return 0;
}

void Hub::beat() noexcept {
  auto* words = static_cast<uint64_t*>(heartbeat_view_.buf);
  __atomic_store_n(&words[0], ++heartbeat_count_, __ATOMIC_RELAXED);
  __atomic_store_n(&words[1], static_cast<uint64_t>(core::monotonic_ns()), __ATOMIC_RELEASE);
}

void Hub::store_exception() {
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  if (stored_exc_type_ == nullptr) {
    stored_exc_type_ = type;
    stored_exc_value_ = value;
    stored_exc_traceback_ = traceback;
  } else {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
  }
  stopping_ = true;
}

PyObject* Hub::error_handler() noexcept {
  return configuration.error_handler.get();
}

void Hub::check_signals() {
  if (PyErr_CheckSignals() < 0) store_exception();
}

PyObject* Hub::loop() {
  while (!stopping_) {
    run_ready();
    run_timer_wakeups();
    if (stopping_ || stop_requested_.load(std::memory_order_acquire)) break;

    int64_t timeout_ns = -1;
    if (!ready_.empty() || !timer_ready_.empty()) {
      timeout_ns = 0;
    } else if (auto deadline = timers_.next_deadline()) {
      timeout_ns = std::max<int64_t>(0, *deadline - core::monotonic_ns());
    }
    if (heartbeat_enabled_) {
      beat();
      if (timeout_ns < 0 || timeout_ns > heartbeat_interval_ns_)
        timeout_ns = heartbeat_interval_ns_;
    }
    if (!poll_io(timeout_ns)) break;
    expire_timers();
    check_signals();
  }
  stopping_ = true;
  shutdown_waiters();
  drain_orphans();
  Py_RETURN_NONE;
}

void Hub::run_ready() {
  for (size_t count = ready_.size(); count > 0 && !stopping_; --count) {
    ReadyEntry entry = ready_.front();
    ready_.pop_front();
    dispatch_ready(entry);
  }
}

void Hub::run_timer_wakeups() {
  // Between wake-ups, I/O is polled and what it readied runs first: requests that arrived during
  // a long run of wake-ups start now instead of queuing behind all of them. (Left to queue, they
  // would start back to back, their own timers would then fall due together, and the bunching
  // would repeat every round: measured with 512 connections sleeping 10 ms each, that cost a
  // quarter of the throughput.)
  size_t since_poll = 0;
  for (size_t count = timer_ready_.size(); count > 0 && !stopping_; --count) {
    ReadyEntry entry = timer_ready_.front();
    timer_ready_.pop_front();
    dispatch_ready(entry);
    if (++since_poll == kWakeupsPerPoll && count > 1 && !stopping_) {
      since_poll = 0;
      if (!poll_io(0)) return;
      run_ready();
    }
  }
}

bool Hub::poll_io(int64_t timeout_ns) {
  completions_.clear();
  bool failed = false;
  std::string failure;
  Py_BEGIN_ALLOW_THREADS;
  try {
    backend_->wait(timeout_ns, completions_);
  } catch (const std::exception& error) {
    failed = true;
    failure = error.what();
  }
  Py_END_ALLOW_THREADS;
  if (failed) {
    PyErr_Format(PyExc_OSError, "hub backend failed: %s", failure.c_str());
    store_exception();
    return false;
  }
  for (const core::Completion& completion : completions_) handle_completion(completion);
  return true;
}

void Hub::dispatch_ready(ReadyEntry& entry) {
  PyRef target(entry.greenlet);
  PyRef first(entry.first);
  PyRef second(entry.second);
  PyObject* result = nullptr;
  switch (entry.kind) {
    case ReadyEntry::Kind::start:
      result = api.switch_to(target.get(), first.get(), second.get());
      break;
    case ReadyEntry::Kind::resume: {
      Slot* slot = lookup(entry.token);
      if (slot == nullptr || slot->state != SlotState::waiting || !slot->completed ||
          slot->waiter != target.get()) {
        return;  // stale: the greenlet was killed or moved on meanwhile
      }
      result = api.switch_to(target.get(), empty_tuple_.get(), nullptr);
      break;
    }
    case ReadyEntry::Kind::value:
      if (greenlet::is_dead(target.get())) return;
      result = api.switch_to(target.get(), first.get(), nullptr);
      break;
    case ReadyEntry::Kind::raise: {
      if (greenlet::is_dead(target.get())) return;
      PyObject* exception = first.get();
      if (PyExceptionInstance_Check(exception)) {
        result = api.throw_into(target.get(), reinterpret_cast<PyObject*>(Py_TYPE(exception)),
                                exception, nullptr);
      } else {
        result = api.throw_into(target.get(), exception, nullptr, nullptr);
      }
      break;
    }
  }
  after_switch(target.get(), result);
}

void Hub::after_switch(PyObject* target, PyObject* result) {
  (void)target;
  if (main_greenlet_ != nullptr && !main_done_ && greenlet::is_dead(main_greenlet_)) {
    main_done_ = true;
    stopping_ = true;
    if (result != nullptr) {
      main_result_ = PyRef(result);
    } else {
      store_exception();
    }
    return;
  }
  if (result != nullptr) {
    Py_DECREF(result);
    return;
  }
  if (PyErr_ExceptionMatches(api.exit_type)) {
    PyErr_Clear();
  } else if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
             PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
    store_exception();
  } else {
    report_greenlet_error();
  }
}

void Hub::report_greenlet_error() {
  PyObject* type;
  PyObject* value;
  PyObject* traceback;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (traceback != nullptr && value != nullptr) PyException_SetTraceback(value, traceback);
  PyRef owned_type(type), owned_value(value), owned_traceback(traceback);
  if (value == nullptr) return;
  PyObject* handler = error_handler();
  if (handler == nullptr) {
    PyRef arguments(Py_BuildValue("(s)", "Unhandled exception in a greenlet"));
    log_exception(arguments.get(), value);
    return;
  }
  PyRef call(PyObject_CallOneArg(handler, value));
  if (!call) print_exception(value);
}

void Hub::handle_completion(const core::Completion& completion) {
  Slot* slot = lookup(completion.token);
  if (slot == nullptr) {
    if (completion.buffer >= 0) backend_->release_buffer(completion.buffer);
    return;
  }
  const uint32_t index = static_cast<uint32_t>(completion.token);
  if (slot->kind == OpKind::handler_op) {
    CompletionHandler* handler = slot->handler;
    if (!completion.more) free_slot(index);
    handler->on_completion(completion);
    return;
  }
  if (slot->state == SlotState::orphaned) {
    if (completion.buffer >= 0) backend_->release_buffer(completion.buffer);
    if (slot->kind == OpKind::accept && completion.result >= 0) ::close(completion.result);
    if (!completion.more) free_slot(index);
    return;
  }
  if (completion.more) return;  // greenlet operations are single-shot
  slot->kernel_op = false;
  slot->result = completion.result;
  slot->completed = true;
  finish_slot_waiter(index, *slot);
}

void Hub::finish_slot_waiter(uint32_t index, Slot& slot, bool timer_expired) {
  if (slot.timer != core::kNoTimer) {
    timers_.remove(slot.timer);
    slot.timer = core::kNoTimer;
  }
  if (slot.waiter == nullptr) return;
  (timer_expired ? timer_ready_ : ready_)
      .push_back({ReadyEntry::Kind::resume, Py_NewRef(slot.waiter), nullptr, nullptr,
                  make_token(index, slot.generation)});
}

void Hub::expire_timers() {
  if (timers_.empty()) return;
  const int64_t now = core::monotonic_ns();
  while (auto token = timers_.pop_next_expired(now)) {
    Slot* slot = lookup(*token);
    if (slot == nullptr) continue;
    const uint32_t index = static_cast<uint32_t>(*token);
    slot->timer = core::kNoTimer;
    switch (slot->kind) {
      case OpKind::handler_timer: {
        CompletionHandler* handler = slot->handler;
        free_slot(index);
        handler->on_completion(core::Completion{*token, -ETIME, false, -1});
        break;
      }
      case OpKind::timer:
      case OpKind::event:
        if (slot->state != SlotState::waiting || slot->completed) break;
        slot->completed = true;
        slot->timed_out = true;
        finish_slot_waiter(index, *slot, true);
        break;
      default:
        // A kernel operation ran out of time: cancel it and resume its greenlet from the final
        // completion, which carries the data if the operation won the race.
        slot->timed_out = true;
        if (slot->kernel_op && !slot->cancel_requested) {
          slot->cancel_requested = true;
          backend_->cancel(*token);
        }
        break;
    }
  }
}

void Hub::shutdown_waiters() {
  // Greenlets queued but not yet started never run; greenlets waiting on an operation or queued
  // for a resume receive GreenletExit. Rounds are bounded: a greenlet that keeps blocking while
  // handling GreenletExit is abandoned after a few.
  for (int round = 0; round < 4; ++round) {
    std::vector<PyObject*> victims;
    ready_.insert(ready_.end(), timer_ready_.begin(), timer_ready_.end());
    timer_ready_.clear();
    while (!ready_.empty()) {
      ReadyEntry entry = ready_.front();
      ready_.pop_front();
      if (entry.kind != ReadyEntry::Kind::start && !greenlet::is_dead(entry.greenlet)) {
        victims.push_back(Py_NewRef(entry.greenlet));
      }
      Py_XDECREF(entry.greenlet);
      Py_XDECREF(entry.first);
      Py_XDECREF(entry.second);
    }
    for (size_t block = 0; block < blocks_.size(); ++block) {
      for (uint32_t offset = 0; offset < kBlockSize; ++offset) {
        Slot& slot = blocks_[block][offset];
        if (slot.state == SlotState::waiting && slot.waiter != nullptr) {
          victims.push_back(Py_NewRef(slot.waiter));
        }
      }
    }
    if (victims.empty()) return;
    for (PyObject* victim : victims) {
      if (!greenlet::is_dead(victim)) {
        PyObject* result = api.throw_into(victim, api.exit_type, nullptr, nullptr);
        after_switch(victim, result);
      }
      Py_DECREF(victim);
    }
  }
}

void Hub::drain_orphans() {
  // Cancel what the kernel still holds and wait (bounded) for it to let go of the buffers.
  for (size_t block = 0; block < blocks_.size(); ++block) {
    for (uint32_t offset = 0; offset < kBlockSize; ++offset) {
      Slot& slot = blocks_[block][offset];
      uint32_t index = static_cast<uint32_t>(block * kBlockSize + offset);
      if (slot.state == SlotState::free) continue;
      if (slot.kind == OpKind::handler_timer || slot.kind == OpKind::timer ||
          slot.kind == OpKind::event) {
        if (slot.waiter == nullptr) free_slot(index);
        continue;
      }
      if (slot.kernel_op && !slot.cancel_requested) {
        slot.cancel_requested = true;
        backend_->cancel(make_token(index, slot.generation));
      }
    }
  }
  const int64_t deadline = core::monotonic_ns() + 2'000'000'000;
  while (slots_in_use_ > 0 && core::monotonic_ns() < deadline) {
    completions_.clear();
    try {
      backend_->wait(50'000'000, completions_);
    } catch (const std::exception&) {
      break;
    }
    for (const core::Completion& completion : completions_) {
      Slot* slot = lookup(completion.token);
      if (slot != nullptr && slot->kind != OpKind::handler_op) {
        slot->state = SlotState::orphaned;  // nobody is resumed any more
        Py_CLEAR(slot->waiter);
      }
      handle_completion(completion);
    }
  }
  signal_token_ = 0;
  // timer_ready_ is empty here: shutdown_waiters moved it into ready_, and only expire_timers,
  // which no longer runs, fills it.
  while (!ready_.empty()) {
    ReadyEntry entry = ready_.front();
    ready_.pop_front();
    Py_XDECREF(entry.greenlet);
    Py_XDECREF(entry.first);
    Py_XDECREF(entry.second);
  }
}

}  // namespace tf::py
