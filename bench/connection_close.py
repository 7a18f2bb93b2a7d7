"""Server CPU time spent on client closes: one worker holds N idle keep-alive connections (one
request served on each), the client closes them all, and the worker's CPU time (user + system,
from /proc/PID/stat) over the closing phase is reported, per wave and per connection. This is the
figure the connection registry's bookkeeping shows up in: a linear search per close makes it grow
with N squared, an index kept in the connection keeps it linear.

    .venv/bin/python bench/connection_close.py [--connections 10000 20000] [--waves 3]

Reuses memory_connections.py's server (a supervisor with one worker) and client. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from memory_connections import open_wave, raise_file_limit, wait_until_closed

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND


def start_server(connections: int) -> tuple[subprocess.Popen[str], int, int]:
    """memory_connections.py's server; (process, port, worker pid)."""
    server = subprocess.Popen(
        [sys.executable, "memory_connections.py", "--serve", "--connections", str(connections)],
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
    return server, port, worker_pid


def stop_server(server: subprocess.Popen[str]) -> None:
    os.kill(server.pid, signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def measure(connections: int, waves: int) -> list[float]:
    """Worker CPU seconds spent on each wave's closes."""
    server, port, worker_pid = start_server(connections)
    figures = []
    try:
        for _ in range(waves):
            held: list[socket.socket] = []
            open_wave(port, connections, held)
            before = cpu_seconds(worker_pid)
            for connection in held:
                connection.close()
            wait_until_closed(worker_pid)
            figures.append(cpu_seconds(worker_pid) - before)
    finally:
        stop_server(server)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, nargs="+", default=[10000, 20000])
    parser.add_argument("--waves", type=int, default=3)
    arguments = parser.parse_args()
    limit = raise_file_limit(max(arguments.connections) + 1024)
    if limit != resource.RLIM_INFINITY and limit < max(arguments.connections) + 100:
        raise SystemExit(f"the open-files limit ({limit}) is too low for the client side")
    print("| connections | worker CPU s per wave (closing) | µs per close (best wave) |")
    print("|---:|---|---:|")
    for count in arguments.connections:
        figures = measure(count, arguments.waves)
        per_close = min(figures) / count * 1e6
        waves = ", ".join(f"{figure:.2f}" for figure in figures)
        print(f"| {count} | {waves} | {per_close:.1f} |")


if __name__ == "__main__":
    main()
