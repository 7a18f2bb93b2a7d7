"""What the epoll fallback costs (docs/deployment.md, Docker): plaintext keep-alive req/s and
server CPU time per request of the same server with ``--backend io_uring`` and
``--backend epoll``, side by side.

    .venv/bin/python bench/backends.py [--rounds 5] [--seconds 5] [--connections 64]

One single-process server per measurement (``bench/apps/tf_app.py``, log level warning), pinned to
CPU 0, wrk (1 thread) pinned to CPU 1, as in run.py. Rounds alternate the order of the backends;
each measurement is a 1 s warm-up then the measured run. Prints every figure, the medians and the
median of the per-round ratios epoll / io_uring. CPU time per request (the server's user + system
time from /proc over the requests wrk completed) is the steadier figure on a shared machine:
req/s follows whatever else runs on the server's CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
PYTHON = BENCH.parent / ".venv" / "bin" / "python"
BACKENDS = ("io_uring", "epoll")


def _wait_listening(server: subprocess.Popen[str]) -> int:
    """The port from the server's "listening on" line (its readiness signal)."""
    assert server.stdout is not None
    for line in server.stdout:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+) \(pid \d+, backend \w+", line)
        if match:
            return int(match.group(1))
    raise RuntimeError(f"the server exited with {server.wait()} before listening")


def _wrk(port: int, seconds: float, connections: int) -> tuple[float, int]:
    """(req/s, requests completed) of one wrk run."""
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
        f"http://127.0.0.1:{port}/plaintext",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Socket errors" in output or "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    if rate is None or total is None:
        raise RuntimeError(f"no request count in wrk's output:\n{output}")
    return float(rate.group(1)), int(total.group(1))


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(backend: str, seconds: float, connections: int) -> tuple[float, float]:
    """(req/s, server CPU µs per request) of one fresh server on ``backend``."""
    command = [
        "taskset", "-c", "0", str(PYTHON), "-m", "theframework", "tf_app:app",
        "--port", "0", "--backend", backend, "--log-level", "info",
        "--max-connections", "20000", "--backlog", "4096",
    ]  # fmt: skip
    server = subprocess.Popen(
        command,
        cwd=BENCH / "apps",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        port = _wait_listening(server)
        _wrk(port, 1.0, connections)  # warm-up
        before = _cpu_seconds(server.pid)  # taskset execs the server: the same pid
        rate, requests = _wrk(port, seconds, connections)
        cpu = _cpu_seconds(server.pid) - before
        return rate, cpu * 1e6 / requests
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    costs: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    rate_ratios, cost_ratios = [], []
    for round_number in range(args.rounds):
        order = BACKENDS if round_number % 2 == 0 else BACKENDS[::-1]
        rate, cost = {}, {}
        for backend in order:
            rate[backend], cost[backend] = measure(backend, args.seconds, args.connections)
            rates[backend].append(rate[backend])
            costs[backend].append(cost[backend])
        rate_ratios.append(rate["epoll"] / rate["io_uring"])
        cost_ratios.append(cost["epoll"] / cost["io_uring"])
        print(
            f"round {round_number + 1}: "
            + ", ".join(
                f"{backend} {rate[backend]:,.0f} req/s {cost[backend]:.1f} µs CPU/req"
                for backend in BACKENDS
            )
            + f"; epoll/io_uring req/s {rate_ratios[-1]:.2f}, CPU/req {cost_ratios[-1]:.2f}",
            flush=True,
        )
    for backend in BACKENDS:
        print(
            f"{backend}: median {statistics.median(rates[backend]):,.0f} req/s, "
            f"{statistics.median(costs[backend]):.1f} µs CPU per request"
        )
    print(
        f"epoll / io_uring: median ratio req/s {statistics.median(rate_ratios):.2f}, "
        f"CPU per request {statistics.median(cost_ratios):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
