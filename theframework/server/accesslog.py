"""The access log: one line per handled request on the ``theframework.access`` logger.

``access_logger(format)`` returns the callback the native server calls after each request
(``HttpServer(access_log=...)``); without ``--access-log`` no callback is installed, which costs
nothing. The format is a ``%``-style string over named fields; only the fields it names are
computed for each request:

``client`` (the client's address: the peer's, or a trusted proxy's forwarded one; "-" for
UNIX sockets), ``method``, ``path`` (as sent, with the query), ``query``, ``version``, ``status``,
``bytes`` (response bytes sent, head included), ``body_bytes`` (without the head: nginx's
$body_bytes_sent), ``duration`` (seconds), ``duration_ms``, ``user_agent``, ``referer``, ``host``
(Host header, "-" when absent), ``scheme`` (http/https, a trusted proxy's forwarded one),
``pid``, ``time`` (local time, common-log style);
``request_header:NAME`` (a request header, e.g. ``%(request_header:x-request-id)s``) and
``response_header:NAME`` (a header the handler set, e.g. ``%(response_header:content-type)s``):
"-" when absent; several values joined with ", ". Header values are escaped as nginx does (``"``,
``\\``, control characters and non-ASCII bytes as ``\\xHH``), so a client cannot forge a log line
or a field.

Presets: ``combined`` and ``common`` (``PRESETS``) are nginx's log formats of the same names.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "ACCESS_LOGGER",
    "FIELDS",
    "PRESETS",
    "AccessLog",
    "access_logger",
    "check_format",
]

ACCESS_LOGGER = "theframework.access"

# The native server's access-log hook: callback(request, status, bytes_sent, seconds, response).
AccessLog = Callable[[Any, int, int, float, Any], object]
_Getter = AccessLog

# nginx's predefined formats, in this module's language ($remote_user is always "-").
PRESETS = {
    "common": '%(client)s - - [%(time)s] "%(method)s %(path)s %(version)s" %(status)s '
    "%(body_bytes)s",
    "combined": '%(client)s - - [%(time)s] "%(method)s %(path)s %(version)s" %(status)s '
    '%(body_bytes)s "%(referer)s" "%(user_agent)s"',
}


def _client(request: Any, status: int, sent: int, seconds: float, response: Any) -> object:
    peer = request.client
    return peer[0] if isinstance(peer, tuple) else "-"


def _path(request: Any, status: int, sent: int, seconds: float, response: Any) -> object:
    query = request.query_string
    return f"{request.raw_path}?{query}" if query else request.raw_path


def _escape(value: str) -> str:
    """``"``, ``\\``, control characters, DEL and non-ASCII bytes as ``\\xHH`` (nginx's escaping
    of logged variables; header values are latin-1 text, one character per byte)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join(f"\\x{ord(c):02X}" if c in '"\\' or not " " <= c < "\x7f" else c for c in value)


def _header(name: str) -> _Getter:
    def get(request: Any, status: int, sent: int, seconds: float, response: Any) -> object:
        values = request.headers.getall(name)
        return _escape(", ".join(values)) if values else "-"

    return get


def _response_header(name: str) -> _Getter:
    def get(request: Any, status: int, sent: int, seconds: float, response: Any) -> object:
        value = response.get_header(name)
        return "-" if value is None else _escape(value)

    return get


FIELDS: dict[str, _Getter] = {
    "client": _client,
    "method": lambda request, status, sent, seconds, response: request.method,
    "path": _path,
    "query": lambda request, status, sent, seconds, response: request.query_string,
    "version": lambda request, status, sent, seconds, response: request.version,
    "status": lambda request, status, sent, seconds, response: status,
    "bytes": lambda request, status, sent, seconds, response: sent,
    "body_bytes": lambda request, status, sent, seconds, response: sent - response.head_length,
    "duration": lambda request, status, sent, seconds, response: seconds,
    "duration_ms": lambda request, status, sent, seconds, response: seconds * 1000.0,
    "user_agent": _header("user-agent"),
    "referer": _header("referer"),
    "host": _header("host"),
    "scheme": lambda request, status, sent, seconds, response: request.scheme,
    "pid": lambda request, status, sent, seconds, response: os.getpid(),
    "time": lambda request, status, sent, seconds, response: time.strftime("%d/%b/%Y:%H:%M:%S %z"),
}

# Header atoms: request_header:NAME, response_header:NAME (NAME a header-name token).
_HEADER_ATOM = re.compile(r"(request_header|response_header):([!#$%&'*+.^_`|~0-9A-Za-z-]+)")
_NAMED = re.compile(r"%\(([^)]*)\)")


def _getter(name: str) -> _Getter | None:
    """The getter of field or header atom ``name``; None when it is neither."""
    if name in FIELDS:
        return FIELDS[name]
    atom = _HEADER_ATOM.fullmatch(name)
    if atom is None:
        return None
    header = atom.group(2).lower()
    return _header(header) if atom.group(1) == "request_header" else _response_header(header)


def check_format(format_string: str) -> list[str]:
    """The fields ``format_string`` (or a preset's name) uses; ValueError naming an unknown
    field or a format that does not render."""
    format_string = PRESETS.get(format_string, format_string)
    names = list(dict.fromkeys(_NAMED.findall(format_string)))
    unknown = [name for name in names if _getter(name) is None]
    if unknown:
        raise ValueError(
            f"unknown access log field(s) {', '.join(unknown)}; known: {', '.join(FIELDS)}, "
            "request_header:NAME, response_header:NAME"
        )
    sample: dict[str, object] = {name: 0 for name in names}
    try:
        format_string % sample
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"bad access log format {format_string!r}: {error}") from None
    return names


def access_logger(
    format_string: str, logger: logging.Logger | None = None
) -> Callable[[Any, int, int, float, Any], None]:
    """The ``access_log(request, status, bytes_sent, seconds, response)`` callback writing one
    INFO line per request to ``logger`` (default: ``theframework.access``). ``format_string``
    is a format or a preset's name (``PRESETS``). ValueError for a bad format."""
    names = check_format(format_string)
    format_string = PRESETS.get(format_string, format_string)
    getters = [(name, getter) for name in names if (getter := _getter(name)) is not None]
    target = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def log_request(request: Any, status: int, sent: int, seconds: float, response: Any) -> None:
        if not target.isEnabledFor(logging.INFO):
            return
        values = {name: get(request, status, sent, seconds, response) for name, get in getters}
        target.info(format_string % values)

    return log_request
