"""How long a pre-forked server (4 workers) takes to stop after SIGTERM: idle, and busy with
requests in flight (each handler sleeps 0.5 s in the hub, so the drain should take about that).

    .venv/bin/python bench/shutdown_latency.py [--runs 5]

Prints a Markdown table (milliseconds from SIGTERM to the supervisor's exit).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from theframework import Framework, Request, Response, _core

app = Framework()
BUSY_SECONDS = 0.5
BUSY_CLIENTS = 64


@app.get("/")
def index(request: Request, response: Response) -> None:
    response.write("ok")


@app.get("/busy")
def busy(request: Request, response: Response) -> None:
    _core.sleep(BUSY_SECONDS)
    response.write("done")


def _start_server() -> tuple[subprocess.Popen[str], int]:
    command = [sys.executable, "-m", "theframework", "shutdown_latency:app"]
    command += ["--workers", "4", "--port", "0", "--log-level", "info"]
    server = subprocess.Popen(
        command,
        cwd=Path(__file__).resolve().parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"\[master\] .*: ready: http://[^:]+:(\d+)", line)
        if match:
            # Keep reading the output in the background so the server never blocks on it.
            threading.Thread(target=server.stdout.read, daemon=True).start()
            return server, int(match.group(1))
    raise RuntimeError(f"the server exited with {server.wait()} before it was ready")


def _busy_client(port: int, started: threading.Semaphore, results: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(b"GET /busy HTTP/1.1\r\nHost: bench\r\n\r\n")
        started.release()
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
        results.append(data)


def measure(busy_clients: int) -> tuple[float, int]:
    """(milliseconds from SIGTERM to exit, responses completed)."""
    server, port = _start_server()
    try:
        started = threading.Semaphore(0)
        results: list[bytes] = []
        clients = [
            threading.Thread(target=_busy_client, args=(port, started, results))
            for _ in range(busy_clients)
        ]
        for client in clients:
            client.start()
        for _ in clients:
            started.acquire()
        if clients:
            time.sleep(BUSY_SECONDS / 5)  # let the requests reach their handlers
        began = time.perf_counter()
        os.kill(server.pid, signal.SIGTERM)
        code = server.wait(60)
        elapsed = (time.perf_counter() - began) * 1000
        for client in clients:
            client.join(30)
        if code != 0:
            raise RuntimeError(f"the server exited with {code}")
        return elapsed, sum(1 for data in results if data.startswith(b"HTTP/1.1 200"))
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    arguments = parser.parse_args()
    print("| scenario | runs | median ms | max ms | responses completed |")
    print("|---|---:|---:|---:|---:|")
    for name, clients in (
        ("idle, 4 workers", 0),
        (f"busy, {BUSY_CLIENTS} in flight", BUSY_CLIENTS),
    ):
        timings = []
        completed = []
        for _ in range(arguments.runs):
            elapsed, done = measure(clients)
            timings.append(elapsed)
            completed.append(done)
        print(
            f"| {name} | {arguments.runs} | {statistics.median(timings):.0f} | "
            f"{max(timings):.0f} | {min(completed)}/{clients} |"
        )


if __name__ == "__main__":
    main()
