"""What the epoll fallback costs (docs/deployment.md, Docker): plaintext keep-alive req/s of the
same server with ``--backend io_uring`` and ``--backend epoll``, side by side.

    .venv/bin/python bench/backends.py [--rounds 5] [--seconds 5] [--connections 64]

One single-process server per measurement (``bench/apps/tf_app.py``, log level warning), pinned to
CPU 0, wrk (1 thread) pinned to CPU 1, as in run.py. Rounds alternate the order of the backends;
each measurement is a 1 s warm-up then the measured run. Prints every figure, the medians and the
median of the per-round ratios epoll / io_uring.
"""

from __future__ import annotations

import argparse
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


def _wrk(port: int, seconds: float, connections: int) -> float:
    command = [
        "taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s",
        f"http://127.0.0.1:{port}/plaintext",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if "Socket errors" in output or "Non-2xx" in output:
        raise RuntimeError(f"wrk saw errors:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk's output:\n{output}")
    return float(match.group(1))


def measure(backend: str, seconds: float, connections: int) -> float:
    """req/s of one fresh server on ``backend``."""
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
        return _wrk(port, seconds, connections)
    finally:
        server.terminate()
        server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
    ratios = []
    for round_number in range(args.rounds):
        order = BACKENDS if round_number % 2 == 0 else BACKENDS[::-1]
        result = {}
        for backend in order:
            result[backend] = measure(backend, args.seconds, args.connections)
            figures[backend].append(result[backend])
        ratios.append(result["epoll"] / result["io_uring"])
        print(
            f"round {round_number + 1}: io_uring {result['io_uring']:,.0f} req/s, "
            f"epoll {result['epoll']:,.0f} req/s, epoll/io_uring {ratios[-1]:.2f}",
            flush=True,
        )
    for backend in BACKENDS:
        print(f"{backend}: median {statistics.median(figures[backend]):,.0f} req/s")
    print(f"epoll / io_uring: median ratio {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
