// The epoll implementation of Backend (see backend.hpp for the shared contract), for kernels or
// sandboxes where io_uring is unavailable. It emulates io_uring's completion semantics: each
// queued operation first tries its syscall without blocking; what would block waits for
// readiness in a level-triggered epoll set and is retried then.
//
// Behaviour worth knowing beyond the shared contract:
//  - Completions produced without the kernel (an operation that finished when queued, a
//    cancellation) are delivered by the next wait(), which then does not block.
//  - wait() returns early when a signal interrupts it, possibly with 0 completions. An io_uring
//    torn down in the same process interrupts it that way too (task-work notification).
//  - Queueing may run the syscall right away (the fast path), never blocking; the completion is
//    still delivered by wait().
//  - poll() on a regular file (which epoll cannot watch) completes at once with POLLIN|POLLOUT.
//  - Closing an fd while operations wait on it leaves them waiting: cancel_fd() first.
#pragma once

#include <memory>

#include "core/io/backend.hpp"

namespace tf::core {

// Sets up an epoll backend. Throws std::system_error when epoll_create1, eventfd or the buffer
// allocation fails, and std::system_error(EINVAL) when options.buffer_count is not a power of
// two up to 32768 (the same limit as io_uring's, so that both accept the same options).
std::unique_ptr<Backend> make_epoll_backend(const BackendOptions& options);

}  // namespace tf::core
