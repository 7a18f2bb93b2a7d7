"""End to end: streamed responses and Server-Sent Events read by a real client as they come, and
sendfile of a large file (tests/apps/streaming.py, one server process per backend).

Incremental delivery is proven without timing: the handler produces its next piece only after
the client, having received the previous one, opens a gate with another request.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from http_helpers import ResponseReader, ServerProcess, assert_closed, connect

APP = "tests.apps.streaming:app"
LARGE_FILE_SIZE = 100 * 1024 * 1024


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend`` (same parametrisation)."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(APP, backend) as process:
        yield process


@pytest.fixture(scope="module")
def large_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 100 MiB file: random blocks with a sparse hole in the middle; (path, sha256)."""
    path = tmp_path_factory.mktemp("sendfile") / "large.bin"
    digest = hashlib.sha256()
    block = os.urandom(1 << 20)
    with path.open("wb") as handle:
        for index in range(100):
            if 40 <= index < 60:
                handle.seek(1 << 20, os.SEEK_CUR)  # a hole: reads as zeros
                digest.update(bytes(1 << 20))
            else:
                data = block[index:] + block[:index]
                handle.write(data)
                digest.update(data)
        handle.truncate(LARGE_FILE_SIZE)
    assert path.stat().st_size == LARGE_FILE_SIZE
    return path, digest.hexdigest()


def open_gate(server: ServerProcess, name: str) -> int:
    response = requests.post(server.url(f"/gate/{name}"), timeout=10)
    assert response.status_code == 200
    woken: int = response.json()["woken"]
    return woken


def test_stream_chunks_arrive_one_by_one(server: ServerProcess) -> None:
    name = uuid.uuid4().hex
    count = 4
    with requests.get(
        server.url(f"/chunks/{name}?count={count}"), stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        pieces = response.raw.stream(amt=None, decode_content=False)
        received = []
        for index in range(count):
            # chunk i is here while the handler still waits for gate i before producing i+1.
            assert next(pieces) == f"chunk-{index};".encode()
            received.append(index)
            if index + 1 < count:
                assert open_gate(server, f"{name}-{index}") == 1
        assert list(pieces) == []
    assert received == list(range(count))


def parse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
            continue
        field, _, value = line.partition(":")
        event[field] = value.removeprefix(" ")


def test_server_sent_events_arrive_as_produced(server: ServerProcess) -> None:
    name = uuid.uuid4().hex
    count = 3
    with requests.get(
        server.url(f"/sse/{name}?count={count}"),
        stream=True,
        timeout=10,
        headers={"Accept": "text/event-stream"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Cache-Control"] == "no-cache"
        lines = (line.decode() for line in response.iter_lines(chunk_size=1))
        events = parse_events(lines)
        for index in range(count):
            event = next(events)
            assert event == {"id": str(index), "event": "tick", "data": f"event {index}"}
            if index + 1 < count:
                # The handler is blocked before the next event: exactly one waiter wakes.
                assert open_gate(server, f"{name}-{index}") == 1
        assert list(events) == []


def test_many_concurrent_streams_interleave(server: ServerProcess) -> None:
    """Several streams open at once, each advanced in turn: one waiting handler does not hold
    up the others."""
    names = [uuid.uuid4().hex for _ in range(5)]
    responses = [
        requests.get(server.url(f"/chunks/{name}?count=2"), stream=True, timeout=10)
        for name in names
    ]
    try:
        streams = [response.raw.stream(amt=None, decode_content=False) for response in responses]
        for stream in streams:
            assert next(stream) == b"chunk-0;"
        for name, stream in zip(reversed(names), reversed(streams), strict=True):
            assert open_gate(server, f"{name}-0") == 1
            assert next(stream) == b"chunk-1;"
            assert list(stream) == []
    finally:
        for response in responses:
            response.close()


def test_sendfile_100_mib(server: ServerProcess, large_file: tuple[Path, str]) -> None:
    path, expected_digest = large_file
    digest = hashlib.sha256()
    length = 0
    with requests.get(server.url("/file"), params={"path": str(path)}, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Length"] == str(LARGE_FILE_SIZE)
        assert response.headers["Content-Type"] == "application/octet-stream"
        for piece in response.iter_content(chunk_size=1 << 20):
            digest.update(piece)
            length += len(piece)
    assert length == LARGE_FILE_SIZE
    assert digest.hexdigest() == expected_digest


def test_sendfile_head_sends_headers_only(
    server: ServerProcess, large_file: tuple[Path, str]
) -> None:
    path, _ = large_file
    sock = connect(server)
    reader = ResponseReader(sock)
    with sock:
        target = f"/file?path={path}"
        sock.sendall(f"HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head = reader.read_response("HEAD")
        assert head.status == 200
        assert head.header("Content-Length") == str(LARGE_FILE_SIZE)
        # No body followed the head: the next response on the connection parses cleanly.
        sock.sendall(b"POST /gate/unused HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        after = reader.read_response()
        assert after.status == 200
        assert after.body == b'{"woken":0}'


def test_sendfile_small_text_file(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "hello.txt"
    path.write_text("hello sendfile\n")
    response = requests.get(server.url("/text-file"), params={"path": str(path)})
    assert response.status_code == 200
    assert response.content == b"hello sendfile\n"
    assert response.headers["Content-Length"] == "15"


def test_sendfile_empty_file(server: ServerProcess, tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    response = requests.get(server.url("/file"), params={"path": str(path)})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "0"


def test_client_leaving_mid_sendfile_does_not_hurt_the_server(
    server: ServerProcess, large_file: tuple[Path, str]
) -> None:
    path, _ = large_file
    sock = connect(server)
    reader = ResponseReader(sock)
    sock.sendall(f"GET /file?path={path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    status = reader.read_head()[1]
    assert status == 200
    sock.recv(65536)
    sock.close()  # 100 MiB still to send
    response = requests.get(server.url("/text-file"), params={"path": __file__})
    assert response.status_code == 200
    assert server.alive


def test_sigterm_lets_in_flight_requests_finish(backend: str) -> None:
    """SIGTERM while two requests are in flight: a stream waiting on a gate, and an upload whose
    handler is reading the body. Both complete after the signal (the upload opens the gate), with
    Connection: close; then the server exits 0."""
    name = uuid.uuid4().hex
    with ServerProcess(APP, backend) as server:
        stream_sock = connect(server)
        stream = ResponseReader(stream_sock)
        upload_sock = connect(server)
        upload = ResponseReader(upload_sock)
        with stream_sock, upload_sock:
            stream_sock.sendall(f"GET /sse/{name}?count=2 HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert stream.read_head()[1] == 200
            first = stream.read_chunk()
            assert first is not None and first.startswith(b"id: 0\n")
            upload_sock.sendall(
                f"POST /gate-after-body/{name}-0 HTTP/1.1\r\nHost: t\r\n"
                "Expect: 100-continue\r\nContent-Length: 4\r\n\r\n".encode()
            )
            # 100 Continue: the upload's handler is running (reading the body).
            assert upload.read_response(skip_interim=False).status == 100
            server.terminate()
            upload_sock.sendall(b"open")
            response = upload.read_response()
            assert response.status == 200
            assert response.body == b'{"body":"open","woken":1}'
            assert (response.header("Connection") or "").lower() == "close"
            assert_closed(upload)
            second = stream.read_chunk()
            assert second is not None and second.startswith(b"id: 1\n")
            assert stream.read_chunk() is None  # the terminating chunk: the response completed
            assert_closed(stream)
        assert server.wait_exit() == 0
