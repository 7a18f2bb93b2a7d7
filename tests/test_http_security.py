"""End to end over raw sockets: malformed, oversized, smuggling and slow requests.

Each rejected request must get the exact status, the connection must be closed afterwards, and
the server must still answer the next client. Two server processes per backend serve the module
(tests/apps/echo.py): one with the default limits, one with tight limits and timeouts given on the
command line. At the end each server must still be alive, hold no more file descriptors than
before the suite, and have no crash or traceback in its stderr (checked when it stops).
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import pytest
from http_helpers import (
    RawResponse,
    ResponseReader,
    ServerClosed,
    ServerProcess,
    assert_closed,
    connect,
    reset,
    simple_get,
)

APP = "tests.apps.echo:app"
TIGHT_OPTIONS = (
    "--header-timeout",
    "1",
    "--keepalive-timeout",
    "1",
    "--max-header-size",
    "1024",
    "--max-body-size",
    "100",
)


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend`` (same parametrisation)."""
    name: str = request.param
    return name


def settled_fds(server: ServerProcess, timeout: float = 10.0) -> tuple[list[str], list[str]]:
    """The server's fds (connections, others) once it holds no TCP connection, or after
    ``timeout``. Polls /proc: connections answered with an error linger briefly before they
    close, and nothing signals that close."""
    deadline = time.monotonic() + timeout
    while True:
        connections, others = server.fds_split()
        if not connections or time.monotonic() > deadline:
            return connections, others
        time.sleep(0.05)


@contextlib.contextmanager
def checked_server(backend: str, *options: str) -> Iterator[ServerProcess]:
    """A server for the module; afterwards it must be alive, answer, hold no connection fd and
    exactly the other fds it had before the tests, and have a clean stderr."""
    with ServerProcess(APP, backend, *options) as server:
        assert simple_get(server).status == 200
        connections, baseline = settled_fds(server)
        assert not connections, f"a closed connection is still open: {connections}"
        yield server
        assert server.alive, f"the server died:\n{server.stderr}"
        assert simple_get(server).status == 200
        connections, others = settled_fds(server)
        assert not connections, f"connection fds still open after the suite: {connections}"
        assert others == baseline, f"fds before the suite {baseline}, after {others}"
        server.check_stderr()


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with checked_server(backend) as process:
        yield process


@pytest.fixture(scope="module")
def tight_server(backend: str) -> Iterator[ServerProcess]:
    with checked_server(backend, *TIGHT_OPTIONS) as process:
        yield process


def send_all_tolerant(sock: socket.socket, data: bytes) -> None:
    """Sends ``data``; the server may answer and close before it has read everything."""
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(data)


def rejected(server: ServerProcess, data: bytes, status: int) -> RawResponse:
    """Sends ``data`` on a fresh connection and checks: the response has ``status`` and
    Connection: close, the server closes the connection, and it still serves a new client."""
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        send_all_tolerant(sock, data)
        try:
            response = reader.read_response()
        except ServerClosed as closed:
            raise AssertionError(
                f"expected {status}, the connection closed after {closed.received[:300]!r}"
            ) from None
        assert response.status == status, (response.status, response.raw_head, response.body)
        assert (response.header("Connection") or "").lower() == "close", response.raw_head
        assert_closed(reader)
    assert simple_get(server).status == 200, "the server no longer answers"
    return response


HEAD = b"POST / HTTP/1.1\r\nHost: t\r\n"


# -- request smuggling -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n",
    ],
    ids=["cl-te", "te-cl", "te-cl0"],
)
def test_transfer_encoding_with_content_length(server: ServerProcess, headers: bytes) -> None:
    rejected(server, HEAD + headers + b"\r\n0\r\n\r\nhello", 400)


@pytest.mark.parametrize(
    "headers",
    [
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        b"Content-Length: 5, 6\r\n",
        b"Content-Length: 6\r\ncontent-length: 5\r\n",
    ],
    ids=["two-lines", "list", "case"],
)
def test_differing_duplicate_content_length(server: ServerProcess, headers: bytes) -> None:
    rejected(server, HEAD + headers + b"\r\nhello!", 400)


@pytest.mark.parametrize(
    "value",
    [b"abc", b"-1", b"+5", b"5x", b"0x10", b"1 2", b"", b"99999999999999999999999999"],
    ids=["letters", "negative", "plus", "suffix", "hex", "space", "empty", "overflow"],
)
def test_bad_content_length(server: ServerProcess, value: bytes) -> None:
    rejected(server, HEAD + b"Content-Length: " + value + b"\r\n\r\nhello", 400)


@pytest.mark.parametrize(
    "data",
    [
        HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\nHost: t\n\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
    ],
    ids=["chunked-twice", "te-twice", "te-http10", "bare-lf-head", "bad-trailer", "bare-lf-chunks"],
)
def test_ambiguous_framing(server: ServerProcess, data: bytes) -> None:
    rejected(server, data, 400)


def test_obs_fold(server: ServerProcess) -> None:
    rejected(server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n  b\r\n\r\n", 400)
    rejected(server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n\tb\r\n\r\n", 400)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\rHost: t\r\n\r\n",
        b"GET /\r HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\r\n",
    ],
    ids=["header-value", "request-line-end", "target", "blank-line"],
)
def test_bare_cr(server: ServerProcess, data: bytes) -> None:
    rejected(server, data, 400)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x1bb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX\x00A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\nX-B: b\r\n\r\n",
    ],
    ids=[
        "target-nul",
        "target-soh",
        "target-del",
        "value-nul",
        "value-soh",
        "value-esc",
        "name-nul",
        "bare-lf-in-value",
    ],
)
def test_control_characters(server: ServerProcess, data: bytes) -> None:
    rejected(server, data, 400)


@pytest.mark.parametrize(
    "data",
    [
        b"G(T / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GE:T / HTTP/1.1\r\nHost: t\r\n\r\n",
        b'G"T / HTTP/1.1\r\nHost: t\r\n\r\n',
        b" GET / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX@A: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX(A): b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-A : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\n: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: t\r\nX-\xc3\xa9: b\r\n\r\n",
    ],
    ids=[
        "method-paren",
        "method-colon",
        "method-quote",
        "method-leading-space",
        "name-space",
        "name-at",
        "name-parens",
        "space-before-colon",
        "empty-name",
        "name-utf8",
    ],
)
def test_invalid_token_characters(server: ServerProcess, data: bytes) -> None:
    rejected(server, data, 400)


@pytest.mark.parametrize("coding", [b"gzip", b"gzip, chunked", b"deflate"])
def test_transfer_encoding_other_than_chunked(server: ServerProcess, coding: bytes) -> None:
    rejected(server, HEAD + b"Transfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n", 501)


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nhello\r\n0\r\n\r\n", b"-1\r\nx\r\n0\r\n\r\n", b"\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"],
    ids=["not-hex", "negative", "empty-size", "missing-crlf"],
)
def test_invalid_chunk(server: ServerProcess, body: bytes) -> None:
    rejected(server, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body, 400)


def test_chunk_size_overflow(server: ServerProcess) -> None:
    # A size that does not fit in 64 bits is larger than any body limit: 413.
    rejected(
        server,
        HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\nx\r\n0\r\n\r\n",
        413,
    )


# -- sizes -------------------------------------------------------------------------------------


def test_request_line_too_long(server: ServerProcess) -> None:
    rejected(server, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414)


def test_request_line_too_long_without_end(server: ServerProcess) -> None:
    # The client is still sending the request line: the server answers once 8 KiB passed.
    rejected(server, b"GET /" + b"a" * 20000, 414)


def test_header_block_too_large(server: ServerProcess) -> None:
    rejected(server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431)


def test_header_block_too_large_in_many_lines(server: ServerProcess) -> None:
    lines = b"".join(b"X-H%d: %s\r\n" % (index, b"v" * 500) for index in range(80))
    rejected(server, b"GET / HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n", 431)


def test_ten_thousand_headers(server: ServerProcess) -> None:
    lines = b"".join(b"X-%d: v\r\n" % index for index in range(10000))
    rejected(server, b"GET / HTTP/1.1\r\nHost: t\r\n" + lines + b"\r\n", 431)


def test_hundred_megabyte_content_length_refused_before_the_body(server: ServerProcess) -> None:
    # Only the head is sent: the answer must come without the body.
    rejected(server, HEAD + b"Content-Length: 100000000\r\n\r\n", 413)


def test_chunked_body_over_the_limit(server: ServerProcess) -> None:
    chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"  # 64 KiB each; the limit is 1 MiB
    rejected(server, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 20 + b"0\r\n\r\n", 413)


def test_chunked_body_over_the_limit_client_still_sending(server: ServerProcess) -> None:
    # Head and 1.5 MiB of chunks, without the last chunk: the client keeps the stream open.
    chunk = b"10000\r\n" + b"z" * 0x10000 + b"\r\n"
    rejected(server, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 24, 413)


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
        b"\xff\xfe\xfd\r\n\r\n",
        b"HELLO\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: t\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / FTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost t\r\n\r\n",
        b"/ GET HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ],
    ids=[
        "tls-hello",
        "binary",
        "one-word",
        "no-target",
        "extra-token",
        "double-space",
        "wrong-protocol",
        "no-colon",
        "slash-method",
        "missing-host",
        "two-hosts",
    ],
)
def test_garbage(server: ServerProcess, data: bytes) -> None:
    rejected(server, data, 400)


def test_unsupported_major_version(server: ServerProcess) -> None:
    rejected(server, b"GET / HTTP/2.0\r\n\r\n", 505)
    rejected(server, b"GET / HTTP/0.9\r\nHost: t\r\n\r\n", 505)


# -- clients that leave or stall ---------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [b"GET / HT", b"GET / HTTP/1.1\r\nHost: t\r\n", HEAD + b"Content-Length: 100\r\n\r\nabc"],
    ids=["request-line", "head", "body"],
)
def test_partial_request_then_close(server: ServerProcess, data: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        extra = ResponseReader(sock).wait_closed()
        # An unfinished request may be answered with 400 or left unanswered; nothing else.
        assert extra == b"" or extra.startswith(b"HTTP/1.1 400 "), extra
    assert simple_get(server).status == 200


@pytest.mark.parametrize(
    "data",
    [b"GET / HT", b"GET / HTTP/1.1\r\nHost: t\r\n", HEAD + b"Content-Length: 100\r\n\r\nabc"],
    ids=["request-line", "head", "body"],
)
def test_reset_mid_request(server: ServerProcess, data: bytes) -> None:
    sock = connect(server)
    sock.sendall(data)
    reset(sock)
    assert simple_get(server).status == 200


def test_reset_while_the_response_streams(server: ServerProcess) -> None:
    sock = connect(server)
    sock.sendall(HEAD + b"Content-Length: 3\r\n\r\nabc" + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
    reset(sock)
    assert simple_get(server).status == 200


def test_slow_headers_get_408(tight_server: ServerProcess) -> None:
    with connect(tight_server) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n")  # half a head, then nothing
        response = reader.read_response()  # waits on the socket; the header timeout is 1 s
        assert response.status == 408
        assert_closed(reader)
    assert simple_get(tight_server).status == 200


def test_header_timeout_is_total_not_per_read(tight_server: ServerProcess) -> None:
    """A slowloris client sending one byte every 0.2 s (its whole head would take 10 s) still
    gets 408 once the 1 s header timeout is over: the timer is not reset by each read."""
    head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"s" * 20 + b"\r\n\r\n"
    with connect(tight_server) as sock:
        reader = ResponseReader(sock)
        sent = 0
        while sent < len(head):
            # The pace of the attack, not a wait for the server: select returns at once when
            # the server answers.
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                break
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(head[sent : sent + 1])
            sent += 1
        assert sent < len(head), "the whole head went through without a 408"
        response = reader.read_response()
        assert response.status == 408
        assert_closed(reader)


def test_keepalive_idle_timeout_closes(tight_server: ServerProcess) -> None:
    with connect(tight_server) as sock:
        reader = ResponseReader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = reader.read_response()
        assert response.status == 200
        assert (response.header("Connection") or "keep-alive").lower() == "keep-alive"
        assert_closed(reader)  # the keep-alive timeout is 1 s; the socket timeout 10 s


def test_idle_connection_without_request_closes(tight_server: ServerProcess) -> None:
    with connect(tight_server) as sock:
        extra = ResponseReader(sock).wait_closed()
        assert extra == b"" or extra.startswith(b"HTTP/1.1 408 "), extra


def test_cli_max_header_size(tight_server: ServerProcess) -> None:
    small = b"GET / HTTP/1.1\r\nHost: t\r\nX-Fill: " + b"a" * 800 + b"\r\n\r\n"
    with connect(tight_server) as sock:
        sock.sendall(small)
        assert ResponseReader(sock).read_response().status == 200
    rejected(
        tight_server, b"GET / HTTP/1.1\r\nHost: t\r\nX-Fill: " + b"a" * 1100 + b"\r\n\r\n", 431
    )


def test_cli_max_body_size(tight_server: ServerProcess) -> None:
    with connect(tight_server) as sock:
        sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n" + b"b" * 100)
        response = ResponseReader(sock).read_response()
        assert response.status == 200
        assert response.body == b"POST / body=100"
    rejected(tight_server, HEAD + b"Content-Length: 101\r\n\r\n" + b"b" * 101, 413)
    rejected(tight_server, HEAD + b"Content-Length: 101\r\n\r\n", 413)
    rejected(
        tight_server,
        HEAD
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + (b"32\r\n" + b"c" * 50 + b"\r\n") * 3
        + b"0\r\n\r\n",
        413,
    )
