"""systemd's notify protocol in both modes, with the test as the notify socket: an AF_UNIX
datagram socket it binds and names in $NOTIFY_SOCKET, as systemd does for a Type=notify
service. READY=1 once serving, RELOADING=1 (with MONOTONIC_USEC) / READY=1 around a reload,
STATUS= with the worker count, STOPPING=1 at shutdown, WATCHDOG=1 when $WATCHDOG_USEC asks for it
(and not while a worker's heartbeat is stale). Real server processes on loopback."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get

pytestmark = pytest.mark.timeout(120)

APP = "prefork_apps.pid_app:app"


class NotifySocket:
    """What systemd listens on: every datagram is one notification (KEY=VALUE lines)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.received: list[dict[str, str]] = []

    def next(self, timeout: float = 30.0) -> dict[str, str]:
        """The next notification (AssertionError when none arrives within ``timeout``)."""
        self.socket.settimeout(timeout)
        try:
            data = self.socket.recv(4096)
        except TimeoutError:
            raise AssertionError(f"no notification within {timeout} s") from None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines())
        self.received.append(fields)
        return fields

    def wait_for(self, key: str, timeout: float = 30.0) -> dict[str, str]:
        """The next notification carrying ``key`` (the ones before it are kept in received)."""
        deadline = time.monotonic() + timeout
        while True:
            fields = self.next(max(0.01, deadline - time.monotonic()))
            if key in fields:
                return fields

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    listener.close()


def test_single_process_notifies_ready_watchdog_and_stopping(notify: NotifySocket) -> None:
    environment = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"}
    with ServerProcess(
        APP, "--workers", "1", "--port", "0", environment=environment
    ) as server:  # fmt: skip
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1"
        assert ready["MAINPID"] == str(server.pid)
        # WATCHDOG=1 from the hub, every 0.1 s (half WATCHDOG_USEC); and the process serves.
        pings = [notify.wait_for("WATCHDOG", timeout=5) for _ in range(3)]
        assert all(ping == {"WATCHDOG": "1"} for ping in pings)
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        assert ready["STATUS"] == f"serving on http://127.0.0.1:{port} (1 process, no supervisor)"
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING")
        assert stopping["STOPPING"] == "1"
        assert server.wait() == 0


def test_single_process_watchdog_stops_while_a_handler_blocks_the_hub(
    notify: NotifySocket,
) -> None:
    # The pings come from a hub greenlet: a handler that never yields stops them (a thread would
    # keep pinging a process that serves nothing), so systemd restarts it.
    environment = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"}
    with ServerProcess(
        "ops_apps.ops_app:app", "--workers", "1", "--port", "0", environment=environment
    ) as server:  # fmt: skip
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        assert notify.wait_for("WATCHDOG", timeout=5) == {"WATCHDOG": "1"}
        with socket.create_connection(("127.0.0.1", port), timeout=30) as stuck:
            stuck.sendall(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
            # Pings every 0.1 s until the handler runs, then none: a gap of 10 intervals.
            for _ in range(100):
                try:
                    assert notify.next(timeout=1.0) == {"WATCHDOG": "1"}
                except AssertionError as error:
                    assert "no notification within" in str(error)
                    break
            else:
                raise AssertionError("the watchdog kept pinging while the hub was blocked")
            server.send_signal(signal.SIGKILL)


def test_single_process_without_notify_socket_serves_as_before() -> None:
    with ServerProcess(APP, "--workers", "1", "--port", "0", environment={}) as server:
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert "cannot notify systemd" not in server.output


def test_unreachable_notify_socket_is_one_warning_not_a_failure(tmp_path: Path) -> None:
    environment = {"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}
    with ServerProcess(
        APP, "--workers", "1", "--port", "0", environment=environment
    ) as server:  # fmt: skip
        port = int(server.wait_for_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        server.wait_for_line(r"cannot notify systemd \(READY=1\): .*No such file")
        assert http_get(port)[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_supervisor_notifies_ready_reload_status_watchdog_and_stopping(
    notify: NotifySocket,
) -> None:
    environment = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}
    with ServerProcess(
        APP, "--workers", "2", "--port", "0", "--worker-timeout", "10", environment=environment
    ) as server:  # fmt: skip
        ready = notify.wait_for("READY")
        address = server.wait_ready()
        assert ready["MAINPID"] == str(server.pid)
        assert ready["STATUS"] == f"serving on {address}: 2 of 2 workers ready"
        assert notify.wait_for("WATCHDOG", timeout=5) == {"WATCHDOG": "1"}
        # SIGHUP: RELOADING=1 with the monotonic clock's time, then READY=1 once it is done.
        before = time.monotonic_ns() // 1000
        server.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING")
        assert reloading["STATUS"] == "reloading"
        assert before <= int(reloading["MONOTONIC_USEC"]) <= time.monotonic_ns() // 1000
        done = notify.wait_for("READY")
        server.wait_for_line(r"reload complete: 2 workers")
        assert done["STATUS"] == f"serving on {address}: 2 of 2 workers ready"
        # SIGTTIN: a STATUS line with the new count once the new worker is ready.
        server.send_signal(signal.SIGTTIN)
        while (
            notify.wait_for("STATUS").get("STATUS") != f"serving on {address}: 3 of 3 workers ready"
        ):
            pass
        server.send_signal(signal.SIGTERM)
        assert notify.wait_for("STOPPING")["STOPPING"] == "1"
        assert server.wait() == 0


def test_supervisor_stops_pinging_the_watchdog_while_a_worker_hangs(
    notify: NotifySocket,
) -> None:
    # The hang detection is slower than the watchdog here (--worker-timeout 60 s): the pings stop
    # while the worker spins, so that systemd would restart the service.
    environment = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}
    with ServerProcess(
        "ops_apps.ops_app:app", "--workers", "2", "--port", "0", "--worker-timeout", "60",
        environment=environment,
    ) as server:  # fmt: skip
        port = server.port()
        assert notify.wait_for("WATCHDOG", timeout=5) == {"WATCHDOG": "1"}
        with socket.create_connection(("127.0.0.1", port), timeout=30) as stuck:
            stuck.sendall(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
            first = server.wait_for_line(r"not pinging systemd's watchdog: worker \d+ .* last beat")
            start = server.lines.index(first.string) + 1
            while _pending(notify):
                notify.next()  # pings sent before the hang was seen
            # Two more refusals later (0.2 s apart), still no ping.
            second = server.lines.index(
                server.wait_for_line(r"not pinging systemd's watchdog", start=start).string, start
            )
            server.wait_for_line(r"not pinging systemd's watchdog", start=second + 1)
            assert not _pending(notify)
            server.send_signal(signal.SIGKILL)


def _pending(notify: NotifySocket) -> bool:
    """True when a notification is waiting on the socket."""
    notify.socket.setblocking(False)
    try:
        notify.socket.recv(4096, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    return True


def test_a_failed_reload_still_ends_with_ready(notify: NotifySocket, tmp_path: Path) -> None:
    # systemd waits for READY=1 after RELOADING=1: a reload whose new workers cannot import the
    # application must send it too (the old workers keep serving), saying so in STATUS=.
    marker = tmp_path / "broken"
    environment = {"NOTIFY_SOCKET": notify.path, "OPS_APP_BROKEN_MARKER": str(marker)}
    with ServerProcess(
        "ops_apps.ops_app:app", "--workers", "2", "--port", "0", environment=environment
    ) as server:  # fmt: skip
        address = server.wait_ready()
        notify.wait_for("READY")
        marker.touch()
        server.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING")
        done = notify.wait_for("READY")
        assert done["STATUS"] == f"serving on {address}: 2 of 2 workers ready (the reload failed)"
        server.wait_for_line(r"reload failed: the new worker \d+ did not start")
        assert http_get(server.port())[0] == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
