"""Serving inherited sockets: systemd socket activation ($LISTEN_FDS, $LISTEN_PID,
$LISTEN_FDNAMES) and ``--fd N``, in both modes, TCP and UNIX; the check of an inherited
descriptor (clear error, exit 2); and a restart under load where the socket keeps queueing, so
that no connection is refused. Debian's ``systemd-socket-activate`` (package systemd) is the
parent that holds the socket, as systemd does for a .socket unit. Real processes on loopback."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_exchange, http_get, sanitizer_variables

pytestmark = pytest.mark.timeout(180)

APP = "prefork_apps.pid_app:app"
# systemd-socket-activate passes its children only PATH, HOME, USER, TERM and what -E names.
_PASSED = tuple(
    argument
    for name in ("PYTHONUNBUFFERED", "PYTHONWARNINGS", *sanitizer_variables())
    for argument in ("-E", name)
)


@pytest.fixture(scope="module")
def socket_activate() -> str:
    path = shutil.which("systemd-socket-activate")
    if path is None:
        pytest.fail("systemd-socket-activate (Debian package systemd) is missing: run bootstrap")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unix_get(path: str, target: str = "/") -> tuple[int, dict[str, str], str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(path)
        return http_exchange(connection, target)


def _ready(server: ServerProcess, workers: str) -> None:
    if workers == "1":
        server.wait_for_line(r"listening on .* \(pid \d+")
    else:
        server.wait_ready()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation_over_tcp(socket_activate: str, workers: str) -> None:
    port = _free_port()
    prefix = [socket_activate, "-l", f"127.0.0.1:{port}", "--fdname=web", *_PASSED]
    with ServerProcess(APP, "--workers", workers, command_prefix=prefix) as server:
        server.wait_for_line(rf"Listening on 127\.0\.0\.1:{port} as 3")
        # The first connection makes systemd-socket-activate start the server; it waits queued.
        status, _, body = http_get(port)
        assert status == 200 and body.isdigit()
        server.wait_for_line(r"socket activation: fd 3 \(name web\)")
        _ready(server, workers)
        assert f"listening on http://127.0.0.1:{port}" in server.output
        pids = {http_get(port)[2] for _ in range(20)}
        if workers == "2":
            assert pids <= {str(pid) for pid in server.worker_pids().values()}
        else:
            assert pids == {str(server.pid)}  # socket-activate execs the server in its place
        # The variables were taken: the application does not see them.
        assert http_get(port, "/env?name=LISTEN_FDS")[2] == "<unset>"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_socket_activation_over_a_unix_socket(
    socket_activate: str, workers: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "app.sock")
    prefix = [socket_activate, "-l", path, *_PASSED]
    with ServerProcess(APP, "--workers", workers, command_prefix=prefix) as server:
        server.wait_for_line(rf"Listening on {path} as 3")
        assert unix_get(path)[0] == 200
        server.wait_for_line(r"socket activation: fd 3 \(name unknown\)")
        _ready(server, workers)
        assert f"listening on unix:{path}" in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        # The socket file belongs to whoever made it: the server leaves it in place.
        assert os.path.exists(path)


@pytest.fixture
def inherited_listener() -> Iterator[socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield listener
    listener.close()


@pytest.mark.parametrize(
    ("workers", "start_method"), [("1", "auto"), ("2", "fork"), ("2", "spawn")]
)
def test_fd_option_serves_an_inherited_socket(
    inherited_listener: socket.socket, workers: str, start_method: str
) -> None:
    descriptor = inherited_listener.fileno()
    port = inherited_listener.getsockname()[1]
    with ServerProcess(
        APP, "--workers", workers, "--start-method", start_method, "--fd", str(descriptor),
        "--port", "1", pass_fds=[descriptor],
    ) as server:  # fmt: skip
        _ready(server, workers)
        if workers == "2":
            assert f"(start method {start_method}" in server.output
        # The inherited socket, not --port 1, is what it listens on.
        assert f"listening on http://127.0.0.1:{port} " in server.output
        assert "127.0.0.1:1 " not in server.output
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    # Still listening here: connections queue for the next server (nobody shut it down).
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@pytest.mark.parametrize("workers", ["1", "2"])
def test_fd_option_is_repeatable_tcp_and_unix_together(
    inherited_listener: socket.socket, workers: str, tmp_path: Path
) -> None:
    path = str(tmp_path / "inherited.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix_listener:
        unix_listener.bind(path)
        unix_listener.listen(64)
        descriptors = [inherited_listener.fileno(), unix_listener.fileno()]
        port = inherited_listener.getsockname()[1]
        with ServerProcess(
            APP, "--workers", workers, "--fd", str(descriptors[0]), "--fd", str(descriptors[1]),
            pass_fds=descriptors,
        ) as server:  # fmt: skip
            _ready(server, workers)
            assert f"listening on http://127.0.0.1:{port}, unix:{path} " in server.output
            assert http_get(port)[0] == 200
            assert unix_get(path)[0] == 200
            server.send_signal(signal.SIGTERM)
            assert server.wait() == 0
        assert os.path.exists(path)  # not ours to remove


def test_listen_pid_of_another_process_is_ignored() -> None:
    environment = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
    with ServerProcess(
        APP, "--workers", "1", "--port", "0", environment=environment
    ) as server:  # fmt: skip
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        assert http_get(port)[0] == 200
        assert "LISTEN_FDS is for pid 1, not this one: ignored" in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("kind", ["closed", "file", "datagram", "not listening"])
def test_a_bad_inherited_descriptor_exits_2_with_one_line(
    kind: str, workers: str, tmp_path: Path
) -> None:
    holder: socket.socket | None = None
    descriptor = 99
    if kind == "file":
        descriptor = os.open(tmp_path / "file", os.O_CREAT | os.O_RDWR)
    elif kind == "datagram":
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        descriptor = holder.fileno()
    elif kind == "not listening":
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        descriptor = holder.fileno()
    expected = {
        "closed": "file descriptor 99 is not open: Bad file descriptor",
        "file": f"file descriptor {descriptor} is not a socket",
        "datagram": f"file descriptor {descriptor} is not a stream socket (SOCK_STREAM)",
        "not listening": f"file descriptor {descriptor} is a socket that does not listen",
    }[kind]
    try:
        with ServerProcess(
            APP, "--workers", workers, "--fd", str(descriptor),
            pass_fds=[] if kind == "closed" else [descriptor],
        ) as server:  # fmt: skip
            assert server.wait() == 2
            output = server.output
    finally:
        if holder is not None:
            holder.close()
        elif kind == "file":
            os.close(descriptor)
    assert f"cannot serve an inherited socket: {expected}" in output
    assert "Traceback" not in output


# -- restart under load ---------------------------------------------------------------------------

# Restarts the server whenever it exits, while systemd-socket-activate (the shell's parent) holds
# the socket: what systemd does with Restart=always and a .socket unit. Each server gets its own
# $LISTEN_PID (the subshell's pid, which exec keeps).
_RESTART_LOOP = 'while [ ! -e "$STOP_MARKER" ]; do (LISTEN_PID=$BASHPID exec "$@"); done'


class _Load:
    """Clients opening a new connection per request, as fast as they can, until stopped."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.stop = threading.Event()
        self.pids: dict[str, int] = {}
        self.total = 0
        self.errors: list[str] = []
        self.changed = threading.Condition()
        self.threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                status, _, body = http_get(self.port, timeout=30)
            except OSError as error:
                with self.changed:
                    self.errors.append(repr(error))
                continue
            with self.changed:
                if status != 200:
                    self.errors.append(f"status {status}")
                self.pids[body] = self.pids.get(body, 0) + 1
                self.total += 1
                self.changed.notify_all()

    def wait_for_total(self, total: int, timeout: float = 60.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.total >= total, timeout):
                raise AssertionError(f"{self.total} requests served, not {total}: {self.errors}")

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_restart_under_load_refuses_no_connection(
    socket_activate: str, workers: str, tmp_path: Path
) -> None:
    port = _free_port()
    stop_marker = tmp_path / "stop"
    prefix = [
        socket_activate, "-l", f"127.0.0.1:{port}", *_PASSED, "-E", f"STOP_MARKER={stop_marker}",
        "/bin/bash", "-c", _RESTART_LOOP, "restart-loop",
    ]  # fmt: skip
    if workers == "1":
        pattern = r"listening on http://.* \(pid (\d+)"
    else:
        pattern = r"\[master\] .*: ready: .*pid (\d+)"
    served_by: list[int] = []
    with ServerProcess(APP, "--workers", workers, command_prefix=prefix) as server:
        server.wait_for_line(rf"Listening on 127\.0\.0\.1:{port} as 3")
        load = _Load(port)
        try:
            start = 0
            for round_number in range(1, 4):  # three servers in turn, each stopped under load
                match = server.wait_for_line(pattern, start=start)
                start = server.lines.index(match.string, start) + 1
                served_by.append(int(match.group(1)))
                load.wait_for_total(100 * round_number)
                if round_number < 3:
                    os.kill(served_by[-1], signal.SIGTERM)
        finally:
            load.finish()
        stop_marker.touch()
        os.kill(served_by[-1], signal.SIGTERM)
        assert server.wait() == 0
    assert load.errors == []
    assert len(set(served_by)) == 3
    if workers == "1":  # each server answered (the single process's pid is in the body)
        assert all(load.pids.get(str(pid), 0) > 0 for pid in served_by), (served_by, load.pids)
    else:  # some worker of each supervisor answered
        generation = 0
        workers_of: dict[int, set[str]] = {}
        for line in server.lines:
            worker = re.search(r"worker \d+ ready \(pid (\d+)\)", line)
            if worker:
                workers_of.setdefault(generation, set()).add(worker.group(1))
            elif re.search(pattern, line):
                generation += 1
        assert all(workers_of[index] & set(load.pids) for index in range(3)), (
            workers_of,
            load.pids,
        )
