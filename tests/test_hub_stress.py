"""Load on one hub: 10,000 concurrent sleeps in deadline order, an echo server with 1,000
concurrent clients (TCP and UNIX, a few 1 MiB payloads among them), and stopping a hub that has
1,000 suspended greenlets."""

from __future__ import annotations

import random
import socket
import time

import greenlet
import pytest
from helpers import join, let_hub_run, listening_socket, socket_pair, wait_for

from theframework import _core

pytestmark = pytest.mark.timeout(60)

SLEEPERS = 10_000
# Two sleeps whose deadlines are this close may wake in either order (a hub may keep its timers
# at millisecond resolution); anything further apart must wake in deadline order.
ORDER_TOLERANCE = 0.001
CLIENTS = 1000
LARGE_PAYLOADS = 4  # of 1 MiB each, among the CLIENTS


def test_ten_thousand_sleeps_wake_in_deadline_order(hub: _core.Hub) -> None:
    # The hub computes a sleeper's deadline inside sleep(), at a moment the test cannot read;
    # it lies between the sleeper's own clock reading before the call and the next sleeper's
    # first clock reading (sleepers start one after the other: each runs until it sleeps). So
    # each deadline is known as an interval; a GC pause or preemption inside the call only
    # widens that interval instead of passing for a misordering.
    generator = random.Random(20261128)
    durations = [generator.randint(0, 200) / 1000 for _ in range(SLEEPERS)]
    called_at = [0.0] * SLEEPERS
    start_order: list[int] = []
    woken: list[int] = []
    early: list[tuple[int, float]] = []

    def sleeper(index: int) -> None:
        start_order.append(index)
        called_at[index] = time.monotonic()
        _core.sleep(durations[index])
        late_by = time.monotonic() - (called_at[index] + durations[index])
        if late_by < 0:
            early.append((index, -late_by))
        woken.append(index)

    def main() -> tuple[float, float]:
        started = time.monotonic()
        for index in range(SLEEPERS):
            _core.spawn(sleeper, index)
        _core.sleep(0)  # every sleeper has started (and called sleep) when this returns
        all_started = time.monotonic()
        wait_for(lambda: len(woken) == SLEEPERS, timeout=30, what="every sleeper to wake")
        return all_started, time.monotonic() - started

    all_started, elapsed = hub.run(main)
    assert sorted(woken) == list(range(SLEEPERS)), "a sleeper woke twice or never"
    assert len(start_order) == SLEEPERS
    assert not early, f"{len(early)} sleeps ended early, e.g. {early[:5]}"
    earliest = [called_at[index] + durations[index] for index in range(SLEEPERS)]
    latest = [0.0] * SLEEPERS
    for position, index in enumerate(start_order):
        next_call = called_at[start_order[position + 1]] if position + 1 < SLEEPERS else all_started
        latest[index] = next_call + durations[index]
    # Walk the wake order: a sleeper whose deadline is surely earlier (by more than the
    # tolerance) than that of one woken before it was woken out of order.
    highest_earliest = float("-inf")
    inversions = []
    for position, index in enumerate(woken):
        if latest[index] + ORDER_TOLERANCE < highest_earliest:
            inversions.append((position, index, highest_earliest - latest[index]))
        highest_earliest = max(highest_earliest, earliest[index])
    assert not inversions, (
        f"{len(inversions)} sleepers woke after one with a later deadline; worst "
        f"{max(gap for _, _, gap in inversions) * 1000:.1f} ms, first {inversions[:5]}"
    )
    assert elapsed < 0.2 + 10


def echo_round(hub: _core.Hub, family: socket.AddressFamily, address: str | None) -> None:
    """Echo server and CLIENTS concurrent clients in one hub; every client gets back exactly
    what it sent."""
    listener = listening_socket(family, address, backlog=CLIENTS + 24)
    target = listener.getsockname()
    generator = random.Random(42)
    payloads = [generator.randbytes(generator.randint(1, 8192)) for _ in range(CLIENTS)]
    for index in range(LARGE_PAYLOADS):
        payloads[index * (CLIENTS // LARGE_PAYLOADS)] = generator.randbytes(1 << 20)
    echoed: dict[int, bytes] = {}
    handlers_done: list[int] = []

    def handle(fd: int) -> None:
        try:
            while True:
                data = _core.recv(fd, 65536)
                if not data:
                    return
                _core.sendall(fd, data)
        finally:
            _core.close(fd)
            handlers_done.append(fd)

    def acceptor() -> None:
        while True:
            fd, _ = _core.accept(listener.fileno())
            _core.spawn(handle, fd)

    def send_then_shut(sock: socket.socket, payload: bytes) -> None:
        _core.sendall(sock.fileno(), payload)
        sock.shutdown(socket.SHUT_WR)

    def client(index: int) -> None:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            _core.connect(sock.fileno(), target)
            sender = _core.spawn(send_then_shut, sock, payloads[index])
            received = bytearray()
            while True:
                data = _core.recv(sock.fileno(), 65536)
                if not data:
                    break
                received.extend(data)
            join(sender)
            echoed[index] = bytes(received)

    def main() -> None:
        accepting = _core.spawn(acceptor)
        for index in range(CLIENTS):
            _core.spawn(client, index)
        wait_for(lambda: len(echoed) == CLIENTS, timeout=45, what="every client to finish")
        wait_for(lambda: len(handlers_done) == CLIENTS, timeout=10, what="every handler")
        _core.kill(accepting)
        join(accepting)

    with listener:
        hub.run(main)
    wrong = [index for index in range(CLIENTS) if echoed[index] != payloads[index]]
    assert not wrong, f"{len(wrong)} clients got back something else, e.g. {wrong[:10]}"


def test_echo_server_thousand_clients_tcp(hub: _core.Hub) -> None:
    echo_round(hub, socket.AF_INET, None)


def test_echo_server_thousand_clients_unix(hub: _core.Hub, unix_socket_path: str) -> None:
    echo_round(hub, socket.AF_UNIX, unix_socket_path)


@pytest.mark.parametrize("how", ["stop", "main_returns"])
def test_end_of_run_with_a_thousand_suspended_greenlets(hub: _core.Hub, how: str) -> None:
    # 700 sleep, 100 recv and 100 wait_readable on 100 socket pairs, 100 accept on one listener:
    # every one receives GreenletExit when run ends, and nothing stays pending.
    pairs = [socket_pair() for _ in range(100)]
    listener = listening_socket(socket.AF_INET)
    exits: list[int] = []
    main_exits: list[bool] = []

    def suspended(index: int) -> None:
        try:
            if index < 700:
                _core.sleep(60)
            elif index < 800:
                _core.recv(pairs[index - 700][1].fileno(), 10)
            elif index < 900:
                _core.wait_readable(pairs[index - 800][1].fileno())
            else:
                _core.accept(listener.fileno())
        except greenlet.GreenletExit:
            exits.append(index)
            raise

    def main() -> None:
        for index in range(1000):
            _core.spawn(suspended, index)
        let_hub_run()
        assert _core.pending() == 1000
        if how == "main_returns":
            return
        hub.stop()
        try:
            _core.sleep(60)
        except greenlet.GreenletExit:
            main_exits.append(True)
            raise

    started = time.monotonic()
    try:
        hub.run(main)
    except greenlet.GreenletExit:
        pass  # how run reports a main ended by stop() is left open by the contract
    finally:
        for left, right in pairs:
            left.close()
            right.close()
        listener.close()
    assert time.monotonic() - started < 10
    assert sorted(exits) == list(range(1000))
    assert main_exits == ([True] if how == "stop" else [])
    assert hub.pending == 0


def test_many_acceptors_on_one_listener_accept_each_connection_once(hub: _core.Hub) -> None:
    listener = listening_socket(socket.AF_INET)
    accepted: list[tuple[int, int]] = []  # (acceptor, peer port)

    def acceptor(number: int) -> None:
        while True:
            fd, address = _core.accept(listener.fileno())
            assert isinstance(address, tuple)
            accepted.append((number, address[1]))
            _core.close(fd)

    def connector(ports: list[int]) -> None:
        with socket.socket() as client:
            _core.connect(client.fileno(), listener.getsockname())
            ports.append(client.getsockname()[1])
            _core.recv(client.fileno(), 1)  # until the server side closes

    def main() -> None:
        acceptors = [_core.spawn(acceptor, number) for number in range(100)]
        let_hub_run()
        ports: list[int] = []
        connectors = [_core.spawn(connector, ports) for _ in range(500)]
        join(*connectors, timeout=30)
        assert sorted(port for _, port in accepted) == sorted(ports)
        assert len({number for number, _ in accepted}) > 1, "only one acceptor ever woke"
        for waiting in acceptors:
            _core.kill(waiting)
        join(*acceptors)

    with listener:
        hub.run(main)
