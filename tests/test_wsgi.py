"""The WSGI adapter end to end, with plain WSGI apps (tests/wsgi_apps/basic.py).

Two server processes per backend: ``basic:app`` wrapped in wsgiref's validator (any complaint
is a traceback in stderr, and the server's stderr must have none), and ``basic:plain`` for error
paths and file_wrapper (tracebacks expected there, checked per test).
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator

import pytest
import requests
from http_helpers import ResponseReader, ServerProcess, connect, exchange, simple_get

from tests.wsgi_apps import basic
from theframework import wsgi

VALIDATED = "tests.wsgi_apps.basic:app"
PLAIN = "tests.wsgi_apps.basic:plain"


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend``: one server per backend per module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(VALIDATED, backend, "--interface", "wsgi") as process:
        yield process
    assert "Exception ignored" not in process.stderr, process.stderr
    assert "WSGIWarning" not in process.stderr, process.stderr


@pytest.fixture(scope="module")
def plain(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(PLAIN, backend, "--interface", "wsgi", allow_tracebacks=True) as process:
        yield process


def closed(server: ServerProcess) -> dict[str, int]:
    result: dict[str, int] = requests.get(server.url("/closed"), timeout=10).json()
    return result


def raw(server: ServerProcess, request: bytes, method: str = "GET") -> tuple[object, bytes]:
    response, reader = exchange(server, request, method)
    reader.sock.close()
    return response, response.body


# -- environ -------------------------------------------------------------------------------


def test_environ_basics(server: ServerProcess) -> None:
    response = requests.get(
        server.url("/environ?a=1&b=%20x"),
        headers={"X-Multi-Word": "v", "Content-Type": "text/x-test", "Accept": "a/b"},
        timeout=10,
    )
    assert response.status_code == 200
    environ = response.json()
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == "a=1&b=%20x"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["SERVER_NAME"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["REMOTE_PORT"].isdigit()
    assert environ["HTTP_X_MULTI_WORD"] == "v"
    assert environ["HTTP_ACCEPT"] == "a/b"
    assert environ["CONTENT_TYPE"] == "text/x-test"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_HOST"] == f"127.0.0.1:{server.port}"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is False
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True
    assert environ["has_file_wrapper"] is True
    assert environ["errors_writable"] is True


def test_environ_from_raw_request(server: ServerProcess) -> None:
    request = (
        b"POST /environ HTTP/1.0\r\n"
        b"Host: Example.COM:8080\r\n"
        b"X-Dup: one\r\nX-Dup: two\r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\n"
        b"X_Underscore: dropped\r\n"
        b"Content-Length: 3\r\n\r\nabc"
    )
    _, body = raw(server, request)
    environ = json.loads(body)
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["SERVER_NAME"] == "example.com"
    assert environ["SERVER_PORT"] == "8080"
    assert environ["HTTP_X_DUP"] == "one, two"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_LENGTH" not in environ
    # "_" in a header name would collide with the "-" spelling: such headers are dropped.
    assert "HTTP_X_UNDERSCORE" not in environ
    assert environ["QUERY_STRING"] == ""


def test_environ_keys_past_the_interned_key_cache(server: ServerProcess) -> None:
    # The server interns the keys of the first 256 distinct header names it sees; names after
    # that get fresh key strings. Both kinds must land in the environ and join duplicates.
    for batch in range(4):
        names = [f"X-Cache-{batch}-{number}" for number in range(90)]
        request = (
            b"GET /environ HTTP/1.1\r\nHost: h\r\n"
            + b"".join(f"{name}: {index}\r\n".encode() for index, name in enumerate(names))
            + f"{names[-1]}: again\r\n".encode()
            + b"Connection: close\r\n\r\n"
        )
        _, body = raw(server, request)
        environ = json.loads(body)
        for index, name in enumerate(names[:-1]):
            assert environ["HTTP_" + name.upper().replace("-", "_")] == str(index)
        assert environ["HTTP_" + names[-1].upper().replace("-", "_")] == "89, again"
        assert environ["HTTP_HOST"] == "h"


@pytest.mark.parametrize(
    ("host", "name", "port"),
    [("example.org", "example.org", "80"), ("[::1]:9000", "::1", "9000"), ("[::1]", "::1", "80")],
)
def test_server_name_from_host(server: ServerProcess, host: str, name: str, port: str) -> None:
    request = f"GET /environ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    _, body = raw(server, request)
    environ = json.loads(body)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == (name, port)


def test_server_name_without_host_is_the_listening_socket(server: ServerProcess) -> None:
    _, body = raw(server, b"GET /environ HTTP/1.0\r\n\r\n")
    environ = json.loads(body)
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(server.port))


def test_path_info_is_bytes_as_latin1(server: ServerProcess) -> None:
    request = b"GET /caf%C3%A9%2Fx%20y HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    _, body = raw(server, request)
    # Unknown path: the app answers 404 with PATH_INFO encoded back to latin-1.
    assert body == b"not found: /caf\xc3\xa9/x y"


# -- wsgi.input ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7, 1000, 70000])
def test_input_read_sizes(server: ServerProcess, size: int) -> None:
    data = bytes(range(256)) * 600
    response = requests.post(server.url(f"/echo?{size}"), data=data, timeout=10)
    assert response.content == data


def test_input_read_content_length_in_one_call(server: ServerProcess) -> None:
    data = b"z" * 200_000
    response = requests.post(server.url("/read-length"), data=data, timeout=10)
    assert response.content == data


def test_input_chunked_request_body(server: ServerProcess) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"line one\n"
        yield b"line "
        yield b"two\nend"

    response = requests.post(server.url("/readline"), data=chunks(), timeout=10)
    assert response.json() == ["line one\n", "line two\n", "end"]


def test_input_readline_limit(server: ServerProcess) -> None:
    response = requests.post(server.url("/readline?4"), data=b"abcdefghij\nkl\n", timeout=10)
    assert response.json() == ["abcd", "efgh", "ij\n", "kl\n"]


def test_input_readline_long_line(server: ServerProcess) -> None:
    line = "q" * 50_000 + "\n"
    response = requests.post(server.url("/readline"), data=(line * 2).encode(), timeout=10)
    assert response.json() == [line, line]


def test_input_readlines_and_iteration(server: ServerProcess) -> None:
    data = b"a\nbb\n\nccc"
    assert requests.post(server.url("/readlines"), data=data, timeout=10).json() == [
        "a\n",
        "bb\n",
        "\n",
        "ccc",
    ]
    assert requests.post(server.url("/iterate"), data=data, timeout=10).json() == [
        "a\n",
        "bb\n",
        "\n",
        "ccc",
    ]


def test_input_mixed_readline_and_read(server: ServerProcess) -> None:
    response = requests.post(server.url("/mixed-read"), data=b"head\n12345tail", timeout=10)
    assert response.json() == ["head\n", "12345", "tail"]


def test_input_never_reads_past_the_body(server: ServerProcess) -> None:
    # Two pipelined requests: reading the first body to its end must leave the second intact.
    sock = connect(server)
    with sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /readlines HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nx\ny\n"
        )
        reader = ResponseReader(sock)
        assert reader.read_response().body == b"hello"
        assert json.loads(reader.read_response().body) == ["x\n", "y\n"]


def test_unread_body_does_not_break_keep_alive(server: ServerProcess) -> None:
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(server.url("/ignore-body"), data=b"u" * 100_000, timeout=10)
            assert response.content == b"ignored"


# -- response framing ----------------------------------------------------------------------


def test_list_body_gets_content_length(plain: ServerProcess) -> None:
    # (Through the validator the list is hidden behind an iterator: hence the plain app.)
    response = simple_get(plain, "/list")
    assert response.framing == "content-length"
    assert response.body == b"abbccc"


def test_declared_length_is_kept_for_a_small_generator(server: ServerProcess) -> None:
    response = simple_get(server, "/declared")
    assert response.framing == "content-length"
    assert response.header("Content-Length") == "9"
    assert response.body == b"abcdefghi"


def test_large_declared_body_streams(server: ServerProcess) -> None:
    response = simple_get(server, "/declared-large")
    # Above the buffer limit, a declared length cannot be kept (see docs/wsgi.md).
    assert response.framing == "chunked"
    assert hashlib.sha256(response.body).hexdigest() == _large_digest()


def test_streaming_sends_the_first_chunk_at_once(server: ServerProcess) -> None:
    sock = connect(server)
    with sock:
        sock.sendall(b"GET /stream?gate-1 HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        _, status, _, headers, _ = reader.read_head()
        assert status == 200
        assert ("Transfer-Encoding", "chunked") in headers
        # The app waits for the gate before its second chunk: the first one is already here.
        assert reader.read_chunk() == b"first;"
        assert requests.get(server.url("/open-gate/gate-1"), timeout=10).text == "open"
        assert reader.read_chunk() == b"second;"
        assert reader.read_chunk() == b"third"
        assert reader.read_chunk() is None


def test_write_callable(server: ServerProcess) -> None:
    response = simple_get(server, "/write")
    assert response.framing == "chunked"
    assert response.body == b"written;returned"


def test_head_keeps_the_declared_length(server: ServerProcess) -> None:
    request = b"HEAD /head-empty HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    response, body = raw(server, request, "HEAD")
    assert response.header("Content-Length") == "1234"  # type: ignore[attr-defined]
    assert body == b""
    get = simple_get(server, "/head-empty")
    assert get.header("Content-Length") == "1234"


def test_head_of_a_list_body(plain: ServerProcess) -> None:
    response, reader = exchange(plain, b"HEAD /list HTTP/1.1\r\nHost: t\r\n\r\n", method="HEAD")
    with reader.sock:
        assert response.header("Content-Length") == "6"
        # Nothing follows the head: the next response on the connection parses.
        reader.sock.sendall(b"GET /list HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"abbccc"


def test_status_and_repeated_headers(server: ServerProcess) -> None:
    response = simple_get(server, "/status")
    assert response.status == 201
    assert response.header_values("Set-Cookie") == ["a=1", "b=2"]
    assert response.header("X-Custom") == "yes"


def test_no_content(server: ServerProcess) -> None:
    response = simple_get(server, "/no-content")
    assert response.status == 204
    assert response.body == b""


# -- file_wrapper --------------------------------------------------------------------------


def test_file_wrapper_uses_sendfile(plain: ServerProcess) -> None:
    response = simple_get(plain, "/file")
    # Bigger than the buffer limit, without a declared length: only sendfile gives it a
    # Content-Length (blocks would stream chunked).
    assert response.framing == "content-length"
    assert int(response.header("Content-Length") or 0) == basic.LARGE_SIZE
    assert response.header("Content-Type") == "application/x-test"
    assert len(response.body) == basic.LARGE_SIZE
    assert hashlib.sha256(response.body).hexdigest() == _large_digest()


def _large_digest() -> str:
    size = basic.LARGE_SIZE
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    return hashlib.sha256(data).hexdigest()


def test_file_wrapper_with_matching_declared_length(plain: ServerProcess) -> None:
    response = simple_get(plain, "/file-declared")
    assert response.framing == "content-length"
    assert hashlib.sha256(response.body).hexdigest() == _large_digest()


def test_file_wrapper_from_an_offset_reads_blocks(plain: ServerProcess) -> None:
    response = simple_get(plain, "/file-offset")
    assert response.framing == "chunked"
    size = basic.LARGE_SIZE
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    assert response.body == data[1000:]


def test_file_wrapper_without_a_file_descriptor(plain: ServerProcess) -> None:
    response = simple_get(plain, "/file-bytesio")
    assert response.body == b"in memory " * 1000


def test_file_wrapper_head(plain: ServerProcess) -> None:
    response, body = raw(
        plain, b"HEAD /file HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HEAD"
    )
    assert response.header("Content-Length") == str(basic.LARGE_SIZE)  # type: ignore[attr-defined]
    assert body == b""


# -- errors and close() --------------------------------------------------------------------


def test_error_before_start_response_is_500(plain: ServerProcess) -> None:
    response = simple_get(plain, "/error-before-start")
    assert response.status == 500
    plain.wait_for_stderr("failing before start_response on purpose")


def test_error_in_buffered_body_is_500_and_closes(plain: ServerProcess) -> None:
    response = simple_get(plain, "/error-in-body")
    assert response.status == 500
    assert closed(plain).get("error-in-body") == 1


def test_error_after_head_truncates(plain: ServerProcess) -> None:
    sock = connect(plain)
    with sock:
        sock.sendall(b"GET /error-after-head HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        _, status, _, _, _ = reader.read_head()
        assert status == 200
        assert reader.read_chunk() == b"partial"
        # No last chunk: the connection closes mid-body, the client sees a truncated response.
        assert reader.wait_closed() == b""
    assert closed(plain).get("error-after-head") == 1


def test_exc_info_replaces_the_head(plain: ServerProcess) -> None:
    response = simple_get(plain, "/exc-info")
    assert response.status == 503
    assert response.header("Retry-After") == "5"
    assert response.body == b"error page"


def test_exc_info_after_head_reraises(plain: ServerProcess) -> None:
    sock = connect(plain)
    with sock:
        sock.sendall(b"GET /exc-info-after-head HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        _, status, _, _, _ = reader.read_head()
        assert status == 200
        assert reader.read_chunk() == b"already sent"
        assert reader.wait_closed() == b""
    plain.wait_for_stderr("too late to replace the head")


def test_status_lines_repeated_on_one_server(plain: ServerProcess) -> None:
    # The adapter remembers the status lines it has validated: a repeated line must keep its own
    # code, and a malformed line must be refused every time, even one close to a remembered one.
    sequence = [
        ("201%20Created", 201),
        ("201%20Created", 201),
        ("404%20Not%20Found", 404),
        ("201Created", 500),
        ("201Created", 500),
        ("2010%20Created", 500),
        ("201%20Created", 201),
        ("404%20Not%20Found", 404),
    ]
    for query, expected in sequence:
        assert simple_get(plain, f"/status-line?{query}").status == expected, query


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/double-start", "start_response() was called twice"),
        ("/no-start", "before calling start_response()"),
        ("/str-body", "WSGI body chunks must be bytes, not str"),
        ("/bad-status", "WSGI status must look like"),
        ("/bad-header", "invalid header value"),
    ],
)
def test_misbehaving_apps_get_500(plain: ServerProcess, path: str, message: str) -> None:
    response = simple_get(plain, path)
    assert response.status == 500
    assert response.body.startswith(b"Internal Server Error")
    plain.wait_for_stderr(message)


def test_close_is_called_for_failing_iterables(plain: ServerProcess) -> None:
    simple_get(plain, "/no-start")
    simple_get(plain, "/str-body")
    simple_get(plain, "/bad-header")
    counts = closed(plain)
    assert counts.get("no-start", 0) >= 1
    assert counts.get("str-body", 0) >= 1
    assert counts.get("bad-header", 0) >= 1


def test_close_raising_is_reported(plain: ServerProcess) -> None:
    sock = connect(plain)
    with sock:
        sock.sendall(b"GET /close-raises HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(sock)
        _, status, _, _, _ = reader.read_head()
        assert status == 200
        assert reader.read_chunk() == b"body"
        # close() raised after the head went out: the response cannot complete.
        assert reader.wait_closed() == b""
    assert closed(plain).get("close-raises") == 1
    plain.wait_for_stderr("close() failing on purpose")


def test_close_is_called_when_the_client_disconnects(plain: ServerProcess) -> None:
    before = closed(plain).get("endless", 0)
    sock = connect(plain)
    sock.sendall(b"GET /endless HTTP/1.1\r\nHost: t\r\n\r\n")
    reader = ResponseReader(sock)
    reader.read_head()
    assert reader.read_chunk() == b"x" * 4096
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()
    # No signal for "the server noticed": poll /closed (each poll is a full request).
    for _ in range(500):
        if closed(plain).get("endless", 0) > before:
            break
    assert closed(plain).get("endless", 0) == before + 1


def test_validator_reported_nothing(server: ServerProcess) -> None:
    # Every request above went through wsgiref.validate with warnings as errors.
    simple_get(server, "/environ")
    assert "Traceback" not in server.stderr
    assert "WSGIWarning" not in server.stderr


# -- root path -----------------------------------------------------------------------------


def test_root_path(backend: str) -> None:
    with ServerProcess(VALIDATED, backend, "--interface", "wsgi", "--root-path", "/api/") as srv:
        environ = requests.get(srv.url("/api/environ"), timeout=10).json()
        assert environ["SCRIPT_NAME"] == "/api"
        assert environ["PATH_INFO"] == "/environ"
        # Only a whole segment is a prefix; other paths are passed through unchanged.
        response = requests.get(srv.url("/apixyz"), timeout=10)
        assert response.text == "not found: /apixyz"
        response = requests.get(srv.url("/api"), timeout=10)
        assert response.text == "not found: "


def test_wsgi_module_constants() -> None:
    assert basic.LARGE_SIZE > wsgi.BUFFER_LIMIT
