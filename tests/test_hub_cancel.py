"""Cancelling blocking calls: a greenlet waiting in each blocking call is killed (GreenletExit) or
thrown into (``_core.kill(g, exception)``) before the call completes. The exception must arrive
in that greenlet, nothing may stay pending, and the fd must work afterwards without losing data
(a killed recv must not have eaten bytes that arrive later)."""

from __future__ import annotations

import contextlib
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
    socket_pair,
    wait_for,
)

from theframework import _core

pytestmark = pytest.mark.timeout(60)


class Cancelled(Exception):
    """Thrown into waiting greenlets by the "throw" mode."""


@pytest.fixture(params=["kill", "throw"])
def mode(request: pytest.FixtureRequest) -> str:
    """Either "kill": _core.kill(g) (GreenletExit); "throw": _core.kill(g, Cancelled("x"))."""
    name: str = request.param
    return name


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket_pair(socket.AF_UNIX)
    with left, right:
        yield left, right


def cancel_while_waiting(block: Callable[[], object], mode: str) -> None:
    """Runs ``block()`` in a new greenlet, checks that it waits, kills or throws into it, and
    checks that exactly that exception arrived and that the hub has nothing pending afterwards.
    Call from the main greenlet of a running hub."""
    outcomes: list[BaseException | tuple[str, object]] = []

    def waiter() -> None:
        try:
            outcomes.append(("returned", block()))
        except greenlet.GreenletExit as error:
            outcomes.append(error)
            raise
        except BaseException as error:
            outcomes.append(error)

    waiting = _core.spawn(waiter)
    let_hub_run()
    assert not waiting.dead, f"the call did not block: {outcomes}"
    assert _core.pending() >= 1
    thrown = Cancelled("x")
    if mode == "kill":
        _core.kill(waiting)
    else:
        _core.kill(waiting, thrown)
    join(waiting)
    assert len(outcomes) == 1, outcomes
    if mode == "kill":
        assert type(outcomes[0]) is greenlet.GreenletExit, outcomes[0]
    else:
        assert outcomes[0] is thrown, outcomes[0]
    wait_for(lambda: _core.pending() == 0, what="pending() to return to 0")


def test_cancel_sleep(hub: _core.Hub, mode: str) -> None:
    def main() -> None:
        cancel_while_waiting(lambda: _core.sleep(30), mode)
        started = time.monotonic()
        _core.sleep(0.01)
        assert time.monotonic() - started >= 0.01

    started = time.monotonic()
    hub.run(main)
    assert time.monotonic() - started < 5


def test_cancel_accept(hub: _core.Hub, mode: str) -> None:
    listener = listening_socket(socket.AF_INET)

    def main() -> None:
        cancel_while_waiting(lambda: _core.accept(listener.fileno()), mode)
        # The connection made after the kill is still in the queue for the next accept.
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            fd, address = _core.accept(listener.fileno(), timeout=5)
            assert address == client.getsockname()
            _core.close(fd)

    with listener:
        hub.run(main)


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET], ids=["unix", "tcp"])
def test_cancel_recv(hub: _core.Hub, mode: str, family: socket.AddressFamily) -> None:
    left, right = socket_pair(family)

    def main() -> None:
        cancel_while_waiting(lambda: _core.recv(right.fileno(), 100), mode)
        _core.sendall(left.fileno(), b"sent after the kill")
        assert _core.recv(right.fileno(), 100, timeout=5) == b"sent after the kill"

    with left, right:
        hub.run(main)


def test_cancel_recv_into(
    hub: _core.Hub, mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    abandoned = bytearray(32)
    fresh = bytearray(32)

    def main() -> None:
        cancel_while_waiting(lambda: _core.recv_into(right.fileno(), abandoned), mode)
        _core.sendall(left.fileno(), b"sent after the kill")
        assert _core.recv_into(right.fileno(), fresh, timeout=5) == 19
        let_hub_run()

    hub.run(main)
    assert fresh[:19] == b"sent after the kill"
    assert abandoned == bytearray(32), "the cancelled recv_into wrote into its buffer"


def test_cancel_recv_with_timeout(
    hub: _core.Hub, mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    # Both the operation and its timer go away.
    left, right = pair

    def main() -> None:
        cancel_while_waiting(lambda: _core.recv(right.fileno(), 100, timeout=30), mode)
        left.send(b"x")
        assert _core.recv(right.fileno(), 100, timeout=5) == b"x"

    hub.run(main)


@pytest.mark.parametrize("call", ["send", "sendall"])
def test_cancel_send_on_a_full_buffer(
    hub: _core.Hub, mode: str, pair: tuple[socket.socket, socket.socket], call: str
) -> None:
    left, right = pair
    filled = fill_send_buffer(left, right)
    function = _core.send if call == "send" else _core.sendall

    def main() -> None:
        cancel_while_waiting(lambda: function(left.fileno(), b"t" * 1_000_000), mode)
        received = bytearray()

        def reader() -> None:
            while not received.endswith(b"MARK"):
                data = _core.recv(right.fileno(), 65536)
                assert data
                received.extend(data)

        reading = _core.spawn(reader)
        _core.sendall(left.fileno(), b"MARK", timeout=5)
        join(reading)
        let_hub_run()
        assert drain(right) == b"", "bytes arrived after the mark"
        # What the cancelled call sent (if anything) came before the mark, in one piece.
        body = bytes(received[:-4])
        assert body[:filled] == b"f" * filled
        assert body[filled:] == b"t" * (len(body) - filled)

    hub.run(main)


def test_cancel_connect(hub: _core.Hub, mode: str) -> None:
    # The listener's accept queue is full, so the kernel drops the SYN: connect stays pending.
    with full_accept_queue() as (listener, address):
        client = socket.socket()
        fd = client.detach()

        def main() -> None:
            cancel_while_waiting(lambda: _core.connect(fd, address), mode)
            _core.close(fd)
            # The listener still works for a new client once its queue has room.
            queued, _ = listener.accept()
            queued.close()
            with socket.socket() as again:
                _core.connect(again.fileno(), address, timeout=5)
                _core.sendall(again.fileno(), b"ok")

        hub.run(main)


def test_cancel_wait_readable(
    hub: _core.Hub, mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        cancel_while_waiting(lambda: _core.wait_readable(right.fileno()), mode)
        left.send(b"x")
        _core.wait_readable(right.fileno(), timeout=5)
        assert _core.recv(right.fileno(), 10) == b"x"

    hub.run(main)


def test_cancel_wait_writable(
    hub: _core.Hub, mode: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair
    fill_send_buffer(left, right)

    def main() -> None:
        cancel_while_waiting(lambda: _core.wait_writable(left.fileno()), mode)
        drain(right)
        _core.wait_writable(left.fileno(), timeout=5)

    hub.run(main)


def test_cancel_wait_fds(hub: _core.Hub, mode: str) -> None:
    full_left, full_right = socket_pair()
    fill_send_buffer(full_left, full_right)  # full_left cannot write
    first_left, first_right = socket_pair()
    second_left, second_right = socket_pair()
    read = [first_right.fileno(), second_right.fileno()]
    write = [full_left.fileno()]

    def main() -> None:
        cancel_while_waiting(lambda: _core.wait_fds(read, write), mode)
        second_left.send(b"x")
        assert _core.wait_fds(read, write, timeout=5) == ([second_right.fileno()], [])

    with full_left, full_right, first_left, first_right, second_left, second_right:
        hub.run(main)


def test_killed_greenlet_can_wait_again_on_the_same_fd(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    # The cancelled operation must never resume the greenlet's next wait.
    left, right = pair
    results: list[object] = []

    def reader() -> None:
        try:
            _core.recv(right.fileno(), 100)
        except Cancelled as error:
            results.append(error)
        results.append(_core.recv(right.fileno(), 100, timeout=5))

    def main() -> None:
        target = _core.spawn(reader)
        let_hub_run()
        _core.kill(target, Cancelled("once"))
        wait_for(lambda: len(results) == 1)
        let_hub_run()
        assert not target.dead, "the second recv returned without data"
        left.send(b"second")
        join(target)

    hub.run(main)
    assert isinstance(results[0], Cancelled)
    assert results[1] == b"second"


def test_throw_into_sleep_then_sleep_again(hub: _core.Hub) -> None:
    woke: list[float] = []

    def sleeper() -> None:
        with contextlib.suppress(Cancelled):
            _core.sleep(0.05)
        started = time.monotonic()
        _core.sleep(0.1)
        woke.append(time.monotonic() - started)

    def main() -> None:
        target = _core.spawn(sleeper)
        let_hub_run()
        _core.kill(target, Cancelled("x"))
        join(target)

    hub.run(main)
    # The first sleep's timer (50 ms) must not cut the second one short.
    assert len(woke) == 1 and woke[0] >= 0.1


def test_many_cancelled_waiters_on_one_fd(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    left, right = pair

    def main() -> None:
        waiters = [_core.spawn(_core.recv, right.fileno(), 10) for _ in range(100)]
        let_hub_run()
        assert _core.pending() == 100
        for waiter in waiters:
            _core.kill(waiter)
        join(*waiters)
        wait_for(lambda: _core.pending() == 0)
        left.send(b"nothing lost")
        assert _core.recv(right.fileno(), 100, timeout=5) == b"nothing lost"

    hub.run(main)


def test_waiting_greenlet_switched_to_by_another_raises_hub_switch_error(
    hub: _core.Hub, pair: tuple[socket.socket, socket.socket]
) -> None:
    # Only the hub may resume a waiting greenlet: a direct switch makes the wait fail with
    # HubSwitchError and cancels its operation.
    left, right = pair
    caught: list[BaseException] = []

    def reader(main_greenlet: greenlet.greenlet) -> None:
        try:
            _core.recv(right.fileno(), 10)
        except BaseException as error:
            caught.append(error)
        _core.schedule(main_greenlet, "resumed")  # main waits in a plain switch, not a call

    def main() -> None:
        target = _core.spawn(reader, greenlet.getcurrent())
        let_hub_run()
        assert target.switch() == "resumed"
        join(target)
        wait_for(lambda: _core.pending() == 0)
        left.send(b"kept")
        assert _core.recv(right.fileno(), 10, timeout=5) == b"kept"

    hub.run(main)
    assert len(caught) == 1 and isinstance(caught[0], _core.HubSwitchError), caught
