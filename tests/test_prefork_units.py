"""The pure parts of the pre-fork supervisor: ProcessConfig and its environment variables and
command-line options, IPC messages, env-file parsing, start-method choice, systemd notify."""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import pytest

from theframework.cli import build_parser, process_config_from_arguments
from theframework.config import ProcessConfig, config_from_env
from theframework.process import ipc
from theframework.process.supervisor import SupervisorError, choose_start_method
from theframework.process.systemd import notify_systemd
from theframework.server.envfile import parse_env_file
from theframework.server.exitcodes import exit_code_for_os_error


def test_process_config_defaults_and_validation() -> None:
    config = ProcessConfig()
    assert (config.workers, config.start_method, config.startup_timeout) == (1, "auto", 60.0)
    assert (config.proc_name, config.env_files, config.pid_file, config.patch_all) == (
        "theframework",
        (),
        None,
        False,
    )
    assert not config.supervised
    assert ProcessConfig(workers=0).supervised
    for options, message in [
        ({"workers": -1}, "workers must be >= 0"),
        ({"start_method": "thread"}, "start_method must be one of auto, fork, spawn"),
        ({"startup_timeout": 0}, "startup_timeout must be finite and > 0"),
        ({"proc_name": ""}, "proc_name must be a non-empty string"),
        ({"env_files": ["a"]}, "env_files must be a tuple of paths"),
        ({"pid_file": ""}, "pid_file must be a non-empty path"),
        ({"patch_all": 1}, "patch_all must be True or False"),
    ]:
        with pytest.raises(ValueError, match=message):
            ProcessConfig(**options)


def test_process_config_from_environment_and_command_line() -> None:
    environ = {
        "THEFRAMEWORK_WORKERS": "4",
        "THEFRAMEWORK_START_METHOD": "Spawn",
        "THEFRAMEWORK_STARTUP_TIMEOUT": "2.5",
        "THEFRAMEWORK_PROC_NAME": "shop",
        "THEFRAMEWORK_ENV_FILES": "a.env:b.env",
        "THEFRAMEWORK_PID_FILE": "/run/shop.pid",
        "THEFRAMEWORK_PATCH_ALL": "yes",
    }
    assert config_from_env(ProcessConfig(), environ) == ProcessConfig(
        workers=4,
        start_method="spawn",
        startup_timeout=2.5,
        proc_name="shop",
        env_files=("a.env", "b.env"),
        pid_file="/run/shop.pid",
        patch_all=True,
    )
    with pytest.raises(ValueError, match="THEFRAMEWORK_PATCH_ALL='maybe' is not a boolean"):
        config_from_env(ProcessConfig(), {"THEFRAMEWORK_PATCH_ALL": "maybe"})
    arguments = build_parser().parse_args(
        ["m:app", "--workers", "2", "--env-file", "x.env", "--env-file", "y.env", "--patch-all"]
    )
    config = process_config_from_arguments(arguments, {"THEFRAMEWORK_WORKERS": "8"})
    assert (config.workers, config.env_files, config.patch_all) == (2, ("x.env", "y.env"), True)
    unset = process_config_from_arguments(build_parser().parse_args(["m:app"]), {})
    assert unset == ProcessConfig()


def test_ipc_messages_round_trip_over_a_seqpacket_pair() -> None:
    supervisor_end, worker_end = ipc.channel_pair()
    with supervisor_end, worker_end:
        supervisor_end.setblocking(False)
        assert ipc.receive(supervisor_end) == []
        ready = ipc.Ready(1, 123, "http://127.0.0.1:8000")
        failure = ipc.Failure(2, 124, 42, "cannot listen", "Traceback ...")
        ipc.send(worker_end, ready)
        ipc.send(worker_end, failure)
        worker_end.send(b"not json")  # dropped
        assert ipc.receive(supervisor_end) == [ready, failure]
        worker_end.close()
        assert ipc.receive(supervisor_end) is None


def test_ipc_rejects_foreign_data_and_cuts_long_tracebacks() -> None:
    for data in (b"{}", b'{"kind": "nope"}', b'{"kind": "ready"}', b"\xff"):
        with pytest.raises(ValueError, match="not a supervisor message"):
            ipc.decode(data)
    long = ipc.Failure(1, 1, 3, "x", "line\n" * 50000)
    decoded = ipc.decode(ipc.encode(long))
    assert isinstance(decoded, ipc.Failure)
    assert decoded.traceback.startswith("...\n") and len(ipc.encode(long)) <= ipc.MAX_MESSAGE_SIZE


def test_exit_codes_for_os_errors() -> None:
    import errno

    assert exit_code_for_os_error(OSError(errno.EADDRINUSE, "x")) == 42
    assert exit_code_for_os_error(OSError(errno.EACCES, "x")) == 43
    assert exit_code_for_os_error(OSError(errno.EPERM, "x")) == 43
    assert exit_code_for_os_error(OSError(errno.EMFILE, "x")) == 44
    assert exit_code_for_os_error(OSError(errno.ENFILE, "x")) == 44
    assert exit_code_for_os_error(OSError(errno.EADDRNOTAVAIL, "x")) == 1


def test_env_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("# c\n\nA=1\nexport B = 'two words'\nC=\"x=y\"\nD=\n")
    assert parse_env_file(str(path)) == {"A": "1", "B": "two words", "C": "x=y", "D": ""}
    with pytest.raises(OSError):
        parse_env_file(str(tmp_path / "missing.env"))


def test_start_method_choice() -> None:
    assert choose_start_method("auto", "m:app") == (
        "fork",
        "the supervisor runs a single thread",
    )
    assert choose_start_method("spawn", "m:app") == ("spawn", "requested")
    with pytest.raises(SupervisorError, match="must be an import string") as raised:
        choose_start_method("forkserver", lambda request, response: None)
    assert raised.value.exit_code == 2
    assert choose_start_method("spawn", dataclasses.replace)[0] == "spawn"  # importable object


def test_notify_systemd_path_and_abstract_sockets(tmp_path: Path) -> None:
    assert notify_systemd("READY=1", {}) is False
    path = str(tmp_path / "notify")
    abstract = f"tf-unit-{os.getpid()}-{time.monotonic_ns()}"
    for address, variable in ((path, path), ("\0" + abstract, "@" + abstract)):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
            receiver.bind(address)
            assert notify_systemd("READY=1", {"NOTIFY_SOCKET": variable}) is True
            assert receiver.recv(100) == b"READY=1"


# -- who listens on an address (server/sockets.py) -----------------------------------------------

_TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 222 1
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 333 1
"""
_TCP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue
   0: 00000000000000000000000000000000:1F91 00000000000000000000000000000000:0000 0A 00000000:0\
0000000 00:00000000 00000000     0        0 444 1
   1: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:0\
0000000 00:00000000 00000000     0        0 555 1
"""


def test_proc_net_tcp_tables_parse_to_listening_sockets_only() -> None:
    from ipaddress import ip_address

    from theframework.server.sockets import ListeningSocket, parse_proc_net_tcp

    assert parse_proc_net_tcp(_TCP_TABLE) == [
        ListeningSocket(ip_address("127.0.0.1"), 8080, 111),
        ListeningSocket(ip_address("0.0.0.0"), 80, 222),
    ]  # the established connection (state 01) is left out
    assert parse_proc_net_tcp(_TCP6_TABLE) == [
        ListeningSocket(ip_address("::"), 8081, 444),
        ListeningSocket(ip_address("::1"), 8082, 555),
    ]


def test_parsed_table_matches_a_real_listener() -> None:
    from ipaddress import ip_address

    from theframework.server.sockets import parse_proc_net_tcp

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        inode = os.fstat(listener.fileno()).st_ino
        with open("/proc/net/tcp") as table:
            found = [held for held in parse_proc_net_tcp(table.read()) if held.inode == inode]
    assert [(held.address, held.port) for held in found] == [(ip_address("127.0.0.1"), port)]


@pytest.mark.parametrize(
    ("wanted", "held", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.1", "0.0.0.0", True),
        ("0.0.0.0", "127.0.0.2", True),
        ("127.0.0.1", "127.0.0.2", False),
        ("::1", "::", True),
        ("::1", "::2", False),
        ("127.0.0.1", "::", True),  # dual-stack wildcard
        ("::", "10.0.0.1", True),
        ("0.0.0.0", "::1", False),
        ("::ffff:127.0.0.1", "127.0.0.1", True),  # IPv4-mapped
    ],
)
def test_address_conflicts(wanted: str, held: str, expected: bool) -> None:
    from ipaddress import ip_address

    from theframework.server.sockets import conflicts

    assert conflicts(ip_address(wanted), ip_address(held)) is expected


def test_free_address_and_port_zero_pass_the_check() -> None:
    from theframework.config import ServerConfig
    from theframework.server.sockets import check_tcp_address_free

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # bound, not listening: not a holder
        port = probe.getsockname()[1]
        check_tcp_address_free(ServerConfig(host="127.0.0.1", port=port))
    check_tcp_address_free(ServerConfig(host="127.0.0.1", port=0))


def test_a_free_address_is_known_without_listing_the_hosts_sockets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc/net/tcp lists every socket of the host (seconds to read beside 100,000 connections):
    # a free address is recognised by a probe bind instead, a taken one still named by the list.
    from theframework.config import ServerConfig
    from theframework.server import sockets

    def fail() -> list[sockets.ListeningSocket]:
        raise AssertionError("the host's socket table was read")

    monkeypatch.setattr(sockets, "_listening_sockets", fail)
    with socket.socket() as connected_side:
        connected_side.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        connected_side.bind(("127.0.0.1", 0))  # bound with SO_REUSEADDR, as a client may be
        port = connected_side.getsockname()[1]
        sockets.check_tcp_address_free(ServerConfig(host="127.0.0.1", port=port))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(AssertionError, match="socket table was read"):
            sockets.check_tcp_address_free(
                ServerConfig(host="127.0.0.1", port=holder.getsockname()[1])
            )


# -- start-method preflight (process/preflight.py) -----------------------------------------------


def test_temp_dir_problem_names_the_first_variable_tempfile_would_use(tmp_path: Path) -> None:
    from theframework.process.preflight import temp_dir_problem

    missing = str(tmp_path / "missing")
    assert temp_dir_problem({}) is None
    assert temp_dir_problem({"TMPDIR": str(tmp_path)}) is None
    assert list(tmp_path.iterdir()) == []  # the probe directory is removed
    problem = temp_dir_problem({"TMPDIR": missing, "TEMP": str(tmp_path)})
    assert problem is not None
    assert problem.startswith(f"TMPDIR={missing} not writable (No such file or directory): ")
    assert problem.endswith("set TMPDIR or use --start-method fork")
    problem = temp_dir_problem({"TMPDIR": "", "TEMP": missing})
    assert problem is not None and problem.startswith(f"TEMP={missing} not writable")


def test_fork_needs_no_preflight() -> None:
    from theframework.process.preflight import start_method_problem

    assert start_method_problem("fork", None) is None
