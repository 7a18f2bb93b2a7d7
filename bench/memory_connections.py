"""Memory of one worker holding idle keep-alive connections, over successive waves: each wave
opens 10,000 connections, sends one request on each and keeps them all open and idle; the worker's
RSS (VmRSS) is read while they are open, then the wave is closed (and the server given time to see
the closes) before the next one. Reports the RSS per wave, KiB per connection, and each wave's RSS
against the first wave's (the target: within 5 %).

    .venv/bin/python bench/memory_connections.py [--connections 10000] [--waves 3]

The server is a supervisor with one worker (``Supervisor`` with workers=1, as ``--workers N``
runs each worker). Both this process and the server raise their open-files limit
(RLIMIT_NOFILE) themselves. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from theframework import Framework, Request, Response

app = Framework()


@app.get("/")
def index(request: Request, response: Response) -> None:
    response.write("ok")


def raise_file_limit(wanted: int) -> int:
    """Raises the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def serve(connections: int) -> None:
    """The server side (run in a child process)."""
    from theframework.config import ProcessConfig, ServerConfig
    from theframework.process.supervisor import Supervisor
    from theframework.server.logs import configure_logging

    raise_file_limit(connections + 1024)
    configure_logging("info", "master")
    server = ServerConfig(
        app="memory_connections:app",
        port=0,
        backlog=4096,
        max_connections=connections + 100,
        keepalive_timeout=600.0,
        header_timeout=600.0,
    )
    raise SystemExit(Supervisor("memory_connections:app", server, ProcessConfig(workers=1)).run())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_wave(port: int, count: int, into: list[socket.socket]) -> None:
    """Opens ``count`` connections, sends one request on each and reads each response."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    selector = selectors.DefaultSelector()
    wave = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=60)
        connection.sendall(request)
        wave.append(connection)
    pending = {connection: b"" for connection in wave}
    for connection in wave:
        connection.setblocking(False)
        selector.register(connection, selectors.EVENT_READ)
    while pending:
        events = selector.select(60)
        if not events:
            raise RuntimeError(f"{len(pending)} responses missing after 60 s")
        for key, _ in events:
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            pending[ready] += ready.recv(4096)
            if pending[ready].endswith(b"ok"):
                del pending[ready]
                selector.unregister(ready)
    selector.close()
    into.extend(wave)


def wait_until_closed(pid: int, timeout: float = 30.0) -> None:
    """Waits until the worker holds no TCP connection socket any more (its fd count settles)."""
    deadline = time.monotonic() + timeout
    previous = -1
    while time.monotonic() < deadline:
        count = len(os.listdir(f"/proc/{pid}/fd"))
        if count == previous and count < 64:
            return
        previous = count
        time.sleep(0.2)  # a benchmark, not a test: polling the worker's fd table is fine here


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10000)
    parser.add_argument("--waves", type=int, default=3)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.serve:
        serve(arguments.connections)
        return
    limit = raise_file_limit(arguments.connections + 1024)
    if limit != resource.RLIM_INFINITY and limit < arguments.connections + 100:
        raise SystemExit(f"the open-files limit ({limit}) is too low for the client side")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--connections", str(arguments.connections)],
        cwd=Path(__file__).resolve().parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    port = worker_pid = 0
    for line in server.stdout:
        match = re.search(r"worker 1 ready \(pid (\d+)\)", line)
        if match:
            worker_pid = int(match.group(1))
        match = re.search(r"ready: http://[^:]+:(\d+)", line)
        if match:
            port = int(match.group(1))
            break
    if not port or not worker_pid:
        raise SystemExit(f"the server exited with {server.wait()} before it was ready")
    threading.Thread(target=server.stdout.read, daemon=True).start()
    held: list[socket.socket] = []
    try:
        print("| wave | open connections | worker RSS MiB | KiB per connection | vs wave 1 |")
        print("|---:|---:|---:|---:|---:|")
        baseline = rss_kib(worker_pid)
        print(f"| before | 0 | {baseline / 1024:.1f} | - | - |")
        first = 0
        for wave in range(1, arguments.waves + 1):
            open_wave(port, arguments.connections, held)
            rss = rss_kib(worker_pid)
            first = first or rss
            per_connection = (rss - baseline) / len(held)
            growth = (rss - first) / first * 100
            print(
                f"| {wave} | {len(held)} | {rss / 1024:.1f} | {per_connection:.2f} |"
                f" {growth:+.1f} % |"
            )
            for connection in held:
                connection.close()
            held.clear()
            wait_until_closed(worker_pid)
    finally:
        for connection in held:
            connection.close()
        os.kill(server.pid, signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


if __name__ == "__main__":
    main()
