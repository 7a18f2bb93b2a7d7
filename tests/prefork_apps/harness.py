"""Runs ``python -m theframework APP --workers N ...`` as a real process for the prefork tests.

The server runs in its own session (so the whole tree can be cleaned up by its process group id;
``start_new_session=False`` with ``preexec_fn=os.setpgrp`` gives it its own process group in this
session instead) with the tests directory as its current directory (``prefork_apps.<module>:app``
imports) and DeprecationWarning turned into errors (Python 3.12+ warns when forking with
threads). A reader thread collects its merged stdout/stderr; tests wait on log lines, never on
sleeps.

Leaving the ``with`` block (without an exception) fails the test when the output holds a Python
traceback (unless the test expects one: ``expected_tracebacks`` names text of the exception
lines it allows) or when the server, stopped by the test's SIGTERM/SIGINT, exited with another
code than ``stopped_exit_codes`` (0).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TESTS_DIRECTORY = Path(__file__).resolve().parent.parent


# Under `make asan` the instrumented module needs these in every server process, including one
# started by a tool that passes on only the variables it is told to (systemd-socket-activate -E).
SANITIZER_VARIABLES = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "THEFRAMEWORK_SANITIZED")


def sanitizer_variables() -> list[str]:
    """The names of SANITIZER_VARIABLES set in this environment."""
    return [name for name in SANITIZER_VARIABLES if name in os.environ]


class ServerProcess:
    """One server (supervisor and its workers). ``program`` replaces ``python -m theframework``
    (e.g. an installed ``theframework`` script) and ``cwd`` the tests directory. Its process
    group id must be its pid (``close()`` kills that group)."""

    def __init__(
        self,
        app: str,
        *arguments: str,
        environment: dict[str, str] | None = None,
        command_prefix: Sequence[str] = (),
        preexec_fn: Callable[[], Any] | None = None,
        pass_fds: Sequence[int] = (),
        program: Sequence[str] = (sys.executable, "-m", "theframework"),
        cwd: Path = TESTS_DIRECTORY,
        expected_tracebacks: Sequence[str] = (),
        stopped_exit_codes: Sequence[int] = (0,),
        start_new_session: bool = True,
    ) -> None:
        self.expected_tracebacks = tuple(expected_tracebacks)
        self.stopped_exit_codes = tuple(stopped_exit_codes)
        self.stop_signal_sent = False
        env = {
            name: value for name, value in os.environ.items() if not name.startswith("THEFRAMEWORK")
        }
        env["PYTHONWARNINGS"] = "error::DeprecationWarning"
        env["PYTHONUNBUFFERED"] = "1"
        env.update(environment or {})
        command = [*command_prefix, *program, app, *arguments]
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._finished = False
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=start_new_session,
            preexec_fn=preexec_fn,
            pass_fds=pass_fds,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._finished = True
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first line (from index ``start``) matching ``pattern``; AssertionError with the
        whole output when none appears within ``timeout`` or the output ends."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        index = start
        with self._changed:
            while True:
                while index < len(self.lines):
                    match = compiled.search(self.lines[index])
                    if match:
                        return match
                    index += 1
                remaining = deadline - time.monotonic()
                if self._finished or remaining <= 0:
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s "
                        f"(exit {self.process.poll()}); output:\n" + "\n".join(self.lines)
                    )
                self._changed.wait(remaining)

    def wait_ready(self, timeout: float = 60.0) -> str:
        """The address of the supervisor's "ready:" line."""
        return self.wait_for_line(r"\[master\] .*: ready: (\S+)", timeout).group(1)

    def port(self) -> int:
        return int(self.wait_ready().rsplit(":", 1)[1])

    def worker_pids(self) -> dict[int, int]:
        """Worker id -> pid, from the "worker N ready (pid P)" lines so far (latest wins)."""
        pids: dict[int, int] = {}
        for line in self.output.splitlines():
            match = re.search(r"worker (\d+) ready \(pid (\d+)\)", line)
            if match:
                pids[int(match.group(1))] = int(match.group(2))
        return pids

    def send_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self.stop_signal_sent = True
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60.0) -> int:
        """The exit code, once the process has ended and its output has been read."""
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the server did not exit within {timeout} s; output:\n{self.output}"
            ) from None
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Kills whatever is left of this server's process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        self.close()
        if exc_type is None:
            self.check_clean_exit()

    def check_clean_exit(self) -> None:
        """AssertionError when the output holds an unexpected traceback, or when the server
        exited non-zero after the test asked it to stop."""
        unexpected = [
            exception
            for exception in traceback_exceptions(self.output)
            if not any(expected in exception for expected in self.expected_tracebacks)
        ]
        assert not unexpected, f"unexpected traceback(s) {unexpected}; output:\n{self.output}"
        code = self.process.returncode
        if self.stop_signal_sent and code is not None and code not in self.stopped_exit_codes:
            raise AssertionError(f"the server exited {code} when stopped; output:\n{self.output}")


def traceback_exceptions(output: str) -> list[str]:
    """The exception line ending each "Traceback (most recent call last):" block of ``output``
    (its first unindented line after the header)."""
    exceptions = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last):"):
            continue
        for following in lines[index + 1 :]:
            if following and not following.startswith((" ", "\t")):
                exceptions.append(following)
                break
        else:
            exceptions.append("<traceback without an exception line>")
    return exceptions


def http_get(port: int, path: str = "/", timeout: float = 30.0) -> tuple[int, dict[str, str], str]:
    """One GET over a new connection (Connection: close): (status, headers lower-cased, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        return http_exchange(connection, path)


def pids_answering(
    port: int, wanted: set[int], attempts: int = 400, timeout: float = 30.0
) -> set[int]:
    """Worker pids answering new connections (``/`` answers the pid), until all of ``wanted``
    were seen or after ``attempts`` requests."""
    seen: set[int] = set()
    for _ in range(attempts):
        status, _, body = http_get(port, timeout=timeout)
        assert status == 200, (status, body)
        seen.add(int(body))
        if wanted <= seen:
            break
    return seen


def http_exchange(connection: socket.socket, path: str) -> tuple[int, dict[str, str], str]:
    """Sends a GET for ``path`` on ``connection`` and reads the response to the end of stream."""
    connection.sendall(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode("ascii")
    )
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body.decode()


@functools.cache
def unprivileged_prefix() -> list[str]:
    """A command prefix running the server without the rights to bind ports below 1024 or to
    write into directories it does not own: as nobody (65534) when that user can run this
    interpreter, else as root without CAP_NET_BIND_SERVICE and CAP_DAC_OVERRIDE (an interpreter
    under /root, unreadable by nobody)."""
    if shutil.which("setpriv") is None:
        raise AssertionError("setpriv (util-linux) is needed to drop privileges for this test")
    if os.getuid() != 0:
        return []  # already unprivileged
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*as_nobody, sys.executable, "-c", ""], capture_output=True)
    if probe.returncode == 0:
        return as_nobody
    return ["setpriv", "--bounding-set=-net_bind_service,-dac_override,-dac_read_search"]


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape_metrics(url: str) -> Samples:
    """One scrape of a supervisor's --metrics-port endpoint: sample name -> [(labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def metric_value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(value for found, value in samples.get(name, []) if labels.items() <= found.items())


def wait_for_metric(
    url: str, name: str, minimum: float, timeout: float = 15.0, **labels: str
) -> Samples:
    """Scrapes until ``name`` reaches ``minimum`` (workers push their counters every second)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape_metrics(url)
        if metric_value(samples, name, **labels) >= minimum:
            return samples
        assert time.monotonic() < deadline, f"{name}{labels} stayed below {minimum}: {samples}"
        time.sleep(0.2)
