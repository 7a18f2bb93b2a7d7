"""End to end: HTTP/1.1 connection handling — keep-alive, Connection: close, HTTP/1.0,
pipelining, chunked uploads, Expect: 100-continue, bodiless responses, 1,000 concurrent clients
(tests/apps/api.py, one server process per backend)."""

from __future__ import annotations

import hashlib
import http.client
import json
import selectors
import socket
import uuid
from collections.abc import Iterator

import pytest
from http_helpers import (
    ResponseReader,
    ServerClosed,
    ServerProcess,
    assert_closed,
    connect,
    exchange,
)

APP = "tests.apps.api:app"


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend`` (same parametrisation)."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(APP, backend) as process:
        yield process


def client_port(connection: http.client.HTTPConnection) -> int:
    assert connection.sock is not None
    port: int = connection.sock.getsockname()[1]
    return port


# -- keep-alive --------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(server: ServerProcess) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        ports = set()
        for index in range(10):
            connection.request("POST", "/request", body=f"body-{index}".encode())
            response = connection.getresponse()
            info = json.loads(response.read())
            assert response.status == 200
            assert info["body"] == f"body-{index}"
            assert response.getheader("Connection") in (None, "keep-alive")
            ports.add(info["client"][1])
            assert client_port(connection) in ports
        assert len(ports) == 1, "every request must have used the same connection"
    finally:
        connection.close()


def test_connection_close_is_honoured(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    with reader.sock:
        assert response.status == 200
        assert response.header("Connection") == "close"
        assert_closed(reader)


def test_http10_closes_by_default(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET / HTTP/1.0\r\n\r\n")
    with reader.sock:
        assert response.status == 200
        assert response.version == "HTTP/1.1" or response.version == "HTTP/1.0"
        assert (response.header("Connection") or "close").lower() == "close"
        assert_closed(reader)


def test_http10_keep_alive_when_asked(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    with reader.sock:
        assert response.status == 200
        assert (response.header("Connection") or "").lower() == "keep-alive"
        reader.sock.sendall(b"GET /users/3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        second = reader.read_response()
        assert json.loads(second.body)["params"] == {"user_id": "3"}
        reader.sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert reader.read_response().body == b"index"
        assert_closed(reader)


def test_request_version_reported(server: ServerProcess) -> None:
    response, reader = exchange(server, b"GET /request HTTP/1.0\r\n\r\n")
    reader.sock.close()
    assert json.loads(response.body)["version"] == "HTTP/1.0"


# -- pipelining --------------------------------------------------------------------------------


def test_pipelining_ten_requests_in_one_write(server: ServerProcess) -> None:
    requests_bytes = b"".join(
        f"POST /request?n={index} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(str(index))}"
        f"\r\n\r\n{index}".encode()
        if index % 2
        else f"GET /users/{index} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
        for index in range(10)
    )
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(requests_bytes)
        for index in range(10):
            response = reader.read_response()
            assert response.status == 200
            body = json.loads(response.body)
            if index % 2:
                assert body["query_string"] == f"n={index}"
                assert body["body"] == str(index)
            else:
                assert body["params"] == {"user_id": str(index)}
        # Still open and usable.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert reader.read_response().body == b"index"
        assert_closed(reader)


def test_pipelined_requests_after_close_are_ignored(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            b"GET /users/1 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert reader.read_response().body == b"index"
        assert_closed(reader)


def test_pipelined_requests_with_head_and_errors(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /status/204 HTTP/1.1\r\nHost: t\r\n\r\n"
            b"DELETE /items HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert reader.read_response("HEAD").status == 200
        assert reader.read_response().status == 404
        assert reader.read_response().status == 204
        assert reader.read_response().status == 405
        last = reader.read_response()
        assert last.status == 200
        assert last.body == b"index"


# -- request bodies ----------------------------------------------------------------------------


def test_chunked_upload_in_many_writes(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    payload = b""
    with sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for index in range(50):
            piece = bytes([index]) * (index * 97 + 1)
            payload += piece
            sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        response = reader.read_response()
        assert response.status == 200
        assert json.loads(response.body) == {
            "length": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        # Keep-alive after a chunked request body.
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read_response().body == b"index"


def test_unread_body_is_skipped_before_the_next_request(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789"
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        first = reader.read_response()
        assert first.status == 201
        second = reader.read_response()
        assert second.status == 200
        assert second.body == b"index"


def test_expect_100_continue(server: ServerProcess) -> None:
    body = b"x" * 5000
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: 5000\r\n\r\n"
        )
        interim = reader.read_response(skip_interim=False)
        assert interim.status == 100
        assert interim.reason == "Continue"
        sock.sendall(body)
        response = reader.read_response()
        assert response.status == 200
        assert json.loads(response.body)["length"] == 5000


def test_expect_100_continue_handler_answers_without_reading(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        # The final answer comes without a 100 Continue and without the body having been sent.
        response = reader.read_response(skip_interim=False)
        assert response.status == 201
        assert response.body == b"not read"
        # The body was never sent: the server must either close the connection, or keep it
        # and skip the body when it comes.
        if (response.header("Connection") or "").lower() == "close":
            assert_closed(reader)
        else:
            sock.sendall(b"x" * 1000000 + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reader.read_response().body == b"index"


def test_expect_100_continue_with_http_client(server: ServerProcess) -> None:
    # http.client does not wait for 100 Continue: the body follows at once; it must still work.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("POST", "/upload", body=b"abc", headers={"Expect": "100-continue"})
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["length"] == 3
    finally:
        connection.close()


# -- bodiless responses ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/json-response", "/stream", "/flush", "/nope"])
def test_head_responses_carry_no_body(server: ServerProcess, path: str) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()
            + b"GET /users/9 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        head = reader.read_response("HEAD")
        assert head.status in (200, 404)
        # A body after the HEAD response would be read as the next status line.
        after = reader.read_response()
        assert after.status == 200
        assert json.loads(after.body)["params"] == {"user_id": "9"}


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_keep_the_connection_in_sync(server: ServerProcess, code: int) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        for _ in range(3):
            sock.sendall(f"GET /status/{code}?body=1 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            response = reader.read_response()
            assert response.status == code
            assert response.header("Transfer-Encoding") is None
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert reader.read_response().body == b"index"
        assert_closed(reader)


# -- concurrency -------------------------------------------------------------------------------


def test_thousand_concurrent_clients(server: ServerProcess) -> None:
    """1,000 connections, each with a request that the server answers only once all 1,000
    handlers are running at the same time (a barrier in the app)."""
    count = 1000
    name = uuid.uuid4().hex
    request = f"GET /barrier/{name}?n={count} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    selector = selectors.DefaultSelector()
    sockets: list[socket.socket] = []
    received: dict[int, bytearray] = {}
    try:
        for _ in range(count):
            client: socket.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(client)
            client.setblocking(False)
            client.connect_ex(server.address)
            selector.register(client, selectors.EVENT_WRITE)
        pending = count
        while pending:
            events = selector.select(timeout=30)
            assert events, f"no progress for 30 s with {pending} clients unanswered"
            for key, mask in events:
                assert isinstance(key.fileobj, socket.socket)
                client = key.fileobj
                if mask & selectors.EVENT_WRITE:
                    error = client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    assert error == 0, f"connect failed: {error}"
                    client.sendall(request.encode())  # small: fits in the empty send buffer
                    received[client.fileno()] = bytearray()
                    selector.modify(client, selectors.EVENT_READ)
                    continue
                data = client.recv(65536)
                if data:
                    received[client.fileno()] += data
                else:
                    selector.unregister(client)
                    pending -= 1
    finally:
        selector.close()
        for sock in sockets:
            sock.close()
    assert len(received) == count
    statuses = {bytes(data.split(b"\r\n", 1)[0]) for data in received.values()}
    assert statuses == {b"HTTP/1.1 200 OK"}
    bodies = {bytes(data.split(b"\r\n\r\n", 1)[1]) for data in received.values()}
    assert bodies == {b'{"released":true}'}


def test_many_pipelined_requests_with_large_responses(server: ServerProcess) -> None:
    """300 requests in one write whose responses (30 MB in all) overflow every buffer: the
    server must pause on a full socket and resume as the client reads."""
    sock = connect(server, timeout=30)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(b"GET /big?size=100000 HTTP/1.1\r\nHost: t\r\n\r\n" * 300)
        for _ in range(300):
            response = reader.read_response()
            assert response.status == 200
            assert len(response.body) == 100000


def test_large_unread_body_is_skipped(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(
            b"POST /ignore-body HTTP/1.1\r\nHost: t\r\nContent-Length: 500000\r\n\r\n"
            + b"x" * 500000
            + b"GET /users/7 HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert reader.read_response().status == 201
        # Either the server skipped the body and answers the next request, or it closed.
        try:
            following = reader.read_response()
        except ServerClosed:
            return
        assert json.loads(following.body)["params"] == {"user_id": "7"}


def test_request_then_half_close_still_answered(server: ServerProcess) -> None:
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        sock.sendall(b"GET /users/5 HTTP/1.1\r\nHost: t\r\n\r\n")
        sock.shutdown(socket.SHUT_WR)
        response = reader.read_response()
        assert response.status == 200
        assert json.loads(response.body)["params"] == {"user_id": "5"}
        assert_closed(reader)


def test_body_exactly_at_the_default_limit(server: ServerProcess) -> None:
    body = b"y" * 1048576
    response, reader = exchange(
        server,
        b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n" + body,
    )
    reader.sock.close()
    assert response.status == 200
    assert json.loads(response.body)["length"] == len(body)
