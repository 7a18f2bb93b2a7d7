"""Per-call overhead of the hub's green I/O calls, against the plain socket calls they replace.

    .venv/bin/python bench/green_call_overhead.py [--backend io_uring|epoll] [--calls N]

Measures, inside one hub, on a UNIX socket pair with 16-byte messages:
- send: _core.send (sendmsg fast path, no trip through the loop) vs socket.send;
- recv of data already queued: _core.recv (one operation through the backend and the loop, two
  greenlet switches) vs socket.recv;
- a ping-pong between two greenlets (each side waits in _core.recv): one round trip = two
  completions, four switches;
- sleep(0): one yield through the loop.
Prints a Markdown table of nanoseconds per call (median of 5 runs).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from collections.abc import Callable

from theframework import _core

MESSAGE = b"x" * 16


def per_call(function: Callable[[int], None], calls: int) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter_ns()
        function(calls)
        runs.append((time.perf_counter_ns() - started) / calls)
    return statistics.median(runs)


def measure(calls: int) -> dict[str, float]:
    left, right = socket.socketpair()
    left_fd, right_fd = left.fileno(), right.fileno()
    results: dict[str, float] = {}

    def plain_round_trip(count: int) -> None:
        for _ in range(count):
            left.send(MESSAGE)
            right.recv(64)

    def green_send(count: int) -> None:
        for _ in range(count):
            _core.send(left_fd, MESSAGE)
            right.recv(64)

    def green_recv(count: int) -> None:
        for _ in range(count):
            left.send(MESSAGE)
            _core.recv(right_fd, 64)

    def ping_pong(count: int) -> None:
        def echo() -> None:
            for _ in range(count):
                data = _core.recv(right_fd, 64)
                _core.send(right_fd, data)

        echoer = _core.spawn(echo)
        for _ in range(count):
            _core.send(left_fd, MESSAGE)
            _core.recv(left_fd, 64)
        while not echoer.dead:
            _core.sleep(0)

    def yields(count: int) -> None:
        for _ in range(count):
            _core.sleep(0)

    # The plain round trip is measured next to each green one (the machine's speed drifts).
    results["send + socket.recv (plain socket.send)"] = per_call(plain_round_trip, calls)
    results["send + socket.recv (_core.send)"] = per_call(green_send, calls)
    results["socket.send + recv (plain socket.recv)"] = per_call(plain_round_trip, calls)
    results["socket.send + recv (_core.recv through the loop)"] = per_call(green_recv, calls)
    results["ping-pong round trip between two greenlets"] = per_call(ping_pong, calls)
    results["sleep(0) (one yield through the loop)"] = per_call(yields, calls)
    left.close()
    right.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="io_uring", choices=("io_uring", "epoll"))
    parser.add_argument("--calls", type=int, default=20000)
    arguments = parser.parse_args()
    hub = _core.Hub(arguments.backend)
    results: dict[str, float] = hub.run(measure, arguments.calls)
    print(f"| call ({hub.backend}) | ns per call |")
    print("|---|---:|")
    for name, nanoseconds in results.items():
        print(f"| {name} | {nanoseconds:,.0f} |")


if __name__ == "__main__":
    main()
