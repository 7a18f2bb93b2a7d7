"""The green I/O calls of the hub: accept, recv, recv_into, send, sendall, connect, wait_readable,
wait_writable, wait_fds and close; their results, errors (OSError with the right errno) and
timeouts, on every backend."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator

import greenlet
import pytest
from helpers import (
    drain,
    fill_send_buffer,
    full_accept_queue,
    join,
    let_hub_run,
    listening_socket,
    open_fds,
    socket_pair,
    wait_for,
)

from theframework import _core

pytestmark = pytest.mark.timeout(60)

TIMEOUT = 0.2
# The machine running CI is noisy: a timeout must fire no earlier than asked and not much later.
MARGIN = 0.5


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


FAMILIES = [
    pytest.param(socket.AF_UNIX, id="unix"),
    pytest.param(socket.AF_INET, id="tcp"),
]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket_pair(socket.AF_UNIX)
    with left, right:
        yield left, right


def expect_timeout(call: Callable[[], object]) -> None:
    """``call()`` raises TimeoutError after TIMEOUT seconds (within MARGIN)."""
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call()
    elapsed = time.monotonic() - started
    assert TIMEOUT <= elapsed < TIMEOUT + MARGIN, f"timed out after {elapsed:.3f} s"


def expect_os_error(code: int, call: Callable[[], object]) -> None:
    with pytest.raises(OSError) as raised:
        call()
    assert raised.value.errno == code, raised.value


# --------------------------------------------------------------------------------------------
# recv / send


@pytest.mark.parametrize("family", FAMILIES)
def test_send_and_recv(hub: _core.Hub, family: socket.AddressFamily) -> None:
    left, right = socket_pair(family)

    def main() -> None:
        assert _core.send(left.fileno(), b"hello") == 5
        assert _core.recv(right.fileno(), 100) == b"hello"
        _core.sendall(right.fileno(), bytearray(b"back"))
        assert _core.recv(left.fileno(), 100) == b"back"

    with left, right:
        hub.run(main)


def test_recv_waits_for_data(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    received: list[bytes] = []

    def main() -> None:
        reader = _core.spawn(lambda: received.append(_core.recv(right.fileno(), 100)))
        let_hub_run()
        assert not reader.dead and received == []
        _core.sendall(left.fileno(), b"late")
        join(reader)

    hub.run(main)
    assert received == [b"late"]


def test_recv_returns_at_most_size_then_the_rest(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        _core.sendall(left.fileno(), b"0123456789")
        assert _core.recv(right.fileno(), 4) == b"0123"
        assert _core.recv(right.fileno(), 100) == b"456789"

    hub.run(main)


def test_recv_returns_empty_bytes_at_end_of_stream(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        reader = _core.spawn(lambda: results.append(_core.recv(right.fileno(), 10)))
        let_hub_run()
        left.shutdown(socket.SHUT_WR)
        join(reader)
        assert _core.recv(right.fileno(), 10) == b""

    results: list[bytes] = []
    hub.run(main)
    assert results == [b""]


def test_recv_into_memoryview_slices(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    buffer = bytearray(b"." * 16)

    def main() -> None:
        view = memoryview(buffer)
        _core.sendall(left.fileno(), b"abcdefgh")
        assert _core.recv_into(right.fileno(), view[4:7]) == 3
        assert buffer == b"....abc........."
        assert _core.recv_into(right.fileno(), view[10:], 2) == 2
        assert buffer == b"....abc...de...."
        assert _core.recv_into(right.fileno(), view[:1]) == 1
        assert _core.recv_into(right.fileno(), buffer) == 2
        assert buffer == b"gh..abc...de...."
        # Waits for data like recv does.
        reader = _core.spawn(lambda: counts.append(_core.recv_into(right.fileno(), view[14:])))
        let_hub_run()
        assert not reader.dead
        _core.sendall(left.fileno(), b"XYZ")
        join(reader)
        assert _core.recv(right.fileno(), 10) == b"Z"

    counts: list[int] = []
    hub.run(main)
    assert counts == [2]
    assert buffer == b"gh..abc...de..XY"


def test_recv_into_refuses_read_only_buffers(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    _, right = pair

    def main() -> None:
        with pytest.raises((TypeError, BufferError)):
            _core.recv_into(right.fileno(), b"read only")  # type: ignore[arg-type]
        with pytest.raises((TypeError, BufferError)):
            _core.recv_into(right.fileno(), memoryview(b"read only"))

    hub.run(main)


def test_send_accepts_a_sequence_and_returns_the_count(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        sent = _core.send(left.fileno(), [b"ab", bytearray(b"cd"), memoryview(b"xxef")[2:]])
        assert sent == 6
        assert _core.recv(right.fileno(), 100) == b"abcdef"

    hub.run(main)


def test_sendall_list_of_buffers_arrives_in_order(hub: _core.Hub) -> None:
    # More buffers than IOV_MAX (1024) and more bytes than the socket buffers hold, so sendall
    # must both split the vector and resume after partial writes in the middle of a buffer.
    left, right = socket_pair(socket.AF_INET)
    buffers: list[bytes | bytearray | memoryview] = []
    for index in range(3000):
        chunk = bytes([index % 251]) * (1 + (index * 7919) % 2000)
        kind = index % 3
        buffers.append(chunk if kind == 0 else bytearray(chunk) if kind == 1 else memoryview(chunk))
    expected = b"".join(bytes(buffer) for buffer in buffers)
    received = bytearray()

    def reader() -> None:
        while True:
            data = _core.recv(right.fileno(), 65536)
            if not data:
                return
            received.extend(data)

    def main() -> None:
        reading = _core.spawn(reader)
        _core.sendall(left.fileno(), buffers)
        left.shutdown(socket.SHUT_WR)
        join(reading)

    with left, right:
        hub.run(main)
    assert len(received) == len(expected)
    assert received == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_sendall_large_payload_with_concurrent_reader(
    hub: _core.Hub, family: socket.AddressFamily
) -> None:
    left, right = socket_pair(family)
    payload = os.urandom(4 << 20)
    received = bytearray()

    def reader() -> None:
        while len(received) < len(payload):
            data = _core.recv(right.fileno(), 65536)
            assert data
            received.extend(data)

    def main() -> None:
        reading = _core.spawn(reader)
        _core.sendall(left.fileno(), memoryview(payload))
        join(reading)

    with left, right:
        hub.run(main)
    assert received == payload


# --------------------------------------------------------------------------------------------
# accept / connect


def test_accept_and_connect_tcp(hub: _core.Hub) -> None:
    listener = listening_socket(socket.AF_INET)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    accepted: list[tuple[int, object]] = []

    def main() -> None:
        acceptor = _core.spawn(lambda: accepted.append(_core.accept(listener.fileno())))
        let_hub_run()
        assert not acceptor.dead
        _core.connect(client.fileno(), listener.getsockname())
        join(acceptor)
        fd, address = accepted[0]
        assert address == client.getsockname()
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        assert flags & os.O_NONBLOCK
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert not os.get_blocking(listener.fileno())
        assert not os.get_blocking(client.fileno())
        _core.sendall(fd, b"ping")
        assert _core.recv(client.fileno(), 10) == b"ping"
        _core.close(fd)

    with listener, client:
        hub.run(main)


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_accept_and_connect_unix(hub: _core.Hub, unix_socket_path: str, abstract: bool) -> None:
    path: str | bytes = f"\0{unix_socket_path}".encode() if abstract else unix_socket_path
    listener = listening_socket(socket.AF_UNIX, path)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def main() -> None:
        acceptor = _core.spawn(lambda: accepted.append(_core.accept(listener.fileno())))
        _core.connect(client.fileno(), path)
        join(acceptor)
        fd, address = accepted[0]
        assert isinstance(address, (str, bytes))
        assert not address  # the client socket is unnamed
        _core.sendall(client.fileno(), b"over unix")
        assert _core.recv(fd, 100) == b"over unix"
        _core.close(fd)

    accepted: list[tuple[int, object]] = []
    with listener, client:
        hub.run(main)


def test_ipv6_loopback_connect_and_accept(hub: _core.Hub) -> None:
    if not ipv6_loopback_available():
        pytest.skip("::1 cannot be bound on this machine")
    listener = listening_socket(socket.AF_INET6)
    client = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)

    def main() -> None:
        acceptor = _core.spawn(lambda: accepted.append(_core.accept(listener.fileno())))
        _core.connect(client.fileno(), ("::1", listener.getsockname()[1]))
        join(acceptor)
        fd, address = accepted[0]
        assert isinstance(address, tuple)
        assert address[0] == "::1"
        assert address[1] == client.getsockname()[1]
        _core.sendall(fd, b"six")
        assert _core.recv(client.fileno(), 10) == b"six"
        _core.close(fd)

    accepted: list[tuple[int, object]] = []
    with listener, client:
        hub.run(main)


def test_connect_refused(hub: _core.Hub) -> None:
    # Bound but not listening: the port is ours and nothing accepts on it.
    with socket.socket() as bound, socket.socket() as client:
        bound.bind(("127.0.0.1", 0))

        def main() -> None:
            expect_os_error(errno.ECONNREFUSED, lambda: _core.connect(client.fileno(), address))

        address = bound.getsockname()
        hub.run(main)


def test_connect_unix_missing_path(hub: _core.Hub, unix_socket_path: str) -> None:
    with socket.socket(socket.AF_UNIX) as client:
        hub.run(
            lambda: expect_os_error(
                errno.ENOENT, lambda: _core.connect(client.fileno(), unix_socket_path)
            )
        )


# --------------------------------------------------------------------------------------------
# wait_readable / wait_writable / wait_fds


def test_wait_readable_and_writable(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        _core.wait_writable(left.fileno())  # a fresh socket is writable at once
        waiter = _core.spawn(_core.wait_readable, right.fileno())
        let_hub_run()
        assert not waiter.dead
        left.send(b"x")
        join(waiter)
        _core.wait_readable(right.fileno(), timeout=1)  # the data is still there
        assert right.recv(10) == b"x"

    hub.run(main)


def test_wait_readable_on_peer_close(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        waiter = _core.spawn(_core.wait_readable, right.fileno())
        let_hub_run()
        left.shutdown(socket.SHUT_RDWR)
        join(waiter)
        assert _core.recv(right.fileno(), 10) == b""

    hub.run(main)


def test_wait_writable_waits_for_room(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    fill_send_buffer(left, right)

    def main() -> None:
        waiter = _core.spawn(_core.wait_writable, left.fileno())
        let_hub_run()
        assert not waiter.dead
        drain(right)
        join(waiter)

    hub.run(main)


def test_wait_fds_reports_ready_sets(hub: _core.Hub) -> None:
    first_left, first_right = socket_pair()
    second_left, second_right = socket_pair()
    # second_left cannot write; second_right has data, so it is left out of the read set.
    fill_send_buffer(second_left, second_right)
    third_left, third_right = socket_pair()
    results: list[tuple[list[int], list[int]]] = []

    def main() -> None:
        read = [first_right.fileno(), third_right.fileno()]
        # Only the writable one is ready at once.
        assert _core.wait_fds(read, [first_left.fileno()]) == ([], [first_left.fileno()])
        waiter = _core.spawn(lambda: results.append(_core.wait_fds(read, [second_left.fileno()])))
        let_hub_run()
        assert not waiter.dead
        first_left.send(b"x")
        join(waiter)
        readable, writable = _core.wait_fds(read, [], timeout=1)
        assert readable == [first_right.fileno()] and writable == []
        both = _core.wait_fds([first_right.fileno()], [first_left.fileno()])
        assert both == ([first_right.fileno()], [first_left.fileno()])

    expected: list[tuple[list[int], list[int]]] = [([first_right.fileno()], [])]
    with first_left, first_right, second_left, second_right, third_left, third_right:
        hub.run(main)
    assert results == expected


# --------------------------------------------------------------------------------------------
# Errors


def unused_fd() -> int:
    """A descriptor number nothing uses, far above the ones in use (a recently closed one could
    be reused at once, e.g. by the hub for its own fds)."""
    in_use = open_fds()
    fd = max(in_use) + 1000
    while fd in in_use:
        fd += 1
    return fd


def test_calls_on_a_closed_fd_raise_ebadf(hub: _core.Hub) -> None:
    def main() -> None:
        fd = unused_fd()
        expect_os_error(errno.EBADF, lambda: _core.recv(fd, 10))
        expect_os_error(errno.EBADF, lambda: _core.recv_into(fd, bytearray(10)))
        expect_os_error(errno.EBADF, lambda: _core.send(fd, b"x"))
        expect_os_error(errno.EBADF, lambda: _core.sendall(fd, b"x"))
        expect_os_error(errno.EBADF, lambda: _core.accept(fd))
        expect_os_error(errno.EBADF, lambda: _core.wait_readable(fd))
        expect_os_error(errno.EBADF, lambda: _core.wait_writable(fd))
        expect_os_error(errno.EBADF, lambda: _core.wait_fds([fd]))

    hub.run(main)


def test_close_of_an_unused_fd_raises_ebadf(hub: _core.Hub) -> None:
    # Like os.close: a double close must not pass silently (the number may belong to someone
    # else by then).
    hub.run(lambda: expect_os_error(errno.EBADF, lambda: _core.close(unused_fd())))


def test_recv_on_a_pipe_raises_enotsock(hub: _core.Hub) -> None:
    reader, writer = os.pipe()

    def main() -> None:
        os.write(writer, b"x")
        expect_os_error(errno.ENOTSOCK, lambda: _core.recv(reader, 10))

    try:
        hub.run(main)
    finally:
        os.close(reader)
        os.close(writer)


def test_close_closes_the_fd(hub: _core.Hub) -> None:
    left, right = socket_pair()
    fd = left.detach()

    def main() -> None:
        _core.close(fd)
        with pytest.raises(OSError) as raised:
            os.fstat(fd)
        assert raised.value.errno == errno.EBADF
        assert _core.recv(right.fileno(), 10) == b""

    with right:
        hub.run(main)


BLOCKED_CALLS: dict[str, Callable[[int], object]] = {
    "recv": lambda fd: _core.recv(fd, 10),
    "recv_into": lambda fd: _core.recv_into(fd, bytearray(10)),
    "wait_readable": _core.wait_readable,
    "wait_fds": lambda fd: _core.wait_fds([fd]),
}


@pytest.mark.parametrize("call", list(BLOCKED_CALLS))
def test_close_while_another_greenlet_waits_gives_it_ebadf(hub: _core.Hub, call: str) -> None:
    left, right = socket_pair()
    fd = right.detach()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            BLOCKED_CALLS[call](fd)
        except BaseException as error:
            errors.append(error)

    def main() -> None:
        waiting = _core.spawn(waiter)
        let_hub_run()
        assert not waiting.dead
        _core.close(fd)
        join(waiting)
        # The peer sees the close; nothing is left pending on the closed fd.
        assert _core.recv(left.fileno(), 10) == b""

    with left:
        hub.run(main)
    assert len(errors) == 1
    assert isinstance(errors[0], OSError) and errors[0].errno == errno.EBADF, errors[0]


def test_close_while_accept_waits_gives_it_ebadf(hub: _core.Hub) -> None:
    listener = listening_socket(socket.AF_INET)
    fd = listener.detach()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            _core.accept(fd)
        except BaseException as error:
            errors.append(error)

    def main() -> None:
        waiting = _core.spawn(waiter)
        let_hub_run()
        assert not waiting.dead
        _core.close(fd)
        join(waiting)

    hub.run(main)
    assert len(errors) == 1
    assert isinstance(errors[0], OSError) and errors[0].errno == errno.EBADF, errors[0]


# --------------------------------------------------------------------------------------------
# Timeouts: each fires within the margin and leaves the fd usable.


def test_recv_timeout(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair

    def main() -> None:
        expect_timeout(lambda: _core.recv(right.fileno(), 10, timeout=TIMEOUT))
        left.send(b"after")
        assert _core.recv(right.fileno(), 10, timeout=5) == b"after"

    hub.run(main)


def test_recv_into_timeout(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    buffer = bytearray(10)

    def main() -> None:
        expect_timeout(lambda: _core.recv_into(right.fileno(), buffer, timeout=TIMEOUT))
        assert buffer == bytearray(10)
        left.send(b"after")
        assert _core.recv_into(right.fileno(), buffer, timeout=5) == 5

    hub.run(main)
    assert buffer[:5] == b"after"


def test_accept_timeout(hub: _core.Hub) -> None:
    listener = listening_socket(socket.AF_INET)

    def main() -> None:
        expect_timeout(lambda: _core.accept(listener.fileno(), timeout=TIMEOUT))
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            fd, address = _core.accept(listener.fileno(), timeout=5)
            assert address == client.getsockname()
            _core.close(fd)

    with listener:
        hub.run(main)


def test_connect_timeout_leaves_the_socket_usable(hub: _core.Hub) -> None:
    with full_accept_queue() as (listener, address), socket.socket() as client:

        def main() -> None:
            expect_timeout(lambda: _core.connect(client.fileno(), address, timeout=TIMEOUT))
            # Free the accept queue: the kernel's next SYN retransmission (about 1 s after the
            # first) completes the connection that the timed-out call started.
            queued, _ = listener.accept()
            queued.close()
            _core.wait_writable(client.fileno(), timeout=10)
            assert client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            _core.sendall(client.fileno(), b"still works")
            listener.setblocking(False)
            fd, _ = _core.accept(listener.fileno(), timeout=5)
            assert _core.recv(fd, 100) == b"still works"
            _core.close(fd)

        hub.run(main)


def test_wait_readable_timeout(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair

    def main() -> None:
        expect_timeout(lambda: _core.wait_readable(right.fileno(), timeout=TIMEOUT))
        left.send(b"x")
        _core.wait_readable(right.fileno(), timeout=5)
        assert _core.recv(right.fileno(), 10) == b"x"

    hub.run(main)


def test_wait_writable_timeout(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    fill_send_buffer(left, right)

    def main() -> None:
        expect_timeout(lambda: _core.wait_writable(left.fileno(), timeout=TIMEOUT))
        drain(right)
        _core.wait_writable(left.fileno(), timeout=5)

    hub.run(main)


def test_wait_fds_timeout_returns_empty_lists(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    fill_send_buffer(left, right)  # left cannot write
    idle_left, idle_right = socket_pair()  # idle_right has nothing to read

    def main() -> None:
        started = time.monotonic()
        ready = _core.wait_fds([idle_right.fileno()], [left.fileno()], timeout=TIMEOUT)
        assert ready == ([], [])
        elapsed = time.monotonic() - started
        assert TIMEOUT <= elapsed < TIMEOUT + MARGIN
        started = time.monotonic()
        assert _core.wait_fds((), (), timeout=TIMEOUT) == ([], [])
        assert TIMEOUT <= time.monotonic() - started < TIMEOUT + MARGIN
        drain(right)
        ready = _core.wait_fds([idle_right.fileno()], [left.fileno()], timeout=5)
        assert ready == ([], [left.fileno()])

    with idle_left, idle_right:
        hub.run(main)


@pytest.mark.parametrize("call", ["send", "sendall"])
def test_send_timeout_on_a_full_buffer(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket], call: str
) -> None:
    left, right = pair
    filled = fill_send_buffer(left, right)
    function = _core.send if call == "send" else _core.sendall

    def main() -> None:
        expect_timeout(lambda: function(left.fileno(), b"t" * 1_000_000, timeout=TIMEOUT))
        received = bytearray()

        def reader() -> None:
            while not received.endswith(b"MARK"):
                data = _core.recv(right.fileno(), 65536)
                assert data
                received.extend(data)

        reading = _core.spawn(reader)
        _core.sendall(left.fileno(), b"MARK", timeout=5)
        join(reading)
        # Whatever the timed-out call managed to send came before the mark, in one piece.
        body = bytes(received[:-4])
        assert body[:filled] == b"f" * filled
        assert body[filled:] == b"t" * (len(body) - filled)

    hub.run(main)


def test_timeout_none_waits(hub: _core.Hub, pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair

    def main() -> None:
        reader = _core.spawn(lambda: _core.recv(right.fileno(), 10, timeout=None))
        _core.sleep(TIMEOUT + 0.05)
        assert not reader.dead
        left.send(b"x")
        join(reader)

    hub.run(main)


def test_greenlet_exit_is_not_swallowed_by_io(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    # A killed recv raises exactly the GreenletExit, not an OSError wrapping it.
    _, right = pair
    caught: list[BaseException] = []

    def reader() -> None:
        try:
            _core.recv(right.fileno(), 10)
        except BaseException as error:
            caught.append(error)
            raise

    def main() -> None:
        target = _core.spawn(reader)
        let_hub_run()
        _core.kill(target)
        join(target)

    hub.run(main)
    assert len(caught) == 1 and type(caught[0]) is greenlet.GreenletExit


# --------------------------------------------------------------------------------------------
# More than one waiter, reuse of fd numbers, argument errors


def test_sendall_timeout_bounds_the_whole_call(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    # The reader keeps making room, so every single write progresses; the timeout still ends
    # the call as a whole.
    left, right = pair
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)

    def slow_reader() -> None:
        while True:
            _core.sleep(0.02)
            if not _core.recv(right.fileno(), 4096):
                return

    def main() -> None:
        reading = _core.spawn(slow_reader)
        expect_timeout(lambda: _core.sendall(left.fileno(), b"s" * (8 << 20), timeout=TIMEOUT))
        _core.kill(reading)
        join(reading)

    hub.run(main)


def test_wait_fds_same_fd_in_both_sets(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        left.send(b"x")
        fd = right.fileno()
        assert _core.wait_fds([fd], [fd], timeout=5) == ([fd], [fd])

    hub.run(main)


def test_two_readers_on_one_socket_get_the_data_once(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    # One byte is sent: one reader gets it, the other keeps waiting (no spurious error or
    # empty result), then gets the next byte.
    left, right = pair
    received: list[bytes] = []

    def reader() -> None:
        received.append(_core.recv(right.fileno(), 1))

    def main() -> None:
        first = _core.spawn(reader)
        second = _core.spawn(reader)
        let_hub_run()
        left.send(b"a")
        wait_for(lambda: len(received) == 1)
        let_hub_run()
        assert len(received) == 1 and not (first.dead and second.dead)
        left.send(b"b")
        join(first, second)

    hub.run(main)
    assert sorted(received) == [b"a", b"b"]


def test_closed_fd_number_reused_by_a_new_socket(hub: _core.Hub) -> None:
    # The cancelled wait of the closed fd must not complete a wait on the new socket that got
    # the same number.
    left, right = socket_pair()
    fd = right.detach()
    errors: list[BaseException] = []

    def waiter() -> None:
        try:
            _core.recv(fd, 10)
        except OSError as error:
            errors.append(error)

    def main() -> None:
        waiting = _core.spawn(waiter)
        let_hub_run()
        _core.close(fd)
        new_left, new_right = socket_pair()
        with new_left, new_right:
            reader = _core.spawn(lambda: received.append(_core.recv(new_right.fileno(), 10)))
            let_hub_run()
            join(waiting)
            assert not reader.dead
            new_left.send(b"new")
            join(reader)

    received: list[bytes] = []
    with left:
        hub.run(main)
    assert [error.errno for error in errors if isinstance(error, OSError)] == [errno.EBADF]
    assert received == [b"new"]


def test_negative_timeout_raises_value_error(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    _, right = pair

    def main() -> None:
        with pytest.raises(ValueError):
            _core.recv(right.fileno(), 10, timeout=-1)
        with pytest.raises(ValueError):
            _core.wait_readable(right.fileno(), timeout=-0.5)
        with pytest.raises(ValueError):
            _core.sleep(-1)

    hub.run(main)
