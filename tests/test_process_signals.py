"""README's signal and exit-code tables, held in both modes: the single process (``--workers 1``,
no supervisor) and the supervisor. Each signal is sent to each mode, which logs what it did and
still serves afterwards; the single process exits with README's codes end to end. Real server
processes on loopback (tests/prefork_apps/harness.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get, pids_answering, unprivileged_prefix

from theframework.server.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(120)

APP = "prefork_apps.pid_app:app"
_LISTENING = r"listening on http://127\.0\.0\.1:(\d+) \(pid (\d+)"


def _single_process_port(server: ServerProcess) -> int:
    return int(server.wait_for_line(_LISTENING).group(1))


def _serves(port: int) -> None:
    status, _, body = http_get(port)
    assert status == 200 and body.isdigit(), (status, body)


def _send_and_wait(server: ServerProcess, signum: int, pattern: str) -> None:
    """Sends ``signum`` and waits for ``pattern`` in the lines logged after it."""
    start = len(server.lines)
    server.send_signal(signum)
    server.wait_for_line(pattern, start=start)


def test_single_process_keeps_the_signal_table() -> None:
    with ServerProcess(APP, "--workers", "1", "--port", "0") as server:
        port = _single_process_port(server)
        for signum, pattern in (
            (signal.SIGHUP, r"SIGHUP ignored: reloading needs a supervisor: run with --workers 2"),
            (signal.SIGTTIN, r"SIGTTIN ignored: adding workers needs a supervisor"),
            (signal.SIGTTOU, r"SIGTTOU ignored: removing workers needs a supervisor"),
            # The hub's greenlet (serving) is among the stacks.
            (signal.SIGUSR1, r"SIGUSR1: tracebacks of every greenlet \(pid \d+\)"),
            # faulthandler's dump of the (only) thread, on stderr.
            (signal.SIGUSR2, r"Current thread 0x[0-9a-f]+ \(most recent call first\)"),
        ):
            _send_and_wait(server, signum, pattern)
            _serves(port)
            assert server.process.poll() is None
        assert "http_server.serve()" in server.output  # the SIGUSR1 dump shows the hub's stack
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_supervisor_keeps_the_signal_table() -> None:
    with ServerProcess(APP, "--workers", "2", "--port", "0") as server:
        port = server.port()
        pids = set(server.worker_pids().values())
        # SIGUSR1/SIGUSR2: the supervisor logs its state and forwards; every worker dumps.
        start = len(server.lines)
        server.send_signal(signal.SIGUSR1)
        state = server.wait_for_line(r"SIGUSR1: supervisor pid (\d+), serving; (.*); forwarding")
        assert int(state.group(1)) == server.pid
        for pid in pids:
            assert f"pid {pid} ready" in state.group(2)
            server.wait_for_line(
                rf"\(pid {pid}\): tracebacks of every greenlet \(SIGUSR1\)", start=start
            )
        _serves(port)
        start = len(server.lines)
        server.send_signal(signal.SIGUSR2)
        server.wait_for_line(r"SIGUSR2: supervisor pid \d+, serving; .*forwarding to 2 workers")
        # One faulthandler dump per worker (both write to the same stderr: their lines may mix).
        dumps = 0
        while dumps < len(pids):
            line = server.wait_for_line(r"Current thread 0x", start=start).string
            dumps += line.count("Current thread 0x")
            start = server.lines.index(line, start) + 1
        _serves(port)
        assert set(server.worker_pids().values()) == pids  # nobody died of it
        _send_and_wait(server, signal.SIGTTIN, r"adding worker 3 \(3 workers\)")
        server.wait_for_line(r"worker 3 ready")
        _send_and_wait(server, signal.SIGTTOU, r"removing worker 3 \(2 workers\)")
        _send_and_wait(server, signal.SIGHUP, r"reload complete: 2 workers")
        _serves(port)
        assert server.process.poll() is None
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def _process_state(pid: int) -> str:
    """The one-letter state of ``pid`` in /proc/PID/stat (R, S, T (stopped), Z...)."""
    with open(f"/proc/{pid}/stat") as stream:
        return stream.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_workers_ignore_sighup_sigttin_and_sigttou(start_method: str) -> None:
    # The server gets its own process group in this test's session: not an orphaned group (its
    # leader's parent is in another group of the same session), so a worker that did not ignore
    # SIGTTIN/SIGTTOU would be stopped by them (an orphaned group has them discarded), and one
    # that did not ignore SIGHUP would die of it.
    with ServerProcess(
        APP, "--workers", "2", "--port", "0", "--start-method", start_method,
        start_new_session=False, preexec_fn=os.setpgrp,
    ) as server:  # fmt: skip
        port = server.port()
        workers = server.worker_pids()
        pids = set(workers.values())
        start = len(server.lines)
        for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU):
            for pid in pids:
                os.kill(pid, signum)
            # Sent before these requests: each worker answering one has met its signal (a
            # stopped worker would leave its connections unanswered until the timeout).
            assert pids_answering(port, pids, timeout=10) == pids, signal.Signals(signum).name
            assert all(_process_state(pid) not in "TtZ" for pid in pids)
        assert server.worker_pids() == workers
        logged = "\n".join(server.lines[start:])
        assert "restarting it" not in logged and "exit" not in logged, logged
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


# -- the single process's exit codes ------------------------------------------------------------


def test_single_process_startup_hook_failure_exits_3_with_its_traceback() -> None:
    with ServerProcess(
        "prefork_apps.startup_fails:app", "--workers", "1", "--port", "0",
        expected_tracebacks=("ConnectionError: database unreachable",),
    ) as server:  # fmt: skip
        assert server.wait() == ExitCode.APP_FAILED == 3
        output = server.output
    assert "a startup hook failed; not serving" in output
    assert output.count("ConnectionError: database unreachable in startup hook") == 1


def test_single_process_held_port_exits_42() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with ServerProcess(APP, "--workers", "1", "--port", str(port)) as server:
            assert server.wait() == ExitCode.ADDRESS_IN_USE == 42
            output = server.output
    # Found before binding: the line names the holder (this test process).
    assert f"cannot listen on 127.0.0.1:{port}: pid {os.getpid()} (" in output, output
    assert "Traceback" not in output


def test_single_process_privileged_port_exits_43() -> None:
    with ServerProcess(
        APP, "--workers", "1", "--port", "1", command_prefix=unprivileged_prefix()
    ) as server:
        assert server.wait() == ExitCode.PERMISSION_DENIED == 43
        output = server.output
    assert "cannot listen on 127.0.0.1:1: Permission denied" in output
    assert "Traceback" not in output


def test_single_process_address_not_available_exits_1() -> None:
    # EADDRNOTAVAIL has no code of its own: 1 (other failure), with the errno's text, no traceback.
    with ServerProcess(APP, "--workers", "1", "--host", "192.0.2.1", "--port", "0") as server:
        assert server.wait() == ExitCode.GENERIC == 1
        output = server.output
    assert "Cannot assign requested address" in output, output
    assert "Traceback" not in output


def test_single_process_out_of_file_descriptors_exits_44() -> None:
    # The application lowers the open-files limit to what the process holds: binding hits EMFILE.
    with ServerProcess("prefork_apps.fd_limited:app", "--workers", "1", "--port", "0") as server:
        assert server.wait() == ExitCode.TOO_MANY_FILES == 44
        output = server.output
    assert "Too many open files" in output
    assert "Traceback" not in output


def test_single_process_second_sigint_exits_130(tmp_path: Path) -> None:
    marker = tmp_path / "held"
    with ServerProcess(
        APP, "--workers", "1", "--port", "0", "--graceful-timeout", "60",
        stopped_exit_codes=(130,),
    ) as server:  # fmt: skip
        port = _single_process_port(server)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(f"GET /hold?marker={marker} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            while not marker.exists():  # the handler runs: the drain has a request to wait for
                time.sleep(0.01)
            _send_and_wait(server, signal.SIGINT, r"stopping: draining for at most 60 s")
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=10) == ExitCode.INTERRUPTED == 130
    assert re.search(r"second SIGINT: stopped at once", server.output)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("MemoryError", ExitCode.HUB_MEMORY_ERROR),
        ("OSError", ExitCode.HUB_OS_ERROR),
        ("RuntimeError", ExitCode.HUB_EXCEPTION),
    ],
)
def test_single_process_exception_escaping_the_hub_exits_with_its_code(
    error: str, code: ExitCode
) -> None:
    # The same codes as a supervised worker (test_prefork_failures), not a generic 1.
    with ServerProcess(
        "prefork_apps.hub_fails:app", "--workers", "1", "--port", "0",
        expected_tracebacks=(f"{error}: raised in the hub of",),
        stopped_exit_codes=(int(code),),
    ) as server:  # fmt: skip
        port = _single_process_port(server)
        status, _, body = http_get(port, f"/fail?with={error}")
        assert status == 200
        assert server.wait(timeout=30) == code
        output = server.output
    assert "the hub failed while serving" in output
    assert f"{error}: raised in the hub of {body}" in output
