"""Cooperative waiting for child processes: ``Popen.wait`` (and so ``communicate``, ``run``,
``call``, ``with Popen(...)``) and ``Popen.communicate``'s pipe I/O suspend only the calling
greenlet inside a hub.

The exit is awaited on a pidfd (Linux >= 5.3); where pidfd_open is refused, the child is polled
with a growing delay. ``communicate`` inside a hub always takes the selector path (the original
reads a single pipe with a blocking read), with the cooperative ``GreenPollSelector``.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from .. import _core
from . import _originals
from ._wait import deadline_after, remaining

__all__ = ["communicate", "wait"]

# Stands for "no timeout" where communicate's selector path needs a number (about 31 years).
_NO_TIMEOUT = 1e9


def _wait_for_exit(popen: subprocess.Popen[Any], timeout: float | None) -> None:
    """Returns once the child has exited (not yet reaped) or raises TimeoutExpired."""
    deadline = deadline_after(timeout)
    try:
        pidfd = os.pidfd_open(popen.pid)
    except OSError:
        pidfd = -1
    if pidfd >= 0:
        try:
            _core.wait_readable(pidfd, remaining(deadline))
        except TimeoutError:
            raise subprocess.TimeoutExpired(popen.args, timeout or 0.0) from None
        finally:
            _core.close(pidfd)
        return
    delay = 0.0005
    while popen.poll() is None:
        left = remaining(deadline)
        if left == 0:
            raise subprocess.TimeoutExpired(popen.args, timeout or 0.0)
        _core.sleep(delay if left is None else min(delay, left))
        delay = min(delay * 2, 0.05)


def wait(self: subprocess.Popen[Any], timeout: float | None = None) -> int | None:
    """Popen._wait: inside a hub, the exit is awaited cooperatively, then reaped at once."""
    if self.returncode is not None or not _core.in_hub():
        return _originals.popen_wait(self, timeout)  # type: ignore[no-any-return]
    _wait_for_exit(self, timeout)
    return _originals.popen_wait(self, None)  # type: ignore[no-any-return]


def communicate(
    self: subprocess.Popen[Any], input: Any = None, timeout: float | None = None
) -> tuple[Any, Any]:
    """Popen.communicate: inside a hub the selector path is always taken."""
    if timeout is None and _core.in_hub():
        started = time.monotonic()
        try:
            return _originals.popen_communicate(self, input, _NO_TIMEOUT)
        except subprocess.TimeoutExpired as error:  # pragma: no cover - after 31 years
            error.timeout = time.monotonic() - started
            raise
    return _originals.popen_communicate(self, input, timeout)
