"""The pre-fork supervisor when things go wrong: bind errors (EADDRINUSE, EACCES, EMFILE), an
application that cannot be imported or whose startup hook raises, crash loops, startup timeouts.

Each case checks the exit code of the whole server (docs/processes.md has the table) and that
the reason is logged once, clearly. Real processes on loopback, as in test_prefork_serving.py.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import tempfile
from collections.abc import Iterator

import pytest
from prefork_apps.harness import ServerProcess, unprivileged_prefix

from theframework.server.exitcodes import ExitCode

pytestmark = pytest.mark.timeout(120)


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " ERROR " in line]


def test_port_held_without_reuseport_exits_42_after_the_retries() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with ServerProcess(
            "prefork_apps.pid_app:app", "--workers", "2", "--port", str(port)
        ) as server:
            assert server.wait() == ExitCode.ADDRESS_IN_USE == 42
            output = server.output
    errors = _error_lines(output)
    assert len(errors) == 1, output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in errors[0]
    assert "[EADDRINUSE]" in errors[0]
    assert "stop it or choose another --port" in errors[0]
    # Respawned with backoff until the crash limit (5 in 60 s) stopped each slot.
    assert "restarting it in 0.1 s" in output and "restarting it in 0.8 s" in output
    assert output.count("failed 5 times within 60 s") == 2


def test_privileged_port_as_unprivileged_user_exits_43_without_respawn() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app",
        "--workers",
        "2",
        "--port",
        "1",
        command_prefix=unprivileged_prefix(),
    ) as server:
        assert server.wait() == ExitCode.PERMISSION_DENIED == 43
        output = server.output
    assert "restarting it in" not in output
    assert output.count("not restarting it") == 2
    errors = _error_lines(output)
    assert len(errors) == 1, output
    assert "cannot listen on 127.0.0.1:1: Permission denied [EACCES]" in errors[0]
    assert "CAP_NET_BIND_SERVICE" in errors[0]


@pytest.fixture
def unwritable_directory() -> Iterator[str]:
    """A directory only its owner (root) could write, once it had the rights to: read-only."""
    directory = tempfile.mkdtemp(prefix="tf-ro-")
    os.chmod(directory, 0o555)
    yield directory
    os.chmod(directory, 0o755)
    shutil.rmtree(directory)


def test_unix_socket_in_unwritable_directory_exits_43(unwritable_directory: str) -> None:
    path = f"{unwritable_directory}/app.sock"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--uds", path,
        command_prefix=unprivileged_prefix(),
    ) as server:  # fmt: skip
        assert server.wait() == 43
        output = server.output
    errors = _error_lines(output)
    assert len(errors) == 1, output
    assert f"cannot listen on unix:{path}: Permission denied [EACCES]" in errors[0]
    assert not os.path.exists(path)


def test_workers_out_of_file_descriptors_exit_44_lowering_the_target() -> None:
    # The application lowers each worker's RLIMIT_NOFILE to what it holds: binding hits EMFILE.
    with ServerProcess("prefork_apps.fd_limited:app", "--workers", "2", "--port", "0") as server:
        assert server.wait() == ExitCode.TOO_MANY_FILES == 44
        output = server.output
    assert "lowering the target worker count to 1" in output
    assert "lowering the target worker count to 0" in output
    assert "restarting it in" not in output
    errors = _error_lines(output)
    assert len(errors) == 1 and "[EMFILE]" in errors[0] and "ulimit -n" in errors[0], output


def _low_file_limit() -> None:
    # Enough for Python to start, too few for the supervisor to open its workers' channels.
    resource.setrlimit(resource.RLIMIT_NOFILE, (8, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_supervisor_out_of_file_descriptors_exits_44() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", preexec_fn=_low_file_limit
    ) as server:
        assert server.wait() == 44
        output = server.output
    assert "lowering the target worker count to 0" in output
    assert "Traceback" not in output
    assert len(_error_lines(output)) == 1, output


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_application_import_failure_exits_3_with_one_traceback(start_method: str) -> None:
    with ServerProcess(
        "prefork_apps.broken_import:app", "--workers", "2", "--port", "0",
        "--start-method", start_method,
    ) as server:  # fmt: skip
        assert server.wait() == ExitCode.APP_FAILED == 3
        output = server.output
    assert output.count("Traceback (most recent call last)") == 1, output
    assert "RuntimeError: broken at import in a worker" in output
    assert "stopping the server" in output
    assert "restarting it in" not in output


def test_missing_attribute_exits_2() -> None:
    with ServerProcess("prefork_apps.pid_app:no_such_app", "--workers", "2") as server:
        assert server.wait() == 2
        assert "has no attribute 'no_such_app'" in server.output


def test_startup_hook_failure_exits_3() -> None:
    with ServerProcess("prefork_apps.startup_fails:app", "--workers", "2", "--port", "0") as server:
        assert server.wait() == 3
        output = server.output
    assert output.count("Traceback (most recent call last)") == 1, output
    assert "cannot run the startup hooks: ConnectionError('database unreachable" in output
    assert "restarting it in" not in output


def test_crash_loop_stops_the_slots_and_exits_non_zero() -> None:
    with ServerProcess(
        "prefork_apps.crash_at_start:app", "--workers", "2", "--port", "0"
    ) as server:
        assert server.wait() == 1
        output = server.output
    assert output.count("failed 5 times within 60 s (last: exit 9); not restarting it") == 2
    errors = _error_lines(output)
    assert len(errors) == 1 and "no worker can run" in errors[0], output
    delays = re.findall(r"worker 1: exit 9; restarting it in ([\d.]+) s", output)
    assert delays == ["0.1", "0.2", "0.4", "0.8"]


def test_worker_not_ready_within_the_startup_timeout_is_killed() -> None:
    with ServerProcess(
        "prefork_apps.slow_import:app", "--workers", "2", "--port", "0",
        "--startup-timeout", "0.3",
    ) as server:  # fmt: skip
        server.wait_for_line(r"worker \d not ready within 0.3 s \(--startup-timeout\); killing it")
        server.wait_for_line(r"killed by SIGKILL \(startup timeout\); restarting it in 0.1 s")
        server.send_signal(signal.SIGTERM)  # during the backoff: handled at once
        assert server.wait(timeout=15) == 0
