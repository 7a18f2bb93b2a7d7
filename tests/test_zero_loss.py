"""Zero loss by construction (docs/processes.md, "Listening sockets"): the supervisor owns one
SO_REUSEPORT socket per worker slot and hands it to the slot's successor, so nothing queued on
a socket is reset when its worker is replaced (reload, max-requests), killed for a hang or
killed outright; scaling down steers new connections away from the leaving socket before its
worker takes what is queued.

The load is wrk opening a new connection for every request (``Connection: close``, 64 at a
time, two threads), stopped with SIGINT (its report then covers the whole run) once the
operation under test has completed by the server's log. Every test fails on any socket error or
non-2xx answer, except kill -9, whose failures are bounded by the connections the killed worker
had accepted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from prefork_apps.harness import ServerProcess, http_get, wait_for_metric

pytestmark = pytest.mark.timeout(180)

APP = "ops_apps.ops_app:app"


@dataclass
class Report:
    """What wrk reported: requests completed and failed connections by kind."""

    requests: int
    errors: dict[str, int]
    non_2xx: int
    text: str

    @property
    def failures(self) -> int:
        return sum(self.errors.values()) + self.non_2xx


class Load:
    """wrk against ``port`` with a new connection per request, until stop()."""

    def __init__(self, port: int) -> None:
        # wrk is a test requirement installed by scripts/bootstrap.sh: missing, the test fails.
        assert shutil.which("wrk"), "wrk is not installed (scripts/bootstrap.sh installs it)"
        self.process = subprocess.Popen(
            ["wrk", "-t2", "-c64", "-d300s", "--timeout", "10s", "-H", "Connection: close",
             f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def stop(self) -> Report:
        """Stops wrk (SIGINT: it prints its report) and parses the report."""
        self.process.send_signal(signal.SIGINT)
        text, _ = self.process.communicate(timeout=30)
        requests = re.search(r"(\d+) requests in", text)
        assert requests, text
        errors: dict[str, int] = {}
        socket_errors = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
        )
        if socket_errors:
            errors = dict(zip(("connect", "read", "write", "timeout"),
                              map(int, socket_errors.groups()), strict=True))  # fmt: skip
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        return Report(int(requests.group(1)), errors, int(non_2xx.group(1)) if non_2xx else 0, text)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


@contextmanager
def load_on(server: ServerProcess, metrics: str) -> Iterator[Load]:
    """Starts the load and returns once the workers have answered some of it (their counters
    reach the supervisor's metrics every second)."""
    port = server.port()
    before = wait_for_metric(metrics, "theframework_requests_total", 0)
    served = sum(value for _, value in before.get("theframework_requests_total", []))
    load = Load(port)
    try:
        wait_for_metric(metrics, "theframework_requests_total", served + 500, timeout=30)
        yield load
    finally:
        load.kill()


def _serve(*arguments: str) -> ServerProcess:
    return ServerProcess(APP, "--port", "0", "--metrics-port", "0", *arguments)


def _metrics_url(server: ServerProcess) -> str:
    return server.wait_for_line(r"metrics: (http://\S+)").group(1)


def _assert_nothing_failed(report: Report, minimum_requests: int = 1000) -> None:
    assert report.failures == 0, report.text
    assert report.requests >= minimum_requests, report.text


def _line_count(server: ServerProcess, pattern: str) -> int:
    return len(re.findall(pattern, server.output))


def _wait_for_count(server: ServerProcess, pattern: str, count: int, timeout: float) -> None:
    """Waits until ``pattern`` has matched ``count`` lines of the server's log."""
    start = 0
    for _ in range(count):
        start = _line_index(server, pattern, start, timeout) + 1


def _line_index(server: ServerProcess, pattern: str, start: int, timeout: float) -> int:
    server.wait_for_line(pattern, timeout=timeout, start=start)
    compiled = re.compile(pattern)
    lines = server.output.splitlines()
    return next(i for i in range(start, len(lines)) if compiled.search(lines[i]))


# -- replacements -----------------------------------------------------------------------------


def test_ten_reloads_under_new_connection_load_fail_nothing() -> None:
    with _serve("--workers", "2") as server:
        metrics = _metrics_url(server)
        sockets = _held_listeners(server.pid, server.port())
        assert len(sockets) == 2
        with load_on(server, metrics) as load:
            for reload in range(1, 11):
                server.send_signal(signal.SIGHUP)
                _wait_for_count(server, r"reload complete: 2 workers", reload, timeout=60)
            report = load.stop()
        _assert_nothing_failed(report)
        assert _line_count(server, r"replaces pid") == 20
        # Every successor took over its slot's socket.
        _assert_workers_use_the_supervisors_sockets(server, sockets)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_max_requests_recycling_under_new_connection_load_fails_nothing() -> None:
    with _serve(
        "--workers", "2", "--max-requests", "1500", "--max-requests-jitter", "500"
    ) as server:
        metrics = _metrics_url(server)
        sockets = _held_listeners(server.pid, server.port())
        with load_on(server, metrics) as load:
            _wait_for_count(server, r"\(recycle\); draining the old one", 6, timeout=120)
            _wait_for_count(server, r"\) retired$", 6, timeout=60)
            report = load.stop()
        _assert_nothing_failed(report)
        _assert_workers_use_the_supervisors_sockets(server, sockets)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


# -- scaling down -----------------------------------------------------------------------------


def test_ttou_from_four_to_two_under_new_connection_load_fails_nothing() -> None:
    with _serve("--workers", "4") as server:
        metrics = _metrics_url(server)
        port = server.port()
        leaving = {_listening_inode(server.worker_pids()[worker], port) for worker in (3, 4)}
        sockets = _held_listeners(server.pid, port)
        assert len(sockets) == 4 and leaving < sockets
        with load_on(server, metrics) as load:
            server.send_signal(signal.SIGTTOU)
            server.wait_for_line(r"removing worker 4 \(3 workers\)")
            server.wait_for_line(r"worker 4 \(pid \d+\) retired", timeout=60)
            server.send_signal(signal.SIGTTOU)
            server.wait_for_line(r"removing worker 3 \(2 workers\)")
            server.wait_for_line(r"worker 3 \(pid \d+\) retired", timeout=60)
            # The two remaining workers take the whole load afterwards.
            served = wait_for_metric(metrics, "theframework_requests_total", 0)
            total = sum(value for _, value in served["theframework_requests_total"])
            wait_for_metric(metrics, "theframework_requests_total", total + 500, timeout=30)
            report = load.stop()
        _assert_nothing_failed(report)
        # The leaving sockets are out of the group (closed), the others untouched.
        _assert_workers_use_the_supervisors_sockets(server, sockets - leaving)
        assert not leaving & set(_tcp_states(port))
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


# -- workers that die ---------------------------------------------------------------------------


def test_hang_kill_loses_nothing_queued_for_the_hung_worker() -> None:
    # The hang starts before the load, on a connection of the test's own: the hung worker has
    # accepted no load connection, and every one that reaches its socket waits in the queue
    # (the kernel's, kept open by the supervisor) for its successor.
    with _serve("--workers", "2", "--worker-timeout", "1") as server:
        metrics = _metrics_url(server)
        port = server.port()
        stuck = socket.create_connection(("127.0.0.1", port), timeout=30)
        try:
            stuck.sendall(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
            pid = server.wait_for_line(r"spinning in pid (\d+)").group(1)
            with load_on(server, metrics) as load:
                hung = server.wait_for_line(rf"worker (\d+) \(pid {pid}\) is hung", timeout=30)
                worker_id = hung.group(1)
                server.wait_for_line(rf"worker {worker_id}: killed by SIGKILL; restarting it")
                server.wait_for_line(rf"worker {worker_id} ready \(pid (?!{pid}\))\d+\)")
                served = wait_for_metric(metrics, "theframework_requests_total", 0)
                total = sum(value for _, value in served["theframework_requests_total"])
                wait_for_metric(metrics, "theframework_requests_total", total + 500, timeout=30)
                report = load.stop()
        finally:
            stuck.close()
        _assert_nothing_failed(report)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def _held_listeners(pid: int, port: int) -> set[int]:
    """The inodes of the listening sockets on ``port`` that process ``pid`` holds."""
    listening = {inode for inode, (state, _) in _tcp_states(port).items() if state == "0A"}
    return _socket_inodes(pid) & listening


def _listening_inode(pid: int, port: int) -> int:
    """The inode of the one listening socket on ``port`` that process ``pid`` holds."""
    held = _held_listeners(pid, port)
    assert len(held) == 1, held
    return held.pop()


def _assert_workers_use_the_supervisors_sockets(server: ServerProcess, expected: set[int]) -> None:
    """The supervisor holds ``expected`` (its slots' sockets) and each worker one of them: no
    socket was made or left the group since."""
    port = server.port()
    assert _held_listeners(server.pid, port) == expected
    assert {_listening_inode(pid, port) for pid in _current_pids(server)} == expected


def _current_pids(server: ServerProcess) -> list[int]:
    return [pid for pid in server.worker_pids().values() if os.path.exists(f"/proc/{pid}")]


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp_states(port: int) -> dict[int, tuple[str, int]]:
    """inode -> (state, receive queue) of every TCP socket on local ``port``."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.read().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port:
                    receive_queue = int(fields[4].split(":")[1], 16)
                    found[int(fields[9])] = (fields[3], receive_queue)
    return found


def test_kill_9_fails_at_most_the_connections_the_worker_had_accepted() -> None:
    with _serve("--workers", "2") as server:
        metrics = _metrics_url(server)
        port = server.port()
        victim = server.worker_pids()[1]
        with load_on(server, metrics) as load:
            listener = _listening_inode(victim, port)
            # Frozen, the worker accepts nothing more: its accepted connections are the TCP
            # sockets it holds now, and new ones queue on its slot's socket.
            os.kill(victim, signal.SIGSTOP)
            try:
                states = _tcp_states(port)
                accepted = sum(
                    1
                    for inode in _socket_inodes(victim) - {listener}
                    if states.get(inode, ("", 0))[0] != "0A" and inode in states
                )
                # Until its queue holds connections (the listening socket's receive queue is
                # its accept queue): those must survive the kill.
                deadline = time.monotonic() + 10
                while _tcp_states(port).get(listener, ("", 0))[1] < 8:
                    assert time.monotonic() < deadline, _tcp_states(port).get(listener)
                    time.sleep(0.01)
                queued = _tcp_states(port)[listener][1]
            finally:
                os.kill(victim, signal.SIGKILL)
            server.wait_for_line(r"worker 1: killed by SIGKILL; restarting it")
            server.wait_for_line(rf"worker 1 ready \(pid (?!{victim}\))\d+\)")
            served = wait_for_metric(metrics, "theframework_requests_total", 0)
            total = sum(value for _, value in served["theframework_requests_total"])
            wait_for_metric(metrics, "theframework_requests_total", total + 500, timeout=30)
            report = load.stop()
        print(
            f"kill -9: {report.failures} failed connections ({report.errors}); the worker had "
            f"accepted {accepted} open connections and {queued} were queued on its socket"
        )
        assert report.failures <= accepted, (accepted, queued, report.text)
        assert report.requests >= 1000, report.text
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_each_start_method_hands_the_slots_socket_to_successors(start_method: str) -> None:
    with ServerProcess(
        APP, "--workers", "2", "--port", "0", "--start-method", start_method
    ) as server:
        port = server.port()
        sockets = _held_listeners(server.pid, port)
        assert len(sockets) == 2
        _assert_workers_use_the_supervisors_sockets(server, sockets)
        server.send_signal(signal.SIGHUP)
        server.wait_for_line(r"reload complete: 2 workers")
        _assert_workers_use_the_supervisors_sockets(server, sockets)
        server.send_signal(signal.SIGTTIN)
        server.wait_for_line(r"worker 3 ready")
        grown = _held_listeners(server.pid, port)
        assert len(grown) == 3 and sockets < grown
        _assert_workers_use_the_supervisors_sockets(server, grown)
        server.send_signal(signal.SIGTTOU)
        server.wait_for_line(r"worker 3 \(pid \d+\) retired")
        _assert_workers_use_the_supervisors_sockets(server, sockets)
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
