"""Plain WSGI test applications (no framework), served with ``--interface wsgi``.

- ``app``: well-behaved endpoints, wrapped in ``wsgiref.validate.validator`` with its warnings
  turned into errors, so that any complaint of the validator shows up as a traceback in the
  server's stderr (the tests require none).
- ``plain``: the same endpoints without the validator, plus ones that misbehave on purpose
  (errors, exc_info, double start_response) and ones the validator would hide (file_wrapper).

``/closed`` reports how many response iterables were closed per tag (one server process).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.validate import WSGIWarning, validator

from theframework import _core

warnings.simplefilter("error", WSGIWarning)

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]

# Tag -> how many iterables with that tag were closed.
CLOSED: dict[str, int] = {}
# Names of the gates opened with /open-gate/<name>.
OPEN_GATES: set[str] = set()

LARGE_SIZE = 300 * 1024 + 17  # above wsgi.BUFFER_LIMIT
_large_file = tempfile.NamedTemporaryFile(prefix="tf-wsgi-", suffix=".bin", delete=False)  # noqa: SIM115
_large_file.write(bytes(range(256)) * (LARGE_SIZE // 256) + b"x" * (LARGE_SIZE % 256))
_large_file.close()
LARGE_PATH = _large_file.name
atexit.register(os.unlink, LARGE_PATH)


class Closing:
    """An iterable over ``chunks`` that records its close() under ``tag``; ``fail_at`` makes
    iteration raise before that chunk; ``wait_between`` makes it yield to the hub between
    chunks (a slow producer)."""

    def __init__(
        self,
        tag: str,
        chunks: Iterable[bytes],
        *,
        fail_at: int | None = None,
        gate: str | None = None,
    ) -> None:
        self.tag = tag
        self.chunks = chunks
        self.fail_at = fail_at
        self.gate = gate

    def __iter__(self) -> Iterator[bytes]:
        for index, chunk in enumerate(self.chunks):
            if index == self.fail_at:
                raise RuntimeError(f"failing on purpose at chunk {index}")
            if index == 1 and self.gate is not None:
                while self.gate not in OPEN_GATES:
                    _core.sleep(0.001)
            yield chunk

    def close(self) -> None:
        CLOSED[self.tag] = CLOSED.get(self.tag, 0) + 1


def _json(start_response: StartResponse, value: object, status: str = "200 OK") -> list[bytes]:
    body = json.dumps(value).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _text(start_response: StartResponse, text: bytes, status: str = "200 OK") -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def _environ_view(environ: Environ) -> dict[str, object]:
    view: dict[str, object] = {k: v for k, v in environ.items() if isinstance(v, str)}
    for key in ("wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        value = environ[key]
        view[key] = list(value) if isinstance(value, tuple) else value
    view["wsgi.input_terminated"] = environ.get("wsgi.input_terminated")
    view["has_file_wrapper"] = "wsgi.file_wrapper" in environ
    view["errors_writable"] = hasattr(environ["wsgi.errors"], "write")
    return view


def _read_all(stream: Any, size: int = 1000) -> bytes:
    parts = []
    while True:
        data = stream.read(size)
        if not data:
            return b"".join(parts)
        parts.append(data)


def _good(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    stream = environ["wsgi.input"]
    if path == "/environ":
        return _json(start_response, _environ_view(environ))
    if path == "/echo":
        size = int(environ.get("QUERY_STRING") or 1000)
        return _text(start_response, _read_all(stream, size))
    if path == "/read-length":
        # The classic pattern: exactly CONTENT_LENGTH bytes, in one call.
        body = stream.read(int(environ.get("CONTENT_LENGTH") or 0))
        return _text(start_response, body)
    if path == "/readline":
        limit = int(environ.get("QUERY_STRING") or -1)
        lines = []
        while True:
            line = stream.readline(limit) if limit >= 0 else stream.readline()
            if not line:
                break
            lines.append(line.decode("latin-1"))
        return _json(start_response, lines)
    if path == "/readlines":
        return _json(start_response, [line.decode() for line in stream.readlines()])
    if path == "/iterate":
        return _json(start_response, [line.decode() for line in stream])
    if path == "/mixed-read":
        first = stream.readline()
        rest = stream.read(5)
        tail = _read_all(stream, 3)
        return _json(start_response, [first.decode(), rest.decode(), tail.decode()])
    if path == "/ignore-body":
        return _text(start_response, b"ignored")
    if path == "/stream":
        # No Content-Length, chunks produced one by one: chunked, the first one sent at once.
        start_response("200 OK", [("Content-Type", "text/plain")])
        gate = environ.get("QUERY_STRING") or None
        return Closing("stream", [b"first;", b"second;", b"third"], gate=gate)
    if path.startswith("/open-gate/"):
        OPEN_GATES.add(path.rsplit("/", 1)[1])
        return _text(start_response, b"open")
    if path == "/list":
        # Several chunks of a list: buffered, Content-Length computed by the server.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"bb", b"", b"ccc"]
    if path == "/declared":
        # A generator with a declared Content-Length: buffered, the length kept.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return Closing("declared", [b"abc", b"def", b"ghi"])
    if path == "/declared-large":
        start_response(
            "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(LARGE_SIZE))]
        )
        with open(LARGE_PATH, "rb") as file:
            data = file.read()
        return Closing("declared-large", [data[i : i + 65536] for i in range(0, len(data), 65536)])
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/head-empty":
        # Like werkzeug for HEAD: Content-Length of the GET body, no body at all.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "1234")])
        if environ["REQUEST_METHOD"] == "HEAD":
            return []
        return [b"y" * 1234]
    if path == "/status":
        start_response(
            "201 Created",
            [
                ("Content-Type", "text/plain"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
                ("X-Custom", "yes"),
            ],
        )
        return [b"created"]
    if path == "/no-content":
        start_response("204 No Content", [])
        return []
    return _text(start_response, b"not found: " + path.encode("latin-1"), "404 Not Found")


app = validator(_good)


def _file_wrapper(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    wrapper = environ["wsgi.file_wrapper"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/x-test")])
        return wrapper(open(LARGE_PATH, "rb"))
    if path == "/file-declared":
        headers = [("Content-Type", "application/x-test"), ("Content-Length", str(LARGE_SIZE))]
        start_response("200 OK", headers)
        return wrapper(open(LARGE_PATH, "rb"), 32768)
    if path == "/file-offset":
        # Read from already: blocks from the current position, not sendfile.
        file = open(LARGE_PATH, "rb")  # noqa: SIM115
        file.seek(1000)
        start_response("200 OK", [("Content-Type", "application/x-test")])
        return wrapper(file, 65536)
    if path == "/file-bytesio":
        start_response("200 OK", [("Content-Type", "application/x-test")])
        return wrapper(io.BytesIO(b"in memory " * 1000), 4096)
    raise AssertionError(path)


def plain(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    path: str = environ["PATH_INFO"]
    if path.startswith("/file"):
        return _file_wrapper(environ, start_response)
    if path == "/closed":
        return _json(start_response, CLOSED)
    if path == "/error-before-start":
        raise RuntimeError("failing before start_response on purpose")
    if path == "/error-in-body":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return Closing("error-in-body", [b"a", b"b"], fail_at=1)
    if path == "/error-after-head":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("error-after-head", [b"partial", b"never"], fail_at=1)
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("replaced by an error page")
        except ValueError as error:
            start_response(
                "503 Service Unavailable",
                [("Content-Type", "text/plain"), ("Retry-After", "5")],
                (type(error), error, error.__traceback__),
            )
        return [b"error page"]
    if path == "/exc-info-after-head":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"already sent")
        try:
            raise ValueError("too late to replace the head")
        except ValueError as error:
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain")],
                (type(error), error, error.__traceback__),
            )
        return [b"never"]
    if path == "/double-start":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/no-start":
        return Closing("no-start", [b"body without a status"])
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("str-body", ["text is not bytes"])  # type: ignore[list-item]
    if path == "/bad-status":
        start_response("OK", [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/status-line":  # the query string, percent-decoded, is the status line
        start_response(urllib.parse.unquote(environ["QUERY_STRING"]), [("Content-Length", "0")])
        return [b""]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "line\r\nbreak")])
        return Closing("bad-header", [b"never"])
    if path == "/close-raises":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _RaisingClose()
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing("endless", _endless())
    return _good(environ, start_response)


def _endless() -> Iterator[bytes]:
    while True:
        yield b"x" * 4096
        _core.sleep(0.001)


class _RaisingClose:
    def __iter__(self) -> Iterator[bytes]:
        yield b"body"

    def close(self) -> None:
        CLOSED["close-raises"] = CLOSED.get("close-raises", 0) + 1
        raise RuntimeError("close() failing on purpose")
