"""The cooperative socket class and the ``socket`` module functions that create sockets.

Like gevent's, a ``GreenSocket`` keeps its OS file descriptor non-blocking all the time (the C
level timeout of the underlying ``_socket.socket`` is 0) and keeps the timeout the program asked
for (``settimeout``, ``setblocking``, ``socket.setdefaulttimeout``) in a Python attribute. Each
blocking method tries its system call; when the kernel answers EAGAIN it waits for the fd
(``_wait.wait_fd``: on the hub inside one, with the real poll() outside) and tries again, until
the call's deadline, where it raises ``TimeoutError("timed out")`` as the original does.

Consequence worth knowing: the fd itself is O_NONBLOCK even for a "blocking" socket, so code that
hands ``sock.fileno()`` (or a ``detach()``-ed fd) to C code or a child process sees a
non-blocking descriptor.
"""

from __future__ import annotations

import _socket
import errno
import os
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from .. import _core
from . import _originals, dns
from ._wait import deadline_after, remaining, wait_fd

__all__ = ["GreenSocket", "fromfd", "socketpair"]

T = TypeVar("T")

_RawSocket = _socket.socket
_CONNECT_PENDING = (errno.EINPROGRESS, errno.EALREADY)
_DONT_WAIT = getattr(socket, "MSG_DONTWAIT", 0)


class GreenSocket(socket.socket):
    """socket.socket whose blocking calls suspend only the calling greenlet inside a hub."""

    __slots__ = ("_green_timeout",)

    def __init__(
        self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None
    ) -> None:
        super().__init__(family, type, proto, fileno)
        # What the original would have: the default timeout, or 0.0 for a SOCK_NONBLOCK type.
        self._green_timeout: float | None = _RawSocket.gettimeout(self)
        _RawSocket.settimeout(self, 0.0)

    # -- timeout state ------------------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        return self._green_timeout

    def gettimeout(self) -> float | None:
        return self._green_timeout

    def settimeout(self, value: float | None, /) -> None:
        # The C implementation validates the value (TypeError / ValueError as the original).
        _RawSocket.settimeout(self, value)
        self._green_timeout = _RawSocket.gettimeout(self)
        _RawSocket.settimeout(self, 0.0)

    def setblocking(self, flag: bool, /) -> None:
        self._green_timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._green_timeout != 0.0

    # -- the retry loop -----------------------------------------------------------------------

    def _retry(self, call: Callable[[], T], *, write: bool, flags: int = 0) -> T:
        """``call()`` (one non-blocking system call), retried after each EAGAIN once the fd is
        ready, until the socket's timeout. Non-blocking sockets, and calls given MSG_DONTWAIT,
        see the EAGAIN."""
        try:
            return call()
        except BlockingIOError:
            if self._green_timeout == 0.0 or flags & _DONT_WAIT:
                raise
        deadline = deadline_after(self._green_timeout)
        fd = self.fileno()
        while True:
            wait_fd(fd, write=write, deadline=deadline)
            try:
                return call()
            except BlockingIOError:
                continue

    # -- receiving ----------------------------------------------------------------------------

    def recv(self, bufsize: int, flags: int = 0, /) -> bytes:
        return self._retry(lambda: _RawSocket.recv(self, bufsize, flags), write=False, flags=flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        return self._retry(
            lambda: _RawSocket.recv_into(self, buffer, nbytes, flags), write=False, flags=flags
        )

    def recvfrom(self, bufsize: int, flags: int = 0, /) -> tuple[bytes, Any]:
        return self._retry(
            lambda: _RawSocket.recvfrom(self, bufsize, flags), write=False, flags=flags
        )

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        return self._retry(
            lambda: _RawSocket.recvfrom_into(self, buffer, nbytes, flags), write=False, flags=flags
        )

    def recvmsg(
        self, bufsize: int, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, Any]:
        return self._retry(
            lambda: _RawSocket.recvmsg(self, bufsize, ancbufsize, flags), write=False, flags=flags
        )

    def recvmsg_into(
        self, buffers: Any, ancbufsize: int = 0, flags: int = 0, /
    ) -> tuple[int, list[tuple[int, int, bytes]], int, Any]:
        return self._retry(
            lambda: _RawSocket.recvmsg_into(self, buffers, ancbufsize, flags),
            write=False,
            flags=flags,
        )

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: Any, flags: int = 0, /) -> int:
        return self._retry(lambda: _RawSocket.send(self, data, flags), write=True, flags=flags)

    def sendall(self, data: Any, flags: int = 0, /) -> None:
        """Sends everything; the timeout bounds the whole call (as in CPython >= 3.5)."""
        view = memoryview(data).cast("B")
        deadline = deadline_after(self._green_timeout)
        sent = 0
        fd = self.fileno()
        while sent < len(view):
            try:
                sent += _RawSocket.send(self, view[sent:], flags)
                continue
            except BlockingIOError:
                if self._green_timeout == 0.0 or flags & _DONT_WAIT:
                    raise
            wait_fd(fd, write=True, deadline=deadline)

    def sendto(self, data: Any, *flags_and_address: Any) -> int:
        # sendto(data, address) or sendto(data, flags, address); other arities get the
        # original's TypeError.
        if len(flags_and_address) == 1:
            target = self._resolved(flags_and_address[0])
            return self._retry(lambda: _RawSocket.sendto(self, data, target), write=True)
        if len(flags_and_address) != 2:
            return int(_RawSocket.sendto(self, data, *flags_and_address))
        flags, address = flags_and_address
        target = self._resolved(address)
        return self._retry(
            lambda: _RawSocket.sendto(self, data, flags, target),
            write=True,
            flags=flags if isinstance(flags, int) else 0,
        )

    def sendmsg(
        self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None, /
    ) -> int:
        if address is None:
            return self._retry(
                lambda: _RawSocket.sendmsg(self, buffers, ancdata, flags), write=True, flags=flags
            )
        target = self._resolved(address)
        return self._retry(
            lambda: _RawSocket.sendmsg(self, buffers, ancdata, flags, target),
            write=True,
            flags=flags,
        )

    # -- connections --------------------------------------------------------------------------

    def accept(self) -> tuple[GreenSocket, Any]:
        accept_once: Callable[[], tuple[int, Any]] = _RawSocket._accept.__get__(self)  # type: ignore[attr-defined]
        fd, address = self._retry(accept_once, write=False)
        sock = GreenSocket(self.family, self.type, self.proto, fileno=fd)
        # Same rule as socket.socket.accept: a listener with a timeout hands out blocking
        # sockets when there is no default timeout.
        if _socket.getdefaulttimeout() is None and self.gettimeout():
            sock.setblocking(True)
        return sock, address

    def _resolved(self, address: Any) -> Any:
        """``address`` with its host name resolved off the hub (the C implementation would
        resolve it on the hub thread, blocking every greenlet)."""
        if (
            self.family not in (socket.AF_INET, socket.AF_INET6)
            or not isinstance(address, tuple)
            or len(address) < 2
            or dns.is_numeric_host(address[0])
            or address[0] == "<broadcast>"
            or not _core.in_hub()
        ):
            return address
        infos = dns.getaddrinfo(address[0], address[1], self.family, self.type, self.proto)
        return (infos[0][4][0], *address[1:])

    def _connect_errno(self, address: Any) -> int:
        """Connects; 0 on success, else the errno connect() failed with. TimeoutError when the
        socket's timeout passes first."""
        deadline = deadline_after(self._green_timeout)
        fd = self.fileno()
        delay = 0.001
        while True:
            code = _RawSocket.connect_ex(self, address)
            if code == errno.EAGAIN and self.family == socket.AF_UNIX:
                # The listener's queue is full; a blocking connect would wait in the kernel
                # for room, which poll() cannot tell us about: retry with a growing delay.
                left = remaining(deadline)
                if left is not None and left <= 0:
                    raise TimeoutError("timed out")
                pause = delay if left is None else min(delay, left)
                if _core.in_hub():
                    _core.sleep(pause)
                else:
                    _originals.sleep(pause)
                delay = min(delay * 2, 0.05)
                continue
            if code not in _CONNECT_PENDING:
                return code
            wait_fd(fd, write=True, deadline=deadline)
            return self.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)

    def connect(self, address: Any, /) -> None:
        target = self._resolved(address)
        if self._green_timeout == 0.0:
            _RawSocket.connect(self, target)
            return
        code = self._connect_errno(target)
        if code:
            raise OSError(code, os.strerror(code))

    def connect_ex(self, address: Any, /) -> int:
        target = self._resolved(address)
        if self._green_timeout == 0.0:
            return int(_RawSocket.connect_ex(self, target))
        try:
            return self._connect_errno(target)
        except TimeoutError:
            return errno.EWOULDBLOCK

    # -- closing ------------------------------------------------------------------------------

    def _real_close(self, _ss: Any = _RawSocket) -> None:
        # Inside a hub, greenlets still waiting on this fd are woken with EBADF instead of
        # waiting on a closed descriptor forever.
        if _core.get_hub() is not None:
            fd = _ss.detach(self)
            if fd >= 0:
                _core.close(fd)
            return
        _ss.close(self)


def socketpair(
    family: int = socket.AF_UNIX, type: int = socket.SOCK_STREAM, proto: int = 0
) -> tuple[GreenSocket, GreenSocket]:
    """socket.socketpair returning green sockets."""
    left, right = _socket.socketpair(family, type, proto)
    return (
        GreenSocket(family, type, proto, left.detach()),
        GreenSocket(family, type, proto, right.detach()),
    )


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> GreenSocket:
    """socket.fromfd returning a green socket (on a duplicate of ``fd``)."""
    return GreenSocket(family, type, proto, _socket.dup(fd))
