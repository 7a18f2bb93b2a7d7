"""docs/deployment.md's configurations, started as shown: the systemd unit pair (the service's
ExecStart, Environment= and WatchdogSec= under systemd-socket-activate as the socket unit, the test
as the notify socket, ExecReload and KillMode=mixed's SIGTERM carried out as systemd does), the
Kubernetes Deployment's command with its probe and grace period, and a container whose seccomp
profile blocks io_uring as Docker's default does. The page must show each file unchanged."""

from __future__ import annotations

import configparser
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get, sanitizer_variables
from test_systemd_notify import NotifySocket

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "docs" / "deployment"
DEPLOYMENT = (ROOT / "docs" / "deployment.md").read_text()


@pytest.mark.parametrize("name", ["theframework.socket", "theframework.service", "kubernetes.yaml"])
def test_the_page_shows_each_file_unchanged(name: str) -> None:
    text = (CONFIGS / name).read_text()
    assert f"`docs/deployment/{name}`:\n\n```" in DEPLOYMENT
    assert "\n" + text in DEPLOYMENT


def _unit(name: str) -> configparser.RawConfigParser:
    """A unit file: sections of KEY=VALUE, repeated keys (Environment=) kept as lines."""
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(
        "\n".join(
            f"{line}\n" if not line.startswith("Environment=") else line.replace("=", f"{i}=", 1)
            for i, line in enumerate((CONFIGS / name).read_text().splitlines())
        )
    )
    return parser


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_systemd_unit_pair_as_systemd_runs_it(notify: NotifySocket) -> None:
    service = _unit("theframework.service")["Service"]
    sockets = _unit("theframework.socket")["Socket"]
    assert service["Type"] == "notify" and service["KillMode"] == "mixed"
    # ExecStart as written: only the interpreter and --chdir name this machine's paths.
    argv = shlex.split(service["ExecStart"])
    assert argv[0].endswith("/python") and argv[1:3] == ["-m", "theframework"]
    argv[argv.index("--chdir") + 1] = str(ROOT)
    graceful = float(argv[argv.index("--graceful-timeout") + 1])
    assert graceful + 5 < float(service["TimeoutStopSec"])  # the page's arithmetic holds
    environment = dict(
        value.split("=", 1) for key, value in service.items() if key.startswith("Environment")
    )
    assert float(service["WatchdogSec"]) > float(environment["THEFRAMEWORK_WORKER_TIMEOUT"])
    # The socket unit's address on a free port; systemd's variables for the service.
    host, _port = sockets["ListenStream"].rsplit(":", 1)
    port = _free_port()
    environment |= {
        "NOTIFY_SOCKET": notify.path,
        "WATCHDOG_USEC": str(int(float(service["WatchdogSec"]) * 1_000_000)),
        "PYTHONUNBUFFERED": "1",
    }
    prefix = [
        "systemd-socket-activate", "-l", f"{host}:{port}",
        f"--fdname={sockets['FileDescriptorName']}",  # (Backlog=: not a flag of this tool)
        *(argument for name in [*environment, *sanitizer_variables()] for argument in ("-E", name)),
    ]  # fmt: skip
    with ServerProcess(
        argv[3], *argv[4:], environment=environment, command_prefix=prefix
    ) as server:  # fmt: skip
        server.wait_for_line(rf"Listening on {re.escape(host)}:{port} as 3")
        status, _, body = http_get(port, "/hello")  # the first connection starts the service
        assert (status, body) == (200, "hello world")
        ready = notify.wait_for("READY")
        main_pid = int(ready["MAINPID"])
        assert main_pid == server.pid
        assert ready["STATUS"] == f"serving on http://{host}:{port}: 2 of 2 workers ready"
        assert notify.wait_for("WATCHDOG") == {"WATCHDOG": "1"}
        server.wait_for_line(r"socket activation: fd 3 \(name web\)")
        # ExecReload, with $MAINPID as systemd fills it in.
        reload = shlex.split(service["ExecReload"].replace("$MAINPID", str(main_pid)))
        subprocess.run(reload, check=True)
        assert "MONOTONIC_USEC" in notify.wait_for("RELOADING")
        assert notify.wait_for("READY")["READY"] == "1"
        assert http_get(port, "/hello")[0] == 200
        # systemctl stop with KillMode=mixed: SIGTERM to the main process only.
        os.kill(main_pid, signal.SIGTERM)
        assert notify.wait_for("STOPPING")["STOPPING"] == "1"
        assert server.wait(timeout=float(service["TimeoutStopSec"])) == 0


def _kubernetes() -> str:
    return (CONFIGS / "kubernetes.yaml").read_text()


def _yaml_number(key: str) -> float:
    match = re.search(rf"^\s*{key}: (\d+)$", _kubernetes(), re.MULTILINE)
    assert match, key
    return float(match.group(1))


def test_kubernetes_deployment_command_probe_and_grace_period() -> None:
    text = _kubernetes()
    command = json.loads(re.search(r"^\s*command: (\[\"python\".*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    pre_stop = json.loads(re.search(r"preStop:\s+exec:\s+command: (\[.*\])", text).group(1))  # type: ignore[union-attr]
    probe_path = re.search(r"readinessProbe:\s+httpGet:\s+path: (\S+)", text).group(1)  # type: ignore[union-attr]
    graceful = float(command[command.index("--graceful-timeout") + 1])
    # The page's arithmetic: the grace period covers preStop, the drain and the hooks' 5 s.
    assert pre_stop[0] == "sleep"
    assert _yaml_number("terminationGracePeriodSeconds") >= float(pre_stop[1]) + graceful + 5
    # The container's command (in the image, the application is on the path: here, ROOT).
    port = _free_port()
    arguments = command[3:]
    arguments[arguments.index("--port") + 1] = str(port)
    with ServerProcess(
        *arguments, "--app-dir", str(ROOT), environment={"PYTHONUNBUFFERED": "1"}
    ) as server:  # fmt: skip
        assert server.wait_ready() == f"http://0.0.0.0:{port}"
        assert http_get(port, probe_path)[0] == 200  # what the kubelet's probe gets
        # The kubelet: preStop (a delay, left out here), then SIGTERM; the server must be gone
        # within what is left of the grace period.
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        grace = _yaml_number("terminationGracePeriodSeconds") - float(pre_stop[1])
        assert server.wait(timeout=grace) == 0
        assert time.monotonic() - started < grace


# -- Docker's default seccomp profile ------------------------------------------------------------

# seccomp-bpf: answer io_uring_setup, io_uring_enter and io_uring_register (425-427, the same
# numbers on every architecture) with EPERM, as Docker's default profile does; allow the rest.
_BPF_LD_W_ABS, _BPF_JGE, _BPF_JGT, _BPF_RET = 0x20, 0x35, 0x25, 0x06
_SECCOMP_RET_ERRNO, _SECCOMP_RET_ALLOW, _EPERM = 0x00050000, 0x7FFF0000, 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _instruction(code: int, k: int, jump_true: int = 0, jump_false: int = 0) -> bytes:
    return struct.pack("HBBI", code, jump_true, jump_false, k)


class _Program(ctypes.Structure):
    _fields_ = [("length", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _block_io_uring() -> None:
    """In the child before exec: installs the filter (inherited by the server it execs)."""
    code = b"".join(
        [
            _instruction(_BPF_LD_W_ABS, 0),  # the system call number
            _instruction(_BPF_JGE, 425, 0, 2),
            _instruction(_BPF_JGT, 427, 1, 0),
            _instruction(_BPF_RET, _SECCOMP_RET_ERRNO | _EPERM),
            _instruction(_BPF_RET, _SECCOMP_RET_ALLOW),
        ]
    )
    buffer = ctypes.create_string_buffer(code)
    program = _Program(len(code) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_SECCOMP")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_under_a_seccomp_profile_without_io_uring_auto_serves_on_epoll(workers: str) -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", workers, "--port", "0",
        preexec_fn=_block_io_uring,
    ) as server:  # fmt: skip
        line = server.wait_for_line(
            r"listening on http://127\.0\.0\.1:(\d+) \(pid \d+, backend epoll; io_uring "
            r"unavailable: io_uring_setup failed: Operation not permitted\)"
        )
        assert http_get(int(line.group(1)))[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_under_a_seccomp_profile_without_io_uring_forcing_it_exits_43() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "1", "--port", "0", "--backend", "io_uring",
        preexec_fn=_block_io_uring,
    ) as server:  # fmt: skip
        assert server.wait() == 43
    assert "io_uring_setup failed: Operation not permitted" in server.output
    assert "Traceback" not in server.output


def test_the_interpreter_runs_under_the_filter() -> None:
    # The control: the filter blocks io_uring only (Python and the epoll backend run).
    result = subprocess.run(
        [sys.executable, "-c", "print('ok')"], preexec_fn=_block_io_uring, capture_output=True
    )
    assert result.stdout == b"ok\n"
