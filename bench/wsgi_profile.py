"""Instructions per request of a WSGI route (Flask by default) in theframework and in bjoern,
counted by callgrind and attributed by object file and function.

    .venv/bin/python bench/wsgi_profile.py [--requests 20000] [--path /flask/plaintext]
        [--servers theframework-wsgi,bjoern] [--connections 1] [--keep DIR]

Each server (the command line of bench/run.py's SERVERS, the same apps/wsgi_app.py) runs under
``valgrind --tool=callgrind --instr-atstart=no`` on CPU 0. Once it answers, ``--warmup``
requests are sent, instrumentation is switched on (``callgrind_control -i on``), ``--requests``
keep-alive GETs are sent over ``--connections`` connections (each sends its next request when
the previous answer is complete), and instrumentation is switched off. Then the same server idles
with instrumentation on for as long as the requests took: that count (timers, the loop waking)
is the baseline subtracted. Kernel work is not counted by callgrind: syscalls are reported as
calls per request.

"flask-alone" is the Flask app called in a loop in one process with an environ captured from
theframework (no server): two runs of different lengths, their difference divided by the extra
calls. It is Flask/Werkzeug's own cost, the floor for any server.

Prints Markdown: instructions per request by group (object files; CPython's share split into its
eval loop, allocation, dicts/str and the rest), syscalls per request, and the top functions by
self cost. ``--keep DIR`` keeps the callgrind files (``callgrind_annotate --inclusive=yes``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import re
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import run  # bench/run.py: the servers' command lines, the apps' folder, free_port

CONTROLLED = {"theframework", "theframework-wsgi", "bjoern", "fastwsgi"}  # single-process servers
CACHE_SIM = ["no"]  # --cache-sim: "yes" adds callgrind's cache simulation (misses per request)
SYSCALLS = (
    "sendmsg",
    "send",
    "sendto",
    "writev",
    "write",
    "recv",
    "recvmsg",
    "recvfrom",
    "read",
    "io_uring_enter",
    "epoll_wait",
    "epoll_ctl",
    "accept4",
    "syscall",
    "clock_gettime",
)


# ---------------------------------------------------------------------------------------------
# The callgrind output: self cost per (object, function), calls per callee name


class Profile:
    """Self instructions per (object, function) and call counts per callee, from callgrind
    output files (name compression and call lines understood; one event, Ir)."""

    def __init__(self) -> None:
        self.self_cost: collections.Counter[tuple[str, str]] = collections.Counter()
        self.calls: collections.Counter[str] = collections.Counter()
        self.total = 0
        # Every event's total (Ir; with --cache-sim also D1mr, D1mw, DLmr, DLmw, I1mr, ILmr).
        self.events: collections.Counter[str] = collections.Counter()

    def read(self, path: Path) -> None:
        names: dict[str, dict[str, str]] = {"ob": {}, "fn": {}}
        current_object = current_function = ""
        after_call = False
        events = ["Ir"]
        callee = ""

        def name_of(kind: str, text: str) -> str:
            match = re.match(r"\((\d+)\)(?: (.*))?", text)
            if match is None:
                return text
            if match.group(2) is not None:
                names[kind][match.group(1)] = match.group(2)
            return names[kind].get(match.group(1), text)

        for line in path.read_text(errors="replace").splitlines():
            if not line:
                continue
            first = line[0]
            if first.isdigit() or first in "+-*":
                if after_call:
                    after_call = False  # the inclusive cost of the call: not self cost
                    continue
                fields = line.split()
                if len(fields) >= 2:  # a position, then the events in order (trailing 0s left out)
                    self.self_cost[(current_object, current_function)] += int(fields[1])
                    for event, value in zip(events, fields[1:], strict=False):
                        self.events[event] += int(value)
                continue
            if line.startswith("events:"):
                events = line.split()[1:]
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                current_object = name_of("ob", value)
            elif key == "fn":
                current_function = name_of("fn", value)
            elif key == "cob":
                name_of("ob", value)
            elif key == "cfn":
                callee = name_of("fn", value)
            elif key == "calls":
                self.calls[callee] += int(value.split()[0])
                after_call = True
            elif line.startswith(("summary:", "totals:")):
                self.total = max(self.total, int(line.split()[1]))


def group_of(object_path: str, function: str) -> str:
    name = Path(object_path).name
    if "_core" in name:
        return "theframework native (_core: parser, I/O loop, hub, Request/Response, environ)"
    if "greenlet" in name:
        return "greenlet (switching)"
    if "bjoern" in name:
        return "bjoern native (_bjoern: http-parser, environ, response)"
    if "libev" in name:
        return "libev"
    if "liburing" in name:
        return "liburing"
    if "libpython" in name or re.fullmatch(r"python3(\.\d+)?", name):
        if function.startswith("_PyEval_EvalFrameDefault"):
            return "CPython: eval loop (bytecode of Flask/Werkzeug, adapter, app)"
        if re.search(r"[Mm]alloc|[Ff]ree|_Dealloc|dealloc|obmalloc|arena|pool", function):
            return "CPython: allocation and deallocation"
        if re.match(r"(_?Py)?(Dict|dict|unicode|Unicode|_PyUnicode|lookdict|insertdict)", function):
            return "CPython: dict and str operations"
        return "CPython: other runtime (calls, attributes, GC, ...)"
    if name.startswith(("libc.", "libc-")):
        return "libc (memcpy, syscall wrappers, ...)"
    if name.startswith("ld-linux"):
        return "dynamic linker"
    if name.startswith("???") or not name:
        return "unknown"
    return f"other extension modules ({name})"


# ---------------------------------------------------------------------------------------------
# Servers under callgrind, and the client


@contextlib.contextmanager
def under_callgrind(command: list[str], output: Path) -> Iterator[subprocess.Popen[bytes]]:
    valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    valgrind += [f"--callgrind-out-file={output}", f"--cache-sim={CACHE_SIM[0]}"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("THEFRAMEWORK_")}
    environment.update(PYTHONPATH=str(run.APPS), PYTHONUNBUFFERED="1")
    log = output.with_suffix(".log").open("wb")
    process = subprocess.Popen(
        ["taskset", "-c", str(run.SERVER_CPU), *valgrind, *command],
        cwd=run.APPS,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def wait_answering(port: int, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 300  # Python's start under valgrind is slow
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            status, _ = run.http_get(port, path, timeout=30)
        except OSError:
            time.sleep(0.2)  # polling the port: the peers have no readiness signal
            continue
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        return
    raise RuntimeError("the server did not answer in 300 s")


def send_requests(port: int, path: str, count: int, connections: int) -> None:
    """``count`` keep-alive GETs over ``connections`` connections, closed loop."""
    request = f"GET {path} HTTP/1.1\r\nHost: {run.HOST}:{port}\r\nUser-Agent: wsgi_profile\r\n"
    request_bytes = (request + "Accept: */*\r\n\r\n").encode()
    selector = selectors.DefaultSelector()
    sent = 0
    for _ in range(min(connections, count)):
        connection = socket.create_connection((run.HOST, port), timeout=120)
        connection.sendall(request_bytes)
        sent += 1
        selector.register(connection, selectors.EVENT_READ, bytearray())
    done = 0
    while done < count:
        for key, _ in selector.select(timeout=120):
            connection = key.fileobj
            assert isinstance(connection, socket.socket)
            buffer: bytearray = key.data
            chunk = connection.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed a connection")
            buffer += chunk
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                continue
            match = re.search(rb"(?i)content-length: *(\d+)", buffer[:end])
            if match is None:
                raise RuntimeError(f"no Content-Length in {bytes(buffer[:end])!r}")
            if not buffer.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer {bytes(buffer[:40])!r}")
            whole = end + 4 + int(match.group(1))
            if len(buffer) < whole:
                continue
            del buffer[:whole]
            done += 1
            if sent < count:
                connection.sendall(request_bytes)
                sent += 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()


def callgrind_control(pid: int, *options: str) -> None:
    subprocess.run(
        ["callgrind_control", *options, str(pid)], check=True, capture_output=True, timeout=300
    )


def profile_server(name: str, arguments: argparse.Namespace, directory: Path) -> dict[str, object]:
    """One server process: the requests counted and dumped, then an idle window as long, dumped
    (``callgrind_control -d`` writes the counts so far and zeroes them)."""
    server = next(server for server in run.SERVERS if server.name == name)
    port = run.free_port()
    command = shlex.split(server.command.format(host=run.HOST, port=port))
    output = directory / f"{name}.out"
    results: dict[str, object] = {}
    with under_callgrind(command, output) as process:
        wait_answering(port, process, arguments.path)
        send_requests(port, arguments.path, arguments.warmup, arguments.connections)
        callgrind_control(process.pid, "-z")
        callgrind_control(process.pid, "-i", "on")
        started = time.monotonic()
        send_requests(port, arguments.path, arguments.requests, arguments.connections)
        seconds = time.monotonic() - started
        callgrind_control(process.pid, "-d", "requests")
        time.sleep(seconds)
        callgrind_control(process.pid, "-d", "idle")
    for phase, number in (("requests", 1), ("idle", 2)):
        profile = Profile()
        profile.read(Path(f"{output}.{number}"))
        results[phase] = profile
    print(f"  {name}: {arguments.requests} requests in {seconds:.0f} s", file=sys.stderr)
    return results


FLASK_ALONE = """
import sys, flask_app
app = flask_app.app
environ = {environ!r}
import io
def start_response(status, headers, exc_info=None):
    return None
for _ in range(int(sys.argv[1])):
    request = dict(environ)
    request["wsgi.input"] = io.BytesIO()
    request["wsgi.errors"] = sys.stderr
    result = app(request, start_response)
    for chunk in result:
        pass
    close = getattr(result, "close", None)
    if close is not None:
        close()
"""


def profile_flask_alone(arguments: argparse.Namespace, directory: Path) -> dict[str, object]:
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": arguments.path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wsgi_profile",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
    }
    script = directory / "flask_alone.py"
    script.write_text(FLASK_ALONE.format(environ=environ))
    profiles = []
    counts = (arguments.warmup, arguments.warmup + arguments.requests // 4)
    for count in counts:
        output = directory / f"flask-alone-{count}.out"
        subprocess.run(
            [
                "taskset",
                "-c",
                str(run.SERVER_CPU),
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={output}",
                f"--cache-sim={CACHE_SIM[0]}",
                str(run.OURS_PYTHON),
                str(script),
                str(count),
            ],
            cwd=run.APPS,
            env={**os.environ, "PYTHONPATH": str(run.APPS)},
            check=True,
            capture_output=True,
        )
        profile = Profile()
        profile.read(output)
        profiles.append(profile)
    difference = Profile()
    difference.self_cost = profiles[1].self_cost.copy()
    difference.self_cost.subtract(profiles[0].self_cost)
    difference.calls = profiles[1].calls.copy()
    difference.calls.subtract(profiles[0].calls)
    difference.total = profiles[1].total - profiles[0].total
    difference.events = profiles[1].events.copy()
    difference.events.subtract(profiles[0].events)
    return {"requests": difference, "idle": Profile(), "count": counts[1] - counts[0]}


# ---------------------------------------------------------------------------------------------
# Report


def report(results: dict[str, dict[str, object]], arguments: argparse.Namespace) -> None:
    per_request: dict[str, collections.Counter[tuple[str, str]]] = {}
    calls: dict[str, dict[str, float]] = {}
    for name, result in results.items():
        busy = result["requests"]
        idle = result["idle"]
        assert isinstance(busy, Profile) and isinstance(idle, Profile)
        count = int(result.get("count", arguments.requests))  # type: ignore[call-overload]
        costs = busy.self_cost.copy()
        costs.subtract(idle.self_cost)
        per_request[name] = collections.Counter(
            {key: value / count for key, value in costs.items()}
        )
        calls[name] = {
            syscall: (busy.calls[syscall] - idle.calls[syscall]) / count for syscall in SYSCALLS
        }
    names = list(results)
    print(
        f"`{arguments.path}`, {arguments.requests} keep-alive requests over "
        f"{arguments.connections} connection(s) after {arguments.warmup} warm-up requests; "
        "instructions per request (callgrind Ir), the server's idle baseline subtracted."
    )
    print()
    print("| group | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    groups: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for name in names:
        for (object_path, function), value in per_request[name].items():
            group = group_of(object_path, function)
            groups[group][name] = groups[group].get(name, 0.0) + value
    order = sorted(groups, key=lambda group: -max(groups[group].values()))
    for group in order:
        if max(abs(value) for value in groups[group].values()) < 50:
            continue
        cells = [f"{groups[group].get(name, 0.0):,.0f}" for name in names]
        print(f"| {group} | " + " | ".join(cells) + " |")
    totals = [sum(per_request[name].values()) for name in names]
    print("| **total** | " + " | ".join(f"**{total:,.0f}**" for total in totals) + " |")
    if CACHE_SIM[0] == "yes":
        print()
        print(
            "Simulated cache misses per request (callgrind --cache-sim=yes: L1 32 KiB, "
            "last level as this machine's; instruction (I) and data reads/writes (Dr/Dw)):"
        )
        print()
        print("| event | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for event in ("I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"):
            values = []
            for name in names:
                busy, idle = results[name]["requests"], results[name]["idle"]
                assert isinstance(busy, Profile) and isinstance(idle, Profile)
                count = int(results[name].get("count", arguments.requests))  # type: ignore[call-overload]
                values.append((busy.events[event] - idle.events[event]) / count)
            print(f"| {event} | " + " | ".join(f"{value:,.0f}" for value in values) + " |")
    print()
    print("Calls per request of libc's syscall wrappers (kernel work is not counted above):")
    print()
    print("| call | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for syscall in SYSCALLS:
        values = [calls[name][syscall] for name in names]
        if max(values) >= 0.01:
            print(f"| {syscall} | " + " | ".join(f"{value:.2f}" for value in values) + " |")
    for name in names:
        print()
        print(f"Top functions by self cost, {name} (instructions per request):")
        print()
        print("| function | object | Ir/request |")
        print("|---|---|---|")
        for (object_path, function), value in per_request[name].most_common(arguments.top):
            print(f"| `{function[:80]}` | {Path(object_path).name} | {value:,.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--path", default="/flask/plaintext")
    parser.add_argument("--servers", default="theframework-wsgi,bjoern,flask-alone")
    parser.add_argument("--top", type=int, default=25, help="functions listed per server")
    parser.add_argument("--keep", metavar="DIR", help="keep the callgrind files in DIR")
    parser.add_argument("--cache-sim", action="store_true", help="simulate the caches too")
    arguments = parser.parse_args()
    CACHE_SIM[0] = "yes" if arguments.cache_sim else "no"
    names = [name for name in arguments.servers.split(",") if name]
    for name in names:
        if name not in CONTROLLED and name != "flask-alone":
            print(f"wsgi_profile.py: {name} is not among {sorted(CONTROLLED)}", file=sys.stderr)
            return 2
    os.sched_setaffinity(0, {run.CLIENT_CPU})
    with contextlib.ExitStack() as stack:
        if arguments.keep:
            directory = Path(arguments.keep)
            directory.mkdir(parents=True, exist_ok=True)
        else:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wsgi-cg-")))
        results: dict[str, dict[str, object]] = {}
        for name in names:
            print(f"profiling {name} ...", file=sys.stderr, flush=True)
            if name == "flask-alone":
                results[name] = profile_flask_alone(arguments, directory)
            else:
                results[name] = profile_server(name, arguments, directory)
        report(results, arguments)
    return 0


if __name__ == "__main__":
    sys.exit(main())
