"""The access log: one line per handled request on the ``theframework.access`` logger.

``access_logger(format)`` returns the callback the native server calls after each request
(``HttpServer(access_log=...)``); without ``--access-log`` no callback is installed, which costs
nothing. The format is a ``%``-style string over named fields; only the fields it names are
computed for each request:

``client`` (peer address, "-" for UNIX sockets), ``method``, ``path`` (as sent, with the query),
``query``, ``version``, ``status``, ``bytes`` (response bytes sent), ``duration`` (seconds),
``duration_ms``, ``user_agent``, ``referer``, ``host`` (Host header, "-" when absent),
``pid``, ``time`` (local time, common-log style).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ACCESS_LOGGER", "FIELDS", "AccessLog", "access_logger", "check_format"]

ACCESS_LOGGER = "theframework.access"

# The native server's access-log hook: callback(request, status, bytes_sent, seconds).
AccessLog = Callable[[Any, int, int, float], object]
_Getter = AccessLog


def _client(request: Any, status: int, sent: int, seconds: float) -> object:
    peer = request.client
    return peer[0] if isinstance(peer, tuple) else "-"


def _path(request: Any, status: int, sent: int, seconds: float) -> object:
    query = request.query_string
    return f"{request.raw_path}?{query}" if query else request.raw_path


def _header(name: str) -> _Getter:
    def get(request: Any, status: int, sent: int, seconds: float) -> object:
        value = request.headers.get(name)
        return "-" if value is None else value

    return get


FIELDS: dict[str, _Getter] = {
    "client": _client,
    "method": lambda request, status, sent, seconds: request.method,
    "path": _path,
    "query": lambda request, status, sent, seconds: request.query_string,
    "version": lambda request, status, sent, seconds: request.version,
    "status": lambda request, status, sent, seconds: status,
    "bytes": lambda request, status, sent, seconds: sent,
    "duration": lambda request, status, sent, seconds: seconds,
    "duration_ms": lambda request, status, sent, seconds: seconds * 1000.0,
    "user_agent": _header("user-agent"),
    "referer": _header("referer"),
    "host": _header("host"),
    "pid": lambda request, status, sent, seconds: os.getpid(),
    "time": lambda request, status, sent, seconds: time.strftime("%d/%b/%Y:%H:%M:%S %z"),
}

_NAMED = re.compile(r"%\((\w+)\)")


def check_format(format_string: str) -> list[str]:
    """The fields ``format_string`` uses; ValueError naming an unknown field or a format that
    does not render."""
    names = list(dict.fromkeys(_NAMED.findall(format_string)))
    unknown = [name for name in names if name not in FIELDS]
    if unknown:
        raise ValueError(
            f"unknown access log field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}"
        )
    sample: dict[str, object] = {name: 0 for name in names}
    try:
        format_string % sample
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"bad access log format {format_string!r}: {error}") from None
    return names


def access_logger(
    format_string: str, logger: logging.Logger | None = None
) -> Callable[[Any, int, int, float], None]:
    """The ``access_log(request, status, bytes_sent, seconds)`` callback writing one INFO line
    per request to ``logger`` (default: ``theframework.access``). ValueError for a bad format."""
    names = check_format(format_string)
    getters = [(name, FIELDS[name]) for name in names]
    target = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def log_request(request: Any, status: int, sent: int, seconds: float) -> None:
        if not target.isEnabledFor(logging.INFO):
            return
        values = {name: get(request, status, sent, seconds) for name, get in getters}
        target.info(format_string % values)

    return log_request
