"""The connection bound is exact: never more than --max-connections open in one process, whatever
the kernel backlog holds when accepting resumes (counted from the server's fd table, and the
peak the server reports when it stops). Both backends."""

from __future__ import annotations

import concurrent.futures
import socket
import threading

from http_helpers import ServerProcess

APP = "tests.apps.bound:app"


class ConnectionSampler:
    """Counts the server's open TCP connections (its fd table) over and over in a thread until
    stopped; ``peak`` is the most seen at once."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, len(self.server.fds_split()[0]))
            self._stop.wait(0.005)  # a sampling interval, not a wait for an event

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def request(server: ServerProcess, path: str, connection: socket.socket | None = None) -> str:
    """GET ``path`` with Connection: close (on ``connection`` if given); the body of a 200."""
    client = connection or socket.create_connection(server.address, timeout=30)
    with client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), received
    return body.decode()


def test_backlog_queued_while_the_hub_blocks_is_accepted_within_the_bound(backend: str) -> None:
    with ServerProcess(APP, backend, "--max-connections", "5") as server:
        with (
            ConnectionSampler(server) as sampler,
            concurrent.futures.ThreadPoolExecutor(51) as pool,
        ):
            blocker = pool.submit(request, server, "/block?seconds=1")
            server.wait_for_stderr("hub blocked")
            # Fifty clients queue in the kernel backlog while the hub cannot accept.
            clients = [socket.create_connection(server.address, timeout=30) for _ in range(50)]
            naps = [pool.submit(request, server, "/nap?seconds=0.2", c) for c in clients]
            assert blocker.result() == "unblocked"
            running = [int(nap.result().split()[0]) for nap in naps]
        assert sampler.peak <= 5, sampler.peak
        assert max(running) <= 5, running
        server.stop()
    assert "at most 5 open at once" in server.stderr, server.stderr


def test_thirty_clients_over_max_connections_ten_are_served_in_three_waves(backend: str) -> None:
    with ServerProcess(APP, backend, "--max-connections", "10") as server:
        barrier = threading.Barrier(30, timeout=30)

        def client(_: int) -> tuple[int, int]:
            barrier.wait()
            running, finished = request(server, "/nap?seconds=1").split()
            return int(running), int(finished)

        with (
            ConnectionSampler(server) as sampler,
            concurrent.futures.ThreadPoolExecutor(30) as pool,
        ):
            results = list(pool.map(client, range(30)))
        assert sampler.peak <= 10, sampler.peak
        assert max(running for running, _ in results) == 10, results
        # The k-th connection accepted past the first ten needs k of the earlier ones closed, so
        # it started after at least k handlers had finished: three waves, not 10 then 20.
        finished = sorted(finished for _, finished in results)
        assert finished[:10] == [0] * 10, finished
        assert all(finished[k] >= k - 9 for k in range(10, 30)), finished
        server.stop()
    assert "(30 connections, at most 10 open at once)" in server.stderr, server.stderr
