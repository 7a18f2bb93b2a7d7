"""WebSocket.listen(on_message, on_close) over real server processes and real clients (the
websockets library, the raw client of websocket_helpers): echo of text, binary, fragmented and
compressed messages in order, a blocking callback keeping the order, Group broadcasts from a
callback, on_close once with the right code (peer's close, protocol errors, a failing callback, an
unanswered ping, the drain's 1001), backpressure, metrics, and no greenlet held by idle listening
WebSockets. Every test runs on both backends (tests/websocket_apps/listen.py is the app)."""

from __future__ import annotations

import contextlib
import signal
import struct
import time
from collections.abc import Iterator

import pytest
import websockets
from prefork_apps.harness import ServerProcess, http_get
from websocket_helpers import (
    RawClient,
    assert_compressed_echo,
    assert_echoes_text_binary_and_fragments,
    assert_full_queue_stops_reading_and_loses_nothing,
    frame,
    serve,
)
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.timeout(120)

APP = "websocket_apps.listen:app"
TRACEBACKS = ("on_message failed on purpose", "the handler failed after listen()")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "listen_backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("backend")
        backends = ["io_uring", "epoll"] if chosen == "both" else [chosen]
        metafunc.parametrize("listen_backend", backends, ids=backends, scope="module")


@pytest.fixture(scope="module")
def server(listen_backend: str) -> Iterator[tuple[ServerProcess, int]]:
    process, port = serve(
        "--ws-max-message-size", "65536", "--backend", listen_backend,
        app=APP, expected_tracebacks=TRACEBACKS,
    )  # fmt: skip
    with process:
        yield process, port


@pytest.fixture
def port(server: tuple[ServerProcess, int]) -> int:
    return server[1]


def _close_code(ws: ClientConnection) -> tuple[int, str]:
    """Reads until the server closes: the code and reason of its close frame."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=30)
    assert closed.value.rcvd is not None, "the server sent no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_listen_echoes_text_binary_and_fragments_in_order(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/echo", compression=None) as ws:
        assert_echoes_text_binary_and_fragments(ws)
        # Many messages sent before any answer is read: one dispatch after the other, in order.
        for index in range(200):
            ws.send(f"message {index}" if index % 2 else f"message {index}".encode())
        for index in range(200):
            assert ws.recv() == (f"message {index}" if index % 2 else f"message {index}".encode())
        assert ws.ping(b"are you there").wait(10)


def test_listen_echoes_compressed_messages(port: int) -> None:
    text = "compressible text " * 2000
    with connect(f"ws://127.0.0.1:{port}/echo") as ws:  # websockets offers permessage-deflate
        assert [type(extension).__name__ for extension in ws.protocol.extensions] == [
            "PerMessageDeflate"
        ]
        for _ in range(3):  # context takeover across messages
            ws.send(text)
            assert ws.recv() == text
        ws.send(["fragmented ", "and compressed " * 50])
        assert ws.recv() == "fragmented " + "and compressed " * 50
        ws.send(bytes(range(256)) * 100)
        assert ws.recv() == bytes(range(256)) * 100


def test_compressed_echo_of_a_listening_websocket_is_compressed_on_the_wire(port: int) -> None:
    client = RawClient(port, Sec_WebSocket_Extensions="permessage-deflate; client_max_window_bits")
    try:
        assert "permessage-deflate" in client.head
        assert_compressed_echo(client)
    finally:
        client.close()


def test_a_blocking_callback_keeps_later_messages_in_order(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/slow") as ws:
        # Messages sent while the first callback sleeps arrive then, and must wait for it (a
        # callback per message in parallel would answer them first).
        ws.send("sleep:0.5:first")
        assert ws.recv() == "sleeping first"
        ws.send("second")
        ws.send("sleep:0.05:third")
        ws.send("fourth")
        assert [ws.recv() for _ in range(5)] == [
            "first",
            "second",
            "sleeping third",
            "third",
            "fourth",
        ]


def test_group_broadcast_from_a_callback_and_on_close_leaving_the_group(
    server: tuple[ServerProcess, int],
) -> None:
    process, port = server
    url = f"ws://127.0.0.1:{port}/room"
    with connect(url) as first, connect(url) as second:
        first.send("count")
        assert [first.recv(), second.recv(), first.recv()] == ["count", "count", "reached 2"]
        start = len(process.lines)
        with connect(url) as third:
            third.send("hello room")
            assert [first.recv(), second.recv(), third.recv()] == ["hello room"] * 3
        process.wait_for_line(r"on_close /room 1000 ''", start=start)
        # on_close took the third out of the group: the broadcast reaches two.
        second.send("count")
        assert [first.recv(), second.recv(), second.recv()] == ["count", "count", "reached 2"]


def test_on_close_is_called_once_with_the_peers_code(server: tuple[ServerProcess, int]) -> None:
    process, port = server
    start = len(process.lines)
    with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        ws.send("x")
        assert ws.recv() == "x"
        ws.close(4001, "client done")
    process.wait_for_line(r"on_close /echo 4001 'client done'", start=start)
    # A later session's end is logged after any second call for the first would have been.
    with connect(f"ws://127.0.0.1:{port}/echo") as ws:
        ws.close(4002, "marker")
    process.wait_for_line(r"on_close /echo 4002 'marker'", start=start)
    closes = [line for line in process.lines[start:] if line.startswith("on_close /echo 4001")]
    assert closes == ["on_close /echo 4001 'client done'"]


def test_decorator_route_listens_without_on_close(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/route") as ws:
        ws.send("over the decorator")
        assert ws.recv() == "over the decorator"
        ws.close(4003)
        assert ws.close_code == 4003


def test_a_callback_may_close_the_websocket(server: tuple[ServerProcess, int]) -> None:
    process, port = server
    start = len(process.lines)
    with connect(f"ws://127.0.0.1:{port}/close") as ws:
        ws.send("still open")
        assert ws.recv() == "still open"
        ws.send("bye")
        assert _close_code(ws) == (4000, "callback closed")
    process.wait_for_line(r"on_close /close 4000 'callback closed'", start=start)


def test_close_from_another_greenlet_returns_at_once_and_on_close_follows_the_answer(
    server: tuple[ServerProcess, int],
) -> None:
    process, port = server
    start = len(process.lines)
    client = RawClient(port, "/closable")  # answers the close only when the test says so
    try:
        client.send(frame(0x81, b"joined"))
        assert client.read_frame() == (0x81, b"joined")
        # The request closing it is answered while the client has not answered the close (a
        # close() waiting for the answer would hold it up to --ws-ping-timeout, 20 s).
        assert http_get(port, "/close-all", timeout=5)[0::2] == (200, "closed")
        assert client.read_close() == (4005, "closed by a request")
        assert not any(line.startswith("on_close /closable") for line in process.lines[start:])
        client.send(frame(0x88, struct.pack("!H", 4005)))
        process.wait_for_line(r"on_close /closable 4005 'closed by a request'", start=start)
        assert client.at_eof()
    finally:
        client.close()


def test_on_message_raising_closes_1011_and_logs_its_traceback(
    server: tuple[ServerProcess, int],
) -> None:
    process, port = server
    start = len(process.lines)
    with (
        connect(f"ws://127.0.0.1:{port}/echo") as bystander,
        connect(f"ws://127.0.0.1:{port}/fail") as failing,
    ):
        failing.send("fine")
        assert failing.recv() == "fine"
        failing.send("fail")
        assert _close_code(failing)[0] == 1011
        process.wait_for_line(r"on_close /fail 1011 ''", start=start)
        log = "\n".join(process.lines[start:])
        assert "Exception in WebSocket on_message callback <function failing_message" in log
        assert 'raise ValueError("on_message failed on purpose")' in log  # the traceback
        bystander.send("unaffected")
        assert bystander.recv() == "unaffected"


def test_handler_raising_after_listen_closes_1011_and_calls_on_close(
    server: tuple[ServerProcess, int],
) -> None:
    process, port = server
    start = len(process.lines)
    with connect(f"ws://127.0.0.1:{port}/raise") as ws:
        assert _close_code(ws)[0] == 1011
    process.wait_for_line(r"on_close /raise 1011 ''", start=start)
    assert any("the handler failed after listen()" in line for line in process.lines[start:])


def test_listen_twice_or_receive_after_listen_raise_runtime_error(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/misuse") as ws:
        assert [ws.recv(), ws.recv(), ws.recv()] == [
            "RuntimeError: listen() was already called on this WebSocket",
            "RuntimeError: receive() after listen(): this WebSocket's messages go to on_message",
            "RuntimeError: receive() after listen(): this WebSocket's messages go to on_message",
        ]
        ws.send("listening anyway")
        assert ws.recv() == "listening anyway"


BAD_INPUT = [
    pytest.param(frame(0x81, b"hi", masked=False), 1002, id="unmasked-frame"),
    pytest.param(frame(0x89, b"x" * 126), 1002, id="oversized-ping"),
    pytest.param(frame(0x81, b"ok \xc0\xaf"), 1007, id="invalid-utf8"),
    pytest.param(frame(0x01, b"ok") + frame(0x80, b"\xed\xa0\x80"), 1007, id="surrogate-fragment"),
    pytest.param(frame(0x82, b"z" * 65537), 1009, id="message-over-limit"),
    pytest.param(frame(0x02, b"z" * 40000) + frame(0x80, b"z" * 40000), 1009, id="fragments-over"),
]


@pytest.mark.parametrize(("data", "code"), BAD_INPUT)
def test_protocol_errors_close_with_their_code_and_call_on_close(
    server: tuple[ServerProcess, int], data: bytes, code: int
) -> None:
    process, port = server
    start = len(process.lines)
    with connect(f"ws://127.0.0.1:{port}/echo") as bystander:
        client = RawClient(port)
        try:
            client.send(frame(0x81, b"first"))
            assert client.read_frame() == (0x81, b"first")
            client.send(data)
            assert client.read_close()[0] == code
            assert client.at_eof()
        finally:
            client.close()
        process.wait_for_line(rf"on_close /echo {code} ", start=start)
        bystander.send("after")
        assert bystander.recv() == "after"


def test_invalid_compressed_data_closes_1007_and_calls_on_close(
    server: tuple[ServerProcess, int],
) -> None:
    process, port = server
    start = len(process.lines)
    client = RawClient(port, Sec_WebSocket_Extensions="permessage-deflate")
    try:
        client.send(frame(0xC2, b"\xff\xff\xff\xff not deflate"))
        assert client.read_close()[0] == 1007
        assert client.at_eof()
    finally:
        client.close()
    process.wait_for_line(r"on_close /echo 1007 'invalid compressed data'", start=start)


def test_keepalive_pings_close_a_silent_client_and_keep_an_answering_one(
    listen_backend: str,
) -> None:
    process, port = serve(
        "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3", "--backend", listen_backend,
        app=APP,
    )  # fmt: skip
    with process:
        silent = RawClient(port)
        try:
            assert silent.read_frame() == (0x89, b"")  # a ping, never answered
            assert silent.read_close() == (1011, "keepalive ping timeout")
            assert silent.at_eof()
        finally:
            silent.close()
        process.wait_for_line(r"on_close /echo 1011 'keepalive ping timeout'")
        answering = RawClient(port)
        try:
            # Three pings, each answered: the third comes after the first one's pong deadline
            # (0.2 + 0.2 > 0.3 s), so the pongs were taken.
            for _ in range(3):
                assert answering.read_frame() == (0x89, b"")
                answering.send(frame(0x8A, b""))
            answering.send(frame(0x81, b"still here"))
            first, payload = answering.read_frame()
            while first == 0x89:  # a ping that crossed our message
                answering.send(frame(0x8A, b""))
                first, payload = answering.read_frame()
            assert (first, payload) == (0x81, b"still here")
        finally:
            answering.close()


def test_sigterm_sends_1001_to_listening_websockets_and_exits(listen_backend: str) -> None:
    process, port = serve("--graceful-timeout", "2", "--backend", listen_backend, app=APP)
    with process:
        silent = RawClient(port)  # reads our close but never answers it
        try:
            with connect(f"ws://127.0.0.1:{port}/echo") as answering:
                answering.send("up")
                assert answering.recv() == "up"
                silent.send(frame(0x81, b"up"))
                assert silent.read_frame() == (0x81, b"up")
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                assert silent.read_close() == (1001, "server shutting down")
                assert time.monotonic() - started >= 0.18  # the drain's first phase: 0.2 s
                assert _close_code(answering) == (1001, "server shutting down")
            process.wait_for_line(r"on_close /echo 1001 'server shutting down'")
            # The silent client is cut at --graceful-timeout (not at --ws-ping-timeout, 20 s).
            assert silent.at_eof()
            assert 1.8 <= time.monotonic() - started < 10
        finally:
            silent.close()
        assert process.wait(10) == 0
        process.wait_for_line(
            r"stopped serving .*; 2 WebSockets, 2 open at the drain and sent close 1001; "
            r"closes by code \{1001: 2\}"
        )


def _greenlets(port: int) -> int:
    status, _, body = http_get(port, "/greenlets")
    assert status == 200
    return int(body)


def test_idle_listening_websockets_hold_no_greenlet(port: int) -> None:
    count = 40
    baseline = _greenlets(port)
    with contextlib.ExitStack() as stack:
        listening = [
            stack.enter_context(connect(f"ws://127.0.0.1:{port}/echo")) for _ in range(count)
        ]
        for ws in listening:  # each ran a dispatch, and is idle again
            ws.send("once")
            assert ws.recv() == "once"
        with_listening = _greenlets(port)
        blocking = [
            stack.enter_context(connect(f"ws://127.0.0.1:{port}/blocking")) for _ in range(count)
        ]
        for ws in blocking:
            ws.send("once")
            assert ws.recv() == "once"
        with_blocking = _greenlets(port)
    # The pool may keep a few parked greenlets; none is held per listening WebSocket, while each
    # blocking one keeps its handler's.
    assert with_listening - baseline <= 3, (baseline, with_listening)
    assert with_blocking - with_listening >= count, (with_listening, with_blocking)


def test_a_busy_callback_stops_reading_at_the_queue_limit_and_loses_nothing(
    listen_backend: str,
) -> None:
    # The callback blocks while it holds.
    process, port = serve("--ws-max-queue", "4", "--backend", listen_backend, app=APP)
    with process:
        assert_full_queue_stops_reading_and_loses_nothing(port)
