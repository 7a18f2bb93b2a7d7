"""PEP 3333 adapter: serves an unmodified WSGI application (Flask, Django, Falcon, ...) on the
native server.

``WSGIAdapter(app)`` is a ``handler(request, response)``: per request it builds the environ (a
plain dict, as PEP 3333 requires), calls ``app(environ, start_response)`` and streams what the app
returns into the native Response.

Body framing, decided from what the app returns (the native Response computes Content-Length from
a buffered body, and streams chunked after ``flush()``):
- a list or tuple (every chunk already exists), or a body whose declared Content-Length is at most
  ``BUFFER_LIMIT``: buffered, sent with the server's Content-Length (a mismatch with the declared
  value is logged);
- anything else (a generator without Content-Length, a large declared body, the ``write()``
  callable): the head goes out with the first non-empty chunk and the rest streams chunked, so no
  chunk waits for the next one;
- a ``FileWrapper`` over a regular file, read from its start: ``Response.sendfile`` (zero copy);
- HEAD: no body is kept; the Content-Length sent is the declared one, else the length the app
  produced.

``close()`` of the returned iterable is called on every path: normal end, exceptions, client
disconnects and greenlet kills. Exceptions propagate to the native server, which answers 500 when
the head has not gone out yet and closes the connection otherwise.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Protocol

from .._core import Request, Response

__all__ = [
    "BUFFER_LIMIT",
    "FileWrapper",
    "StartResponse",
    "WSGIAdapter",
    "WSGIApplication",
    "WSGIInput",
]

logger = logging.getLogger("theframework.wsgi")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Environ = dict[str, Any]


class StartResponse(Protocol):
    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]: ...


WSGIApplication = Callable[[Environ, StartResponse], Iterable[bytes]]

# Largest body (declared with Content-Length) buffered to keep an exact Content-Length.
BUFFER_LIMIT = 256 * 1024
# Block size of wsgi.input.readline() reads and of FileWrapper iteration by default.
_READ_BLOCK = 8192
# Shared zeros written (by reference, never copied) to give a HEAD response its Content-Length.
_ZEROS = bytes(65536)


# --------------------------------------------------------------------------------------------
# wsgi.input and wsgi.file_wrapper


class WSGIInput:
    """``wsgi.input``: the request body, read incrementally from the connection (never past the
    body; chunked bodies arrive decoded). ``read(n)`` returns n bytes unless the body ends first."""

    __slots__ = ("_buffer", "_read")

    def __init__(self, request: Request) -> None:
        self._read = request.read
        self._buffer = b""  # read ahead by readline(), handed out first

    def read(self, size: int | None = -1, /) -> bytes:
        buffer = self._buffer
        if size is None or size < 0:
            self._buffer = b""
            rest = self._read(-1)
            return buffer + rest if buffer else rest
        if len(buffer) >= size:
            self._buffer = buffer[size:]
            return buffer[:size]
        self._buffer = b""
        parts = [buffer]
        have = len(buffer)
        while have < size:
            data = self._read(size - have)
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1, /) -> bytes:
        """One line with its b"\\n", at most ``size`` bytes; b"" at the end of the body."""
        limit = -1 if size is None else size
        line = bytearray(self._buffer)
        self._buffer = b""
        searched = 0
        while True:
            newline = line.find(b"\n", searched)
            if newline >= 0 and (limit < 0 or newline < limit):
                end = newline + 1
                break
            if 0 <= limit <= len(line):
                end = limit
                break
            searched = len(line)
            data = self._read(_READ_BLOCK)
            if not data:
                end = len(line)
                break
            line += data
        self._buffer = bytes(line[end:])
        return bytes(line[:end])

    def readlines(self, hint: int | None = -1, /) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class FileWrapper:
    """``wsgi.file_wrapper``: returned by an app, a regular file read from its start is sent with
    zero copies (``Response.sendfile``); any other file-like object is sent in ``block_size``
    blocks. ``close()`` closes the file."""

    __slots__ = ("block_size", "filelike")

    def __init__(self, filelike: IO[bytes], block_size: int = _READ_BLOCK) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.block_size)
            if not block:
                return
            yield block

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()

    def sendfile_path(self, declared_length: int | None) -> str | None:
        """The path to hand to sendfile, or None when blocks must be read instead: the file has
        no descriptor or no path, is not a regular file, is no longer the file at that path,
        was read from already, or the app declared a Content-Length other than its size."""
        filelike = self.filelike
        name = getattr(filelike, "name", None)
        if not isinstance(name, str):
            return None
        try:
            descriptor = filelike.fileno()
            if filelike.tell() != 0:
                return None
            opened = os.fstat(descriptor)
            at_path = os.stat(name)
        except (OSError, ValueError, AttributeError):
            return None
        if not stat.S_ISREG(opened.st_mode):
            return None
        if (opened.st_dev, opened.st_ino) != (at_path.st_dev, at_path.st_ino):
            return None
        if declared_length is not None and declared_length != opened.st_size:
            return None
        return name


# --------------------------------------------------------------------------------------------
# One request: start_response, write(), and the body of the response


# Status lines seen -> their code: apps send the same few, so each is validated and parsed once
# (parsing costs more than a dict lookup). Bounded: at most _STATUS_CACHE_SIZE entries.
_status_codes: dict[str, int] = {}
_STATUS_CACHE_SIZE = 64


def _status_code(status: object) -> int:
    """The code of a WSGI status line ("200 OK"); TypeError or ValueError when it is not one."""
    try:
        return _status_codes[status]  # type: ignore[index]
    except (KeyError, TypeError):  # TypeError: unhashable, _parse_status says what it is
        pass
    code = _parse_status(status)
    if len(_status_codes) < _STATUS_CACHE_SIZE:
        _status_codes[status] = code  # type: ignore[index]
    return code


def _parse_status(status: object) -> int:
    if not isinstance(status, str):
        raise TypeError(f"WSGI status must be str, got {type(status).__name__}")
    code = status[:3]
    if len(status) < 4 or status[3] != " " or not code.isdigit():
        raise ValueError(f"WSGI status must look like '200 OK', got {status!r}")
    return int(code)


class _Exchange:
    """The response side of one WSGI call."""

    __slots__ = (
        "applied",
        "body_length",
        "declared_length",
        "headers",
        "is_head",
        "response",
        "status",
        "status_code",
        "streaming",
    )

    def __init__(self, response: Response, is_head: bool) -> None:
        self.response = response
        self.is_head = is_head
        self.status: str | None = None
        self.status_code = 0
        self.headers: list[tuple[str, str]] = []
        self.applied = False  # status and headers copied into the native Response
        self.streaming = False  # the head went out: every write is sent at once
        self.declared_length: int | None = None  # the app's Content-Length
        self.body_length = 0  # body bytes the app produced

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
        /,
    ) -> Callable[[bytes], object]:
        if exc_info is not None:
            try:
                if self.response.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None  # no reference cycle through the traceback
            if self.applied:
                self.response.reset()
                self.applied = False
                self.body_length = 0
        elif self.status is not None:
            raise RuntimeError(
                "start_response() was called twice; a second call must pass exc_info"
            )
        code = _status_code(status)
        if not isinstance(headers, list):
            raise TypeError(f"WSGI headers must be a list, got {type(headers).__name__}")
        self.status = status
        self.status_code = code
        self.headers = headers
        return self.write

    def apply_head(self) -> None:
        """Copies the status and headers into the native Response (which validates them)."""
        if self.status is None:
            raise RuntimeError("the application produced a body before calling start_response()")
        response = self.response
        response.set_status(self.status_code)
        declared: int | None = None
        for name, value in self.headers:
            # len() first: lower() makes a new str, and only a 14-character name can match.
            if len(name) == 14 and name.lower() == "content-length":
                # The server frames the body itself; the declared value only guides buffering.
                text = value.strip()
                if text.isdigit():
                    declared = int(text)
                else:
                    logger.warning("ignoring invalid Content-Length %r from the application", value)
                continue
            response.add_header(name, value)
        self.declared_length = declared
        self.applied = True

    def write(self, data: bytes) -> None:
        """The write() callable of start_response: the head and ``data`` go out at once."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if not self.applied:
            self.apply_head()
        self.body_length += len(data)
        if self.is_head:
            return
        self.response.write(data)
        if not self.streaming:
            self.response.flush()
            self.streaming = True

    def send(self, result: Iterable[bytes]) -> None:
        """Sends the body the app returned, then completes the response."""
        if type(result) is FileWrapper and self.status is not None and not self.streaming:
            if not self.applied:
                self.apply_head()
            if self.body_length == 0 and self._sendfile(result):
                return
        # Every chunk of a list or tuple exists already: buffering them delays nothing.
        buffer_all = self.is_head or isinstance(result, (list, tuple))
        response = self.response
        for chunk in result:
            if type(chunk) is not bytes and not isinstance(chunk, (bytearray, memoryview)):
                raise TypeError(f"WSGI body chunks must be bytes, not {type(chunk).__name__}")
            if not chunk:
                continue
            if not self.applied:
                self.apply_head()
            self.body_length += len(chunk)
            if self.is_head:
                continue
            response.write(chunk)
            if self.streaming or buffer_all:
                continue
            declared = self.declared_length
            if declared is None or declared > BUFFER_LIMIT or self.body_length > BUFFER_LIMIT:
                response.flush()
                self.streaming = True
        self.finish()

    def finish(self) -> None:
        if not self.applied:
            self.apply_head()
        declared = self.declared_length
        if self.is_head:
            self._head_length(self.body_length if declared is None else declared)
        elif declared is not None and declared != self.body_length:
            logger.warning(
                "the application declared Content-Length %d but produced %d bytes; "
                "the server sent the real length",
                declared,
                self.body_length,
            )

    def _head_length(self, length: int) -> None:
        # The native Response derives a HEAD response's Content-Length from the buffered body
        # (which it never sends): shared zero blocks, referenced rather than copied.
        write = self.response.write
        whole, rest = divmod(length, len(_ZEROS))
        for _ in range(whole):
            write(_ZEROS)
        if rest:
            write(_ZEROS[:rest])

    def _sendfile(self, wrapper: FileWrapper) -> bool:
        path = wrapper.sendfile_path(self.declared_length)
        if path is None:
            return False
        content_type = None
        for name, value in self.headers:
            if name.lower() == "content-type":
                content_type = value
        self.response.sendfile(path, content_type)
        return True


# --------------------------------------------------------------------------------------------
# The adapter


class WSGIAdapter:
    """A ``handler(request, response)`` serving the WSGI application ``app``.

    ``root_path`` (e.g. "/api") becomes SCRIPT_NAME and is removed from the front of PATH_INFO
    when the path starts with it. ``multiprocess`` is wsgi.multiprocess (several workers).
    ``url_scheme`` is wsgi.url_scheme.
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        root_path: str = "",
        multiprocess: bool = False,
        url_scheme: str = "http",
    ) -> None:
        if not callable(app):
            raise TypeError(f"the WSGI application must be callable, got {type(app).__name__}")
        root_path = root_path.rstrip("/")
        if root_path and not root_path.startswith("/"):
            raise ValueError(f"root_path must start with '/', got {root_path!r}")
        if url_scheme not in ("http", "https"):
            raise ValueError(f"url_scheme must be http or https, got {url_scheme!r}")
        self.app = app
        self.root_path = root_path
        self.url_scheme = url_scheme
        self._default_port = "443" if url_scheme == "https" else "80"
        self._base: Environ = {
            "SCRIPT_NAME": root_path,
            "SERVER_NAME": "localhost",
            "SERVER_PORT": self._default_port,
            "REMOTE_ADDR": "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": url_scheme,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
        }

    def set_multiprocess(self, multiprocess: bool) -> None:
        """wsgi.multiprocess from now on (the server sets it for an adapter mounted on a
        Framework, which the user created before the worker count was known)."""
        self._base["wsgi.multiprocess"] = multiprocess

    def set_server_address(self, address: object) -> None:
        """SERVER_NAME/SERVER_PORT for requests without a Host header: the listening socket's
        (host, port); a UNIX socket path keeps "localhost" and the scheme's default port."""
        if isinstance(address, tuple) and len(address) >= 2:
            self._base["SERVER_NAME"] = str(address[0])
            self._base["SERVER_PORT"] = str(address[1])

    def build_environ(self, request: Request) -> Environ:
        """The environ of ``request`` (a new dict)."""
        # The CGI variables are filled in C++ (Request._wsgi_environ): REQUEST_METHOD, PATH_INFO
        # (decoded bytes as latin-1, root path stripped), QUERY_STRING, SERVER_PROTOCOL, HTTP_*
        # (names with "_" dropped, duplicates joined; Cookie with "; "), CONTENT_TYPE/LENGTH,
        # REMOTE_ADDR/PORT and SERVER_NAME/PORT from Host.
        environ = request._wsgi_environ(self._base)
        environ["wsgi.input"] = WSGIInput(request)
        return environ

    def __call__(self, request: Request, response: Response) -> None:
        environ = self.build_environ(request)
        exchange = _Exchange(response, environ["REQUEST_METHOD"] == "HEAD")
        result = self.app(environ, exchange.start_response)
        try:
            exchange.send(result)
        except BaseException:
            _close_quietly(result)
            raise
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _close_quietly(result: object) -> None:
    """close() of the app's iterable while an exception propagates: an error raised by close()
    itself is logged so that it does not hide the first one."""
    close = getattr(result, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:
        logger.exception("close() of the WSGI response iterable failed")
