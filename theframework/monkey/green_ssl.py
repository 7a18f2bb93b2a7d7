"""The cooperative SSLSocket.

``GreenSSLSocket`` derives from both ``ssl.SSLSocket`` and ``GreenSocket``: SSLSocket's own
plain-socket calls (``super().recv`` when not yet wrapped, ``connect_ex``, ``accept``) land in
GreenSocket, and the TLS object (``_sslobj``) sees a non-blocking socket, so it raises
SSLWantReadError / SSLWantWriteError instead of blocking; the overrides below wait for the fd and
retry, honouring the socket's timeout with CPython's messages.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from ._wait import deadline_after, wait_fd
from .green_socket import GreenSocket

__all__ = ["GreenSSLSocket"]

T = TypeVar("T")

_READ_TIMED_OUT = "The read operation timed out"
_WRITE_TIMED_OUT = "The write operation timed out"
_HANDSHAKE_TIMED_OUT = "_ssl.c:983: The handshake operation timed out"


class GreenSSLSocket(ssl.SSLSocket, GreenSocket):  # type: ignore[misc]
    """ssl.SSLSocket whose handshake, reads and writes suspend only the calling greenlet."""

    def _ssl_retry(
        self, call: Callable[[], T], message: str, timeout: float | bool | None = False
    ) -> T:
        """``call()`` retried after each SSLWantRead/WriteError once the fd is ready, until the
        socket's timeout (or ``timeout`` when given). Non-blocking sockets see the error."""
        limit = self._green_timeout if timeout is False else timeout
        deadline: float | None = None
        started = False
        while True:
            try:
                return call()
            except ssl.SSLWantReadError:
                if limit == 0.0:
                    raise
                write = False
            except ssl.SSLWantWriteError:
                if limit == 0.0:
                    raise
                write = True
            if not started:
                deadline = deadline_after(limit)
                started = True
            wait_fd(self.fileno(), write=write, deadline=deadline, message=message)

    def do_handshake(self, block: bool = False) -> None:
        self._check_connected()  # type: ignore[attr-defined]
        sslobj: Any = self._sslobj  # type: ignore[attr-defined]
        timeout: float | bool | None = False
        if self._green_timeout == 0.0 and block:
            timeout = None
        self._ssl_retry(sslobj.do_handshake, _HANDSHAKE_TIMED_OUT, timeout)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        return self._ssl_retry(lambda: ssl.SSLSocket.read(self, len, buffer), _READ_TIMED_OUT)

    def write(self, data: Any) -> int:
        return self._ssl_retry(lambda: ssl.SSLSocket.write(self, data), _WRITE_TIMED_OUT)

    def send(self, data: Any, flags: int = 0) -> int:
        return self._ssl_retry(lambda: ssl.SSLSocket.send(self, data, flags), _WRITE_TIMED_OUT)

    def unwrap(self) -> Any:
        return self._ssl_retry(lambda: ssl.SSLSocket.unwrap(self), _READ_TIMED_OUT)
