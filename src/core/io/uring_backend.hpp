// The io_uring implementation of Backend (see backend.hpp for the shared contract).
//
// Behaviour worth knowing beyond the shared contract:
//  - The ring is created with IORING_SETUP_SINGLE_ISSUER (and DEFER_TASKRUN where the kernel has
//    it): build the backend on the thread that will call its methods, and never use it in a
//    process forked after it was built.
//  - wait() returns early when a signal interrupts it, possibly with 0 completions, so that the
//    caller can run its signal handlers.
//  - A multishot accept or receive may end with a final completion that carries no error (for
//    example when the kernel could not post more completions); the caller queues it again.
//  - A completion whose `buffer` is not -1 holds a provided buffer that must be released with
//    release_buffer(), even when `result` is 0 (on kernel 6.18 end of stream carries none).
//  - Operations hold a reference on their file: close(fd) alone does not end them (the socket
//    stays open until they complete). cancel_fd() therefore submits at once, while fd is open.
//  - O_NONBLOCK on a socket does not matter: recv / accept / sendmsg wait for readiness inside
//    the kernel and never complete with -EAGAIN (checked on 6.18), unless MSG_DONTWAIT is passed.
//  - Nothing is submitted before wait() (or a full SQ, or cancel_fd()): queueing is syscall-free.
#pragma once

#include <memory>

#include "core/io/backend.hpp"

namespace tf::core {

// Sets up an io_uring backend. Throws std::system_error when the kernel refuses the ring or the
// provided-buffer ring (the error code is the kernel's, e.g. ENOSYS or EPERM), and
// std::system_error(EINVAL) when options.buffer_count is not a power of two up to 32768.
std::unique_ptr<Backend> make_uring_backend(const BackendOptions& options);

}  // namespace tf::core
