"""Shared test utilities.

Three groups, each safe to use from any test file:

- fd accounting: ``open_fds`` (what /proc/self/fd holds), used by the fd-leak check in conftest.
- sockets for green I/O tests (plain blocking calls, usable outside a hub): ``socket_pair``,
  ``listening_socket``, ``full_accept_queue``, ``fill_send_buffer``, ``drain``.
- green helpers, to call from a greenlet inside a running hub only: ``let_hub_run``, ``wait_for``.

HTTP helpers (server subprocess, raw requests) belong at the end of this file, in their own section.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

from theframework import _core

# --------------------------------------------------------------------------------------------
# fd accounting


def open_fds() -> dict[int, str]:
    """The open file descriptors of this process, each with what it points to (readlink)."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listdir itself is gone by now
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


# --------------------------------------------------------------------------------------------
# Sockets (blocking set-up calls; fine outside a hub and, being immediate, inside one)


def listening_socket(
    family: socket.AddressFamily = socket.AF_INET,
    path: str | bytes | None = None,
    backlog: int = 1024,
) -> socket.socket:
    """A listening stream socket: on 127.0.0.1 / ::1 with a free port for AF_INET / AF_INET6,
    on ``path`` (a filesystem path, or bytes starting with NUL for the abstract namespace) for
    AF_UNIX."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_UNIX:
            assert path is not None, "AF_UNIX listeners need a path"
            sock.bind(path)
        else:
            sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def socket_pair(
    family: socket.AddressFamily = socket.AF_UNIX,
) -> tuple[socket.socket, socket.socket]:
    """Two connected non-blocking stream sockets (AF_UNIX, AF_INET on loopback, or AF_INET6)."""
    if family == socket.AF_UNIX:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        with listening_socket(family, backlog=1) as listener:
            left = socket.create_connection(listener.getsockname()[:2])
            right, _ = listener.accept()
    left.setblocking(False)
    right.setblocking(False)
    return left, right


@contextlib.contextmanager
def full_accept_queue() -> Iterator[tuple[socket.socket, tuple[str, int]]]:
    """A TCP listener on 127.0.0.1 with backlog 0 whose accept queue is already full (one
    connection waits in it). A further connect to it stays pending: the kernel drops its SYN and
    retransmits it after about a second. Yields (listener, address); accepting once frees the
    queue."""
    with listening_socket(socket.AF_INET, backlog=0) as listener:
        address = listener.getsockname()
        # Completes at once (the queue has room for one), leaving the queue full.
        with socket.create_connection(address, timeout=5):
            yield listener, address


def fill_send_buffer(sock: socket.socket, receiver: socket.socket | None = None) -> int:
    """Makes ``sock`` (non-blocking) unwritable: shrinks its send buffer (and the receiver's
    receive buffer, when given) and sends until the kernel refuses more. Returns the bytes sent,
    all b"f"."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    if receiver is not None:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    chunk = b"f" * 65536
    total = 0
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def drain(sock: socket.socket) -> bytes:
    """Everything ``sock`` (non-blocking) can read right now, without waiting."""
    parts = []
    while True:
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            break
        if not data:
            break
        parts.append(data)
    return b"".join(parts)


# --------------------------------------------------------------------------------------------
# Green helpers: call these from a greenlet running in a hub (not from the hub greenlet).


def let_hub_run() -> None:
    """Lets every ready greenlet run and the hub go through its loop at least once (so what
    they queued has reached the kernel). Used before checking that a greenlet is still
    waiting; a readiness signal is not possible for "nothing happened"."""
    _core.sleep(0)
    _core.sleep(0.002)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    """Yields to the hub until ``predicate()`` is true; AssertionError after ``timeout``
    seconds. For states the hub gives no signal for (a greenlet's death, the pending count)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        _core.sleep(0.001)


def join(*greenlets: Any, timeout: float = 10.0) -> None:
    """Yields to the hub until every greenlet given has finished."""
    wait_for(lambda: all(g.dead for g in greenlets), timeout, "greenlets to finish")


# --------------------------------------------------------------------------------------------
# HTTP helpers (server subprocess, raw clients) go below this line.
