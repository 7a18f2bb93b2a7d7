"""theframework behind a real nginx and a real HAProxy (Debian packages, installed by
scripts/bootstrap.sh), each started in the foreground on free ports in a temporary directory with
the very configuration files docs/deployment.md shows (docs/deployment/*.conf, *.cfg). They are
not skipped when nginx, its stream module or HAProxy is missing: `make test` installs them, and a
machine without them fails here rather than passing without the checks.

The client connects to the proxy from 127.0.0.2 (all of 127.0.0.0/8 is loopback), so that the
proxy's own address (127.0.0.1) is trusted and the client's is not: a spoofed X-Forwarded-For from
the client must not be believed, and the address the proxy saw must.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_helpers import REPO_ROOT, ResponseReader, ServerProcess
from prefork_apps.harness import ServerProcess as Supervised

CONFIGS = REPO_ROOT / "docs" / "deployment"
FRAMEWORK = "tests.apps.proxied:app"
WSGI = "tests.apps.proxied:wsgi_app"
CLIENT_ADDRESS = "127.0.0.2"
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
# Debian installs both in /usr/sbin, which a non-root PATH may lack.
_SEARCH = f"{os.environ.get('PATH', '')}:/usr/sbin:/usr/bin"
NGINX = shutil.which("nginx", path=_SEARCH) or "nginx"
HAPROXY = shutil.which("haproxy", path=_SEARCH) or "haproxy"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def render(name: str, **values: str | int) -> str:
    """A docs/deployment file with its @PLACEHOLDERS@ replaced; every placeholder must be."""
    text = (CONFIGS / name).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    assert "@" not in re.sub(r"#.*", "", text), f"unreplaced placeholder in {name}"
    return text


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Waits until something accepts on 127.0.0.1:port (the proxy's readiness signal)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}: {log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}: {log.read_text(errors='replace')}")


@contextlib.contextmanager
def foreground(command: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(20)


@contextlib.contextmanager
def nginx(tmp_path: Path, *, http: str = "", main: str = "", port: int) -> Iterator[None]:
    """nginx in the foreground with ``http`` inside its http block and ``main`` at top level;
    pid file, logs and temporary files in ``tmp_path``."""
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    lines = [
        "daemon off;",
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log info;",
    ]
    if os.geteuid() == 0:
        lines.append("user root;")  # the test's temporary directory is root's
    if main:
        lines.append(f"load_module {STREAM_MODULE};")
    lines += ["events { worker_connections 256; }", main]
    if http:
        temporary = " ".join(
            f"{kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        lines.append(f"http {{ access_log {prefix}/access.log; {temporary}\n{http}\n}}")
    configuration = prefix / "nginx.conf"
    configuration.write_text("\n".join(lines) + "\n")
    command = [NGINX, "-p", str(prefix), "-c", str(configuration)]
    with foreground(command, port, prefix / "stderr.log"):
        yield


def client_get(port: int, path: str, headers: str = "") -> tuple[dict[str, Any], int]:
    """GET through the proxy from 127.0.0.2; the JSON answer and the client's source port."""
    with socket.socket() as sock:
        sock.settimeout(10)
        sock.bind((CLIENT_ADDRESS, 0))
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: shop.test\r\n{headers}Connection: close\r\n\r\n".encode()
        )
        response = ResponseReader(sock).read_response()
        assert response.status == 200, response
        answer: dict[str, Any] = json.loads(response.body)
        return answer, sock.getsockname()[1]


SPOOF = "X-Forwarded-For: 6.6.6.6\r\n"


@pytest.mark.parametrize("interface", ["framework", "wsgi"])
def test_nginx_tcp_with_forwarding_headers(backend: str, tmp_path: Path, interface: str) -> None:
    listen = free_port()
    app, extra = (FRAMEWORK, ()) if interface == "framework" else (WSGI, ("--interface", "wsgi"))
    with ServerProcess(app, backend, *extra, "--access-log") as server:
        site = render("nginx-tcp.conf", LISTEN_PORT=listen, APP_PORT=server.port)
        with nginx(tmp_path, http=site, port=listen):
            for _ in range(3):  # nginx reuses its kept-alive upstream connection
                seen, _ = client_get(listen, "/p?q=1", SPOOF)
                if interface == "framework":
                    assert seen["client"] == [CLIENT_ADDRESS, 0]
                    assert seen["scheme"] == "http"
                    assert seen["host"] == f"shop.test:{listen}"
                    assert seen["url"] == f"http://shop.test:{listen}/p?q=1"
                    assert seen["x_forwarded_for"] == f"6.6.6.6, {CLIENT_ADDRESS}"
                else:
                    assert seen["REMOTE_ADDR"] == CLIENT_ADDRESS
                    assert seen["HTTP_HOST"] == f"shop.test:{listen}"
                    assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("shop.test", str(listen))
                    assert seen["wsgi.url_scheme"] == "http"
            # The access log names the client nginx saw.
            server.wait_for_stderr(f'{CLIENT_ADDRESS} "GET /p?q=1 HTTP/1.1" 200')


def test_nginx_untrusted_when_not_in_the_allow_list(backend: str, tmp_path: Path) -> None:
    """With nginx's address left out of --forwarded-allow-ips its headers are not believed."""
    listen = free_port()
    with ServerProcess(FRAMEWORK, backend, "--forwarded-allow-ips", "10.0.0.1") as server:
        site = render("nginx-tcp.conf", LISTEN_PORT=listen, APP_PORT=server.port)
        with nginx(tmp_path, http=site, port=listen):
            seen, _ = client_get(listen, "/", SPOOF)
            assert seen["client"][0] == "127.0.0.1"
            assert seen["host"] == "shop.test"


def test_nginx_unix_socket(tmp_path: Path) -> None:
    listen = free_port()
    socket_path = tmp_path / "app.sock"
    with Supervised("apps.proxied:app", "--uds", str(socket_path)) as server:
        server.wait_for_line(r"listening on ")
        site = render("nginx-unix.conf", LISTEN_PORT=listen, SOCKET=socket_path)
        with nginx(tmp_path, http=site, port=listen):
            seen, _ = client_get(listen, "/u", SPOOF)
            assert seen["client"] == [CLIENT_ADDRESS, 0]
            assert seen["url"] == f"http://shop.test:{listen}/u"


def test_nginx_stream_proxy_protocol(backend: str, tmp_path: Path) -> None:
    listen = free_port()
    with ServerProcess(FRAMEWORK, backend, "--proxy-protocol") as server:
        stream = render(
            "nginx-stream-proxy-protocol.conf", LISTEN_PORT=listen, APP_PORT=server.port
        )
        with nginx(tmp_path, main=stream, port=listen):
            seen, client_port = client_get(listen, "/s", SPOOF)
            assert seen["client"] == [CLIENT_ADDRESS, client_port]
            # The client's own X-Forwarded-For reached the server untouched and unbelieved.
            assert seen["x_forwarded_for"] == "6.6.6.6"
            assert seen["host"] == "shop.test"


@pytest.mark.parametrize("version", ["send-proxy-v2", "send-proxy"])
def test_haproxy_proxy_protocol_and_health_checks(
    backend: str, tmp_path: Path, version: str
) -> None:
    listen = free_port()
    with ServerProcess(FRAMEWORK, backend, "--proxy-protocol", "--access-log") as server:
        text = render("haproxy.cfg", LISTEN_PORT=listen, APP_PORT=server.port)
        configuration = tmp_path / "haproxy.cfg"
        configuration.write_text(text.replace("send-proxy-v2", version))
        command = [HAPROXY, "-db", "-f", str(configuration)]
        with foreground(command, listen, tmp_path / "haproxy.log"):
            seen, client_port = client_get(listen, "/h", SPOOF)
            assert seen["client"] == [CLIENT_ADDRESS, client_port]
            assert seen["x_forwarded_for"] == "6.6.6.6"
            # The health checks arrive with their own PROXY header and are answered.
            server.wait_for_stderr('127.0.0.1 "GET /healthz HTTP/1.1" 200')


def test_the_deployment_page_shows_the_tested_configurations() -> None:
    """docs/deployment.md shows every configuration file the tests start, as it is."""
    page = (REPO_ROOT / "docs" / "deployment.md").read_text()
    files = sorted(CONFIGS.iterdir())
    assert files
    for path in files:
        assert path.read_text() in page, f"docs/deployment.md does not show {path.name} as it is"
