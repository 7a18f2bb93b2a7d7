"""theframework behind a real nginx and a real HAProxy (Debian packages, installed by
scripts/bootstrap.sh), each started in the foreground on free ports in a temporary directory with
the very configuration files docs/deployment.md shows (docs/deployment/*.conf, *.cfg). They are
not skipped when nginx, its stream module or HAProxy is missing: `make test` installs them, and a
machine without them fails here rather than passing without the checks.

The client connects to the proxy from 127.0.0.2 (all of 127.0.0.0/8 is loopback), so that the
proxy's own address (127.0.0.1) is trusted and the client's is not: a spoofed X-Forwarded-For from
the client must not be believed, and the address the proxy saw must.

nginx's upstream keep-alive is counted from the server's side (its connections_accepted counter on
--metrics-port), and HAProxy's configuration carries a load through a rolling reload (SIGHUP) of a
supervised server without a failed request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from http_helpers import REPO_ROOT, ResponseReader, ServerProcess
from prefork_apps.harness import ServerProcess as Supervised
from prefork_apps.harness import metric_value, wait_for_metric

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


# -- nginx's upstream keep-alive ------------------------------------------------------------------

SEQUENTIAL = 200
CONCURRENCY = 8
PER_CLIENT = 25
THROUGH_NGINX = SEQUENTIAL + CONCURRENCY * PER_CLIENT


def upstream_connections(tmp_path: Path, configuration: str, *, keepalive: bool) -> int:
    """The connections a supervised server (2 workers) accepted while nginx, run with
    docs/deployment/``configuration``, passed it THROUGH_NGINX requests: SEQUENTIAL one after the
    other, then CONCURRENCY clients at once. Counted by the server itself (its
    connections_accepted counter, read from --metrics-port once every request is counted).
    ``keepalive=False`` removes the upstream's keepalive lines from the file."""
    listen = free_port()
    socket_path = tmp_path / "app.sock"
    unix = configuration == "nginx-unix.conf"
    where = ("--uds", str(socket_path)) if unix else ("--port", "0")
    with Supervised("apps.proxied:app", "--workers", "2", *where, "--metrics-port", "0") as server:
        metrics = server.wait_for_line(r"metrics: (http://\S+)").group(1)
        address = server.wait_ready()
        app_port = 0 if unix else int(address.rsplit(":", 1)[1])
        site = render(configuration, LISTEN_PORT=listen, APP_PORT=app_port, SOCKET=socket_path)
        if not keepalive:
            site = re.sub(r"\n\s*keepalive(_timeout)? [^;]*;[^\n]*", "", site)
            assert "keepalive" not in re.sub(r"#.*", "", site)
        with nginx(tmp_path, http=site, port=listen):
            for _ in range(SEQUENTIAL):
                client_get(listen, "/k")

            def one_client(_: int) -> None:
                for _ in range(PER_CLIENT):
                    client_get(listen, "/c")

            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(one_client, range(CONCURRENCY)))
            samples = wait_for_metric(metrics, "theframework_requests_total", THROUGH_NGINX)
            assert metric_value(samples, "theframework_requests_total") == THROUGH_NGINX
            return int(metric_value(samples, "theframework_connections_accepted_total"))


@pytest.mark.parametrize("configuration", ["nginx-tcp.conf", "nginx-unix.conf"])
def test_nginx_reuses_its_upstream_connections(tmp_path: Path, configuration: str) -> None:
    """With the documented keepalive pool nginx (one worker) opens a connection only when every
    open one is busy: at most one per concurrent client (the sequential requests reuse one of
    them), far below one per request."""
    accepted = upstream_connections(tmp_path, configuration, keepalive=True)
    print(f"{configuration}: {accepted} upstream connections for {THROUGH_NGINX} requests")
    assert 1 <= accepted <= CONCURRENCY + 1, f"{accepted} connections for {THROUGH_NGINX} requests"


def test_without_upstream_keepalive_nginx_connects_per_request(tmp_path: Path) -> None:
    """The control: the same configuration without its keepalive lines costs the server one
    connection per request, so the counter above really counts nginx's connections."""
    accepted = upstream_connections(tmp_path, "nginx-tcp.conf", keepalive=False)
    print(f"nginx-tcp.conf without keepalive: {accepted} connections for {THROUGH_NGINX} requests")
    assert accepted == THROUGH_NGINX


# -- HAProxy in front of a reloading server -------------------------------------------------------


class Load:
    """Clients sending GETs through a proxy until stopped: ``KEPT_ALIVE`` threads on one
    keep-alive connection each (reopened when the server side closes it), one thread on a new
    connection per request. Every answer that is not a 200 with the JSON body, and every
    exception, is a failure."""

    KEPT_ALIVE = 4

    def __init__(self, port: int) -> None:
        self.port = port
        self.succeeded = 0
        self.failures: list[str] = []
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(keep_alive,), daemon=True)
            for keep_alive in [True] * self.KEPT_ALIVE + [False]
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, keep_alive: bool) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {} if keep_alive else {"Connection": "close"}
        while not self._stop.is_set():
            try:
                connection.request("GET", "/load", headers=headers)
                response = connection.getresponse()
                body = response.read()
                outcome = None if response.status == 200 and b'"url"' in body else response.status
            except (OSError, http.client.HTTPException) as error:
                outcome = repr(error)
            if outcome is not None or not keep_alive:
                connection.close()  # the next request() opens a new connection
            with self._changed:
                if outcome is None:
                    self.succeeded += 1
                else:
                    self.failures.append(str(outcome))
                self._changed.notify_all()

    def wait_for(self, succeeded: int, timeout: float = 60.0) -> None:
        """Waits until ``succeeded`` requests have been answered in all."""
        with self._changed:
            assert self._changed.wait_for(lambda: self.succeeded >= succeeded, timeout), (
                f"{self.succeeded} requests answered, {len(self.failures)} failed"
            )


def test_haproxy_loses_no_request_during_a_rolling_reload(tmp_path: Path) -> None:
    """docs/deployment/haproxy.cfg in front of --workers 2 under load while the supervisor
    replaces its workers (SIGHUP): every request is answered with a 200."""
    listen = free_port()
    with Supervised("apps.proxied:app", "--workers", "2", "--port", "0",
                    "--proxy-protocol") as server:  # fmt: skip
        app_port = server.port()
        old = set(server.worker_pids().values())
        configuration = tmp_path / "haproxy.cfg"
        configuration.write_text(render("haproxy.cfg", LISTEN_PORT=listen, APP_PORT=app_port))
        command = [HAPROXY, "-db", "-f", str(configuration)]
        with foreground(command, listen, tmp_path / "haproxy.log"), Load(listen) as load:
            load.wait_for(200)
            before = load.succeeded
            server.send_signal(signal.SIGHUP)
            server.wait_for_line(r"reload complete: 2 workers", timeout=60)
            during = load.succeeded - before
            load.wait_for(load.succeeded + 500)  # and the new workers serve
        new = set(server.worker_pids().values())
        assert len(new) == 2 and not new & old, (old, new)
        print(f"haproxy rolling reload: {load.succeeded} answered ({during} while reloading), "
              f"{len(load.failures)} failed")  # fmt: skip
        assert during > 0
        assert load.failures == [], load.failures[:10]


def wait_for_log(log: Path, text: str, count: int, timeout: float = 60.0) -> None:
    """Waits until ``text`` occurs ``count`` times in the file ``log`` (a proxy's output)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} not {count} times in {log.read_text()}"
        time.sleep(0.05)


def test_haproxy_own_reloads_lose_no_request(tmp_path: Path) -> None:
    """HAProxy in master-worker mode (as Debian's unit runs it) reloaded three times (SIGUSR2)
    under load: with the file's idle-close-on-response no request fails."""
    listen = free_port()
    log = tmp_path / "haproxy.log"
    with Supervised("apps.proxied:app", "--workers", "2", "--port", "0",
                    "--proxy-protocol") as server:  # fmt: skip
        configuration = tmp_path / "haproxy.cfg"
        configuration.write_text(render("haproxy.cfg", LISTEN_PORT=listen, APP_PORT=server.port()))
        command = [HAPROXY, "-W", "-db", "-f", str(configuration)]
        with foreground(command, listen, log) as haproxy, Load(listen) as load:
            load.wait_for(200)
            for reload in range(1, 4):
                # The master takes SIGUSR2 once it has logged its (re)load done.
                wait_for_log(log, "Loading success.", reload)
                haproxy.send_signal(signal.SIGUSR2)
                wait_for_log(log, "Loading success.", reload + 1)
                load.wait_for(load.succeeded + 500)
            wait_for_log(log, "Former worker", 3)  # every old HAProxy worker finished
        print(f"haproxy's own reloads: {load.succeeded} answered, {len(load.failures)} failed")
        assert load.failures == [], load.failures[:10]


def test_the_deployment_page_shows_the_tested_configurations() -> None:
    """docs/deployment.md shows every configuration file the tests start, as it is."""
    page = (REPO_ROOT / "docs" / "deployment.md").read_text()
    files = sorted(CONFIGS.iterdir())
    assert files
    for path in files:
        assert path.read_text() in page, f"docs/deployment.md does not show {path.name} as it is"
