"""Requests lost when a server is stopped under load: 64 client threads keep keep-alive
connections busy against a 4-worker server, SIGTERM arrives in the middle. Every request records
when it was sent and how it ended; a request sent before the server stopped listening that got no
complete 200 answer is lost (the target is none); connections refused afterwards are expected.

    .venv/bin/python bench/sigterm_under_load.py [--workers 4] [--rounds 3]

Prints a Markdown table (one row per round).
"""

from __future__ import annotations

import argparse
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

APP = "bench_sigterm_app:app"
APP_SOURCE = """
from theframework import Framework

app = Framework()


@app.get("/")
def index(request, response):
    response.write("ok")
"""


def start_server(workers: int, directory: Path) -> tuple[subprocess.Popen[str], int]:
    (directory / "bench_sigterm_app.py").write_text(APP_SOURCE)
    server = subprocess.Popen(
        [sys.executable, "-m", "theframework", APP, "--workers", str(workers), "--port", "0"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"ready: http://[^:]+:(\d+)", line)
        if match:
            return server, int(match.group(1))
    raise SystemExit(f"the server exited with {server.wait()} before it was ready")


def client(port: int, stop: threading.Event, outcomes: list[tuple[float, bool]]) -> None:
    """Keep-alive requests until ``stop``; records (send time, answered completely with 200)."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    connection: socket.socket | None = None
    while not stop.is_set():
        sent_at = time.monotonic()
        try:
            if connection is None:
                connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            sent_at = time.monotonic()
            connection.sendall(request)
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.endswith(b"ok"):
                chunk = connection.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the answer")
                reply += chunk
            outcomes.append((sent_at, reply.startswith(b"HTTP/1.1 200")))
            if b"Connection: close" in reply:
                connection.close()
                connection = None
        except ConnectionRefusedError:
            return  # the listeners are gone: expected after SIGTERM, and nothing was sent
        except OSError:
            outcomes.append((sent_at, False))
            if connection is not None:
                connection.close()
            connection = None
    if connection is not None:
        connection.close()


def one_round(workers: int, directory: Path) -> dict[str, int | float]:
    server, port = start_server(workers, directory)
    stop = threading.Event()
    outcomes: list[tuple[float, bool]] = []
    threads = [threading.Thread(target=client, args=(port, stop, outcomes)) for _ in range(64)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # a benchmark: the load runs for 2 s before the signal
    signalled = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.stdout is not None
    server.stdout.read()
    code = server.wait()
    exited = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join()
    before_exit = [answered for sent_at, answered in outcomes if sent_at < exited]
    return {
        "exit": code,
        "shutdown_s": exited - signalled,
        "requests": sum(before_exit),
        "lost": len(before_exit) - sum(before_exit),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    directory = Path(__file__).resolve().parent / "results" / "raw"
    directory.mkdir(parents=True, exist_ok=True)
    print("| round | requests answered | shutdown (s) | exit | requests lost |")
    print("|---:|---:|---:|---:|---:|")
    for number in range(1, arguments.rounds + 1):
        result = one_round(arguments.workers, directory)
        print(
            f"| {number} | {result['requests']:,} | {result['shutdown_s']:.2f} |"
            f" {result['exit']} | {result['lost']} |"
        )


if __name__ == "__main__":
    main()
