"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries
(/usr/lib/postgresql/*/bin, installed by scripts/bootstrap.sh), a cluster initialised in a
temporary directory, listening on 127.0.0.1:<free port> and on a UNIX socket in that directory,
with trust authentication. Run as ``nobody`` when the tests run as root (postgres refuses root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

READY_LINE = "database system is ready to accept connections"
SERVER_USER = "nobody"
# Not for postgres: `make asan` preloads the sanitizer runtimes into the tests' children.
_NOT_INHERITED = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")


def server_environment() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in _NOT_INHERITED}


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb; AssertionError when none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(path.split("/")[4])
    )
    assert found, "PostgreSQL is not installed (scripts/bootstrap.sh installs postgresql)"
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    """One postgres process over a fresh cluster; ``dsn`` connects as superuser ``postgres`` to
    database ``postgres`` over TCP. ``stop()`` shuts it down and deletes the directory."""

    def __init__(self, max_connections: int = 600) -> None:
        self.bin = postgres_bin()
        self.directory = Path(tempfile.mkdtemp(prefix="theframework-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as_user = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--clear-groups",
                "--",
            ]
        self._lines: list[str] = []
        self._ready = threading.Event()
        self.process: subprocess.Popen[str] | None = None
        try:
            self._run(
                [
                    str(self.bin / "initdb"),
                    "--pgdata",
                    str(self.data),
                    "--username=postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            )
            self._start(max_connections)
        except BaseException:
            self.stop()
            raise

    def _run(self, command: Sequence[str]) -> None:
        completed = subprocess.run(
            [*self._as_user, *command],
            capture_output=True,
            text=True,
            cwd=self.directory,
            env=server_environment(),
        )
        assert completed.returncode == 0, f"{command[0]} failed:\n{completed.stderr}"

    def _start(self, max_connections: int) -> None:
        self.process = subprocess.Popen(
            [
                *self._as_user,
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"max_connections={max_connections}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "logging_collector=off",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.directory,
            env=server_environment(),
            start_new_session=True,
        )
        threading.Thread(target=self._read_log, daemon=True).start()
        # Readiness signal: postgres logs this line once it accepts connections.
        if not self._ready.wait(60) or self.process.poll() is not None:
            raise AssertionError("postgres did not start:\n" + "\n".join(self._lines))

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line.rstrip("\n"))
            if READY_LINE in line:
                self._ready.set()
        self._ready.set()  # ended: let the starter see the exit

    @property
    def log(self) -> str:
        return "\n".join(self._lines)

    def stop(self) -> None:
        """Fast shutdown (SIGINT: running queries are cancelled), then removes the cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.directory, ignore_errors=True)
