"""Failed connections per 100,000 while workers are replaced: rolling reloads, kill -9 of one
worker, and scale-down, for theframework against Granian and gunicorn under the same load.

    .venv/bin/python bench/zero_loss.py [--runs 3] [--count 5] [--servers ...] [--events ...]
    .venv/bin/python bench/zero_loss.py --quick        # theframework only, one short run each

The load is wrk (1 thread, pinned to CPU 1) opening a new connection for every request
(``Connection: close``, 64 connections, ``GET /plaintext``); every server runs 2 workers (4 for
scale-down) pinned to CPU 0, with its defaults otherwise. A run starts a fresh server, starts wrk,
waits 1 s, then carries out ``--count`` events one after another: an event is sent, then the run
waits until it is complete (the replaced workers have exited, the worker count is what it should
be, and every new worker has logged that it is ready), then at least ``--interval`` seconds pass
between two events; 1 s after the last one wrk is stopped (SIGINT) and its counts are read.
Failures are wrk's socket errors: connect (refused or reset while connecting), read (reset, or
closed before a complete answer) and write. A connection is a request answered or a failure, so
failures per 100,000 connections = failed / (answered + failed) * 100,000.

Events:
- reload: SIGHUP to the server's main process (every worker is replaced);
- kill: SIGKILL to the oldest worker (the server starts a new one);
- scale-down: SIGTTOU from 4 workers to 2, then SIGTTIN back to 4 (not an event, not counted
  separately), and again; ``--count`` is the number of SIGTTOUs.

Writes a Markdown table to bench/results/zero_loss.md (``--output``) and every run's raw figures
(wrk's full output included) to the JSON file beside it; servers' output goes to
bench/results/raw/logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from run import (
    CLIENT_CPU,
    HOST,
    OURS_PYTHON,
    PEERS,
    RESULTS,
    ROOT,
    Server,
    ServerFailed,
    ServerProcess,
    free_port,
)

CONNECTIONS = 64
PATH = "/plaintext"
WORKERS = 2
SCALE_FROM = 4  # scale-down goes from 4 workers to WORKERS
EVENT_TIMEOUT = 30.0  # an event not complete by then fails the run
EVENTS = ("reload", "kill", "scale-down")


@dataclasses.dataclass(frozen=True)
class Contender:
    """A server under test: how to start it with N workers, the signals it understands, and the
    log lines that say a worker is ready."""

    name: str
    description: str
    command: Callable[[int], str]  # workers -> shell words, {host} and {port} left to fill in
    module: str | None  # a module the peers' venv must import (None: ours)
    ready_pid: re.Pattern[str] | None = None  # a line naming a ready worker's pid
    spawned_slot_pid: re.Pattern[str] | None = None  # (slot, pid) of a worker being started
    ready_slot: re.Pattern[str] | None = None  # then: the slot whose worker is ready
    reload: bool = True  # SIGHUP replaces every worker
    scale: bool = True  # SIGTTIN / SIGTTOU add / remove one worker
    notes: str = ""

    def server(self, workers: int) -> Server:
        return Server(self.name, self.description, self.command(workers))


CONTENDERS = {
    contender.name: contender
    for contender in (
        Contender(
            "theframework",
            "theframework, Framework API",
            lambda workers: (
                f"{OURS_PYTHON} -m theframework --workers {workers} "
                "--host {host} --port {port} --log-level info tf_app:app"
            ),
            None,
            ready_pid=re.compile(r"worker \d+ ready \(pid (?P<pid>\d+)\)"),
        ),
        Contender(
            "granian-rsgi",
            "Granian RSGI",
            lambda workers: (
                f"{PEERS / 'granian'} --interface rsgi --workers {workers} "
                "--respawn-failed-workers --host {host} --port {port} --log-level info rsgi_app:app"
            ),
            "granian",
            spawned_slot_pid=re.compile(r"Spawning worker-(?P<slot>\d+) with PID: (?P<pid>\d+)"),
            ready_slot=re.compile(r"Started worker-(?P<slot>\d+)$"),
            scale=False,
            notes="`--respawn-failed-workers` (without it Granian exits when a worker dies); "
            "SIGHUP respawns one worker at a time, `--respawn-interval` (3.5 s) apart; "
            "no signal changes the number of workers",
        ),
        Contender(
            "granian-wsgi",
            "Granian WSGI",
            lambda workers: (
                f"{PEERS / 'granian'} --interface wsgi --workers {workers} "
                "--respawn-failed-workers --host {host} --port {port} --log-level info wsgi_app:app"
            ),
            "granian",
            spawned_slot_pid=re.compile(r"Spawning worker-(?P<slot>\d+) with PID: (?P<pid>\d+)"),
            ready_slot=re.compile(r"Started worker-(?P<slot>\d+)$"),
            scale=False,
            notes="as granian-rsgi",
        ),
        Contender(
            "gunicorn-sync",
            "gunicorn -k sync",
            lambda workers: (
                f"{PEERS / 'gunicorn'} -k sync -w {workers} -b {{host}}:{{port}} "
                "--no-control-socket --log-level info wsgi_app:app"
            ),
            "gunicorn",
            ready_pid=re.compile(r"Booting worker with pid: (?P<pid>\d+)"),
        ),
        Contender(
            "gunicorn-gthread",
            "gunicorn -k gthread",
            lambda workers: (
                f"{PEERS / 'gunicorn'} -k gthread -w {workers} -b {{host}}:{{port}} "
                "--no-control-socket --log-level info wsgi_app:app"
            ),
            "gunicorn",
            ready_pid=re.compile(r"Booting worker with pid: (?P<pid>\d+)"),
        ),
    )
}
DEFAULT_SERVERS = ("theframework", "granian-rsgi", "gunicorn-sync")


def unsupported(contender: Contender, event: str) -> str | None:
    """Why ``contender`` cannot run ``event``, or None when it can."""
    if event == "reload" and not contender.reload:
        return "not supported (no reload signal)"
    if event == "scale-down" and not contender.scale:
        return "not supported (no signal changes the number of workers)"
    return None


def available(contender: Contender) -> str | None:
    """Why ``contender`` cannot run on this machine, or None when it can."""
    if contender.module is None:
        return None if OURS_PYTHON.exists() else f"{OURS_PYTHON} missing: run make build"
    python = PEERS / "python"
    if not python.exists():
        return f"{python} missing: run bench/setup.sh"
    found = subprocess.run([str(python), "-c", f"import {contender.module}"], check=False)
    return None if found.returncode == 0 else f"{contender.module} is not installed in {PEERS}"


# ---------------------------------------------------------------------------------------------
# Workers: the main process's children, and which of them said they are ready


class Workers:
    """The worker processes of one server (children of its main process) and, from its log,
    which of them reported ready."""

    def __init__(self, contender: Contender, process: ServerProcess) -> None:
        self.contender = contender
        self.process = process
        self.ready: set[int] = set()
        self._slots: dict[int, int] = {}  # slot -> pid of its latest worker (Granian)
        self._offset = 0

    def _read_log(self) -> None:
        with self.process.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        complete = data.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += complete
        for line in data[:complete].decode(errors="replace").splitlines():
            self._feed(line.rstrip())

    def _feed(self, line: str) -> None:
        contender = self.contender
        if contender.ready_pid and (match := contender.ready_pid.search(line)):
            self.ready.add(int(match["pid"]))
        if contender.spawned_slot_pid and (match := contender.spawned_slot_pid.search(line)):
            self._slots[int(match["slot"])] = int(match["pid"])
        if contender.ready_slot and (match := contender.ready_slot.search(line)):
            self.ready.add(self._slots[int(match["slot"])])

    def pids(self) -> dict[int, int]:
        """Worker pid -> start time (clock ticks since boot) of every child of the main process."""
        children = {}
        main_pid = self.process.process.pid  # taskset execs the server: the same pid
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == main_pid and fields[0] != "Z":
                    children[int(entry.name)] = int(fields[19])
        return children

    def wait(self, count: int, gone: set[int], timeout: float = EVENT_TIMEOUT) -> set[int]:
        """Waits until exactly ``count`` workers run, none of them in ``gone`` and every one ready
        (polling /proc and the log: the servers share no other signal); returns their pids."""
        deadline = time.monotonic() + timeout
        while True:
            self._read_log()
            pids = set(self.pids())
            if len(pids) == count and not pids & gone and pids <= self.ready:
                return pids
            if self.process.process.poll() is not None:
                raise ServerFailed(f"{self.contender.name} exited ({self.process.log_path})")
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{self.contender.name}: not {count} ready workers after {timeout:.0f} s "
                    f"(running {sorted(pids)}, ready {sorted(pids & self.ready)}, "
                    f"waiting for {sorted(pids & gone)} to exit; {self.process.log_path})"
                )
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Load


@dataclasses.dataclass
class WrkCounts:
    answered: int = 0
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0  # requests still unanswered after wrk's --timeout (not failures)
    non_2xx: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.connect + self.read + self.write

    @property
    def connections(self) -> int:
        return self.answered + self.failed


def parse_wrk(output: str) -> WrkCounts:
    """The counts in wrk's report; raises ValueError when it has none."""
    total = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if total is None:
        raise ValueError(f"no request count in wrk's output:\n{output}")
    counts = WrkCounts(answered=int(total[1]))
    counts.seconds = float(total[2]) / (1000 if total[3] == "ms" else 1)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if errors:
        counts.connect, counts.read, counts.write, counts.timeout = map(int, errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        counts.non_2xx = int(non_2xx[1])
    return counts


@contextlib.contextmanager
def load(port: int, limit: float) -> Iterator[list[str]]:
    """wrk with a new connection per request for the body of the ``with``; then it is stopped
    (SIGINT: it reports what it counted) and its output is put in the yielded list."""
    command = [
        "taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{limit:.0f}s",
        "--timeout", "4s", "-H", "Connection: close", f"http://{HOST}:{port}{PATH}",
    ]  # fmt: skip
    wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        yield output
    finally:
        wrk.send_signal(signal.SIGINT)
        output.append(wrk.communicate(timeout=30)[0])


# ---------------------------------------------------------------------------------------------
# One run


@dataclasses.dataclass
class Run:
    server: str
    event: str
    events: int
    counts: WrkCounts
    seconds: float  # from the first event to the last one's completion
    pids: list[list[int]]  # the workers before the first event, then after each event
    wrk: str


def _event(workers: Workers, event: str, current: set[int]) -> set[int]:
    """Carries out one ``event`` and waits until it is complete; returns the workers after it."""
    main = workers.process.process
    if event == "reload":
        main.send_signal(signal.SIGHUP)
        return workers.wait(len(current), gone=current)
    if event == "kill":
        started = workers.pids()
        oldest = min(current, key=lambda pid: started.get(pid, 0))
        os.kill(oldest, signal.SIGKILL)
        return workers.wait(len(current), gone={oldest})
    # scale-down: one SIGTTOU; back up to SCALE_FROM first when at WORKERS already
    if len(current) <= WORKERS:
        while len(current) < SCALE_FROM:
            main.send_signal(signal.SIGTTIN)
            current = workers.wait(len(current) + 1, gone=set())
    main.send_signal(signal.SIGTTOU)
    return workers.wait(len(current) - 1, gone=set())


def one_run(contender: Contender, event: str, count: int, interval: float, log: Path) -> Run:
    starting = SCALE_FROM if event == "scale-down" else WORKERS
    port = free_port()
    process = ServerProcess(contender.server(starting), port, log)
    try:
        problem = process.wait_ready()
        if problem is not None:
            raise ServerFailed(f"{contender.name}: {problem} (log: {log})")
        workers = Workers(contender, process)
        current = workers.wait(starting, gone=set())
        history = [sorted(current)]
        limit = 1 + count * (interval + EVENT_TIMEOUT) + 1
        with load(port, limit) as output:
            time.sleep(1.0)  # a benchmark: the load runs 1 s before the first event
            began = time.monotonic()
            for _ in range(count):
                fired = time.monotonic()
                current = _event(workers, event, current)
                history.append(sorted(current))
                time.sleep(max(0.0, fired + interval - time.monotonic()))
            seconds = time.monotonic() - began
            time.sleep(1.0)  # and 1 s after the last one
    finally:
        process.stop()
    return Run(contender.name, event, count, parse_wrk(output[0]), seconds, history, output[0])


# ---------------------------------------------------------------------------------------------
# Report


def per_100k(failed: int, connections: int) -> float:
    return failed * 100_000 / connections if connections else 0.0


def table(runs: list[Run], skipped: dict[tuple[str, str], str], servers: list[str]) -> str:
    """The Markdown table: one row per server, one column per event."""
    measured = {run.event for run in runs} | {event for _, event in skipped}
    events = [event for event in EVENTS if event in measured]
    lines = [
        "| server | " + " | ".join(events) + " |",
        "|---|" + "---|" * len(events),
    ]
    for server in servers:
        cells = []
        for event in events:
            mine = [run for run in runs if run.server == server and run.event == event]
            if (server, event) in skipped:
                cells.append(skipped[(server, event)])
                continue
            if not mine:
                cells.append("-")
                continue
            failed = sum(run.counts.failed for run in mine)
            connections = sum(run.counts.connections for run in mine)
            raw = " / ".join(f"{run.counts.failed}" for run in mine)
            cells.append(
                f"**{per_100k(failed, connections):.1f}** ({failed:,} of {connections:,}; "
                f"{len(mine)} runs x {mine[0].events} events; per run: {raw})"
            )
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def details(runs: list[Run]) -> str:
    """One line per run: every count wrk reported."""
    header = ["server", "event", "run", "events", "wrk s", "answered", "connect", "read", "write"]
    header += ["timeout", "non-2xx", "per 100k"]
    lines = ["| " + " | ".join(header) + " |", "|---|---|" + "---:|" * (len(header) - 2)]
    numbers: dict[tuple[str, str], int] = {}
    for run in runs:
        key = (run.server, run.event)
        numbers[key] = numbers.get(key, 0) + 1
        counts = run.counts
        cells = [run.server, run.event, str(numbers[key]), str(run.events)]
        cells += [f"{counts.seconds:.1f}", f"{counts.answered:,}", str(counts.connect)]
        cells += [str(counts.read), str(counts.write), str(counts.timeout), str(counts.non_2xx)]
        cells.append(f"{per_100k(counts.failed, counts.connections):.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def commit() -> str:
    """The last commit that changed the server's code (theframework/, src/)."""
    described = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h", "--", "theframework", "src"],
        capture_output=True,
        text=True,
        check=False,
    )
    return described.stdout.strip() or "unknown"


def report(
    runs: list[Run],
    skipped: dict[tuple[str, str], str],
    servers: list[str],
    arguments: argparse.Namespace,
    loads: list[float],
) -> str:
    command = shlex.join(["bench/zero_loss.py", *sys.argv[1:]])
    notes = [f"- {name}: {CONTENDERS[name].notes}." for name in servers if CONTENDERS[name].notes]
    return "\n".join(
        [
            "Failed connections per 100,000 (wrk socket errors connect + read + write over "
            "answered + failed), new connection per request, 64 connections, 2 workers:",
            "",
            table(runs, skipped, servers),
            "",
            f"Measured with `.venv/bin/python {command}` on "
            f"{datetime.date.today().isoformat()}, theframework's code at `{commit()}`; "
            f"{arguments.count} events per run, at least {arguments.interval:g} s apart, each "
            "waited for until complete; 1-minute load average "
            f"{min(loads):.1f}-{max(loads):.1f} (2 CPUs).",
            *notes,
            "",
            "Every run:",
            "",
            details(runs),
            "",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=", ".join(CONTENDERS))
    parser.add_argument("--events", default=",".join(EVENTS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--count", type=int, default=5, help="events per run")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between events")
    parser.add_argument("--quick", action="store_true", help="theframework, 1 run of 2 events")
    parser.add_argument("--output", type=Path, default=RESULTS / "zero_loss.md")
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.servers, arguments.runs, arguments.count, arguments.interval = (
            "theframework",
            1,
            2,
            0.5,
        )
    servers = arguments.servers.split(",")
    events = arguments.events.split(",")
    for name in servers:
        if name not in CONTENDERS:
            parser.error(f"unknown server {name!r}: choose among {', '.join(CONTENDERS)}")
    for event in events:
        if event not in EVENTS:
            parser.error(f"unknown event {event!r}: choose among {', '.join(EVENTS)}")
    log_dir = RESULTS / "raw" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    skipped: dict[tuple[str, str], str] = {}
    loads = [os.getloadavg()[0]]
    for name in servers:  # one server at a time, never two at once
        contender = CONTENDERS[name]
        missing = available(contender)
        for event in events:
            why = missing or unsupported(contender, event)
            if why:
                skipped[(name, event)] = why
                print(f"{name} {event}: {why}", flush=True)
                continue
            for number in range(1, arguments.runs + 1):
                log = log_dir / f"zero-loss-{name}-{event}-{number}.log"
                try:
                    run = one_run(contender, event, arguments.count, arguments.interval, log)
                except ServerFailed as failure:  # reported in the table; the other runs go on
                    skipped[(name, event)] = f"run {number} failed: {failure}"
                    print(f"{name} {event} run {number}: {failure}", flush=True)
                    break
                runs.append(run)
                loads.append(os.getloadavg()[0])
                counts = run.counts
                print(
                    f"{name} {event} run {number}: {counts.failed} failed of "
                    f"{counts.connections:,} connections (connect {counts.connect}, read "
                    f"{counts.read}, write {counts.write}; timeout {counts.timeout}, non-2xx "
                    f"{counts.non_2xx}) over {run.events} events in {run.seconds:.1f} s",
                    flush=True,
                )
    text = report(runs, skipped, servers, arguments, loads)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(text)
    raw: dict[str, Any] = {
        "command": sys.argv,
        "commit": commit(),
        "load_average": loads,
        "skipped": {f"{server} {event}": why for (server, event), why in skipped.items()},
        "runs": [
            {
                **dataclasses.asdict(run),
                "failed": run.counts.failed,
                "connections": run.counts.connections,
            }
            for run in runs
        ],
    }
    arguments.output.with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 1 if any(why.startswith("run ") for why in skipped.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
