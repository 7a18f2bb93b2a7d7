"""What the WebSocket benchmarks share (websocket_echo.py, websocket_broadcast.py,
websocket_idle.py): the servers, one worker each unless the caller adds ``--workers N`` (each
command ends with its app, so run.py's ``extra`` options go before it), serving the same routes
(apps/ws_tf_app.py, apps/ws_asgi_app.py, apps/ws_rsgi_app.py); the C++ client (ws_client.cpp);
the Markdown output. Servers are started, pinned, measured (process-tree CPU and RSS) and stopped
by run.py's ``ServerProcess``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from run import (
    BENCH,
    CLIENT_CPU,
    OURS_PYTHON,
    PEERS,
    REFERENCE,
    RESULTS,
    ROOT,
    TOOLS,
    Server,
    available,
    running,
)

LOGS = RESULTS / "raw" / "logs"
CLIENT = TOOLS / "ws_client"

_OURS = (
    f"{OURS_PYTHON} -m theframework --host {{host}} --port {{port}} "
    "--backend io_uring --log-level warning --max-connections 250000 --backlog 4096 "
    "--ws-ping-interval 0 --graceful-timeout 2"
)

# One worker each (the servers' default, Granian's too); no pings (idle connections must stay
# idle; uvicorn's 0 would mean "ping continuously", so its interval is a day); no access log.
# With --workers (websocket_idle.py), uvicorn's supervisor kills a worker that does not answer
# its health check within --timeout-worker-healthcheck (5 s): all workers share CPU 0 and are
# busy with handshakes, so it gets an hour.
# Compression is off unless the row says so (the clients never offer it outside the deflate
# variants).
SERVERS: dict[str, Server] = {
    "theframework": Server(
        "theframework",
        "theframework, Framework API, --ws-compression none",
        f"{_OURS} --ws-compression none ws_tf_app:app",
        needs=(OURS_PYTHON,),
    ),
    "theframework-deflate": Server(
        "theframework-deflate",
        "theframework, Framework API, --ws-compression deflate (the default)",
        f"{_OURS} --ws-compression deflate ws_tf_app:app",
        needs=(OURS_PYTHON,),
    ),
    "theframework-deflate-no-context": Server(
        "theframework-deflate-no-context",
        "theframework, Framework API, --ws-compression deflate-no-context",
        f"{_OURS} --ws-compression deflate-no-context ws_tf_app:app",
        needs=(OURS_PYTHON,),
    ),
    "uvicorn": Server(
        "uvicorn",
        "uvicorn --ws websockets, ASGI",
        f"{PEERS / 'uvicorn'} --host {{host}} --port {{port}} --ws websockets "
        "--ws-per-message-deflate false --ws-ping-interval 86400 --log-level warning "
        "--no-access-log --backlog 4096 --timeout-graceful-shutdown 2 "
        "--timeout-worker-healthcheck 3600 ws_asgi_app:app",
        module="uvicorn",
    ),
    # Granian serves at most --backpressure connections at once (default 1,024 per worker).
    "granian": Server(
        "granian",
        "Granian, ASGI interface, 1 worker",
        f"{PEERS / 'granian'} --interface asgi --host {{host}} --port {{port}} "
        "--log-level warning --backpressure 250000 ws_asgi_app:app",
        module="granian",
    ),
    "granian-rsgi": Server(
        "granian-rsgi",
        "Granian, RSGI interface, 1 worker",
        f"{PEERS / 'granian'} --interface rsgi --host {{host}} --port {{port}} "
        "--log-level warning --backpressure 250000 ws_rsgi_app:app",
        module="granian",
    ),
}


def select(names: str, allowed: Sequence[str]) -> list[Server]:
    """The servers named (comma-separated, among ``allowed``) that can run here; the others
    are reported on stderr and left out."""
    chosen = []
    for name in names.split(","):
        if name not in allowed:
            raise SystemExit(f"unknown server {name!r}: choose among {', '.join(allowed)}")
        why = available(SERVERS[name])
        if why is None:
            chosen.append(SERVERS[name])
        else:
            print(f"skipping {name}: {why}", file=sys.stderr)
    return chosen


def prepare(file_limit: int) -> int:
    """Keeps this process (and the clients it starts) off the server's CPU and raises the open
    file limit (inherited by the servers) towards ``file_limit``: the hard limit too where that
    is allowed (root with CAP_SYS_RESOURCE). Returns the soft limit now in force."""
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < file_limit:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (file_limit, file_limit))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = file_limit if hard == resource.RLIM_INFINITY else min(file_limit, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    LOGS.mkdir(parents=True, exist_ok=True)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client_binary() -> Path:
    """build/bench/ws_client, built first when missing (bench/build_tools.sh)."""
    if not CLIENT.exists():
        subprocess.run([str(BENCH / "build_tools.sh"), "ws_client"], check=True, cwd=ROOT)
    return CLIENT


def run_client(port: int, mode: str, connections: int, seconds: float, warmup: float) -> Any:
    """Runs ws_client against ``port`` (mode echo on /echo or broadcast on /broadcast) and
    returns its JSON report; raises RuntimeError when it fails."""
    command = [
        str(client_binary()), "--port", str(port), "--mode", mode, "--path", f"/{mode}",
        "--connections", str(connections), "--duration", str(seconds), "--warmup", str(warmup),
    ]  # fmt: skip
    timeout = seconds + warmup + 60 + connections / 100
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"ws_client failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout)


SERVER_NAMES = ("theframework", "uvicorn", "granian", "granian-rsgi")


def client_arguments(description: str, clients: int) -> argparse.Namespace:
    """The command line of the ws_client benchmarks (echo, broadcast): --clients (default
    ``clients``), --seconds, --warmup, --rounds, --servers, --output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--clients", type=int, default=clients)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(SERVER_NAMES))
    parser.add_argument("--output", type=Path, help="also write the Markdown table here")
    return parser.parse_args()


def measure_rounds(
    mode: str, arguments: argparse.Namespace
) -> tuple[list[Server], dict[str, dict[str, list[float]]]]:
    """Runs ws_client in ``mode`` (echo or broadcast) against each selected server for
    ``arguments.rounds`` rounds (orders rotated). Returns the servers and, per server name,
    lists over the rounds of the client's ``rate``, ``p50`` and ``p99`` (broadcast only), the
    server's ``cpu`` microseconds per message (its process tree over the whole client run,
    divided by every message received including the warm-up), and ``ratio`` (the reference
    server's rate over this one's, within a round)."""
    prepare(arguments.clients + 1024)
    servers = select(arguments.servers, SERVER_NAMES)
    figures: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for round_index in range(arguments.rounds):
        this_round: dict[str, float] = {}
        for server in rotated(servers, round_index):
            with running(server, LOGS, mode) as process:
                cpu_before = process.cpu_seconds()
                report = run_client(
                    process.port, mode, arguments.clients, arguments.seconds, arguments.warmup
                )
                cpu_used = process.cpu_seconds() - cpu_before
            measured = figures[server.name]
            measured["rate"].append(report["rate"])
            for percentile in ("p50", "p99"):
                if percentile in report:
                    measured[percentile].append(report[percentile])
            measured["cpu"].append(cpu_used / report["messages_total"] * 1e6)
            this_round[server.name] = report["rate"]
        for name, rate in this_round.items():
            if REFERENCE in this_round and rate > 0:
                figures[name]["ratio"].append(this_round[REFERENCE] / rate)
    return servers, figures


def rotated(servers: Sequence[Server], round_index: int) -> list[Server]:
    """The order of round ``round_index``: rotated by one each round, reversed every other."""
    shift = round_index % len(servers)
    order = [*servers[shift:], *servers[:shift]]
    return order[::-1] if round_index % 2 else order


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def emit(text: str, output: Path | None) -> None:
    """Prints ``text`` and writes it to ``output`` when given."""
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
