"""What trusted proxy headers cost: server CPU per request for plaintext with ``--proxy-headers``
(the default) and ``--no-proxy-headers``, each with and without forwarding headers in the
requests.

    .venv/bin/python bench/proxy_headers_cost.py [--rounds 5] [--seconds 3]
    .venv/bin/python bench/proxy_headers_cost.py --callgrind [--requests 2000]

Wall-clock mode: two single-process servers (the app below, on and off) run pinned to CPU 0; wrk
(1 thread, 64 connections, on CPU 1) loads one of them at a time, the four variants alternating
in a rotated order every round. CPU is the server's utime + stime from /proc over the wrk run,
divided by the requests wrk completed. Prints a Markdown table of medians over the rounds.

Callgrind mode (exact, immune to a shared machine's noise): each variant's server runs under
``valgrind --tool=callgrind --instr-atstart=no`` (epoll backend); once it listens and has answered
one warm-up request, instrumentation is switched on (``callgrind_control -i on``), ``--requests``
keep-alive GETs are sent one after another on one connection, instrumentation is switched off,
and the instructions counted, divided by the requests, are reported.

The handler reads ``request.client`` and ``request.scheme`` so that the forwarded values are
really built.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SERVER_CPU = "0"
CLIENT_CPU = "1"
FORWARDING = ("X-Forwarded-For: 203.0.113.7, 10.0.0.1", "X-Forwarded-Proto: https")


@contextlib.contextmanager
def server(*options: str) -> Iterator[tuple[int, int]]:
    """A server on a free port; yields (pid, port)."""
    command = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "theframework"]
    command += ["proxy_headers_cost:app", "--port", "0", "--log-level", "info", *options]
    process = subprocess.Popen(
        command,
        cwd=BENCH,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stderr is not None
    try:
        for line in process.stderr:
            match = re.search(r"listening on http://[^ ]+:(\d+) \(pid (\d+)", line)
            if match:
                threading.Thread(target=process.stderr.read, daemon=True).start()
                yield int(match.group(2)), int(match.group(1))
                return
        raise RuntimeError(f"the server exited with {process.wait()} before it was ready")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(pid: int, port: int, seconds: int, headers: tuple[str, ...]) -> tuple[float, int]:
    """Runs wrk; (server CPU seconds, requests completed)."""
    command = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c64", f"-d{seconds}s"]
    for header in headers:
        command += ["-H", header]
    command.append(f"http://127.0.0.1:{port}/plaintext")
    before = cpu_seconds(pid)
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before
    match = re.search(r"(\d+) requests in", output)
    if match is None or re.search(r"Non-2xx", output):
        raise RuntimeError(f"wrk failed:\n{output}")
    return used, int(match.group(1))


VARIANTS = [
    ("--proxy-headers", "none"),
    ("--proxy-headers", "X-Forwarded-For + Proto"),
    ("--no-proxy-headers", "none"),
    ("--no-proxy-headers", "X-Forwarded-For + Proto"),
]


def callgrind_instructions(option: str, headers: tuple[str, ...], requests: int) -> int:
    """Instructions the server executed for ``requests`` keep-alive GETs (callgrind)."""
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
        command += [f"--callgrind-out-file={output}", sys.executable, "-m", "theframework"]
        command += ["proxy_headers_cost:app", "--port", "0", "--backend", "epoll", option]
        process = subprocess.Popen(
            command, cwd=BENCH, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert process.stderr is not None
        port = 0
        for line in process.stderr:
            match = re.search(r"listening on http://[^ ]+:(\d+) \(pid", line)
            if match:
                port = int(match.group(1))
                break
        threading.Thread(target=process.stderr.read, daemon=True).start()
        if not port:
            raise RuntimeError(f"the server exited with {process.wait()} before it was ready")
        extra = "".join(f"{header}\r\n" for header in headers)
        request = f"GET /plaintext HTTP/1.1\r\nHost: bench\r\n{extra}\r\n".encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(request)  # one warm-up request outside the measurement
            _read_response(sock)
            subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True,
                           capture_output=True)  # fmt: skip
            for _ in range(requests):
                sock.sendall(request)
                _read_response(sock)
            subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True,
                           capture_output=True)  # fmt: skip
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(120)
        total = 0
        for path in Path(directory).glob("callgrind.out*"):
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = max(total, int(line.split()[1]))
        return total


def _read_response(sock: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(4096)


def main_callgrind(requests: int) -> None:
    baseline = 0.0
    print(f"plaintext, callgrind, {requests} keep-alive requests on one connection, epoll")
    print()
    print("| option | forwarding headers | server instructions/request | vs off, none |")
    print("|---|---|---|---|")
    results = {}
    for option, header_set in VARIANTS:
        headers = FORWARDING if header_set != "none" else ()
        results[(option, header_set)] = callgrind_instructions(option, headers, requests) / requests
    baseline = results[("--no-proxy-headers", "none")]
    for (option, header_set), cost in results.items():
        print(f"| {option} | {header_set} | {cost:,.0f} | {(cost / baseline - 1) * 100:+.2f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--requests", type=int, default=2000)
    arguments = parser.parse_args()
    if arguments.callgrind:
        main_callgrind(arguments.requests)
        return
    variants = [
        ("--proxy-headers", "none"),
        ("--proxy-headers", "X-Forwarded-For + Proto"),
        ("--no-proxy-headers", "none"),
        ("--no-proxy-headers", "X-Forwarded-For + Proto"),
    ]
    samples: dict[tuple[str, str], list[float]] = {variant: [] for variant in variants}
    rates: dict[tuple[str, str], list[float]] = {variant: [] for variant in variants}
    with server("--proxy-headers") as on, server("--no-proxy-headers") as off:
        servers = {"--proxy-headers": on, "--no-proxy-headers": off}
        for round_index in range(arguments.rounds):
            order = variants[round_index % 4 :] + variants[: round_index % 4]
            for option, header_set in order:
                pid, port = servers[option]
                headers = FORWARDING if header_set != "none" else ()
                used, requests = load(pid, port, arguments.seconds, headers)
                samples[(option, header_set)].append(used / requests * 1e6)
                rates[(option, header_set)].append(requests / arguments.seconds)
    baseline = statistics.median(samples[("--no-proxy-headers", "none")])
    print(f"plaintext, {arguments.rounds} rounds x {arguments.seconds} s, wrk -t1 -c64")
    print()
    print("| option | forwarding headers | server CPU µs/request (median) | vs off, none | req/s |")
    print("|---|---|---|---|---|")
    for variant in variants:
        cost = statistics.median(samples[variant])
        spread = ", ".join(f"{value:.2f}" for value in samples[variant])
        print(
            f"| {variant[0]} | {variant[1]} | {cost:.2f} ({spread}) | "
            f"{(cost / baseline - 1) * 100:+.1f}% | {statistics.median(rates[variant]):,.0f} |"
        )


if __name__ == "__main__":
    main()


def _app() -> object:
    from theframework import Framework, Request, Response

    application = Framework()

    @application.get("/plaintext")
    def plaintext(request: Request, response: Response) -> None:
        request.client  # noqa: B018 - the forwarded client is built when there is one
        request.scheme  # noqa: B018
        response.set_header("Content-Type", "text/plain")
        response.write(b"Hello, World!")

    return application


if __name__ != "__main__":
    app = _app()
