"""Cooperative ``select.select``, ``select.poll`` and the selectors built on them.

Each first asks the real implementation with a zero timeout (so results, argument checking and
errors are the original's); when nothing is ready and the caller would wait, only the calling
greenlet waits on the hub (``_core.wait_fds``) and the real call is asked again. Outside a hub
the real call runs unchanged.
"""

from __future__ import annotations

import math
import select
import selectors
import time
from collections.abc import Iterable
from typing import Any

from .. import _core
from . import _originals
from ._wait import deadline_after, remaining

__all__ = ["GreenPoll", "GreenPollSelector", "GreenSelectSelector", "select_function"]

# Exceptional conditions (xlist, POLLPRI alone) have no hub wait; they are checked this often.
_EXCEPTIONAL_POLL_INTERVAL = 0.01
_FOREVER = 3600.0


def _fileno(item: Any) -> int:
    return item if isinstance(item, int) else int(item.fileno())


def _wait(read: list[int], write: list[int], deadline: float | None, poll_only: bool) -> None:
    """One wait on the hub: until one fd is ready, the deadline, or (``poll_only``: some fd can
    only be checked by asking again) a short interval."""
    timeout = remaining(deadline)
    if poll_only:
        timeout = (
            _EXCEPTIONAL_POLL_INTERVAL
            if timeout is None
            else min(timeout, _EXCEPTIONAL_POLL_INTERVAL)
        )
    if not read and not write:
        _core.sleep(_FOREVER if timeout is None else timeout)
        return
    _core.wait_fds(read, write, timeout)


def select_function(
    rlist: Iterable[Any], wlist: Iterable[Any], xlist: Iterable[Any], timeout: float | None = None
) -> tuple[list[Any], list[Any], list[Any]]:
    """select.select; waits on the hub inside one."""
    if not _core.in_hub():
        return _originals.select_function(rlist, wlist, xlist, timeout)
    rlist, wlist, xlist = list(rlist), list(wlist), list(xlist)
    ready = _originals.select_function(rlist, wlist, xlist, 0)
    if timeout is not None:
        if not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be a float or None")
        if timeout < 0:
            raise ValueError("timeout must be non-negative")
    if any(ready) or timeout == 0:
        return ready
    deadline = deadline_after(timeout)
    read = [_fileno(item) for item in rlist]
    write = [_fileno(item) for item in wlist]
    while True:
        _wait(read, write, deadline, poll_only=bool(xlist))
        ready = _originals.select_function(rlist, wlist, xlist, 0)
        if any(ready) or remaining(deadline) == 0:
            return ready


class GreenPoll:
    """select.poll; ``poll()`` waits on the hub inside one."""

    def __init__(self) -> None:
        self._poll = _originals.poll()
        self._masks: dict[int, int] = {}

    def register(
        self, fd: Any, eventmask: int = select.POLLIN | select.POLLPRI | select.POLLOUT, /
    ) -> None:
        self._poll.register(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def modify(self, fd: Any, eventmask: int, /) -> None:
        self._poll.modify(fd, eventmask)
        self._masks[_fileno(fd)] = eventmask

    def unregister(self, fd: Any, /) -> None:
        self._poll.unregister(fd)
        del self._masks[_fileno(fd)]

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        if not _core.in_hub():
            return self._poll.poll(timeout)
        ready = self._poll.poll(0)
        if ready or timeout == 0:
            return ready
        if timeout is not None and not isinstance(timeout, (int, float)):
            raise TypeError("timeout must be an integer or None")
        # poll() takes milliseconds, rounded up; negative means forever.
        if timeout is None or timeout < 0:
            deadline = None
        else:
            deadline = time.monotonic() + math.ceil(timeout) / 1000
        read = [fd for fd, mask in self._masks.items() if mask & select.POLLIN]
        write = [fd for fd, mask in self._masks.items() if mask & select.POLLOUT]
        poll_only = any(mask & ~(select.POLLIN | select.POLLOUT) for mask in self._masks.values())
        while True:
            _wait(read, write, deadline, poll_only)
            ready = self._poll.poll(0)
            if ready or remaining(deadline) == 0:
                return ready


class GreenPollSelector(selectors.PollSelector):
    """selectors.PollSelector over GreenPoll; the patched DefaultSelector."""

    _selector_cls = GreenPoll


class GreenSelectSelector(selectors.SelectSelector):
    """selectors.SelectSelector over the green select()."""

    _select = staticmethod(select_function)
