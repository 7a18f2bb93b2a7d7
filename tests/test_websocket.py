"""WebSocket over real server processes: the websockets and wsproto client libraries (text,
binary, fragmented, ping/pong, subprotocols, close codes), and a raw client for bad input (each
closed with its code, none disturbing a connection open beside it) and handshake errors."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import zlib
from collections.abc import Iterator

import pytest
import websockets
import wsproto
import wsproto.events
from prefork_apps.harness import ServerProcess, http_get
from test_ops_supervisor import _metrics_url, _value, _wait_metric
from websocket_helpers import (
    RawClient,
    assert_compressed_echo,
    assert_echoes_text_binary_and_fragments,
    assert_full_queue_stops_reading_and_loses_nothing,
    frame,
    handshake_request,
    read_until_eof,
    serve,
)
from websockets.sync.client import connect

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ServerProcess, int]]:
    process, port = serve("--ws-max-message-size", "65536")
    with process:
        yield process, port


@pytest.fixture
def port(server: tuple[ServerProcess, int]) -> int:
    return server[1]


def test_websockets_client_echoes_text_binary_and_fragments(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/echo", compression=None) as ws:
        assert_echoes_text_binary_and_fragments(ws)
        assert ws.ping(b"are you there").wait(10)


def test_subprotocol_is_the_first_the_client_offers_that_the_route_supports(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/chat", subprotocols=["chat.v1", "chat.v2"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat.v1"
        assert ws.recv() == "chat.v1"
    with connect(f"ws://127.0.0.1:{port}/chat") as ws:
        assert ws.subprotocol is None
        assert ws.recv() == "none"


def test_send_many_sends_each_message(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/many") as ws:
        assert [ws.recv(), ws.recv(), ws.recv()] == ["one", b"two", "three"]


@pytest.mark.parametrize("code", [1000, 1001, 1008, 3000, 4999])
def test_server_close_code_and_reason_reach_the_client(port: int, code: int) -> None:
    with (
        connect(f"ws://127.0.0.1:{port}/close/{code}") as ws,
        pytest.raises(websockets.ConnectionClosed) as closed,
    ):
        ws.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (code, "bye")


def test_client_close_code_reaches_the_handler(server: tuple[ServerProcess, int]) -> None:
    process, port = server
    start = len(process.lines)
    with connect(f"ws://127.0.0.1:{port}/closed") as ws:
        ws.close(4001, "client done")
    process.wait_for_line(r"closed code=4001 reason='client done'", start=start)


def test_receive_timeout_leaves_the_websocket_open(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/timeout") as ws:
        assert ws.recv() == "timed out"
        ws.send("still open")
        assert ws.recv() == "still open"


def test_wsproto_client_echo_and_close_handshake(port: int) -> None:
    connection = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(connection.send(wsproto.events.Request(host="test", target="/echo")))
        events: list[wsproto.events.Event] = []

        def next_event() -> wsproto.events.Event:
            while not events:
                connection.receive_data(sock.recv(65536) or None)
                events.extend(connection.events())
            return events.pop(0)

        assert isinstance(next_event(), wsproto.events.AcceptConnection)
        sock.sendall(connection.send(wsproto.events.TextMessage(data="over wsproto")))
        message = next_event()
        assert isinstance(message, wsproto.events.TextMessage)
        assert message.data == "over wsproto"
        sock.sendall(
            connection.send(wsproto.events.BytesMessage(data=b"x", message_finished=False))
        )
        sock.sendall(connection.send(wsproto.events.BytesMessage(data=b"yz")))
        message = next_event()
        assert isinstance(message, wsproto.events.BytesMessage) and message.data == b"xyz"
        sock.sendall(connection.send(wsproto.events.Ping(payload=b"p")))
        pong = next_event()
        assert isinstance(pong, wsproto.events.Pong) and pong.payload == b"p"
        sock.sendall(connection.send(wsproto.events.CloseConnection(code=1000, reason="done")))
        closing = next_event()
        assert isinstance(closing, wsproto.events.CloseConnection)
        assert closing.code == 1000
        # The server ends the TCP stream after the close handshake.
        assert read_until_eof(sock) == b""


BAD_INPUT = [
    pytest.param(frame(0x81, b"hi", masked=False), 1002, id="unmasked-frame"),
    pytest.param(frame(0x89, b"x" * 126), 1002, id="oversized-ping"),
    pytest.param(frame(0x09, b"x"), 1002, id="fragmented-ping"),
    pytest.param(frame(0x83, b""), 1002, id="reserved-opcode"),
    pytest.param(frame(0xC1, b"hi"), 1002, id="rsv1-without-extension"),
    pytest.param(frame(0x80, b"hi"), 1002, id="continuation-first"),
    pytest.param(frame(0x81, b"ok \xc0\xaf"), 1007, id="invalid-utf8"),
    pytest.param(frame(0x01, b"ok") + frame(0x80, b"\xed\xa0\x80"), 1007, id="surrogate-fragment"),
    pytest.param(frame(0x88, b"\x03"), 1002, id="one-byte-close"),
    pytest.param(frame(0x88, b"\x03\xed"), 1002, id="close-code-1005"),
    pytest.param(frame(0x82, b"z" * 65537), 1009, id="message-over-limit"),
    pytest.param(frame(0x02, b"z" * 40000) + frame(0x80, b"z" * 40000), 1009, id="fragments-over"),
]


@pytest.mark.parametrize(("data", "code"), BAD_INPUT)
def test_bad_input_closes_with_its_code_and_leaves_others_alone(
    port: int, data: bytes, code: int
) -> None:
    with connect(f"ws://127.0.0.1:{port}/echo") as bystander:
        bystander.send("before")
        assert bystander.recv() == "before"
        client = RawClient(port)
        try:
            client.send(data)
            assert client.read_close()[0] == code
            assert client.at_eof()
        finally:
            client.close()
        bystander.send("after")
        assert bystander.recv() == "after"


HANDSHAKE_ERRORS = [
    pytest.param({"Sec-WebSocket-Version": "8"}, 426, id="version-8"),
    pytest.param({"Sec-WebSocket-Version": ""}, 426, id="no-version"),
    pytest.param({"Sec-WebSocket-Key": "c2hvcnQ="}, 400, id="short-key"),
    pytest.param({"Sec-WebSocket-Key": ""}, 400, id="no-key"),
    pytest.param({"Upgrade": ""}, 400, id="no-upgrade"),
    pytest.param({"Connection": "keep-alive"}, 400, id="no-connection-upgrade"),
]


@pytest.mark.parametrize(("headers", "status"), HANDSHAKE_ERRORS)
def test_handshake_errors_answer_and_close(port: int, headers: dict[str, str], status: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(handshake_request("/echo", **headers))
        response = read_until_eof(sock)  # the server closes after answering
    head = response.partition(b"\r\n\r\n")[0].decode("latin-1")
    assert head.startswith(f"HTTP/1.1 {status} "), head
    assert "connection: close" in head.lower()
    if status == 426:
        assert "sec-websocket-version: 13" in head.lower()


def test_post_handshake_is_refused(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        request = handshake_request("/echo").replace(b"GET ", b"POST ", 1)
        sock.sendall(request.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n"))
        response = read_until_eof(sock)
    # The route is GET-only: the router answers 405 before the handler runs.
    assert response.startswith(b"HTTP/1.1 405 ")


def test_plain_http_beside_websockets(port: int) -> None:
    assert http_get(port, "/plain")[0::2] == (200, "plain")


def test_unanswered_pings_close_the_websocket() -> None:
    process, port = serve("--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3")
    with process:
        client = RawClient(port)
        try:
            first, _ = client.read_frame()
            assert first == 0x89  # a ping, which this client never answers
            assert client.read_close() == (1011, "keepalive ping timeout")
            assert client.at_eof()
        finally:
            client.close()
        # A client that answers stays open across several pings.
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("x")
            assert ws.recv() == "x"
            # websockets answers pings itself; three intervals later the echo still works.
            ws.ping().wait(10)
            ws.send("y")
            assert ws.recv() == "y"


def test_group_broadcast_reaches_every_member_and_drops_closed_ones(port: int) -> None:
    url = f"ws://127.0.0.1:{port}/room"
    with connect(url) as first:
        # A member announces itself: every member sees the broadcast, the sender the count.
        first.send("count")
        assert [first.recv(), first.recv()] == ["count", "reached 1"]
        with connect(url) as second:
            second.send("count")
            assert [first.recv(), second.recv(), second.recv()] == ["count", "count", "reached 2"]
            with contextlib.ExitStack() as stack:
                third = stack.enter_context(connect(url))
                third.send("count")
                assert [first.recv(), second.recv(), third.recv()] == ["count"] * 3
                assert third.recv() == "reached 3"
                first.send("hello room")
                assert [first.recv(), second.recv(), third.recv()] == ["hello room"] * 3
                third.close()  # returns once the server answered the close
                # The third left (its close handshake is over): two members again.
                second.send("count")
                assert [first.recv(), second.recv(), second.recv()] == [
                    "count",
                    "count",
                    "reached 2",
                ]


def test_sigterm_closes_websockets_with_1001_and_exits() -> None:
    process, port = serve("--graceful-timeout", "20")
    with process:
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("up")
            assert ws.recv() == "up"
            process.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "server shutting down")
        assert process.wait() == 0


@pytest.mark.parametrize("app", ["websocket_apps.echo:app", "websocket_apps.listen:app"])
def test_prometheus_metrics_count_websockets(app: str) -> None:
    # Both ways of serving a WebSocket: a handler waiting in receive(), and WebSocket.listen.
    with ServerProcess(app, "--workers", "2", "--port", "0", "--metrics-port", "0") as process:
        port = process.port()
        url = _metrics_url(process)
        with connect(f"ws://127.0.0.1:{port}/echo") as open_one:
            for text in ("a", "b", "c"):
                open_one.send(text)
                assert open_one.recv() == text
            samples = _wait_metric(url, "theframework_websockets_open", 1)
            assert _value(samples, "theframework_websocket_messages_total", direction="in") >= 3
            with connect(f"ws://127.0.0.1:{port}/echo") as closing:
                closing.close(4002)
            client = RawClient(port)
            client.send(frame(0x81, b"x", masked=False))
            assert client.read_close()[0] == 1002
            client.close()
            samples = _wait_metric(url, "theframework_websocket_closes_total", 1, code="1002")
            assert _value(samples, "theframework_websocket_closes_total", code="4002") == 1
            assert _value(samples, "theframework_websocket_messages_total", direction="out") >= 3
            assert _value(samples, "theframework_websockets_open") == 1


def test_websockets_client_with_permessage_deflate(port: int) -> None:
    text = "compressible text " * 2000  # 36,000 characters
    with connect(f"ws://127.0.0.1:{port}/echo") as ws:  # websockets offers deflate by default
        extensions = ws.protocol.extensions
        assert [type(extension).__name__ for extension in extensions] == ["PerMessageDeflate"]
        for _ in range(3):  # context takeover: later messages reuse the window
            ws.send(text)
            assert ws.recv() == text
        ws.send(bytes(range(256)) * 100)
        assert ws.recv() == bytes(range(256)) * 100
        ws.send(["fragmented ", "and compressed " * 50])
        assert ws.recv() == "fragmented " + "and compressed " * 50
        ws.send("short")
        assert ws.recv() == "short"


def test_compressed_echo_is_compressed_on_the_wire(port: int) -> None:
    offer = "permessage-deflate; client_max_window_bits; client_no_context_takeover"
    client = RawClient(port, Sec_WebSocket_Extensions=offer)
    try:
        assert (
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12"
        ) in client.head.lower()
        assert_compressed_echo(client)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(b"\xff\xff\xff\xff not deflate", 1007, id="invalid-deflate"),
        # 16 MiB of zeros deflate to a few KiB: the limit (64 KiB here) applies after inflating.
        pytest.param(
            (lambda c: c.compress(bytes(16 << 20)) + c.flush(zlib.Z_SYNC_FLUSH))(
                zlib.compressobj(wbits=-15)
            )[:-4],
            1009,
            id="decompression-bomb",
        ),
    ],
)
def test_bad_compressed_input_closes_with_its_code(port: int, payload: bytes, code: int) -> None:
    client = RawClient(port, Sec_WebSocket_Extensions="permessage-deflate")
    try:
        client.send(frame(0xC2, payload))
        assert client.read_close()[0] == code
        assert client.at_eof()
    finally:
        client.close()


def test_compression_can_be_turned_off() -> None:
    process, port = serve("--ws-compression", "none")
    with process, connect(f"ws://127.0.0.1:{port}/echo") as ws:
        assert ws.protocol.extensions == []
        ws.send("x" * 1000)
        assert ws.recv() == "x" * 1000


def test_compression_without_context_takeover_is_asked_of_both_sides() -> None:
    process, port = serve("--ws-compression", "deflate-no-context")
    with process:
        # websockets offers context takeover; the server answers that neither side keeps it.
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            (extension,) = ws.protocol.extensions
            assert extension.local_no_context_takeover  # type: ignore[attr-defined]
            assert extension.remote_no_context_takeover  # type: ignore[attr-defined]
            text = "compressible text " * 2000
            for _ in range(3):
                ws.send(text)
                assert ws.recv() == text
        # On the wire: the answer names both parameters, and each message is compressed alone
        # (the same message twice compresses to the same bytes: no window carried over).
        client = RawClient(port, "/echo", Sec_WebSocket_Extensions="permessage-deflate")
        try:
            assert "server_no_context_takeover" in client.head
            assert "client_no_context_takeover" in client.head
            compressor = zlib.compressobj(wbits=-15)
            message = b"the same words again and again " * 20
            payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
            answers = []
            for _ in range(2):
                client.send(frame(0xC1, payload[:-4]))
                first, answer = client.read_frame()
                assert first == 0xC1  # compressed text
                answers.append(answer)
                compressor = zlib.compressobj(wbits=-15)  # no context takeover: a fresh one
                payload = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
            assert answers[0] == answers[1]
            assert zlib.decompressobj(wbits=-15).decompress(answers[1] + b"\0\0\xff\xff") == message
        finally:
            client.close()


def test_websocket_route_decorator(port: int) -> None:
    with connect(f"ws://127.0.0.1:{port}/route/ada", subprotocols=["v1"]) as ws:  # type: ignore[list-item]
        assert ws.recv() == "hello ada over v1"
        ws.send("echo")
        assert ws.recv() == "echo"
    # A plain GET to the route gets the handshake error, not a 200.
    status, headers, _ = http_get(port, "/route/ada")
    assert status == 400
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    ("path", "origin", "admitted"),
    [
        ("/origin/listed", "https://app.example", True),
        ("/origin/listed", "HTTPS://APP.EXAMPLE", True),  # scheme and host: case-insensitive
        ("/origin/listed", "http://localhost:8080", True),
        ("/origin/listed", None, True),  # not a browser page: browsers always send Origin
        ("/origin/listed", "https://evil.example", False),
        ("/origin/listed", "http://localhost:8081", False),
        ("/origin/callable", "https://chat.example.org", True),
        ("/origin/callable", "https://example.org.evil.com", False),
        ("/origin/callable", None, False),  # the callable is asked with None
    ],
)
def test_origin_check_refuses_with_403_before_the_upgrade(
    port: int, path: str, origin: str | None, admitted: bool
) -> None:
    headers = {} if origin is None else {"Origin": origin}
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    with connection:
        connection.sendall(handshake_request(path, **headers))
        answer = read_until_eof(connection) if not admitted else connection.recv(65536)
    if admitted:
        assert answer.startswith(b"HTTP/1.1 101 "), answer
        with connect(f"ws://127.0.0.1:{port}{path}", origin=origin) as ws:  # type: ignore[arg-type]
            assert str(ws.recv()).startswith("admitted")
    else:
        # Refused before the upgrade: a 403 answer, then the connection ends.
        assert answer.startswith(b"HTTP/1.1 403 "), answer
        assert b"Upgrade: websocket" not in answer
        with pytest.raises(websockets.InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}{path}", origin=origin)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403


def test_full_message_queue_stops_reading_and_loses_nothing(backend: str) -> None:
    # The handler takes nothing while it holds.
    process, port = serve("--ws-max-queue", "4", "--backend", backend)
    with process:
        assert_full_queue_stops_reading_and_loses_nothing(port)


def test_sigterm_sends_1001_after_the_grace_and_cuts_a_silent_client_at_the_bound(
    backend: str,
) -> None:
    process, port = serve("--graceful-timeout", "2", "--backend", backend)
    with process:
        silent = RawClient(port)  # reads our close but never answers it
        try:
            with connect(f"ws://127.0.0.1:{port}/echo") as answering:
                for client_send, client_receive in (
                    (answering.send, answering.recv),
                    (lambda text: silent.send(frame(0x81, text.encode())), silent.read_frame),
                ):
                    client_send("up")
                    assert client_receive() in ("up", (0x81, b"up"))
                started = time.monotonic()
                process.send_signal(signal.SIGTERM)
                assert silent.read_close() == (1001, "server shutting down")
                assert time.monotonic() - started >= 0.18  # the drain's first phase: 0.2 s
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    answering.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
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


def test_reload_sends_websockets_away_with_1001_and_serves_new_ones() -> None:
    # A long keep-alive timeout: the retiring worker's fallback shutdown() (keep-alive timeout
    # + 1 s later) must not be what sends the 1001.
    with ServerProcess(
        "websocket_apps.echo:app", "--workers", "2", "--port", "0", "--graceful-timeout", "60",
        "--keepalive-timeout", "60", "--metrics-port", "0",
    ) as process:  # fmt: skip
        port = process.port()
        url = _metrics_url(process)
        with contextlib.ExitStack() as stack:
            clients = [
                stack.enter_context(connect(f"ws://127.0.0.1:{port}/echo")) for _ in range(4)
            ]
            for ws in clients:
                ws.send("before")
                assert ws.recv() == "before"
            mark = len(process.lines)
            process.send_signal(signal.SIGHUP)
            for ws in clients:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    ws.recv(timeout=40)
                assert closed.value.rcvd is not None
                assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                    1001,
                    "server shutting down",
                )
        process.wait_for_line(r"reload complete", start=mark)
        with connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("after")
            assert ws.recv() == "after"
        # Each replaced worker's last line counts the WebSockets it sent away, and so do the
        # supervisor's metrics (from the retired workers' last counters).
        process.wait_for_line(r"stopped serving .* WebSockets, \d+ open at the drain", start=mark)
        samples = _wait_metric(url, "theframework_websockets_going_away_total", 4)
        assert _value(samples, "theframework_websocket_closes_total", code="1001") == 4
        assert _value(samples, "theframework_websockets_open") == 0
