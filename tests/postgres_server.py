"""A throwaway PostgreSQL server for the tests and bench/database.py: Debian's ``postgresql``
binaries (/usr/lib/postgresql/*/bin, installed by scripts/bootstrap.sh and bench/setup.sh), a
cluster initialised in a temporary directory, listening on 127.0.0.1:<free port> and on a UNIX
socket in that directory, with trust authentication, started and stopped with pg_ctl. Run as
``nobody`` when the caller runs as root (postgres refuses root).
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
from collections.abc import Sequence
from pathlib import Path

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
        self.log_path = self.directory / "postgres.log"
        self._started = False
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

    def _run(self, command: Sequence[str], timeout: float = 120) -> None:
        completed = subprocess.run(
            [*self._as_user, *command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=self.directory,
            env=server_environment(),
            timeout=timeout,
        )
        assert completed.returncode == 0, (
            f"{command[0]} failed:\n{completed.stdout}\n{completed.stderr}\n{self.log}"
        )

    def _start(self, max_connections: int) -> None:
        # pg_ctl -w returns once the server accepts connections (its readiness signal) and
        # leaves no thread or pipe in this process (forking tests check the thread count).
        options = " ".join(
            [
                f"-p {self.port}",
                f"-k {self.directory}",
                "-c listen_addresses=127.0.0.1",
                f"-c max_connections={max_connections}",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            ]
        )
        self._started = True
        self._run(
            [
                str(self.bin / "pg_ctl"),
                "start",
                "--wait",
                "--timeout=60",
                "--pgdata",
                str(self.data),
                "--log",
                str(self.log_path),
                "--options",
                options,
            ]
        )

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Fast shutdown (running queries are cancelled), then removes the cluster."""
        if self._started:
            self._started = False
            try:
                self._run(
                    [
                        str(self.bin / "pg_ctl"),
                        "stop",
                        "--wait",
                        "--mode=fast",
                        "-D",
                        str(self.data),
                    ]
                )
            except (AssertionError, subprocess.TimeoutExpired):
                self._kill_postmaster()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown
