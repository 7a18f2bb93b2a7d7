"""``--uds-mode`` and ``--uds-group``: the UNIX socket's permissions, set before it takes its name
(never reachable with the umask's). Tested as users deploy it: a real nginx from Debian whose
workers run as ``nobody`` with the group ``www-data`` proxies 10,000 requests to the server
through the socket, the server running under umask 022 (and without ``umask 0``); without the
options nginx gets "Permission denied". Real processes on loopback."""

from __future__ import annotations

import contextlib
import grp
import http.client
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, unprivileged_prefix

pytestmark = pytest.mark.timeout(180)

APP = "prefork_apps.pid_app:app"
GROUP = "www-data"


def _umask_022() -> None:
    os.umask(0o022)


@pytest.fixture
def socket_directory() -> Iterator[Path]:
    """A directory nginx's workers (nobody) may traverse; the socket's mode decides the rest."""
    directory = Path(tempfile.mkdtemp(prefix="tf-uds-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Nginx:
    port: int
    error_log: Path


def _nginx_config(directory: Path, socket_path: Path, port: int) -> str:
    return f"""
daemon off;
master_process on;
worker_processes 1;
user nobody {GROUP};
pid {directory}/nginx.pid;
error_log {directory}/error.log notice;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream theframework {{
        server unix:{socket_path};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://theframework;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@contextlib.contextmanager
def run_nginx(directory: Path, socket_path: Path) -> Iterator[Nginx]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.fail("nginx (Debian package nginx) is missing: run scripts/bootstrap.sh")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = directory / "nginx.conf"
    config.write_text(_nginx_config(directory, socket_path, port))
    error_log = directory / "error.log"
    process = subprocess.Popen(
        [binary, "-p", str(directory), "-c", str(config), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # nginx's readiness: its port accepts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"nginx did not start (exit {process.poll()}):\n{error_log.read_text()}"
                    ) from None
                time.sleep(0.01)
        yield Nginx(port, error_log)
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _get_many(port: int, count: int) -> list[str]:
    """``count`` keep-alive GETs through nginx on one connection; the bodies."""
    bodies = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for _ in range(count):
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read().decode()
            assert response.status == 200, (response.status, body)
            bodies.append(body)
    finally:
        connection.close()
    return bodies


def _listening(server: ServerProcess, workers: str) -> None:
    if workers == "1":
        server.wait_for_line(r"listening on unix:")
    else:
        server.wait_ready()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_nginx_as_nobody_serves_10000_requests_through_a_0660_group_socket(
    socket_directory: Path, workers: str
) -> None:
    socket_path = socket_directory / "app.sock"
    with ServerProcess(
        APP, "--workers", workers, "--uds", str(socket_path), "--uds-mode", "0660",
        "--uds-group", GROUP, preexec_fn=_umask_022,
    ) as server:  # fmt: skip
        _listening(server, workers)
        status = os.stat(socket_path)
        assert stat.S_ISSOCK(status.st_mode)
        assert stat.S_IMODE(status.st_mode) == 0o660
        assert status.st_gid == grp.getgrnam(GROUP).gr_gid
        assert sorted(os.listdir(socket_directory)) == ["app.sock"]  # no temporary name left
        with run_nginx(socket_directory, socket_path) as nginx:
            results: list[list[str]] = []
            errors: list[BaseException] = []

            def client() -> None:
                try:
                    results.append(_get_many(nginx.port, 2500))
                except BaseException as error:
                    errors.append(error)

            threads = [threading.Thread(target=client) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(120)
            assert errors == []
            bodies = [body for result in results for body in result]
            assert len(bodies) == 10_000
            assert all(body.isdigit() for body in bodies)
            assert "Permission denied" not in nginx.error_log.read_text()
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
    assert not socket_path.exists()


def test_without_the_options_nginx_as_nobody_is_refused(socket_directory: Path) -> None:
    # The control: under umask 022 the socket is 0755 and owned by root: nobody cannot connect.
    socket_path = socket_directory / "app.sock"
    with ServerProcess(
        APP, "--workers", "1", "--uds", str(socket_path), preexec_fn=_umask_022
    ) as server:  # fmt: skip
        _listening(server, "1")
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o755
        with run_nginx(socket_directory, socket_path) as nginx:
            connection = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30)
            connection.request("GET", "/")
            assert connection.getresponse().status == 502
            connection.close()
            assert "(13: Permission denied) while connecting to upstream" in (
                nginx.error_log.read_text()
            )


def test_a_group_this_user_cannot_give_exits_43() -> None:
    directory = tempfile.mkdtemp(prefix="tf-uds-")
    os.chmod(directory, 0o777)
    socket_path = f"{directory}/app.sock"
    try:
        with ServerProcess(
            APP, "--workers", "1", "--uds", socket_path, "--uds-group", "root",
            command_prefix=unprivileged_prefix(),
        ) as server:  # fmt: skip
            assert server.wait() == 43
            output = server.output
        assert f"cannot listen on unix:{socket_path}: Operation not permitted" in output
        assert os.listdir(directory) == []  # neither the socket nor its temporary name
    finally:
        shutil.rmtree(directory, ignore_errors=True)
