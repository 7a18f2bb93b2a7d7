"""Helpers of the monkey-patching test scripts.

Each script runs in its own process (patching is process-wide): it calls ``patch_all()`` first,
runs its scenario in a hub and prints one JSON object on stdout for the test to check. Import
this module after ``patch_all()``.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from theframework import _core


def report(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def run(backend: str, main: Callable[[], dict[str, Any]]) -> None:
    """Runs ``main`` in a fresh hub on ``backend`` and prints what it returns as JSON."""
    report(_core.Hub(backend).run(main))


def join(greenlets: Iterable[Any], timeout: float = 30.0) -> None:
    """Yields to the hub until every greenlet has finished; AssertionError after timeout."""
    pending = list(greenlets)
    deadline = time.monotonic() + timeout
    while not all(g.dead for g in pending):
        if time.monotonic() > deadline:
            raise AssertionError(f"greenlets still running after {timeout} s")
        _core.sleep(0.005)


def spawn_all(count: int, function: Callable[[int], Any]) -> tuple[list[Any], list[Any]]:
    """Spawns function(i) for i < count; returns (greenlets, results) where results[i] is the
    value or the exception of call i once its greenlet is done."""
    results: list[Any] = [None] * count

    def call(index: int) -> None:
        try:
            value = function(index)
            results[index] = list(value) if isinstance(value, tuple) else value
        except Exception as error:
            results[index] = error

    return [_core.spawn(call, index) for index in range(count)], results


class Server:
    """theframework's native HTTP server on 127.0.0.1:<free port>, in the running hub, routing
    by exact path to handler(request, response) functions; "/hello" answers "hello"."""

    def __init__(self, routes: dict[str, Callable[[Any, Any], None]] | None = None) -> None:
        self.routes = {"/hello": lambda _request, response: response.write(b"hello")}
        self.routes.update(routes or {})
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port: int = self.listener.getsockname()[1]
        self.http = _core.HttpServer(self._handle, [self.listener.fileno()], max_connections=4096)
        self.greenlet = _core.spawn(self.http.serve)

    def _handle(self, request: Any, response: Any) -> None:
        handler = self.routes.get(request.path)
        if handler is None:
            response.set_status(404)
            return
        handler(request, response)

    def stop(self) -> None:
        self.http.shutdown(2.0)
        join([self.greenlet])
        self.listener.close()

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, str]:
        """A GET from this greenlet through the (patched) http.client."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()


class HelloProbe:
    """A greenlet asking the server for /hello every ``interval`` seconds until stopped; records
    how many answers came and the slowest one. A blocked hub shows as a long slowest answer."""

    def __init__(self, server: Server, interval: float = 0.02) -> None:
        self.server = server
        self.interval = interval
        self.answers = 0
        self.failures: list[str] = []
        self.slowest = 0.0
        self.running = True
        self.greenlet = _core.spawn(self._loop)

    def _loop(self) -> None:
        while self.running:
            started = time.monotonic()
            try:
                status, body = self.server.get("/hello", timeout=10)
                if (status, body) != (200, "hello"):
                    self.failures.append(f"{status} {body!r}")
                else:
                    self.answers += 1
            except Exception as error:
                self.failures.append(repr(error))
            self.slowest = max(self.slowest, time.monotonic() - started)
            _core.sleep(self.interval)

    def stop(self) -> dict[str, Any]:
        self.running = False
        join([self.greenlet])
        return {"answers": self.answers, "failures": self.failures, "slowest": self.slowest}
