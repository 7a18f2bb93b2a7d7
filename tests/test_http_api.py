"""End to end: routing, middleware, every Request and Response member, handler errors.

One server process per backend (tests/apps/api.py) serves the whole module; clients are
``requests``, ``http.client`` and raw sockets.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from http_helpers import ResponseReader, ServerProcess, connect, exchange

APP = "tests.apps.api:app"
# Handlers that fail on purpose: the server logs these tracebacks (and no other).
EXPECTED_ERRORS = (
    "RuntimeError: handler-failure-marker-1234",
    "RuntimeError: failure-after-flush-marker-5678",
    "RuntimeError: generator-failure-marker-9012",
    "FileNotFoundError: [Errno 2] No such file or directory: '/nonexistent/file'",
    "IsADirectoryError: [Errno 21] Is a directory: '/tmp'",
    "ValueError: embedded null byte",
)


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend`` (same parametrisation), so that one
    server process per backend serves the whole module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(APP, backend, expected_errors=EXPECTED_ERRORS) as process:
        yield process


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as client:
        yield client


def trace(response: requests.Response) -> list[str]:
    return [value.strip() for value in response.headers.get("X-Trace", "").split(",") if value]


# -- routing -----------------------------------------------------------------------------------


def test_static_route_and_middleware_order(server: ServerProcess) -> None:
    response = requests.get(server.url("/"))
    assert response.status_code == 200
    assert response.text == "index"
    assert trace(response) == ["outer-in", "inner-in", "handler", "inner-out", "outer-out"]


def test_route_parameters(server: ServerProcess, session: requests.Session) -> None:
    response = session.get(server.url("/users/42"))
    assert response.json() == {"route": "user", "params": {"user_id": "42"}}
    response = session.get(server.url("/users/me"))
    assert response.json() == {"route": "me", "params": {}}
    response = session.get(server.url("/users/7/posts/abc"))
    assert response.json() == {"route": "user_post", "params": {"user_id": "7", "post_id": "abc"}}
    response = session.get(server.url("/files/a/b/c.txt"))
    assert response.json() == {"route": "files", "params": {"rest": "a/b/c.txt"}}


def test_percent_decoded_path_parameter(server: ServerProcess) -> None:
    response = requests.get(server.url("/users/J%C3%BCrgen%20X"))
    assert response.json() == {"route": "user", "params": {"user_id": "J\u00fcrgen X"}}


def test_unknown_path_is_404(server: ServerProcess, session: requests.Session) -> None:
    for path in ("/nope", "/users", "/users/1/posts", "/files/", "/users/1/"):
        response = session.get(server.url(path))
        assert response.status_code == 404, path
        assert response.text.startswith("Not Found")
        # Middleware also run around routing errors.
        assert trace(response)[:2] == ["outer-in", "inner-in"]


def test_wrong_method_is_405_with_allow(server: ServerProcess, session: requests.Session) -> None:
    response = session.delete(server.url("/items"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    response = session.post(server.url("/users/1"))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert session.post(server.url("/items")).json() == {"method": "POST"}


def test_head_on_get_route_has_headers_and_no_body(server: ServerProcess) -> None:
    get, reader = exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    with reader.sock:
        reader.sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = reader.read_response("HEAD")
        # The connection stays usable: a HEAD body would be parsed as the next response.
        reader.sock.sendall(b"GET /users/5 HTTP/1.1\r\nHost: t\r\n\r\n")
        after = reader.read_response()
    assert head.status == 200
    assert head.header("Content-Length") == get.header("Content-Length") == "5"
    assert after.status == 200
    assert json.loads(after.body)["params"] == {"user_id": "5"}


def test_middleware_short_circuit(server: ServerProcess) -> None:
    response = requests.get(server.url("/blocked/secret"))
    assert response.status_code == 403
    assert response.text == "blocked by middleware"
    assert trace(response) == ["outer-in", "inner-in", "outer-out"]


# -- Request members ---------------------------------------------------------------------------


def test_request_members(server: ServerProcess) -> None:
    raw = (
        b"POST /request/some%20name/a%2Fb/c?x=1&x=2&y=caf%C3%A9&flag HTTP/1.1\r\n"
        b"Host: example.test\r\n"
        b"X-Multi: one\r\n"
        b"x-multi: two\r\n"
        b"X-Case-Test: MiXeD\r\n"
        b"Content-Length: 11\r\n"
        b"\r\n"
        b"hello\x00world"
    )
    response, reader = exchange(server, raw)
    local_port = reader.sock.getsockname()[1]
    reader.sock.close()
    assert response.status == 200, response.body
    info = json.loads(response.body)
    assert info["method"] == "POST"
    assert info["path"] == "/request/some name/a/b/c"
    assert info["raw_path"] == "/request/some%20name/a%2Fb/c"
    assert info["query_string"] == "x=1&x=2&y=caf%C3%A9&flag"
    assert info["query_params"]["x"] == ["1", "2"]
    assert info["query_params"]["y"] == ["caf\u00e9"]
    assert info["query_params"]["flag"] == [""]
    assert info["x_multi"] == ["one", "two"]
    assert info["x_case"] == "MiXeD"
    assert ["Host", "example.test"] in info["headers"]
    assert info["version"] == "HTTP/1.1"
    assert info["params"] == {"name": "some name", "tail": "a/b/c"}
    assert info["client"] == ["127.0.0.1", local_port]
    assert info["body"] == "hello\x00world"
    assert info["body_length"] == 11


def test_request_without_query_or_body(server: ServerProcess) -> None:
    info = requests.get(server.url("/request")).json()
    assert info["method"] == "GET"
    assert info["path"] == info["raw_path"] == "/request"
    assert info["query_string"] == ""
    assert info["query_params"] == {}
    assert info["params"] == {}
    assert info["body"] == ""
    assert info["x_multi"] == []
    assert info["x_case"] is None


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
def test_request_method(server: ServerProcess, method: str) -> None:
    assert requests.request(method, server.url("/request")).json()["method"] == method


def test_request_body_chunked_upload(server: ServerProcess) -> None:
    pieces = [b"a" * 1000, b"b" * 70000, b"", b"c"]

    def generate() -> Iterator[bytes]:
        yield from (piece for piece in pieces if piece)

    response = requests.post(server.url("/upload"), data=generate())
    expected = b"".join(pieces)
    assert response.json() == {
        "length": len(expected),
        "sha256": hashlib.sha256(expected).hexdigest(),
    }


def test_request_read_streams_in_pieces(server: ServerProcess) -> None:
    body = bytes(range(256)) * 1000  # 256,000 bytes
    response = requests.post(server.url("/read?size=10000"), data=body)
    result = response.json()
    assert result["total"] == len(body)
    assert result["sha256"] == hashlib.sha256(body).hexdigest()
    assert all(0 < length <= 10000 for length in result["lengths"])
    assert len(result["lengths"]) >= len(body) // 10000
    assert result["after_end"] == ""


def test_request_read_chunked_body(server: ServerProcess) -> None:
    raw = (
        b"POST /read?size=3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    response, reader = exchange(server, raw)
    reader.sock.close()
    result = json.loads(response.body)
    assert result["total"] == 12
    assert result["sha256"] == hashlib.sha256(b"hello world!").hexdigest()
    # read(3) returns at most 3 bytes, also when the chunks are larger and already buffered.
    assert all(0 < length <= 3 for length in result["lengths"]), result["lengths"]


def test_request_json(server: ServerProcess) -> None:
    document = {"a": [1, 2.5, None, True], "b": "\u00e9\u4e2d"}
    response = requests.post(server.url("/json"), json=document)
    assert response.status_code == 200
    assert response.json() == {"received": document}


@pytest.mark.parametrize("body", [b"{not json", b"", b"\xff\xfe", b"[1, 2"])
def test_request_invalid_json_is_400(server: ServerProcess, body: bytes) -> None:
    response = requests.post(
        server.url("/json"), data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


# -- Response members --------------------------------------------------------------------------


def test_response_headers_and_two_set_cookies(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET /headers HTTP/1.1\r\nHost: t\r\n\r\n")
    reader.sock.close()
    assert response.status == 200
    assert response.header_values("Set-Cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert response.header_values("X-Replaced") == ["second"]
    assert response.header_values("Content-Type") == ["text/x-test"]
    assert response.header("Date") is not None
    assert response.body == b"headers"


def test_response_write_bytes_and_str(server: ServerProcess) -> None:
    response = requests.get(server.url("/write"))
    assert response.content == "bytes|str-\u00e9|bytearray|memoryview".encode()
    assert response.headers["Content-Length"] == str(len(response.content))


def test_response_json(server: ServerProcess) -> None:
    response = requests.get(server.url("/json-response"))
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"numbers": [1, 2, 3], "text": "caf\u00e9", "nested": {"none": None}}


def test_response_flush_goes_chunked(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET /flush HTTP/1.1\r\nHost: t\r\n\r\n")
    with reader.sock:
        assert response.framing == "chunked"
        assert response.body == b"first|sent-before-flush=False|sent-after-flush=True"
        # The connection is still usable after the chunked response.
        reader.sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"index"


def test_response_flush_http10_ends_with_close(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET /flush HTTP/1.0\r\nHost: t\r\n\r\n")
    reader.sock.close()
    assert response.framing == "close"
    assert response.body == b"first|sent-before-flush=False|sent-after-flush=True"


def test_response_stream(server: ServerProcess) -> None:
    response = requests.get(server.url("/stream"))
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.text == "part0|part1|part2|part3|part4|"


def test_invalid_header_names_and_values_raise_before_sending(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET /bad-header HTTP/1.1\r\nHost: t\r\n\r\n")
    reader.sock.close()
    assert response.status == 200
    outcome = json.loads(response.body)
    assert outcome.pop("headers_sent") == "False"
    assert outcome and set(outcome.values()) == {"ValueError"}, outcome
    assert response.header("X-Bad") is None
    assert response.header("Injected") is None
    assert b"Injected" not in response.raw_head


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(server: ServerProcess, code: int) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        # The handler writes a body: it must be dropped. Pipelined with a second request, a
        # leaked body would show up in place of the next status line.
        sock.sendall(
            f"GET /status/{code}?body=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
            + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first = reader.read_response()
        second = reader.read_response()
    assert first.status == code
    assert first.header("Transfer-Encoding") is None
    if code == 204:
        assert first.header("Content-Length") is None
    assert second.status == 200
    assert second.body == b"index"


def test_custom_status(server: ServerProcess) -> None:
    response = requests.get(server.url("/status/299"))
    assert response.status_code == 299
    assert response.headers["X-Status"] == "200->299"


# -- sendfile (small; the 100 MiB case is in test_http_streaming.py) --------------------------


def test_sendfile_small(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "small.bin"
    data = bytes(range(256)) * 40 + b"tail"
    path.write_bytes(data)
    response = requests.get(
        server.url("/sendfile"), params={"path": str(path), "type": "application/x-test"}
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/x-test"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.content == data


@pytest.mark.parametrize(
    "path", ["/nonexistent/file", "/tmp", "/etc/hostname\x00.txt"], ids=["missing", "dir", "nul"]
)
def test_sendfile_errors_are_500(server: ServerProcess, path: str) -> None:
    response = requests.get(server.url("/sendfile"), params={"path": path})
    assert response.status_code == 500
    assert response.text == "Internal Server Error\n"
    assert requests.get(server.url("/")).status_code == 200


# -- large responses ---------------------------------------------------------------------------


def expected_big(size: int) -> bytes:
    return (bytes(index % 251 for index in range(251)) * (size // 251 + 1))[:size]


@pytest.mark.parametrize("stream", ["0", "1"], ids=["content-length", "chunked"])
def test_large_response_body(server: ServerProcess, stream: str) -> None:
    size = 16 * 1024 * 1024 + 3
    response = requests.get(
        server.url("/big"), params={"size": str(size), "pieces": "7", "stream": stream}
    )
    assert response.status_code == 200
    if stream == "1":
        assert response.headers["Transfer-Encoding"] == "chunked"
    else:
        assert response.headers["Content-Length"] == str(size)
    assert len(response.content) == size
    assert response.content == expected_big(size)


def test_pipelined_large_responses_read_late(server: ServerProcess) -> None:
    """Responses larger than the socket buffers, all requested before the client reads any."""
    sizes = [3_000_000, 10, 2_000_001, 5]
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"".join(
                f"GET /big?size={size}&pieces=3 HTTP/1.1\r\nHost: t\r\n\r\n".encode()
                for size in sizes
            )
        )
        for size in sizes:
            response = reader.read_response()
            assert response.status == 200
            assert response.body == expected_big(size)


def test_obs_text_header_value_is_latin1(server: ServerProcess) -> None:
    response, reader = exchange(
        server, b"GET /request HTTP/1.1\r\nHost: t\r\nX-Case-Test: caf\xe9 \xff\r\n\r\n"
    )
    reader.sock.close()
    assert json.loads(response.body)["x_case"] == "caf\u00e9 \u00ff"


# -- errors ------------------------------------------------------------------------------------


def test_handler_exception_is_500_with_traceback_in_stderr(server: ServerProcess) -> None:
    response = requests.get(server.url("/error"))
    assert response.status_code == 500
    assert "handler-failure-marker-1234" not in response.text
    assert "Traceback" not in response.text
    assert "partial body" not in response.text
    stderr = server.wait_for_stderr("handler-failure-marker-1234")
    assert "Traceback" in stderr
    assert "RuntimeError: handler-failure-marker-1234" in stderr
    assert requests.get(server.url("/")).status_code == 200


def test_http_error_sets_status(server: ServerProcess) -> None:
    response = requests.get(server.url("/http-error"))
    assert response.status_code == 418
    assert response.headers["X-Reason"] == "teapot"
    assert response.text.startswith("short and stout")


def test_exception_after_flush_closes_the_connection(server: ServerProcess) -> None:
    response_sock = connect(server)
    reader = ResponseReader(response_sock)
    with response_sock:
        response_sock.sendall(b"GET /error-after-flush HTTP/1.1\r\nHost: t\r\n\r\n")
        _, status, _, headers, _ = reader.read_head()
        assert status == 200
        assert ("Transfer-Encoding", "chunked") in headers
        assert reader.read_chunk() == b"started|"
        # No terminating chunk: the client must see the body end abruptly.
        rest = reader.wait_closed()
        assert not rest.endswith(b"0\r\n\r\n"), rest
    server.wait_for_stderr("failure-after-flush-marker-5678")
    # http.client sees the truncated body as an error.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", "/error-after-flush")
        with pytest.raises(http.client.IncompleteRead):
            connection.getresponse().read()
    finally:
        connection.close()


def test_exception_in_stream_generator_closes_the_connection(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(b"GET /stream-error HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_head()[1] == 200
        assert reader.read_chunk() == b"one|"
        assert reader.read_chunk() == b"two|"
        # No terminating chunk: the body is cut short by the close.
        assert reader.wait_closed() == b""
    server.wait_for_stderr("generator-failure-marker-9012")


def test_client_address_is_the_peer(server: ServerProcess) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"GET /request HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        response = ResponseReader(sock).read_response()
        port = sock.getsockname()[1]
    assert json.loads(response.body)["client"] == ["127.0.0.1", port]
