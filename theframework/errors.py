"""Exceptions that handlers raise to answer with an HTTP error, and the end of a WebSocket."""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

__all__ = ["HTTPError", "WebSocketClosed"]


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class HTTPError(Exception):
    """Raised anywhere in a handler or middleware to answer with ``status``.

    ``message`` becomes the text/plain body (default: the reason phrase, e.g. "Not Found");
    ``headers`` are added to the response (an ``Allow`` on 405, a ``Location`` on a redirect).
    When the response headers were already sent, the error cannot be answered any more and
    propagates to the server, which logs it and closes the connection.
    """

    status: int
    message: str
    headers: list[tuple[str, str]]

    def __init__(
        self,
        status: int,
        message: str | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"HTTP status must be an integer in 100..599, got {status!r}")
        self.status = status
        self.message = _reason_phrase(status) if message is None else message
        self.headers = [] if headers is None else list(headers)
        super().__init__(status, self.message)

    def __str__(self) -> str:
        return f"{self.status} {self.message}"

    def __repr__(self) -> str:
        return f"HTTPError({self.status!r}, {self.message!r}, {self.headers!r})"


class WebSocketClosed(Exception):
    """Raised by a WebSocket's ``receive()``/``send()`` once the connection is closed.

    ``code`` is the close code: the peer's (1000 normal, 1001 going away, ...), 1005 when its close
    frame carried none, 1006 when the connection ended without a close frame, or the code this
    server closed with after a protocol error (1002), invalid UTF-8 (1007), a message over the
    limit (1009) or a keep-alive ping left unanswered (1011). ``reason`` is the close reason text.
    """

    code: int
    reason: str

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(code, reason)

    def __str__(self) -> str:
        return f"WebSocket closed ({self.code}{': ' + self.reason if self.reason else ''})"
