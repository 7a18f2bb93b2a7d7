"""Waiting until a file descriptor is ready: on the hub inside one, with the real ``poll()``
outside (plain threads, the parent process, the hub greenlet itself), so that the green classes
behave exactly like the originals there."""

from __future__ import annotations

import math
import select
import time

from .. import _core
from . import _originals

__all__ = ["deadline_after", "remaining", "wait_fd"]


def deadline_after(timeout: float | None) -> float | None:
    """The time.monotonic() deadline of a call allowed ``timeout`` seconds (None: no limit)."""
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (never negative); None without a deadline."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def wait_fd(fd: int, *, write: bool, deadline: float | None, message: str = "timed out") -> None:
    """Waits until ``fd`` is readable (writable when ``write``), or raises
    ``TimeoutError(message)`` once ``deadline`` has passed. Suspends only the calling greenlet
    when it may block in a hub; blocks the thread otherwise."""
    timeout = remaining(deadline)
    if _core.in_hub():
        try:
            if write:
                _core.wait_writable(fd, timeout)
            else:
                _core.wait_readable(fd, timeout)
        except TimeoutError:
            raise TimeoutError(message) from None
        return
    poller = _originals.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    while not poller.poll(_poll_milliseconds(timeout)):
        timeout = remaining(deadline)
        if timeout == 0:
            raise TimeoutError(message)
        # poll() gave up at its longest wait before the deadline: wait again.


# poll() takes an int of milliseconds; a longer timeout waits this long, then again (as CPython's
# own socket module does since gh-126876: settimeout(2**31) must not raise OverflowError).
_MAX_POLL_MILLISECONDS = 2**31 - 1


def _poll_milliseconds(timeout: float | None) -> int | None:
    return None if timeout is None else min(math.ceil(timeout * 1000), _MAX_POLL_MILLISECONDS)
