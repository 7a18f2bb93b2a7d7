"""The pre-fork supervisor serving: start methods, readiness, graceful shutdown, respawn,
backpressure, load spread, and the operational options (pid file, systemd, env files, titles).

Every test runs a real ``python -m theframework ... --workers N`` on loopback and waits for its
log lines (``ready: ADDRESS`` from the supervisor); run with ``-W error::DeprecationWarning``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_exchange, http_get, pids_answering

from theframework import serve
from theframework.process.supervisor import SupervisorError

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_start_methods_serve_with_two_workers(start_method: str) -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0",
        "--start-method", start_method,
    ) as server:  # fmt: skip
        port = server.port()
        assert f"start method {start_method}: requested" in server.output
        workers = server.worker_pids()
        assert sorted(workers) == [1, 2]
        assert pids_answering(port, set(workers.values())) == set(workers.values())
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert "stopped (exit code 0)" in server.output


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_process_group_sigterm_reports_the_workers_real_exit(start_method: str) -> None:
    # systemd's default KillMode signals every process of the unit, the fork server included:
    # under forkserver it may end before reporting its children's status (multiprocessing then
    # says 255); the workers' own announcement gives the real one.
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0",
        "--start-method", start_method, "--log-level", "debug",
    ) as server:  # fmt: skip
        server.wait_ready()
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait() == 0
        output = server.output
    assert "ended during shutdown" not in output and "exit 255" not in output, output
    assert len(re.findall(r"worker [12] stopped$", output, re.MULTILINE)) == 2, output
    assert "stopped (exit code 0)" in output


def test_auto_start_method_forks_a_single_threaded_supervisor() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "2", "--port", "0") as server:
        server.wait_ready()
        assert "start method fork: the supervisor runs a single thread" in server.output
        server.send_signal(signal.SIGINT)
        assert server.wait() == 0


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_unpicklable_app_object_fails_fast_under_spawn(start_method: str) -> None:
    started = time.monotonic()
    with pytest.raises(SupervisorError, match="must be an import string") as raised:
        serve(lambda request, response: None, workers=2, port=0, start_method=start_method)
    assert raised.value.exit_code == 2
    assert "lambda" in str(raised.value)
    assert time.monotonic() - started < 5


def test_graceful_shutdown_finishes_the_request_in_flight(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "2", "--port", "0") as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            # Keep-alive request: the Connection: close in the answer comes from the drain.
            connection.sendall(f"GET /slow?marker={marker} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            deadline = time.monotonic() + 30
            while not marker.exists():  # the handler creates it, then sleeps 2 s
                assert time.monotonic() < deadline, server.output
                time.sleep(0.01)
            server.send_signal(signal.SIGTERM)
            data = b""
            while chunk := connection.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), data
        assert b"\r\nConnection: close" in head
        assert body == f"slow {marker.read_text()}".encode()
        assert server.wait() == 0


def test_graceful_timeout_cuts_a_longer_request_and_still_exits_0(tmp_path: Path) -> None:
    # --graceful-timeout 1 against a 2 s request: the connection is closed without an answer
    # (a server ignoring the timeout would answer it after 2 s) and the server exits 0.
    marker = tmp_path / "started"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--graceful-timeout", "1"
    ) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(f"GET /slow?marker={marker} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            deadline = time.monotonic() + 30
            while not marker.exists():  # the handler creates it, then sleeps 2 s
                assert time.monotonic() < deadline, server.output
                time.sleep(0.01)
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            data = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := connection.recv(65536):
                    data += chunk
            cut = time.monotonic() - signalled
        assert data == b"", data
        # At the timeout: not at once, and not by the supervisor's SIGKILL (graceful + 5 s).
        assert 0.8 <= cut <= 4.0, cut
        assert server.wait() == 0


def test_supervisor_kills_a_worker_that_outlives_its_drain_at_graceful_plus_5_s() -> None:
    # A handler blocks the worker's hub for an hour (a plain time.sleep): the worker takes the
    # SIGTERM but never gets to end its drain; the supervisor kills it at graceful (1 s) + 5 s
    # (README's signal table; SHUTDOWN_HOOKS_GRACE), not before, and exits.
    with ServerProcess(
        "apps.bound:app", "--workers", "2", "--port", "0", "--graceful-timeout", "1"
    ) as server:
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(b"GET /block?seconds=3600 HTTP/1.1\r\nHost: t\r\n\r\n")
            server.wait_for_line("hub blocked")
            signalled = time.monotonic()
            server.send_signal(signal.SIGTERM)
            killed = server.wait_for_line(
                r"worker (\d) did not stop within the graceful timeout: killing it", timeout=30
            )
            waited = time.monotonic() - signalled
            assert server.wait(timeout=15) == 0
        assert 5.5 <= waited <= 15.0, waited
        worker = killed.group(1)
        assert re.search(
            rf"worker {worker} ended during shutdown: killed by SIGKILL", server.output
        )


def test_shutdown_of_four_idle_workers_completes() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "4", "--port", "0") as server:
        server.wait_ready()
        assert len(server.worker_pids()) == 4
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0


def test_second_sigint_stops_at_once(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--graceful-timeout", "60",
        stopped_exit_codes=(130,),
    ) as server:  # fmt: skip
        port = server.port()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
            connection.sendall(f"GET /slow?marker={marker} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            while not marker.exists():
                time.sleep(0.01)
            server.send_signal(signal.SIGINT)
            server.wait_for_line("SIGINT received")
            server.send_signal(signal.SIGINT)
            assert server.wait(timeout=10) == 130
            assert "second SIGINT: killing the workers now" in server.output


def test_connect_right_after_ready_is_never_refused() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "3", "--port", "0") as server:
        port = server.port()
        for _ in range(30):
            status, _, _ = http_get(port)
            assert status == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_backpressure_fifty_clients_over_max_connections_all_served() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--max-connections", "5"
    ) as server:
        port = server.port()
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = list(pool.map(lambda _: http_get(port, "/nap")[0], range(50)))
        assert results == [200] * 50
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_killed_worker_is_respawned_in_its_slot() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "2", "--port", "0") as server:
        port = server.port()
        old_pid = server.worker_pids()[1]
        mark = len(server.lines)
        os.kill(old_pid, signal.SIGKILL)
        match = server.wait_for_line(r"worker 1 ready \(pid (\d+)\)", start=mark)
        new_pid = int(match.group(1))
        assert new_pid != old_pid
        assert "worker 1: killed by SIGKILL; restarting it in 0.1 s" in server.output
        assert new_pid in pids_answering(port, {new_pid})
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_four_workers_under_a_thousand_concurrent_clients() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "4", "--port", "0") as server:
        port = server.port()
        workers = set(server.worker_pids().values())
        barrier = threading.Barrier(1000, timeout=60)

        def client(_: int) -> int:
            barrier.wait()
            status, _, body = http_get(port, timeout=60)
            assert status == 200
            return int(body)

        with concurrent.futures.ThreadPoolExecutor(1000) as pool:
            served_by = list(pool.map(client, range(1000)))
        assert len(served_by) == 1000
        assert set(served_by) == workers
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_unix_socket_shared_by_the_workers(start_method: str, unix_socket_path: str) -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--uds", unix_socket_path,
        "--start-method", start_method,
    ) as server:  # fmt: skip
        assert server.wait_ready() == f"unix:{unix_socket_path}"
        workers = set(server.worker_pids().values())
        seen: set[int] = set()
        for _ in range(200):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(30)
                connection.connect(unix_socket_path)
                status, _, body = http_exchange(connection, "/")
            assert status == 200
            seen.add(int(body))
            if seen == workers:
                break
        assert seen <= workers and seen
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert not os.path.exists(unix_socket_path)


def test_pid_file_and_systemd_notification(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    name = f"tf-notify-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind("\0" + name)
        notify.settimeout(30)
        with ServerProcess(
            "prefork_apps.pid_app:app", "--workers", "2", "--port", "0",
            "--pid-file", str(pid_file),
            environment={"NOTIFY_SOCKET": "@" + name},
        ) as server:  # fmt: skip
            server.wait_ready()
            message = notify.recv(4096).decode()
            assert "READY=1" in message.splitlines()
            assert f"MAINPID={server.pid}" in message.splitlines()
            assert pid_file.read_text() == f"{server.pid}\n"
            server.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in notify.recv(4096).decode()
            assert server.wait() == 0
            assert not pid_file.exists()


def test_env_files_are_loaded_in_the_workers(tmp_path: Path) -> None:
    first = tmp_path / "first.env"
    first.write_text("# comment\nTF_FROM_FILE=first\nTF_OVERRIDDEN=first\nTF_KEPT=file\n")
    second = tmp_path / "second.env"
    second.write_text("export TF_OVERRIDDEN='second'\n")
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0",
        "--env-file", str(first), "--env-file", str(second),
        environment={"TF_KEPT": "environment"},
    ) as server:  # fmt: skip
        port = server.port()
        assert http_get(port, "/env?name=TF_FROM_FILE")[2] == "first"
        assert http_get(port, "/env?name=TF_OVERRIDDEN")[2] == "second"
        assert http_get(port, "/env?name=TF_KEPT")[2] == "environment"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_missing_env_file_is_a_usage_error(tmp_path: Path) -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--env-file", str(tmp_path / "missing")
    ) as server:
        assert server.wait() == 2
        assert "cannot read the environment file" in server.output


def test_process_titles_and_worker_ids_in_the_log() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--proc-name", "tftitle",
        environment={"THEFRAMEWORK_LOG_LEVEL": "debug"},
    ) as server:  # fmt: skip
        server.wait_ready()
        titles = {
            pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").strip().decode()
            for pid in [server.pid, *server.worker_pids().values()]
        }
        assert titles[server.pid].startswith("tftitle master")
        for worker_id, pid in server.worker_pids().items():
            assert titles[pid].startswith(f"tftitle worker-{worker_id}")
        assert "[worker-1] theframework: listening on" in server.output
        assert "[worker-2] theframework: listening on" in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_options_from_the_environment() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app",
        "--port",
        "0",
        environment={"THEFRAMEWORK_WORKERS": "3", "THEFRAMEWORK_START_METHOD": "spawn"},
    ) as server:
        server.wait_ready()
        assert "starting 3 workers" in server.output
        assert "start method spawn: requested" in server.output
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_patch_all_runs_in_each_worker() -> None:
    with ServerProcess(
        "prefork_apps.pid_app:app", "--workers", "2", "--port", "0", "--patch-all"
    ) as server:
        port = server.port()
        assert {http_get(port, "/patched")[2] for _ in range(10)} == {"yes"}
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_without_patch_all_nothing_is_patched() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "2", "--port", "0") as server:
        assert http_get(server.port(), "/patched")[2] == "no"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_workers_stop_when_the_supervisor_is_killed() -> None:
    with ServerProcess("prefork_apps.pid_app:app", "--workers", "2", "--port", "0") as server:
        server.wait_ready()
        workers = list(server.worker_pids().values())
        server.send_signal(signal.SIGKILL)
        assert server.wait() == -signal.SIGKILL
        for pid in workers:  # each drains on the SIGTERM the kernel sent it, then exits
            deadline = time.monotonic() + 30
            while Path(f"/proc/{pid}").exists() and _state(pid) != "Z":
                assert time.monotonic() < deadline, f"worker {pid} still runs"
                time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"
