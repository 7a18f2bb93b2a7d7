// The Python face of the hub: the Hub type, the exceptions and the green I/O functions of
// theframework._core (documented in theframework/_core.pyi).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <system_error>
#include <vector>

#include "python/configuration.hpp"
#include "python/greenlet_api.hpp"
#include "python/hub.hpp"

namespace tf::py {

PyObject* HubError = nullptr;
PyObject* NoHubError = nullptr;
PyObject* HubSwitchError = nullptr;
PyObject* BackendUnavailableError = nullptr;

double timeout_from_object(PyObject* object) {
  if (object == nullptr || object == Py_None) return -1;
  double seconds = PyFloat_AsDouble(object);
  if (seconds == -1.0 && PyErr_Occurred()) return -2;
  if (std::isnan(seconds) || seconds < 0) {
    PyErr_SetString(PyExc_ValueError, "timeout must be a non-negative number or None");
    return -2;
  }
  return seconds;
}

namespace {

// Collects positional and keyword arguments by name into `out` (borrowed references; null when
// absent). Returns false with TypeError set.
bool parse_arguments(const char* function, PyObject* const* args, Py_ssize_t nargs,
                     PyObject* kwnames, std::initializer_list<const char*> names, size_t required,
                     PyObject** out) {
  const size_t total = names.size();
  if (static_cast<size_t>(nargs) > total) {
    PyErr_Format(PyExc_TypeError, "%s() takes at most %zu arguments (%zd given)", function, total,
                 nargs);
    return false;
  }
  for (size_t i = 0; i < total; ++i) out[i] = i < static_cast<size_t>(nargs) ? args[i] : nullptr;
  if (kwnames != nullptr) {
    Py_ssize_t keyword_count = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < keyword_count; ++k) {
      const char* keyword = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
      if (keyword == nullptr) return false;
      size_t position = 0;
      for (const char* name : names) {
        if (std::strcmp(name, keyword) == 0) break;
        ++position;
      }
      if (position == total) {
        PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'", function,
                     keyword);
        return false;
      }
      if (out[position] != nullptr) {
        PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", function,
                     keyword);
        return false;
      }
      out[position] = args[nargs + k];
    }
  }
  for (size_t i = 0; i < required; ++i) {
    if (out[i] == nullptr) {
      PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", function,
                   names.begin()[i]);
      return false;
    }
  }
  return true;
}

bool fd_from_object(PyObject* object, int& fd) {
  long value = PyLong_AsLong(object);
  if (value == -1 && PyErr_Occurred()) return false;
  if (value < 0 || value > INT32_MAX) {
    PyErr_SetString(PyExc_ValueError, "file descriptor must be a non-negative int");
    return false;
  }
  fd = static_cast<int>(value);
  return true;
}

PyObject* address_to_python(const sockaddr_storage& address, socklen_t length) {
  char host[INET6_ADDRSTRLEN] = {};
  switch (address.ss_family) {
    case AF_INET: {
      const auto& in = reinterpret_cast<const sockaddr_in&>(address);
      inet_ntop(AF_INET, &in.sin_addr, host, sizeof(host));
      return Py_BuildValue("(si)", host, ntohs(in.sin_port));
    }
    case AF_INET6: {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
      inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof(host));
      return Py_BuildValue("(siII)", host, ntohs(in6.sin6_port), ntohl(in6.sin6_flowinfo),
                           in6.sin6_scope_id);
    }
    case AF_UNIX: {
      const auto& un = reinterpret_cast<const sockaddr_un&>(address);
      size_t path_length =
          length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
      if (path_length > 0 && un.sun_path[0] == '\0') {
        return PyBytes_FromStringAndSize(un.sun_path, static_cast<Py_ssize_t>(path_length));
      }
      return PyUnicode_DecodeFSDefault(
          std::string(un.sun_path, strnlen(un.sun_path, path_length)).c_str());
    }
    default:
      Py_RETURN_NONE;
  }
}

// Builds a sockaddr for `fd`'s family from a Python address. False with an exception set.
bool address_from_python(int fd, PyObject* object, sockaddr_storage& address, socklen_t& length) {
  int family = 0;
  socklen_t option_length = sizeof(family);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &option_length) < 0) {
    PyErr_SetFromErrno(PyExc_OSError);
    return false;
  }
  std::memset(&address, 0, sizeof(address));
  if (family == AF_UNIX) {
    auto& un = reinterpret_cast<sockaddr_un&>(address);
    un.sun_family = AF_UNIX;
    PyObject* encoded = nullptr;
    if (PyBytes_Check(object)) {
      encoded = Py_NewRef(object);
    } else if (!PyUnicode_FSConverter(object, &encoded)) {
      return false;
    }
    PyRef owned(encoded);
    Py_ssize_t size = PyBytes_GET_SIZE(encoded);
    if (static_cast<size_t>(size) >= sizeof(un.sun_path)) {
      PyErr_SetString(PyExc_OSError, "AF_UNIX path too long");
      return false;
    }
    std::memcpy(un.sun_path, PyBytes_AS_STRING(encoded), static_cast<size_t>(size));
    length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + size +
                                    (size > 0 && un.sun_path[0] == '\0' ? 0 : 1));
    return true;
  }
  if (family != AF_INET && family != AF_INET6) {
    PyErr_Format(PyExc_OSError, "connect: unsupported address family %d", family);
    return false;
  }
  if (!PyTuple_Check(object) || PyTuple_GET_SIZE(object) < 2) {
    PyErr_SetString(PyExc_TypeError, "address must be a (host, port) tuple");
    return false;
  }
  const char* host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(object, 0));
  if (host == nullptr) return false;
  long port = PyLong_AsLong(PyTuple_GET_ITEM(object, 1));
  if (port == -1 && PyErr_Occurred()) return false;
  if (port < 0 || port > 65535) {
    PyErr_SetString(PyExc_OverflowError, "port must be 0-65535");
    return false;
  }
  std::string host_text = host;
  if (host_text == "localhost") host_text = family == AF_INET ? "127.0.0.1" : "::1";
  if (host_text.empty()) host_text = family == AF_INET ? "0.0.0.0" : "::";
  if (family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(address);
    in.sin_family = AF_INET;
    in.sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host_text.c_str(), &in.sin_addr) != 1) {
      PyErr_Format(PyExc_ValueError, "host must be a numeric IPv4 address, got %R",
                   PyTuple_GET_ITEM(object, 0));
      return false;
    }
    length = sizeof(sockaddr_in);
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(address);
    in6.sin6_family = AF_INET6;
    in6.sin6_port = htons(static_cast<uint16_t>(port));
    if (PyTuple_GET_SIZE(object) >= 3) {
      in6.sin6_flowinfo =
          htonl(static_cast<uint32_t>(PyLong_AsUnsignedLong(PyTuple_GET_ITEM(object, 2))));
    }
    if (PyTuple_GET_SIZE(object) >= 4) {
      in6.sin6_scope_id = static_cast<uint32_t>(PyLong_AsUnsignedLong(PyTuple_GET_ITEM(object, 3)));
    }
    if (PyErr_Occurred()) return false;
    if (inet_pton(AF_INET6, host_text.c_str(), &in6.sin6_addr) != 1) {
      PyErr_Format(PyExc_ValueError, "host must be a numeric IPv6 address, got %R",
                   PyTuple_GET_ITEM(object, 0));
      return false;
    }
    length = sizeof(sockaddr_in6);
  }
  return true;
}

// Exports every buffer of `data` (one bytes-like object or a sequence of them).
bool collect_views(PyObject* data, std::vector<Py_buffer>& views) {
  auto release_all = [&views] {
    for (Py_buffer& view : views) PyBuffer_Release(&view);
    views.clear();
  };
  if (PyObject_CheckBuffer(data)) {
    views.emplace_back();
    if (PyObject_GetBuffer(data, &views.back(), PyBUF_SIMPLE) < 0) {
      views.pop_back();
      return false;
    }
    return true;
  }
  PyRef sequence(PySequence_Fast(data, "data must be a bytes-like object or a sequence of them"));
  if (!sequence) return false;
  Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence.get());
  views.reserve(static_cast<size_t>(count));
  for (Py_ssize_t i = 0; i < count; ++i) {
    views.emplace_back();
    if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(sequence.get(), i), &views.back(),
                           PyBUF_SIMPLE) < 0) {
      views.pop_back();
      release_all();
      return false;
    }
  }
  return true;
}

void release_views(std::vector<Py_buffer>& views) {
  for (Py_buffer& view : views) PyBuffer_Release(&view);
  views.clear();
}

// ---------------------------------------------------------------------------------------------
// Module functions

// The hub running in this thread, or null with NoHubError naming `function`.
Hub* running_hub(const char* function) {
  Hub* hub = Hub::current();
  if (hub == nullptr) PyErr_Format(NoHubError, "%s needs a hub running in this thread", function);
  return hub;
}

PyObject* get_hub(PyObject*, PyObject*) {
  Hub* hub = Hub::current();
  if (hub == nullptr || hub->python_object == nullptr) Py_RETURN_NONE;
  return Py_NewRef(hub->python_object);
}

PyObject* in_hub(PyObject*, PyObject*) {
  Hub* hub = Hub::current();
  if (hub == nullptr) Py_RETURN_FALSE;
  PyObject* hub_object = Hub::for_blocking_call() ? Py_True : Py_False;
  PyErr_Clear();
  return Py_NewRef(hub_object);
}

PyObject* pending(PyObject*, PyObject*) {
  Hub* hub = Hub::current();
  return PyLong_FromSize_t(hub ? hub->pending() : 0);
}

PyObject* spawn(PyObject*, PyObject* args, PyObject* kwargs) {
  Py_ssize_t count = PyTuple_GET_SIZE(args);
  if (count < 1) {
    PyErr_SetString(PyExc_TypeError, "spawn() needs a callable");
    return nullptr;
  }
  Hub* hub = running_hub("spawn");
  if (hub == nullptr) return nullptr;
  PyRef rest(PyTuple_GetSlice(args, 1, count));
  if (!rest) return nullptr;
  return hub->spawn(PyTuple_GET_ITEM(args, 0), rest.get(), kwargs);
}

PyObject* schedule(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (!parse_arguments("schedule", args, nargs, kwnames, {"greenlet", "value"}, 1, parsed)) {
    return nullptr;
  }
  Hub* hub = running_hub("schedule");
  if (hub == nullptr || hub->schedule(parsed[0], parsed[1]) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* kill(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  if (!parse_arguments("kill", args, nargs, kwnames, {"greenlet", "exception"}, 1, parsed)) {
    return nullptr;
  }
  Hub* hub = running_hub("kill");
  if (hub == nullptr || hub->kill(parsed[0], parsed[1]) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* sleep(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[1];
  if (!parse_arguments("sleep", args, nargs, kwnames, {"seconds"}, 0, parsed)) return nullptr;
  double seconds = parsed[0] ? timeout_from_object(parsed[0]) : 0;
  if (seconds == -2) return nullptr;
  if (seconds < 0) seconds = 0;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr || hub->sleep(seconds) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* accept(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[2];
  int fd;
  if (!parse_arguments("accept", args, nargs, kwnames, {"fd", "timeout"}, 1, parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[1]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  sockaddr_storage address{};
  socklen_t length = 0;
  int client = hub->accept(fd, timeout, address, length);
  if (client < 0) return nullptr;
  PyObject* peer = address_to_python(address, length);
  if (peer == nullptr) {
    ::close(client);
    return nullptr;
  }
  return Py_BuildValue("(iN)", client, peer);
}

PyObject* recv(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[3];
  int fd;
  if (!parse_arguments("recv", args, nargs, kwnames, {"fd", "size", "timeout"}, 2, parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  Py_ssize_t size = PyLong_AsSsize_t(parsed[1]);
  if (size == -1 && PyErr_Occurred()) return nullptr;
  if (size < 0) {
    PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[2]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  PyObject* data = PyBytes_FromStringAndSize(nullptr, size);
  if (data == nullptr) return nullptr;
  Py_ssize_t received =
      hub->recv(fd, PyBytes_AS_STRING(data), static_cast<size_t>(size), data, nullptr, timeout);
  if (received < 0) {
    Py_DECREF(data);
    return nullptr;
  }
  if (received != size && _PyBytes_Resize(&data, received) < 0) return nullptr;
  return data;
}

PyObject* recv_into(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[4];
  int fd;
  if (!parse_arguments("recv_into", args, nargs, kwnames, {"fd", "buffer", "nbytes", "timeout"}, 2,
                       parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  Py_ssize_t nbytes = 0;
  if (parsed[2] != nullptr) {
    nbytes = PyLong_AsSsize_t(parsed[2]);
    if (nbytes == -1 && PyErr_Occurred()) return nullptr;
    if (nbytes < 0) {
      PyErr_SetString(PyExc_ValueError, "negative buffersize in recv_into");
      return nullptr;
    }
  }
  double timeout = timeout_from_object(parsed[3]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  Py_buffer view;
  if (PyObject_GetBuffer(parsed[1], &view, PyBUF_WRITABLE) < 0) return nullptr;
  if (nbytes == 0) nbytes = view.len;
  if (nbytes > view.len) {
    PyBuffer_Release(&view);
    PyErr_SetString(PyExc_ValueError, "buffer too small for requested bytes");
    return nullptr;
  }
  Py_ssize_t received =
      hub->recv(fd, view.buf, static_cast<size_t>(nbytes), nullptr, &view, timeout);
  if (received < 0) return nullptr;
  return PyLong_FromSsize_t(received);
}

PyObject* send_impl(const char* name, bool all, PyObject* const* args, Py_ssize_t nargs,
                    PyObject* kwnames) {
  PyObject* parsed[3];
  int fd;
  if (!parse_arguments(name, args, nargs, kwnames, {"fd", "data", "timeout"}, 2, parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[2]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  std::vector<Py_buffer> views;
  if (!collect_views(parsed[1], views)) return nullptr;
  size_t total = 0;
  for (const Py_buffer& view : views) total += static_cast<size_t>(view.len);
  const int64_t deadline =
      timeout >= 0 ? core::monotonic_ns() + static_cast<int64_t>(timeout * 1e9) : -1;
  size_t done = 0;
  do {
    double remaining = -1;
    if (deadline >= 0) remaining = std::max<double>(0, (deadline - core::monotonic_ns()) / 1e9);
    Py_ssize_t sent = hub->send(fd, views, done, remaining);
    if (sent < 0) {
      release_views(views);
      return nullptr;
    }
    done += static_cast<size_t>(sent);
    if (!all) break;
  } while (done < total);
  release_views(views);
  if (all) Py_RETURN_NONE;
  return PyLong_FromSize_t(done);
}

PyObject* send(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return send_impl("send", false, args, nargs, kwnames);
}

PyObject* sendall(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return send_impl("sendall", true, args, nargs, kwnames);
}

PyObject* connect(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[3];
  int fd;
  if (!parse_arguments("connect", args, nargs, kwnames, {"fd", "address", "timeout"}, 2, parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[2]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  sockaddr_storage address;
  socklen_t length = 0;
  if (!address_from_python(fd, parsed[1], address, length)) return nullptr;
  if (hub->connect(fd, reinterpret_cast<sockaddr*>(&address), length, timeout) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* wait_one(const char* name, uint32_t events, PyObject* const* args, Py_ssize_t nargs,
                   PyObject* kwnames) {
  PyObject* parsed[2];
  int fd;
  if (!parse_arguments(name, args, nargs, kwnames, {"fd", "timeout"}, 1, parsed) ||
      !fd_from_object(parsed[0], fd)) {
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[1]);
  if (timeout == -2) return nullptr;
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr || hub->poll(fd, events, timeout) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* wait_readable(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return wait_one("wait_readable", POLLIN, args, nargs, kwnames);
}

PyObject* wait_writable(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  return wait_one("wait_writable", POLLOUT, args, nargs, kwnames);
}

bool add_fds(PyObject* iterable, uint32_t events, std::vector<int>& fds,
             std::vector<uint32_t>& masks) {
  if (iterable == nullptr) return true;
  PyRef iterator(PyObject_GetIter(iterable));
  if (!iterator) return false;
  while (PyRef item{PyIter_Next(iterator.get())}) {
    int fd;
    if (!fd_from_object(item.get(), fd)) return false;
    size_t i = 0;
    while (i < fds.size() && fds[i] != fd) ++i;
    if (i == fds.size()) {
      fds.push_back(fd);
      masks.push_back(events);
    } else {
      masks[i] |= events;
    }
  }
  return !PyErr_Occurred();
}

PyObject* wait_fds(PyObject*, PyObject* const* args, Py_ssize_t nargs, PyObject* kwnames) {
  PyObject* parsed[3];
  if (!parse_arguments("wait_fds", args, nargs, kwnames, {"read", "write", "timeout"}, 0, parsed)) {
    return nullptr;
  }
  double timeout = timeout_from_object(parsed[2]);
  if (timeout == -2) return nullptr;
  std::vector<int> fds;
  std::vector<uint32_t> masks;
  if (!add_fds(parsed[0], POLLIN, fds, masks) || !add_fds(parsed[1], POLLOUT, fds, masks)) {
    return nullptr;
  }
  Hub* hub = Hub::for_blocking_call();
  if (hub == nullptr) return nullptr;
  std::vector<uint32_t> revents;
  if (fds.empty()) {
    if (hub->sleep(timeout < 0 ? 0 : timeout) < 0) return nullptr;
  } else if (hub->poll_many(fds, masks, revents, timeout) < 0) {
    return nullptr;
  }
  PyRef readable(PyList_New(0));
  PyRef writable(PyList_New(0));
  if (!readable || !writable) return nullptr;
  for (size_t i = 0; i < revents.size(); ++i) {
    const uint32_t ready = revents[i];
    const uint32_t failed = ready & (POLLERR | POLLHUP | POLLNVAL);
    if ((masks[i] & POLLIN) && (ready & POLLIN || failed)) {
      PyRef fd(PyLong_FromLong(fds[i]));
      if (!fd || PyList_Append(readable.get(), fd.get()) < 0) return nullptr;
    }
    if ((masks[i] & POLLOUT) && (ready & POLLOUT || failed)) {
      PyRef fd(PyLong_FromLong(fds[i]));
      if (!fd || PyList_Append(writable.get(), fd.get()) < 0) return nullptr;
    }
  }
  return PyTuple_Pack(2, readable.get(), writable.get());
}

PyObject* close_fd(PyObject*, PyObject* fd_object) {
  int fd;
  if (!fd_from_object(fd_object, fd)) return nullptr;
  Hub* hub = Hub::current();
  int result = 0;
  if (hub != nullptr) {
    result = hub->close_fd(fd);
  } else if (::close(fd) < 0 && errno != EINTR) {
    result = -errno;
  }
  if (result < 0) {
    errno = -result;
    return PyErr_SetFromErrno(PyExc_OSError);
  }
  Py_RETURN_NONE;
}

// ---------------------------------------------------------------------------------------------
// The Hub type

struct HubObject {
  PyObject_HEAD Hub* hub;
};

PyObject* hub_new(PyTypeObject* type, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"backend", "entries", nullptr};
  const char* backend_name = nullptr;
  unsigned int entries = 256;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|z$I", const_cast<char**>(keywords),
                                   &backend_name, &entries)) {
    return nullptr;
  }
  if (backend_name == nullptr) backend_name = std::getenv("THEFRAMEWORK_BACKEND");
  core::BackendChoice choice = core::BackendChoice::automatic;
  if (backend_name != nullptr && !core::parse_backend_choice(backend_name, choice)) {
    PyErr_Format(PyExc_ValueError, "unknown backend %s (expected auto, io_uring or epoll)",
                 backend_name);
    return nullptr;
  }
  if (entries < 4 || entries > 32768) {
    PyErr_SetString(PyExc_ValueError, "entries must be between 4 and 32768");
    return nullptr;
  }
  PyRef self(type->tp_alloc(type, 0));
  if (!self) return nullptr;
  auto* object = reinterpret_cast<HubObject*>(self.get());
  try {
    object->hub = new Hub(choice, entries);
  } catch (const std::system_error& error) {
    PyRef arguments(Py_BuildValue("(is)", error.code().value(), error.what()));
    if (arguments) PyErr_SetObject(BackendUnavailableError, arguments.get());
    return nullptr;
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
  object->hub->python_object = self.get();
  return self.release();
}

void hub_dealloc(PyObject* self) {
  auto* object = reinterpret_cast<HubObject*>(self);
  delete object->hub;
  Py_TYPE(self)->tp_free(self);
}

PyObject* hub_run(PyObject* self, PyObject* args, PyObject* kwargs) {
  Hub* hub = reinterpret_cast<HubObject*>(self)->hub;
  Py_ssize_t count = PyTuple_GET_SIZE(args);
  PyObject* main = count > 0 ? PyTuple_GET_ITEM(args, 0) : nullptr;
  PyRef rest(PyTuple_GetSlice(args, count > 0 ? 1 : 0, count));
  if (!rest) return nullptr;
  if (main == nullptr && kwargs != nullptr && PyDict_GET_SIZE(kwargs) > 0) {
    PyErr_SetString(PyExc_TypeError, "Hub.run() takes keyword arguments only with a main function");
    return nullptr;
  }
  return hub->run(main, rest.get(), kwargs);
}

PyObject* hub_stop(PyObject* self, PyObject*) {
  reinterpret_cast<HubObject*>(self)->hub->request_stop();
  Py_RETURN_NONE;
}

PyObject* hub_set_heartbeat(PyObject* self, PyObject* args, PyObject* kwargs) {
  static const char* keywords[] = {"buffer", "interval", nullptr};
  PyObject* buffer = nullptr;
  double interval = 1.0;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|d", const_cast<char**>(keywords), &buffer,
                                   &interval)) {
    return nullptr;
  }
  if (reinterpret_cast<HubObject*>(self)->hub->set_heartbeat(buffer, interval) < 0) return nullptr;
  Py_RETURN_NONE;
}

PyObject* hub_get_backend(PyObject* self, void*) {
  return PyUnicode_FromString(
      core::backend_name(reinterpret_cast<HubObject*>(self)->hub->backend().kind()));
}

PyObject* hub_get_fallback_reason(PyObject* self, void*) {
  const std::string& reason = reinterpret_cast<HubObject*>(self)->hub->fallback_reason();
  if (reason.empty()) Py_RETURN_NONE;
  return PyUnicode_FromStringAndSize(reason.data(), static_cast<Py_ssize_t>(reason.size()));
}

PyObject* hub_get_running(PyObject* self, void*) {
  return PyBool_FromLong(reinterpret_cast<HubObject*>(self)->hub->running());
}

PyObject* hub_get_pending(PyObject* self, void*) {
  return PyLong_FromSize_t(reinterpret_cast<HubObject*>(self)->hub->pending());
}

PyMethodDef hub_methods[] = {
    {"run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&hub_run)),
     METH_VARARGS | METH_KEYWORDS, "Runs the loop (see _core.pyi)."},
    {"stop", &hub_stop, METH_NOARGS, "Makes run() return soon; signal- and thread-safe."},
    {"set_heartbeat",
     reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&hub_set_heartbeat)),
     METH_VARARGS | METH_KEYWORDS, "Writes (count, monotonic ns) into buffer every iteration."},
    {nullptr, nullptr, 0, nullptr},
};

PyGetSetDef hub_getset[] = {
    {"backend", &hub_get_backend, nullptr, "io_uring or epoll", nullptr},
    {"fallback_reason", &hub_get_fallback_reason, nullptr, "why io_uring was not used", nullptr},
    {"running", &hub_get_running, nullptr, "whether run() is active", nullptr},
    {"pending", &hub_get_pending, nullptr, "operations and timers not finished", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr},
};

PyTypeObject HubType = {PyVarObject_HEAD_INIT(nullptr, 0)};

#define TF_FASTCALL(function)                                             \
  reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&function)), \
      METH_FASTCALL | METH_KEYWORDS

PyMethodDef green_functions[] = {
    {"get_hub", &get_hub, METH_NOARGS, "The hub running in this thread, or None."},
    {"in_hub", &in_hub, METH_NOARGS, "Whether the current greenlet may block on the hub."},
    {"pending", &pending, METH_NOARGS, "Pending operations of the running hub."},
    {"spawn", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&spawn)),
     METH_VARARGS | METH_KEYWORDS, "Starts fn(*args, **kwargs) in a new greenlet."},
    {"schedule", TF_FASTCALL(schedule), "Queues a greenlet to be switched to."},
    {"kill", TF_FASTCALL(kill), "Throws an exception into a greenlet from the hub."},
    {"sleep", TF_FASTCALL(sleep), "Suspends the current greenlet."},
    {"accept", TF_FASTCALL(accept), "Accepts a connection."},
    {"recv", TF_FASTCALL(recv), "Receives bytes."},
    {"recv_into", TF_FASTCALL(recv_into), "Receives into a buffer."},
    {"send", TF_FASTCALL(send), "Sends once."},
    {"sendall", TF_FASTCALL(sendall), "Sends everything."},
    {"connect", TF_FASTCALL(connect), "Connects a socket."},
    {"wait_readable", TF_FASTCALL(wait_readable), "Waits until fd is readable."},
    {"wait_writable", TF_FASTCALL(wait_writable), "Waits until fd is writable."},
    {"wait_fds", TF_FASTCALL(wait_fds), "Waits for any of several fds."},
    {"close", &close_fd, METH_O, "Cancels waiters on fd and closes it."},
    {nullptr, nullptr, 0, nullptr},
};

PyObject* new_exception(PyObject* module, const char* name, PyObject* base, const char* doc) {
  std::string qualified = std::string("theframework._core.") + name;
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, base, nullptr);
  if (type == nullptr) return nullptr;
  if (PyModule_AddObjectRef(module, name, type) < 0) {
    Py_DECREF(type);
    return nullptr;
  }
  return type;
}

}  // namespace

int init_hub(PyObject* module) {
  if (greenlet::import_api() < 0) return -1;
  HubError = new_exception(module, "HubError", PyExc_RuntimeError, "Misuse of the hub.");
  if (HubError == nullptr) return -1;
  NoHubError = new_exception(module, "NoHubError", HubError,
                             "A blocking call was made in a thread where no hub is running.");
  HubSwitchError = new_exception(module, "HubSwitchError", HubError,
                                 "A blocking call from the hub greenlet, or a waiting greenlet "
                                 "resumed by something other than the hub.");
  BackendUnavailableError =
      new_exception(module, "BackendUnavailableError", PyExc_OSError,
                    "The backend that was forced cannot be used on this system.");
  if (!NoHubError || !HubSwitchError || !BackendUnavailableError) return -1;

  HubType.tp_name = "theframework._core.Hub";
  HubType.tp_basicsize = sizeof(HubObject);
  HubType.tp_flags = Py_TPFLAGS_DEFAULT;
  HubType.tp_doc = "The event loop of one thread (see _core.pyi).";
  HubType.tp_new = &hub_new;
  HubType.tp_dealloc = &hub_dealloc;
  HubType.tp_methods = hub_methods;
  HubType.tp_getset = hub_getset;
  if (PyType_Ready(&HubType) < 0) return -1;
  if (PyModule_AddObjectRef(module, "Hub", reinterpret_cast<PyObject*>(&HubType)) < 0) return -1;
  if (PyModule_AddFunctions(module, green_functions) < 0) return -1;
  if (PyModule_AddIntConstant(module, "POLLIN", POLLIN) < 0 ||
      PyModule_AddIntConstant(module, "POLLOUT", POLLOUT) < 0 ||
      PyModule_AddIntConstant(module, "HEARTBEAT_CELL_SIZE",
                              static_cast<long>(kHeartbeatCellSize)) < 0) {
    return -1;
  }
  return 0;
}

}  // namespace tf::py
