"""Promises of README's option and signal tables that only timing shows, end to end on both
backends (one server process each, raw sockets on loopback):

- ``--keepalive-timeout``, ``--body-timeout`` and ``--write-timeout`` set to 1 s act after about
  1 s, where their defaults (5 s, 30 s, 30 s) would not have acted yet;
- the SIGTERM drain: an idle keep-alive connection is closed after the 0.2 s grace; a request
  that reached an idle connection by the time the grace ends is answered, with
  ``Connection: close``; connections the kernel queued before the signal, while a handler blocked
  the hub, are accepted and served.

Each timing bound is wide enough for a loaded machine, yet fails when the option is ignored.
"""

from __future__ import annotations

import socket
import time

from http_helpers import ResponseReader, ServerProcess, assert_closed, connect

TIMEOUTS_APP = "tests.apps.timeouts:app"
BOUND_APP = "tests.apps.bound:app"  # /block blocks the hub (time.sleep), /nap answers


def _closed_within(server: ServerProcess, started: float, limit: float) -> float:
    """Seconds from ``started`` until the server holds no TCP connection (polls its fd table:
    nothing else tells when it closed a connection its client does not read); AssertionError
    after ``limit``."""
    while server.fds_split()[0]:
        assert time.monotonic() - started < limit, f"still open after {limit} s"
        time.sleep(0.02)  # a polling interval, not a wait for an event
    return time.monotonic() - started


# -- engine timeouts ----------------------------------------------------------------------------


def test_keepalive_timeout_closes_an_idle_connection_after_it(backend: str) -> None:
    with (
        ServerProcess(TIMEOUTS_APP, backend, "--keepalive-timeout", "1") as server,
        connect(server) as sock,
    ):
        reader = ResponseReader(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = reader.read_response()
        answered = time.monotonic()
        assert response.status == 200 and response.header("Connection") != "close"
        assert_closed(reader)
        idle = time.monotonic() - answered
    # The default (5 s) would still hold it open.
    assert 0.7 <= idle <= 3.5, idle


def test_body_timeout_answers_408_to_a_body_that_stops_coming(backend: str) -> None:
    with (
        ServerProcess(TIMEOUTS_APP, backend, "--body-timeout", "1") as server,
        connect(server) as sock,
    ):
        reader = ResponseReader(sock)
        sent = time.monotonic()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nab")
        response = reader.read_response()
        waited = time.monotonic() - sent
        assert response.status == 408, response
        assert response.body == b"the request body was not received in time"
        assert_closed(reader)
    # The default (30 s) would still wait for the other 8 bytes.
    assert 0.7 <= waited <= 5.0, waited


def test_write_timeout_drops_a_client_that_does_not_read(backend: str) -> None:
    size = 64 << 20  # far beyond what the socket buffers hold
    with ServerProcess(TIMEOUTS_APP, backend, "--write-timeout", "1") as server:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            sock.connect(server.address)
            sock.settimeout(10)
            sent = time.monotonic()
            sock.sendall(f"GET /big?mib={size >> 20} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            # The response has begun (the connection is accepted and written to); from here on
            # the client reads nothing, and the default (30 s) would keep waiting for it.
            received = len(head := sock.recv(1 << 16))
            assert head.startswith(b"HTTP/1.1 200 "), head
            gave_up = _closed_within(server, sent, 8.0)
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
        assert received < size, received
        assert gave_up >= 0.7, gave_up
        assert server.alive
        with connect(server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert ResponseReader(sock).read_response().body == b"ok"


# -- the SIGTERM drain --------------------------------------------------------------------------


def test_sigterm_closes_an_idle_keepalive_connection_after_the_grace(backend: str) -> None:
    with ServerProcess(BOUND_APP, backend) as server:
        with connect(server) as sock:
            reader = ResponseReader(sock)
            sock.sendall(b"GET /nap?seconds=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reader.read_response().header("Connection") != "close"
            signalled = time.monotonic()
            server.terminate()
            assert_closed(reader)
            closed = time.monotonic() - signalled
        assert server.wait_exit() == 0
    # 0.2 s after the drain began: not at once, and not at the keep-alive (5 s) or graceful
    # (30 s) timeout.
    assert 0.15 <= closed <= 1.5, closed


def test_a_request_reaching_an_idle_connection_in_the_grace_is_answered_with_close(
    backend: str,
) -> None:
    # The hub is blocked (a handler's time.sleep) when SIGTERM arrives: the signal handler starts
    # the drain and its 0.2 s grace from inside that sleep, and the request below reaches the
    # idle connection before the hub runs again, by then past the grace: it must be answered.
    with ServerProcess(BOUND_APP, backend) as server:
        with connect(server) as idle, connect(server) as blocker:
            reader = ResponseReader(idle)
            idle.sendall(b"GET /nap?seconds=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reader.read_response().header("Connection") != "close"
            blocker.sendall(b"GET /block?seconds=3 HTTP/1.1\r\nHost: t\r\n\r\n")
            server.wait_for_stderr("hub blocked")
            server.terminate()
            server.wait_for_stderr("stopping: draining")
            idle.sendall(b"GET /nap?seconds=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            response = reader.read_response()
            assert response.status == 200
            assert response.header("Connection") == "close"
            assert_closed(reader)
            blocked = ResponseReader(blocker).read_response()
            assert (blocked.body, blocked.header("Connection")) == (b"unblocked", "close")
        assert server.wait_exit() == 0


def test_connections_queued_before_sigterm_are_served(backend: str) -> None:
    with ServerProcess(BOUND_APP, backend) as server:
        with connect(server) as blocker:
            blocker.sendall(b"GET /block?seconds=2 HTTP/1.1\r\nHost: t\r\n\r\n")
            server.wait_for_stderr("hub blocked")
            # Connected (the kernel completed the handshakes) but not accepted: the hub is blocked.
            queued = [connect(server) for _ in range(5)]
            for sock in queued:
                sock.sendall(b"GET /nap?seconds=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            server.terminate()
            server.wait_for_stderr("stopping: draining")
            for sock in queued:
                with sock:
                    reader = ResponseReader(sock)
                    response = reader.read_response()
                    assert response.status == 200
                    assert response.header("Connection") == "close"
                    assert_closed(reader)
            assert ResponseReader(blocker).read_response().body == b"unblocked"
        assert server.wait_exit() == 0
