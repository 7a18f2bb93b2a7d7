"""Benchmark harness: theframework against other Python servers, on the same tiny apps.

    bench/setup.sh                      # once: peers' venv, wrk, the C++ tools
    python bench/run.py [--quick] [--scenarios 1,2,8] [--servers theframework,granian-rsgi]

Fairness on a small machine: one worker per server; the server runs on CPU 0 and the load
generator (wrk, rate_client, this harness) on CPU 1 (taskset); each scenario is warmed up, then
measured; rounds alternate the server order and figures are medians over rounds; ratios to
theframework are computed inside each round (same noise), then their median is reported.

Writes bench/results/results.md, results.json, throughput.png and README-section.md (server
output goes to bench/results/raw/logs/, which git ignores).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import errno
import importlib
import json
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
APPS = BENCH / "apps"
RESULTS = BENCH / "results"
OURS_PYTHON = ROOT / ".venv" / "bin" / "python"
PEERS = BENCH / ".venv-peers" / "bin"
TOOLS = ROOT / "build" / "bench"
HOST = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1
REFERENCE = "theframework"  # ratios are to this server
KEEPALIVE_SECONDS = 120  # long enough for the idle-connections scenario


@dataclasses.dataclass(frozen=True)
class Scenario:
    number: int
    name: str
    path: str
    connections: int
    method: str = "GET"
    body_size: int = 0
    keep_alive: bool = True
    kind: str = "throughput"  # throughput (wrk), idle (RSS), rate (fixed-rate latency)


SCENARIOS: dict[int, Scenario] = {
    1: Scenario(1, "plaintext", "/plaintext", 64),
    2: Scenario(2, "JSON", "/json", 64),
    3: Scenario(3, "10 KiB body", "/10k", 64),
    4: Scenario(4, "POST echo 4 KiB", "/echo", 64, method="POST", body_size=4096),
    5: Scenario(5, "10 ms sleep, c=512", "/sleep", 512),
    6: Scenario(6, "no keep-alive", "/plaintext", 64, keep_alive=False),
    7: Scenario(7, "idle keep-alive connections", "/plaintext", 10_000, kind="idle"),
    8: Scenario(8, "fixed rate at 50% of peak", "/plaintext", 64, kind="rate"),
    9: Scenario(9, "Flask plaintext (WSGI)", "/flask/plaintext", 64),
    10: Scenario(10, "Django plaintext (WSGI)", "/django/plaintext", 64),
    11: Scenario(11, "Django template (WSGI)", "/django/template", 64),
    12: Scenario(12, "Falcon plaintext (WSGI)", "/falcon/plaintext", 64),
}
# Scenarios 9-12 run the same Flask, Django and Falcon apps (apps/*_app.py): only WSGI servers
# serve them.
WSGI_FRAMEWORKS = frozenset({9, 10, 11, 12})
NOT_WSGI = frozenset(SCENARIOS) - WSGI_FRAMEWORKS


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    description: str
    command: str  # shell words; {host} and {port} are filled in
    scenarios: frozenset[int] = frozenset(SCENARIOS)
    needs: tuple[Path, ...] = ()
    module: str | None = None  # a module the peers' venv must import
    idle_options: str = ""  # added for scenario 7 only (a connection cap to lift)


_OURS = f"{OURS_PYTHON} -m theframework"
_OURS_OPTIONS = (
    "--host {host} --port {port} --backend io_uring --log-level warning --max-connections 20000 "
    f"--backlog 4096 --keepalive-timeout {KEEPALIVE_SECONDS} --graceful-timeout 2"
)

# Granian serves at most --backpressure (default backlog / workers = 1024) connections at once.
GRANIAN_IDLE = "--backpressure 16384"

# Command lines ({host} and {port} are filled in). Every server gets one worker, no access log,
# and a keep-alive timeout long enough for scenario 7 where it has one. Granian keeps its default
# backlog: it sizes its WSGI thread pool from it.
SERVERS: list[Server] = [
    Server(
        "cpp-ceiling",
        "pure C++ responder on our core (no Python): the ceiling",
        f"{TOOLS / 'cpp_responder'} --host {{host}} --port {{port}}",
        scenarios=frozenset({1, 5, 6, 7, 8}),
        needs=(TOOLS / "cpp_responder",),
    ),
    Server(
        "theframework",
        "theframework, Framework API, io_uring",
        f"{_OURS} tf_app:app {_OURS_OPTIONS}",
        scenarios=NOT_WSGI,
        needs=(OURS_PYTHON,),
    ),
    Server(
        "theframework-wsgi",
        "theframework --interface wsgi --patch-all, io_uring",
        f"{_OURS} wsgi_app:app --interface wsgi --patch-all {_OURS_OPTIONS}",
        needs=(OURS_PYTHON,),
    ),
    Server(
        "granian-rsgi",
        "Granian RSGI, 1 worker",
        f"{PEERS / 'granian'} --interface rsgi --workers 1 --host {{host}} --port {{port}} "
        "--log-level warning rsgi_app:app",
        scenarios=NOT_WSGI,
        module="granian",
        idle_options=GRANIAN_IDLE,
    ),
    Server(
        "granian-wsgi",
        "Granian WSGI, 1 worker",
        f"{PEERS / 'granian'} --interface wsgi --workers 1 --host {{host}} --port {{port}} "
        "--log-level warning wsgi_app:app",
        module="granian",
        idle_options=GRANIAN_IDLE,
    ),
    Server(
        "uvicorn",
        "uvicorn --http httptools (asyncio loop)",
        f"{PEERS / 'uvicorn'} asgi_app:app --http httptools --host {{host}} --port {{port}} "
        f"--no-access-log --log-level warning --backlog 4096 "
        f"--timeout-keep-alive {KEEPALIVE_SECONDS} --timeout-graceful-shutdown 2",
        scenarios=NOT_WSGI,
        module="uvicorn",
    ),
    Server(
        "gunicorn-gevent",
        "gunicorn -k gevent, 1 worker",
        f"{PEERS / 'gunicorn'} -k gevent -w 1 -b {{host}}:{{port}} --worker-connections 20000 "
        f"--backlog 4096 --keep-alive {KEEPALIVE_SECONDS} --graceful-timeout 2 --log-level warning "
        "wsgi_app:app",
        module="gevent",
    ),
    Server(
        "gunicorn-sync",
        "gunicorn -k sync, 1 worker (no keep-alive by design)",
        f"{PEERS / 'gunicorn'} -k sync -w 1 -b {{host}}:{{port}} --backlog 4096 "
        "--graceful-timeout 2 --log-level warning wsgi_app:app",
        scenarios=frozenset(SCENARIOS) - {7},  # closes every connection: nothing stays idle
        module="gunicorn",
    ),
    Server(
        "bjoern",
        "bjoern (libev, WSGI)",
        f"{PEERS / 'python'} serve_bjoern.py {{host}} {{port}}",
        module="bjoern",
    ),
    Server(
        "fastwsgi",
        "fastwsgi (libuv, WSGI)",
        f"{PEERS / 'python'} serve_fastwsgi.py {{host}} {{port}}",
        module="fastwsgi",
    ),
]


@dataclasses.dataclass(frozen=True)
class Timing:
    rounds: int
    warmup: float  # seconds of load before each measurement
    duration: float  # seconds measured
    idle_connections: int
    rate_duration: float
    warmup_each: bool  # warm up before every scenario (else once per server start)


FULL = Timing(
    rounds=3,
    warmup=1.0,
    duration=3.0,
    idle_connections=10_000,
    rate_duration=5.0,
    warmup_each=True,
)
QUICK = Timing(
    rounds=1,
    warmup=1.0,
    duration=1.0,
    idle_connections=1_000,
    rate_duration=1.5,
    warmup_each=False,
)


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://{HOST}:{port}{path}")
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return int(answer.status), bytes(answer.read())


class ServerProcess:
    """A server started on CPU 0 in its own session, so that its whole process tree (gunicorn's
    and granian's workers) can be measured and stopped."""

    def __init__(self, server: Server, port: int, log_path: Path, extra: str = "") -> None:
        self.server = server
        self.port = port
        self.log_path = log_path
        command = shlex.split(server.command.format(host=HOST, port=port))
        if extra:  # options go before the app, which comes last where there is one
            words = shlex.split(extra)
            command = [*command[:-1], *words, command[-1]]
        # THEFRAMEWORK_* settings of the caller's shell (access log, backend, ...) would change
        # what is measured: only the command line configures the server.
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("THEFRAMEWORK_")
        }
        environment.update(PYTHONPATH=str(APPS), PYTHONUNBUFFERED="1")
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", str(SERVER_CPU), *command],
            cwd=APPS,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 30.0) -> str | None:
        """None once GET /plaintext answers 200, else why not (exited, timed out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"exited with code {self.process.returncode}"
            try:
                status, body = http_get(self.port, "/plaintext", timeout=1.0)
            except OSError:
                time.sleep(0.05)  # polling the port: the servers share no readiness signal
                continue
            if status == 200 and body == b"Hello, World!":
                return None
            return f"GET /plaintext answered {status} {body[:60]!r}"
        return f"not answering after {timeout:.0f} s"

    def tree(self) -> list[int]:
        """Pids of the server's session (the server and its workers)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.process.pid:  # session id
                pids.append(int(entry.name))
        return pids

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the processes of the tree."""
        ticks = 0
        for pid in self.tree():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_kib(self) -> dict[int, int]:
        """Resident set size of each process of the tree, KiB."""
        sizes = {}
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        sizes[pid] = int(line.split()[1])
        return sizes

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Workers that outlive their parent (same session) are ended too.
        for pid in self.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.log.close()


@contextlib.contextmanager
def running(server: Server, log_dir: Path, label: str, extra: str = "") -> Iterator[ServerProcess]:
    port = free_port()
    process = ServerProcess(server, port, log_dir / f"{server.name}-{label}.log", extra)
    try:
        problem = process.wait_ready()
        if problem is not None:
            raise ServerFailed(f"{server.name}: {problem} (log: {process.log_path})")
        yield process
    finally:
        process.stop()


class ServerFailed(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Load


@dataclasses.dataclass
class LoadResult:
    requests_per_second: float = 0.0
    errors: int = 0  # socket errors (connect, read, write, timeout)
    non_2xx: int = 0
    server_cpu: float = 0.0  # CPU seconds the server's processes used per second measured
    wall_seconds: float = 0.0  # how long wrk says it ran (longer than asked: wrk was starved)
    asked_seconds: float = 0.0
    p99_ms: float = 0.0  # wrk's 99th percentile latency (closed loop: see rate_client for open)
    detail: str = ""


WRK_POST_SCRIPT = """wrk.method = "POST"
wrk.body = string.rep("a", {size})
wrk.headers["Content-Type"] = "application/octet-stream"
"""


def run_wrk(port: int, scenario: Scenario, seconds: float, script_dir: Path) -> LoadResult:
    threads = 1
    command = [
        "taskset",
        "-c",
        str(CLIENT_CPU),
        "wrk",
        f"-t{threads}",
        f"-c{scenario.connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "4s",
        "--latency",
    ]
    if not scenario.keep_alive:
        command += ["-H", "Connection: close"]
    if scenario.method == "POST":
        script = script_dir / f"post-{scenario.body_size}.lua"
        script.write_text(WRK_POST_SCRIPT.format(size=scenario.body_size))
        command += ["-s", str(script)]
    command.append(f"http://{HOST}:{port}{scenario.path}")
    completed = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30)
    output = completed.stdout + completed.stderr
    result = LoadResult(detail=output)
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match:
        result.requests_per_second = float(match.group(1))
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if match:
        result.errors = sum(int(value) for value in match.groups())
    match = re.search(r"requests in ([\d.]+)(m?s),", output)
    if match:
        result.wall_seconds = float(match.group(1)) / (1000 if match.group(2) == "ms" else 1)
    result.asked_seconds = max(1, round(seconds))
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result.non_2xx = int(match.group(1))
    match = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    if match:
        result.p99_ms = (
            float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        )
    return result


def run_rate(port: int, rate: float, timing: Timing) -> dict[str, Any]:
    command = [
        "taskset",
        "-c",
        str(CLIENT_CPU),
        str(TOOLS / "rate_client"),
        "--host",
        HOST,
        "--port",
        str(port),
        "--path",
        "/plaintext",
        "--connections",
        "64",
        "--rate",
        f"{rate:.0f}",
        "--duration",
        str(timing.rate_duration),
        "--warmup",
        str(max(1.0, timing.warmup)),
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=timing.rate_duration + 60
    )
    if completed.returncode != 0:
        raise ServerFailed(f"rate_client failed: {completed.stderr.strip()}")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def hold_idle_connections(port: int, count: int) -> tuple[list[socket.socket], int]:
    """Opens ``count`` connections, sends one keep-alive request on each and reads its answer, in
    batches; returns the sockets (left open and idle) and how many were answered. Stops early
    when a batch is mostly left unanswered (the server stopped accepting or answering)."""
    sockets: list[socket.socket] = []
    answered = 0
    request = f"GET /plaintext HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    batch_size = 250
    for start in range(0, count, batch_size):
        selector = selectors.DefaultSelector()
        batch = []
        for _ in range(min(batch_size, count - start)):
            connection = socket.socket()
            connection.setblocking(False)
            error = connection.connect_ex((HOST, port))
            if error not in (0, errno.EINPROGRESS):
                connection.close()
                continue
            selector.register(connection, selectors.EVENT_WRITE, b"")
            batch.append(connection)
        answered_before = answered
        deadline = time.monotonic() + 3
        while selector.get_map() and time.monotonic() < deadline:
            for key, events in selector.select(timeout=0.5):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                if events & selectors.EVENT_WRITE:
                    try:
                        ready.send(request)
                    except OSError:
                        selector.unregister(ready)
                        continue
                    selector.modify(ready, selectors.EVENT_READ, b"")
                    continue
                try:
                    chunk = ready.recv(4096)
                except OSError:
                    selector.unregister(ready)
                    continue
                data = key.data + chunk
                if data.endswith(b"Hello, World!"):
                    answered += 1
                    selector.unregister(ready)
                elif not chunk:
                    selector.unregister(ready)  # closed before answering
                else:
                    selector.modify(ready, selectors.EVENT_READ, data)
        selector.close()
        sockets.extend(batch)
        if answered - answered_before < len(batch) // 2:
            log(f"  idle: only {answered - answered_before}/{len(batch)} answered in 3 s; stopping")
            break
    return sockets, answered


# ---------------------------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class Measurements:
    # throughput[scenario][server] -> one LoadResult per round
    throughput: dict[int, dict[str, list[LoadResult]]] = dataclasses.field(default_factory=dict)
    # ratio[scenario][server] -> server / reference, per round
    ratios: dict[int, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    idle: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    rate: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)
    load_average: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    notes: dict[str, str] = dataclasses.field(default_factory=dict)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def code_fingerprint() -> list[tuple[str, float]]:
    """Modification times of theframework's Python files and installed native module."""
    files = sorted((ROOT / "theframework").rglob("*.py"))
    files += sorted((ROOT / ".venv" / "lib").glob("python*/site-packages/theframework/_core*.so"))
    stamps = []
    for path in files:
        with contextlib.suppress(OSError):
            stamps.append((str(path), path.stat().st_mtime))
    return stamps


def available(server: Server) -> str | None:
    """None when the server can be started here, else why not."""
    for needed in server.needs:
        if not needed.exists():
            return f"{needed} is missing (run bench/setup.sh / make build)"
    if server.module is not None:
        if not (PEERS / "python").exists():
            return "bench/.venv-peers is missing (run bench/setup.sh)"
        check = subprocess.run(
            [str(PEERS / "python"), "-c", f"import {server.module}"], capture_output=True
        )
        if check.returncode != 0:
            return f"{server.module} is not installed in bench/.venv-peers (did not build here)"
    return None


def probe_wsgi_interface() -> str | None:
    """None when `python -m theframework --interface wsgi` exists and serves the WSGI app."""
    help_text = subprocess.run(
        [str(OURS_PYTHON), "-m", "theframework", "--help"], capture_output=True, text=True
    ).stdout
    if "--interface" not in help_text:
        return "theframework has no --interface option yet (WSGI adapter not merged)"
    return None


def run_throughput_round(
    round_number: int,
    servers: Sequence[Server],
    scenarios: Sequence[Scenario],
    timing: Timing,
    measurements: Measurements,
    work_dir: Path,
) -> None:
    order = list(servers)
    shift = round_number % len(order)
    order = order[shift:] + order[:shift]  # alternate who goes first
    if round_number % 2 == 1:
        order.reverse()
    in_round: dict[int, dict[str, float]] = {}
    for server in order:
        wanted = [scenario for scenario in scenarios if scenario.number in server.scenarios]
        # The sleep scenario goes last: a blocking server still works through its queue after
        # wrk stops, which would starve the next scenario.
        wanted.sort(key=lambda scenario: scenario.number == 5)
        if not wanted or server.name in measurements.skipped:
            continue
        try:
            with running(server, work_dir, f"round{round_number}") as process:
                if not timing.warmup_each:
                    run_wrk(process.port, SCENARIOS[1], 1.0, work_dir)  # one warm-up per start
                for scenario in wanted:
                    if timing.warmup_each:
                        run_wrk(process.port, scenario, timing.warmup, work_dir)
                    cpu_before = process.cpu_seconds()
                    result = run_wrk(process.port, scenario, timing.duration, work_dir)
                    result.server_cpu = (process.cpu_seconds() - cpu_before) / max(
                        1.0, round(timing.duration)
                    )
                    measurements.throughput.setdefault(scenario.number, {}).setdefault(
                        server.name, []
                    ).append(result)
                    in_round.setdefault(scenario.number, {})[server.name] = (
                        result.requests_per_second
                    )
                    flags = f"  server CPU {result.server_cpu:.0%}"
                    if result.errors or result.non_2xx:
                        flags += f"  errors {result.errors}, non-2xx {result.non_2xx}"
                    log(
                        f"  round {round_number + 1} {server.name:18} ({scenario.number}) "
                        f"{scenario.name:22} {result.requests_per_second:>10.0f} req/s{flags}"
                    )
        except ServerFailed as failure:
            measurements.skipped[server.name] = str(failure)
            log(f"  skipped {server.name}: {failure}")
    for number, by_server in in_round.items():
        reference = by_server.get(REFERENCE)
        if not reference:
            continue
        for name, value in by_server.items():
            measurements.ratios.setdefault(number, {}).setdefault(name, []).append(
                value / reference
            )


def peak_of(server: Server, measurements: Measurements, timing: Timing, work_dir: Path) -> float:
    results = measurements.throughput.get(1, {}).get(server.name)
    if results:
        return statistics.median(result.requests_per_second for result in results)
    with running(server, work_dir, "peak") as process:
        run_wrk(process.port, SCENARIOS[1], timing.warmup, work_dir)
        return run_wrk(process.port, SCENARIOS[1], timing.duration, work_dir).requests_per_second


def run_idle(server: Server, timing: Timing, measurements: Measurements, work_dir: Path) -> None:
    with running(server, work_dir, "idle", server.idle_options) as process:
        before = process.rss_kib()
        sockets, answered = hold_idle_connections(process.port, timing.idle_connections)
        try:
            time.sleep(1.0)  # let the server settle (timers, freed buffers)
            after = process.rss_kib()
            try:
                still_served = http_get(process.port, "/plaintext", timeout=5.0)[0] == 200
            except OSError:
                still_served = False
        finally:
            for connection in sockets:
                connection.close()
    worker = max(after, key=lambda pid: after[pid] - before.get(pid, 0))
    growth = after[worker] - before.get(worker, 0)
    measurements.idle[server.name] = {
        "connections": timing.idle_connections,
        "answered": answered,
        "worker_rss_before_kib": before.get(worker, 0),
        "worker_rss_after_kib": after[worker],
        "total_rss_after_kib": sum(after.values()),
        "per_connection_kib": growth / max(answered, 1),
        "serves_while_idle": still_served,
    }
    log(
        f"  idle {server.name:18} {answered}/{timing.idle_connections} answered, worker RSS "
        f"{before.get(worker, 0) / 1024:.1f} -> {after[worker] / 1024:.1f} MiB"
    )


def run_fixed_rate(
    server: Server, timing: Timing, measurements: Measurements, work_dir: Path
) -> dict[str, Any]:
    """One fixed-rate measurement at 50% of the server's peak, on a fresh server process."""
    peak = peak_of(server, measurements, timing, work_dir)
    rate = max(100.0, peak / 2)
    with running(server, work_dir, "rate") as process:
        result = run_rate(process.port, rate, timing)
    result["peak"] = peak
    log(
        f"  rate {server.name:18} {rate:>8.0f} req/s: p50 {result['p50']:.2f} ms, "
        f"p99 {result['p99']:.2f} ms, p99.9 {result['p999']:.2f} ms, errors {result['errors']}"
    )
    return result


def summarize_rate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of the latencies and the achieved rate; counts summed. One 5 s sample
    of a tail percentile on a shared machine is mostly noise (the same server's p99 varied 3x
    from one run to the next here), so every server is measured once per round."""
    summary: dict[str, Any] = {
        "target_rate": results[0]["target_rate"],
        "peak": results[0]["peak"],
        "rounds": list(results),
    }
    for key in ("achieved_rate", "p50", "p90", "p99", "p999", "max"):
        summary[key] = statistics.median(result[key] for result in results)
    for key in ("requests", "issued", "unanswered", "errors", "non_2xx"):
        summary[key] = sum(result[key] for result in results)
    return summary


def run_fixed_rate_rounds(
    servers: Sequence[Server], timing: Timing, measurements: Measurements, work_dir: Path
) -> None:
    """Scenario 8, once per round for every server, alternating the order like the others."""
    results: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(timing.rounds):
        log(f"rate round {round_number + 1}/{timing.rounds}")
        order = servers if round_number % 2 == 0 else list(reversed(servers))
        for server in order:
            skipped_as = f"{server.name} (rate)"
            if (
                8 not in server.scenarios
                or server.name in measurements.skipped
                or skipped_as in measurements.skipped
            ):
                continue
            try:
                results.setdefault(server.name, []).append(
                    run_fixed_rate(server, timing, measurements, work_dir)
                )
            except (ServerFailed, OSError, subprocess.SubprocessError) as failure:
                log(f"  rate {server.name}: failed: {failure}")
                measurements.skipped[skipped_as] = str(failure)
    for name, runs in results.items():
        if runs:
            measurements.rate[name] = summarize_rate(runs)


# ---------------------------------------------------------------------------------------------
# Reporting


def median_or_none(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median over rounds, as a fraction."""
    if len(values) < 2 or not statistics.median(values):
        return None
    return (max(values) - min(values)) / statistics.median(values)


def format_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}"


def throughput_table(
    servers: Sequence[Server], scenarios: Sequence[Scenario], measurements: Measurements
) -> list[str]:
    numbers = [s.number for s in scenarios if s.kind == "throughput"]
    if not numbers:
        return []
    header = "| server | " + " | ".join(f"({n}) {SCENARIOS[n].name}" for n in numbers) + " |"
    lines = [header, "|---" * (len(numbers) + 1) + "|"]
    for server in servers:
        cells = []
        for number in numbers:
            results = measurements.throughput.get(number, {}).get(server.name, [])
            value = median_or_none([result.requests_per_second for result in results])
            ratio = median_or_none(measurements.ratios.get(number, {}).get(server.name, []))
            cell = format_rate(value)
            if value is not None and ratio is not None and server.name != REFERENCE:
                cell += f" ({ratio:.2f}x)"
            errors = sum(result.errors for result in results)
            non_2xx = sum(result.non_2xx for result in results)
            if errors or non_2xx:
                cell += f" ⚠{errors}e/{non_2xx}n"
            cells.append(cell)
        if any(cell != "-" for cell in cells):
            lines.append(f"| {server.name} | " + " | ".join(cells) + " |")
    return lines


def cpu_per_request(result: LoadResult) -> float | None:
    """Microseconds of server CPU per answered request in one measurement."""
    if result.requests_per_second <= 0 or result.server_cpu <= 0:
        return None
    return result.server_cpu / result.requests_per_second * 1e6


def median_cpu_per_request(results: Sequence[LoadResult]) -> float | None:
    return median_or_none(
        [value for result in results if (value := cpu_per_request(result)) is not None]
    )


def cpu_table(
    servers: Sequence[Server], scenarios: Sequence[Scenario], measurements: Measurements
) -> list[str]:
    numbers = [s.number for s in scenarios if s.kind == "throughput" and s.number != 5]
    if not numbers:
        return []
    header = "| server | " + " | ".join(f"({n}) {SCENARIOS[n].name}" for n in numbers) + " |"
    lines = [header, "|---" * (len(numbers) + 1) + "|"]
    for server in servers:
        cells = []
        for number in numbers:
            results = measurements.throughput.get(number, {}).get(server.name, [])
            value = median_cpu_per_request(results)
            cpu = median_or_none([result.server_cpu for result in results])
            cells.append("-" if value is None or cpu is None else f"{value:.1f} µs ({cpu:.0%})")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {server.name} | " + " | ".join(cells) + " |")
    return lines


CPU_NOTE = (
    "CPU time of the server's processes during the measurement divided by the requests answered. "
    "When the server's CPU use is well under 100%, the load generator (one core) was the "
    "bottleneck and req/s understates the difference between servers; this figure does not. "
    "Kernel work for loopback TCP is partly charged to the client's core, so it is a lower bound. "
    "Scenario 5 is left out (its cost is waiting)."
)


def idle_table(servers: Sequence[Server], measurements: Measurements) -> list[str]:
    if not measurements.idle:
        return []
    lines = [
        "| server | answered | worker RSS before | worker RSS with idle connections "
        "| KiB per connection | still serves |",
        "|---|---|---|---|---|---|",
    ]
    for server in servers:
        idle = measurements.idle.get(server.name)
        if idle is None:
            continue
        lines.append(
            f"| {server.name} | {idle['answered']:,}/{idle['connections']:,} "
            f"| {idle['worker_rss_before_kib'] / 1024:.1f} MiB "
            f"| {idle['worker_rss_after_kib'] / 1024:.1f} MiB "
            f"| {idle['per_connection_kib']:.1f} | {'yes' if idle['serves_while_idle'] else 'NO'} |"
        )
    return lines


def overloaded(rate: dict[str, Any]) -> bool:
    """More than 1% of the requests due were still unanswered at the end: the server could not
    keep up with the rate (the machine was busier than when the peak was measured)."""
    return bool(rate["unanswered"] > 0.01 * max(rate["issued"], 1))


def rate_table(servers: Sequence[Server], measurements: Measurements) -> list[str]:
    if not measurements.rate:
        return []
    lines = [
        "| server | rate (50% of peak) | achieved | p50 ms | p99 ms | p99.9 ms | max ms "
        "| p99 ms per round | errors | unanswered |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server in servers:
        rate = measurements.rate.get(server.name)
        if rate is None:
            continue
        per_round = " / ".join(f"{run['p99']:.2f}" for run in rate.get("rounds", [rate]))
        lines.append(
            f"| {server.name} | {rate['target_rate']:,.0f} | {rate['achieved_rate']:,.0f} "
            f"| {rate['p50']:.2f} | {rate['p99']:.2f} | {rate['p999']:.2f} | {rate['max']:.2f} "
            f"| {per_round} "
            f"| {rate['errors'] + rate['non_2xx']} | {rate['unanswered']} "
            f"{'⚠' if overloaded(rate) else ''}|"
        )
    return lines


def noise_note(measurements: Measurements) -> str:
    spreads = [
        value
        for by_server in measurements.throughput.values()
        for results in by_server.values()
        if (value := spread([result.requests_per_second for result in results])) is not None
    ]
    loads = [load[0] for load in measurements.load_average]
    results = [
        result
        for by_server in measurements.throughput.values()
        for results in by_server.values()
        for result in results
    ]
    starved = [r for r in results if r.asked_seconds and r.wall_seconds > 1.3 * r.asked_seconds]
    parts = []
    if loads:
        parts.append(
            f"1-minute load average during the run: {min(loads):.2f}-{max(loads):.2f} "
            f"(2 CPUs; the benchmark itself keeps ~2 busy)"
        )
    if spreads:
        parts.append(
            f"round-to-round spread (max-min)/median: median {statistics.median(spreads):.0%}, "
            f"worst {max(spreads):.0%}"
        )
    if starved:
        parts.append(
            f"in {len(starved)} of {len(results)} measurements wrk itself was starved of CPU "
            f"(it ran over 1.3x the time asked)"
        )
    return "; ".join(parts)


def chart_data(
    servers: Sequence[Server], scenarios: Sequence[Scenario], measurements: Measurements
) -> list[dict[str, Any]]:
    """Per throughput scenario: its title and (server, median req/s) in table order."""
    panels = []
    for scenario in scenarios:
        by_server = measurements.throughput.get(scenario.number)
        if scenario.kind != "throughput" or not by_server:
            continue
        bars = [
            [server.name, statistics.median(r.requests_per_second for r in by_server[server.name])]
            for server in servers
            if by_server.get(server.name)
        ]
        panels.append({"title": f"({scenario.number}) {scenario.name}", "bars": bars})
    return panels


def write_chart(path: Path, panels: list[dict[str, Any]]) -> bool:
    """Draws the chart here when matplotlib imports, else with the peers' venv (where setup.sh
    installs it). False when neither can."""
    if not panels:
        return False
    try:
        matplotlib: Any = importlib.import_module("matplotlib")
    except ImportError:
        if not (PEERS / "python").exists():
            return False
        data = path.with_suffix(".json")
        data.write_text(json.dumps(panels))
        try:
            drawn = subprocess.run(
                [str(PEERS / "python"), __file__, "--chart", str(data), str(path)],
                capture_output=True,
                text=True,
            )
        finally:
            data.unlink()
        if drawn.returncode != 0:
            log(f"chart not drawn: {drawn.stderr.strip()[-300:]}")
        return drawn.returncode == 0
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    columns = min(3, len(panels))
    rows = (len(panels) + columns - 1) // columns
    figure, axes_grid = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 3.6 * rows), squeeze=False
    )
    for index, panel in enumerate(panels):
        axes = axes_grid[index // columns][index % columns]
        names = [name for name, _ in panel["bars"]]
        values = [value for _, value in panel["bars"]]
        colors = [
            "#d62728"
            if name == REFERENCE
            else "#ff9896"
            if name.startswith("theframework")
            else "#7f7f7f"
            if name == "cpp-ceiling"
            else "#1f77b4"
            for name in names
        ]
        axes.barh(names[::-1], values[::-1], color=colors[::-1])
        axes.set_title(panel["title"], fontsize=10)
        axes.set_xlabel("requests/s (median)")
        axes.tick_params(labelsize=8)
    for index in range(len(panels), rows * columns):
        axes_grid[index // columns][index % columns].axis("off")
    figure.suptitle("1 worker, server on CPU 0, load generator on CPU 1", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def environment_line() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    if (PEERS / "python").exists():
        listing = subprocess.run(
            [str(PEERS / "python"), "-m", "pip", "list", "--format=json"],
            capture_output=True,
            text=True,
        ).stdout
        with contextlib.suppress(json.JSONDecodeError):
            wanted = {"granian", "gunicorn", "gevent", "uvicorn", "httptools", "bjoern", "fastwsgi"}
            versions = [
                f"{package['name']} {package['version']}"
                for package in json.loads(listing)
                if package["name"].lower() in wanted
            ]
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
        f"{platform.python_version()}; {', '.join(versions)}"
    )


def reproducing_command(args: argparse.Namespace) -> str:
    if not (args.quick or args.scenarios or args.servers or args.rounds):
        return "make bench"
    command = ".venv/bin/python bench/run.py" + (" --quick" if args.quick else "")
    if args.scenarios:
        command += f" --scenarios {args.scenarios}"
    if args.servers:
        command += f" --servers {args.servers}"
    if args.rounds:
        command += f" --rounds {args.rounds}"
    return command


def write_results(
    command: str,
    when: str,
    servers: Sequence[Server],
    scenarios: Sequence[Scenario],
    timing: Timing,
    measurements: Measurements,
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    warmup = (
        f"{timing.warmup:g} s warm-up then"
        if timing.warmup_each
        else "one warm-up per server start;"
    )
    method = (
        f"{timing.rounds} round(s) alternating the server order; per scenario "
        f"{warmup} {timing.duration:g} s measured with wrk (1 thread); "
        f"medians over rounds; ratios to `{REFERENCE}` computed within each round, then their "
        f"median. One worker per server; server pinned to CPU {SERVER_CPU}, load generator to "
        f"CPU {CLIENT_CPU} (taskset)."
    )
    lines = [f"# Benchmark results ({when})", "", f"Reproduce: `{command}`", "", method, ""]
    lines += [f"Machine: {environment_line()}", ""]
    if note := noise_note(measurements):
        lines += [f"Noise: {note}.", ""]
    lines += [f"**Note:** {text}.\n" for text in measurements.notes.values()]
    table = throughput_table(servers, scenarios, measurements)
    if table:
        lines += [
            "## Throughput (requests/s, median; in brackets: ratio to theframework in the "
            "same round)",
            "",
            *table,
            "",
            "⚠Ne/Mn: N socket errors (connect/read/write/timeout) and M non-2xx answers seen by "
            "wrk over all rounds. Scenario 5's ceiling is 512 / 10 ms = 51,200 req/s.",
            "",
        ]
    if cpu := cpu_table(servers, scenarios, measurements):
        lines += [
            "## Server CPU per request (µs, median; in brackets: the server's CPU use)",
            "",
            CPU_NOTE,
            "",
            *cpu,
            "",
        ]
    if idle := idle_table(servers, measurements):
        lines += [
            f"## ({7}) {timing.idle_connections:,} idle keep-alive connections",
            "",
            "Each connection sent one request and then stays open, idle. RSS of the process "
            "that grew most (the worker).",
            "",
            *idle,
            "",
        ]
    if rate := rate_table(servers, measurements):
        lines += [
            "## (8) Latency at a fixed rate of 50% of each server's plaintext peak",
            "",
            f"bench/rate_client (open loop, 64 connections, latency from the scheduled send "
            f"time: no coordinated omission), {timing.rate_duration:g} s measured per round, on a "
            "fresh server process each round; latencies and achieved rate are medians over the "
            "rounds, errors and unanswered requests are summed. ⚠: more than "
            "1% of the requests were still unanswered at the end, so the server could not keep "
            "that rate at that moment (the peak was measured earlier, under other noise): its "
            "latencies are queueing, not service, times.",
            "",
            *rate,
            "",
        ]
    if measurements.skipped:
        lines += ["## Not measured", ""]
        lines += [f"- {name}: {why}" for name, why in measurements.skipped.items()]
        lines.append("")
    charted = write_chart(RESULTS / "throughput.png", chart_data(servers, scenarios, measurements))
    if charted:
        lines += ["![throughput](throughput.png)", ""]
    (RESULTS / "results.md").write_text("\n".join(lines))
    raw = {
        "command": command,
        "when": when,
        "timing": dataclasses.asdict(timing),
        "throughput": {
            number: {
                name: [dataclasses.asdict(result) for result in results]
                for name, results in by_server.items()
            }
            for number, by_server in measurements.throughput.items()
        },
        "ratios": measurements.ratios,
        "idle": measurements.idle,
        "rate": measurements.rate,
        "skipped": measurements.skipped,
        "load_average": measurements.load_average,
        "notes": measurements.notes,
    }
    (RESULTS / "results.json").write_text(json.dumps(raw, indent=2))
    write_readme_section(command, method, servers, timing, measurements, table, cpu, idle, rate)


def write_readme_section(
    command: str,
    method: str,
    servers: Sequence[Server],
    timing: Timing,
    measurements: Measurements,
    table: list[str],
    cpu: list[str],
    idle: list[str],
    rate: list[str],
) -> None:
    def median_rate(number: int, name: str) -> float | None:
        results = measurements.throughput.get(number, {}).get(name, [])
        return median_or_none([result.requests_per_second for result in results])

    def median_cost(number: int, name: str) -> float | None:
        return median_cpu_per_request(measurements.throughput.get(number, {}).get(name, []))

    summary = []
    ours = median_rate(1, REFERENCE)
    ceiling = median_rate(1, "cpp-ceiling")
    ours_cost = median_cost(1, REFERENCE)
    ceiling_cost = median_cost(1, "cpp-ceiling")
    ceiling_ratios = measurements.ratios.get(1, {}).get("cpp-ceiling")
    if ours and ceiling and ceiling_ratios:
        summary.append(
            f"On plaintext keep-alive, theframework serves {ours:,.0f} req/s on one core; a pure "
            f"C++ responder on the same core with no Python serves {ceiling:,.0f} "
            f"(in the same round: {1 / statistics.median(ceiling_ratios):.0%} of it for us; "
            f"the load generator on the other core is the limit of both)."
        )
    if ours_cost and ceiling_cost:
        summary.append(
            f"Per request, theframework spends {ours_cost:.1f} µs of server CPU against "
            f"{ceiling_cost:.1f} µs for the C++ responder: Python and greenlets cost "
            f"{ours_cost - ceiling_cost:.1f} µs ({ours_cost / ceiling_cost:.1f}x the ceiling)."
        )
    for peer in ("granian-rsgi", "granian-wsgi", "uvicorn", "gunicorn-gevent", "bjoern"):
        ratios = measurements.ratios.get(1, {}).get(peer)
        if ratios:
            summary.append(f"{peer}: {statistics.median(ratios):.2f}x our plaintext req/s.")
    sleep_ours = median_rate(5, REFERENCE)
    if sleep_ours:
        summary.append(
            f"With a handler that sleeps 10 ms at 512 connections theframework serves "
            f"{sleep_ours:,.0f} req/s ({sleep_ours / 51_200:.0%} of the 51,200 ceiling)."
        )
    idle_ours = measurements.idle.get(REFERENCE)
    if idle_ours:
        summary.append(
            f"{idle_ours['connections']:,} idle keep-alive connections cost it "
            f"{idle_ours['per_connection_kib']:.1f} KiB each."
        )
    lines = [
        "## Performance",
        "",
        *([" ".join(summary), ""] if summary else []),
        f"Measured with `{command}` (see bench/README.md; `bench/setup.sh` installs the peers). "
        + method,
        "",
        f"Machine: {environment_line()}.",
        "",
    ]
    lines += [f"**Note:** {text}.\n" for text in measurements.notes.values()]
    if note := noise_note(measurements):
        lines += [
            f"The machine was shared while this ran ({note}); differences within that spread "
            "are noise.",
            "",
        ]
    if table:
        lines += ["Requests/s (ratio to theframework in the same round):", "", *table, ""]
    if cpu:
        lines += ["Server CPU per request:", "", CPU_NOTE, "", *cpu, ""]
    if idle:
        lines += [f"{timing.idle_connections:,} idle keep-alive connections:", "", *idle, ""]
    if rate:
        lines += ["Latency at 50% of each server's peak (ms):", "", *rate, ""]
    lines += ["![throughput](bench/results/throughput.png)", ""]
    (RESULTS / "README-section.md").write_text("\n".join(lines))


# ---------------------------------------------------------------------------------------------


def rewrite_from_json(path: Path) -> int:
    """Rebuilds the reports of an earlier run from its results.json."""
    raw = json.loads(path.read_text())
    timing = Timing(**raw["timing"])
    for by_server in raw["throughput"].values():
        for results in by_server.values():
            for result in results:  # files written before wall_seconds existed
                if not result.get("wall_seconds"):
                    match = re.search(r"requests in ([\d.]+)s,", result.get("detail", ""))
                    result["wall_seconds"] = float(match.group(1)) if match else 0.0
                    result["asked_seconds"] = max(1, round(timing.duration))
    measurements = Measurements(
        throughput={
            int(number): {
                name: [LoadResult(**result) for result in results]
                for name, results in by_server.items()
            }
            for number, by_server in raw["throughput"].items()
        },
        ratios={int(number): by_server for number, by_server in raw["ratios"].items()},
        idle=raw["idle"],
        rate=raw["rate"],
        skipped=raw["skipped"],
        load_average=[tuple(load) for load in raw["load_average"]],
        notes=raw.get("notes", {}),
    )
    numbers = set(measurements.throughput)
    numbers |= {7} if measurements.idle else set()
    numbers |= {8} if measurements.rate else set()
    scenarios = [SCENARIOS[number] for number in sorted(numbers)]
    write_results(raw["command"], raw["when"], SERVERS, scenarios, timing, measurements)
    log(f"rewrote the reports in {RESULTS} from {path}")
    return 0


def choose_servers(program: str, names: str, catalogue: Sequence[Server]) -> list[Server] | None:
    """The servers of ``catalogue`` named in the comma-separated ``names`` (all when empty), in
    the catalogue's order; None, after one line on stderr, when a name is unknown."""
    chosen = [name for name in names.split(",") if name]
    unknown = set(chosen) - {server.name for server in catalogue}
    if unknown:
        print(f"{program}: unknown servers {sorted(unknown)}", file=sys.stderr)
        return None
    return [server for server in catalogue if not chosen or server.name in chosen]


def load_tools_present(program: str) -> bool:
    """Whether wrk and taskset are installed (one line on stderr naming the missing one)."""
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"{program}: {tool} is missing: run bench/setup.sh", file=sys.stderr)
            return False
    return True


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short round (under 3 minutes)")
    parser.add_argument(
        "--scenarios", help="comma-separated scenario numbers (default all: 1-12)", default=""
    )
    parser.add_argument(
        "--servers",
        help="comma-separated server names (default all): "
        + ", ".join(server.name for server in SERVERS),
        default="",
    )
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument(
        "--from-json",
        metavar="PATH",
        help="measure nothing: rewrite the tables, chart and README section from a results.json",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["--chart"] and len(arguments) == 3:  # internal: draw with matplotlib
        panels = json.loads(Path(arguments[1]).read_text())
        return 0 if write_chart(Path(arguments[2]), panels) else 1
    args = parse_arguments(arguments)
    if args.from_json:
        return rewrite_from_json(Path(args.from_json))
    timing = QUICK if args.quick else FULL
    if args.rounds:
        timing = dataclasses.replace(timing, rounds=args.rounds)
    try:
        numbers = [int(n) for n in args.scenarios.split(",") if n] or list(SCENARIOS)
        scenarios = [SCENARIOS[number] for number in numbers]
    except (ValueError, KeyError):
        print(f"run.py: --scenarios takes numbers among {list(SCENARIOS)}", file=sys.stderr)
        return 2
    servers = choose_servers("run.py", args.servers, SERVERS)
    if servers is None:
        return 2
    if not load_tools_present("run.py"):
        return 1
    if len(os.sched_getaffinity(0)) < 2 and (os.cpu_count() or 1) < 2:
        print("run.py: needs 2 CPUs (server and load generator apart)", file=sys.stderr)
        return 1
    # This process and its children (the idle-connection client, wrk) stay off the server's CPU.
    os.sched_setaffinity(0, {CLIENT_CPU})
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < timing.idle_connections + 1000:
        log(f"note: RLIMIT_NOFILE is {hard}; scenario 7 may not reach its connection count")

    measurements = Measurements()
    for server in servers:
        if (why := available(server)) is not None:
            measurements.skipped[server.name] = why
    wants_wsgi = any(server.name == "theframework-wsgi" for server in servers)
    if wants_wsgi and (why := probe_wsgi_interface()) is not None:
        measurements.skipped["theframework-wsgi"] = why
    for name, why in measurements.skipped.items():
        log(f"skipping {name}: {why}")

    throughput = [s for s in scenarios if s.kind == "throughput"]
    command = reproducing_command(args)
    code_before = code_fingerprint()

    def save(final: bool = False) -> None:
        """Writes the reports so far (a run that is interrupted still leaves its figures)."""
        if code_fingerprint() != code_before:
            measurements.notes["code"] = (
                "theframework's code or native module changed while this ran (the tree is "
                "shared): its figures in different rounds may come from different builds"
            )
        when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if not final:
            when += " (partial)"
        write_results(command, when, servers, scenarios, timing, measurements)

    with tempfile.TemporaryDirectory(prefix="tf-bench-") as temporary:
        work_dir = Path(temporary)
        started = time.monotonic()
        if throughput:
            for round_number in range(timing.rounds):
                measurements.load_average.append(os.getloadavg())
                log(f"round {round_number + 1}/{timing.rounds}")
                run_throughput_round(
                    round_number, servers, throughput, timing, measurements, work_dir
                )
                save()
        measurements.load_average.append(os.getloadavg())
        if any(s.kind == "idle" for s in scenarios):
            for server in servers:
                if 7 not in server.scenarios or server.name in measurements.skipped:
                    continue
                try:
                    run_idle(server, timing, measurements, work_dir)
                except (ServerFailed, OSError, subprocess.SubprocessError) as failure:
                    log(f"  idle {server.name}: failed: {failure}")
                    measurements.skipped[f"{server.name} (idle)"] = str(failure)
            save()
        if any(s.kind == "rate" for s in scenarios):
            run_fixed_rate_rounds(servers, timing, measurements, work_dir)
            save()
        measurements.load_average.append(os.getloadavg())
        logs = RESULTS / "raw" / "logs"  # ignored by git
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        for server_log in work_dir.glob("*.log"):
            if server_log.stat().st_size:
                shutil.copy(server_log, logs / server_log.name)
        log(f"done in {time.monotonic() - started:.0f} s")
    save(final=True)
    log(f"wrote {RESULTS / 'results.md'} and {RESULTS / 'README-section.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
