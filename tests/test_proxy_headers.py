"""Trusted proxy headers and the PROXY protocol, end to end over raw sockets on both backends.

The server runs ``tests.apps.proxied`` (a Framework app and a WSGI app answering with what they
see of the client, scheme and host as JSON). On loopback the peer is 127.0.0.1: trusted by
default; ``--forwarded-allow-ips 10.9.9.9`` makes the same peer untrusted, and then spoofed
headers must change nothing.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
import sys
from typing import Any

import pytest
from http_helpers import (
    REPO_ROOT,
    ResponseReader,
    ServerProcess,
    assert_closed,
    connect,
    exchange,
)

FRAMEWORK = "tests.apps.proxied:app"
WSGI = "tests.apps.proxied:wsgi_app"
UNTRUSTED = ("--forwarded-allow-ips", "10.9.9.9")

SPOOF = (
    b"X-Forwarded-For: 6.6.6.6, 203.0.113.7\r\n"
    b"X-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: shop.test\r\n"
    b"X-Forwarded-Port: 8443\r\n"
)


def request(path: str = "/a?b=1", headers: bytes = b"", host: bytes = b"inner:8000") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\n".encode()
        + b"Host: "
        + host
        + b"\r\n"
        + headers
        + b"Connection: close\r\n\r\n"
    )


def ask(server: ServerProcess, data: bytes) -> dict[str, Any]:
    response, reader = exchange(server, data)
    reader.sock.close()
    assert response.status == 200, response
    answer: dict[str, Any] = json.loads(response.body)
    return answer


# -- forwarding headers -----------------------------------------------------------------------


def test_trusted_peer_x_forwarded_headers_framework(backend: str) -> None:
    with ServerProcess(FRAMEWORK, backend) as server:
        seen = ask(server, request(headers=SPOOF))
        assert seen["client"] == ["203.0.113.7", 0]
        assert seen["scheme"] == "https"
        assert seen["host"] == "shop.test:8443"
        assert seen["url"] == "https://shop.test:8443/a?b=1"
        # The header itself is passed through untouched.
        assert seen["x_forwarded_for"] == "6.6.6.6, 203.0.113.7"


def test_trusted_peer_x_forwarded_headers_wsgi(backend: str) -> None:
    with ServerProcess(WSGI, backend, "--interface", "wsgi") as server:
        seen = ask(server, request(headers=SPOOF))
        assert seen["REMOTE_ADDR"] == "203.0.113.7"
        assert seen["REMOTE_PORT"] == "0"
        assert seen["wsgi.url_scheme"] == "https"
        assert seen["HTTP_HOST"] == "shop.test:8443"
        assert seen["SERVER_NAME"] == "shop.test"
        assert seen["SERVER_PORT"] == "8443"
        assert seen["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 203.0.113.7"


@pytest.mark.parametrize("extra", [(), ("--no-proxy-headers",)], ids=["untrusted", "off"])
def test_spoofed_headers_change_nothing(backend: str, extra: tuple[str, ...]) -> None:
    """From an untrusted peer (or with --no-proxy-headers) the headers are never believed."""
    arguments = extra if extra else UNTRUSTED
    with ServerProcess(FRAMEWORK, backend, *arguments) as server:
        sock = connect(server)
        local_port = sock.getsockname()[1]
        sock.sendall(
            request(headers=SPOOF + b'Forwarded: for=6.6.6.7;proto=https;host="x.test"\r\n')
        )
        response = ResponseReader(sock).read_response()
        sock.close()
        seen = json.loads(response.body)
        assert seen["client"] == ["127.0.0.1", local_port]
        assert seen["scheme"] == "http"
        assert seen["host"] == "inner:8000"
        assert seen["url"] == "http://inner:8000/a?b=1"
        assert seen["x_forwarded_for"] == "6.6.6.6, 203.0.113.7"
    with ServerProcess(WSGI, backend, "--interface", "wsgi", *arguments) as server:
        seen = ask(server, request(headers=SPOOF))
        assert seen["REMOTE_ADDR"] == "127.0.0.1"
        assert seen["wsgi.url_scheme"] == "http"
        assert seen["HTTP_HOST"] == "inner:8000"
        assert seen["SERVER_PORT"] == "8000"


def test_rfc7239_forwarded_quoted_ipv6(backend: str) -> None:
    forwarded = b'Forwarded: for=6.6.6.6, for="[2001:db8::1]:4711";proto=https;host=shop.test\r\n'
    with ServerProcess(FRAMEWORK, backend) as server:
        seen = ask(server, request(headers=forwarded))
        assert seen["client"] == ["2001:db8::1", 4711]
        assert seen["url"] == "https://shop.test/a?b=1"
    with ServerProcess(WSGI, backend, "--interface", "wsgi") as server:
        seen = ask(server, request(headers=forwarded))
        assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("2001:db8::1", "4711")
        assert (seen["SERVER_NAME"], seen["SERVER_PORT"]) == ("shop.test", "443")


def test_host_without_host_header_and_forwarded_port(backend: str) -> None:
    """HTTP/1.0 without Host: the listening address; X-Forwarded-Port replaces the Host's port
    and is left out when it is the scheme's default."""
    with ServerProcess(FRAMEWORK, backend) as server:
        response, reader = exchange(server, b"GET /x HTTP/1.0\r\n\r\n")
        reader.sock.close()
        seen = json.loads(response.body)
        assert seen["host"] == f"127.0.0.1:{server.port}"
        assert seen["url"] == f"http://127.0.0.1:{server.port}/x"
        port_only = b"X-Forwarded-Port: 8080\r\n"
        assert ask(server, request(headers=port_only))["host"] == "inner:8080"
        default = b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n"
        assert ask(server, request(headers=default))["url"] == "https://inner/a?b=1"
    with ServerProcess(WSGI, backend, "--interface", "wsgi") as server:
        seen = ask(
            server, request(headers=b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\n")
        )
        assert (seen["HTTP_HOST"], seen["SERVER_NAME"], seen["SERVER_PORT"]) == (
            "inner",
            "inner",
            "443",
        )


def test_right_most_untrusted_hop_with_trusted_networks(backend: str) -> None:
    """Hops in the trusted list are skipped from the right; the next one is the client."""
    allow = ("--forwarded-allow-ips", "127.0.0.0/8, 10.0.0.0/8")
    xff = b"X-Forwarded-For: 6.6.6.6, 198.51.100.4, 10.1.2.3, 10.3.2.1\r\n"
    with ServerProcess(FRAMEWORK, backend, *allow) as server:
        assert ask(server, request(headers=xff))["client"] == ["198.51.100.4", 0]


def test_malformed_values_are_ignored_and_logged_at_debug(backend: str) -> None:
    bad = (
        b"X-Forwarded-For: 203.0.113.7, not-an-address\r\n"
        b"X-Forwarded-Proto: gopher\r\n"
        b"X-Forwarded-Host: evil.test/path\r\n"
    )
    with ServerProcess(FRAMEWORK, backend, "--log-level", "debug") as server:
        sock = connect(server)
        local_port = sock.getsockname()[1]
        sock.sendall(request(headers=bad))
        response = ResponseReader(sock).read_response()
        sock.close()
        assert response.status == 200
        seen = json.loads(response.body)
        assert seen["client"] == ["127.0.0.1", local_port]
        assert seen["scheme"] == "http"
        assert seen["host"] == "inner:8000"
        server.wait_for_stderr("ignored a forwarding header value from 127.0.0.1")
        # One malformed value does not spoil the others.
        seen = ask(
            server, request(headers=b"X-Forwarded-For: junk\r\nX-Forwarded-Proto: https\r\n")
        )
        assert seen["scheme"] == "https"


def test_forwarded_allow_ips_from_the_conventional_variable(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORWARDED_ALLOW_IPS (gunicorn's and uvicorn's) works; THEFRAMEWORK_ wins over it."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.9.9.9")
    with ServerProcess(FRAMEWORK, backend) as server:
        assert ask(server, request(headers=SPOOF))["scheme"] == "http"
    monkeypatch.setenv("THEFRAMEWORK_FORWARDED_ALLOW_IPS", "127.0.0.1")
    with ServerProcess(FRAMEWORK, backend) as server:
        assert ask(server, request(headers=SPOOF))["scheme"] == "https"


@pytest.mark.parametrize(
    "value", ["example.com", "10.0.0.0/33", "10.0.0.0/255.0.0.0", "1.2.3.4,,x"]
)
def test_bad_forwarded_allow_ips_is_a_usage_error(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "theframework", FRAMEWORK, "--forwarded-allow-ips", value],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "forwarded_allow_ips" in result.stderr
    assert "Traceback" not in result.stderr


# -- PROXY protocol ---------------------------------------------------------------------------

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(source: str, source_port: int, destination: str, destination_port: int) -> bytes:
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    addresses = socket.inet_pton(family, source) + socket.inet_pton(family, destination)
    block = addresses + struct.pack("!HH", source_port, destination_port)
    tlv = b"\x04\x00\x03abc"  # PP2_TYPE_NOOP: skipped
    family_byte = 0x21 if family == socket.AF_INET6 else 0x11
    return (
        V2_SIGNATURE
        + bytes([0x21, family_byte])
        + struct.pack("!H", len(block + tlv))
        + block
        + tlv
    )


def proxied_client(
    server: ServerProcess, preface: bytes, data: bytes
) -> tuple[dict[str, Any], int]:
    sock = connect(server)
    local_port = sock.getsockname()[1]
    sock.sendall(preface + data)
    response = ResponseReader(sock).read_response()
    sock.close()
    assert response.status == 200, response
    return json.loads(response.body), local_port


def test_proxy_protocol_v1_v2_and_local(backend: str) -> None:
    with ServerProcess(FRAMEWORK, backend, "--proxy-protocol") as server:
        seen, _ = proxied_client(
            server, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n", request(path="/v1")
        )
        assert seen["client"] == ["192.0.2.1", 5555]
        seen, _ = proxied_client(
            server, proxy_v2("2001:db8::5", 6000, "2001:db8::6", 80), request()
        )
        assert seen["client"] == ["2001:db8::5", 6000]
        seen, _ = proxied_client(server, b"PROXY UNKNOWN\r\n", request())
        assert seen["client"][0] == "127.0.0.1"
        # LOCAL (a health check): the real peer stays.
        seen, local_port = proxied_client(server, V2_SIGNATURE + b"\x20\x00\x00\x00", request())
        assert seen["client"] == ["127.0.0.1", local_port]
        # The header may arrive in pieces, and keep-alive requests follow it on the connection.
        sock = connect(server)
        header = proxy_v2("198.51.100.9", 7000, "198.51.100.10", 80)
        for index in range(0, len(header), 5):
            sock.sendall(header[index : index + 5])
        reader = ResponseReader(sock)
        for _ in range(2):
            sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            assert json.loads(reader.read_response().body)["client"] == ["198.51.100.9", 7000]
        sock.close()
    with ServerProcess(WSGI, backend, "--interface", "wsgi", "--proxy-protocol") as server:
        seen, _ = proxied_client(server, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n", request())
        assert (seen["REMOTE_ADDR"], seen["REMOTE_PORT"]) == ("192.0.2.1", "5555")


def test_proxy_protocol_with_forwarding_headers_trusts_the_proxied_address(backend: str) -> None:
    """After a PROXY header the client it names is the peer whose headers are judged: its
    X-Forwarded-For is believed only when that address is trusted."""
    with ServerProcess(
        FRAMEWORK, backend, "--proxy-protocol", "--forwarded-allow-ips", "127.0.0.1,192.0.2.1"
    ) as server:
        seen, _ = proxied_client(
            server, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n", request(headers=SPOOF)
        )
        assert seen["client"] == ["203.0.113.7", 0]
        seen, _ = proxied_client(
            server, b"PROXY TCP4 192.0.2.77 192.0.2.2 5555 80\r\n", request(headers=SPOOF)
        )
        assert seen["client"] == ["192.0.2.77", 5555]
        assert seen["scheme"] == "http"


@pytest.mark.parametrize(
    "preface",
    [
        b"",  # no header: a plain HTTP request
        b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 80\r\n",
        b"PROXY TCP9 a b c d\r\n",
        V2_SIGNATURE + b"\x21\x12\x00\x0c" + bytes(12),  # DGRAM
        V2_SIGNATURE + b"\x21\x11\x00\x0e" + bytes(14),  # truncated TLV
        b"PROXY " + b"x" * 120 + b"\r\n",
    ],
    ids=["missing", "v1-port", "v1-protocol", "v2-dgram", "v2-tlv", "v1-too-long"],
)
def test_bad_or_missing_proxy_header_closes_the_connection(backend: str, preface: bytes) -> None:
    with ServerProcess(FRAMEWORK, backend, "--proxy-protocol", "--log-level", "debug") as server:
        sock = connect(server)
        sock.sendall(preface + request())
        assert_closed(ResponseReader(sock))
        sock.close()
        server.wait_for_stderr("closed a connection from 127.0.0.1: ")
        # The server goes on serving proxies that do send the header.
        seen, _ = proxied_client(server, b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n", request())
        assert seen["client"] == ["192.0.2.1", 5555]


def test_proxy_header_from_an_untrusted_peer_closes_the_connection(backend: str) -> None:
    with ServerProcess(
        FRAMEWORK, backend, "--proxy-protocol", *UNTRUSTED, "--log-level", "debug"
    ) as server:
        sock = connect(server)
        sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 5555 80\r\n" + request())
        assert_closed(ResponseReader(sock))
        sock.close()
        server.wait_for_stderr("PROXY protocol from a peer not in --forwarded-allow-ips")


# -- access log -------------------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["combined", "common"])
def test_access_log_presets_with_the_forwarded_client(backend: str, preset: str) -> None:
    """nginx's formats, with the client a trusted proxy named and header values escaped."""
    with ServerProcess(FRAMEWORK, backend, "--access-log", "--access-log-format", preset) as server:
        agent = 'User-Agent: ua "quoted" \xe9\r\n'.encode("latin-1")
        response, reader = exchange(server, request(path="/c?d=1", headers=SPOOF + agent))
        reader.sock.close()
        body_bytes = len(response.body)
        text = server.wait_for_stderr('"GET /c?d=1 HTTP/1.1"')
        tail = ' "-" "ua \\x22quoted\\x22 \\xE9"' if preset == "combined" else ""
        pattern = (
            r"203\.0\.113\.7 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
            rf'"GET /c\?d=1 HTTP/1\.1" 200 {body_bytes}{re.escape(tail)}$'
        )
        assert re.search(pattern, text, re.MULTILINE), text


def test_access_log_header_atoms(backend: str) -> None:
    log_format = "%(request_header:x-request-id)s %(response_header:content-type)s %(scheme)s"
    with ServerProcess(
        FRAMEWORK, backend, "--access-log", "--access-log-format", log_format
    ) as server:
        ask(server, request(headers=b"X-Request-Id: abc-123\r\nX-Forwarded-Proto: https\r\n"))
        server.wait_for_stderr("abc-123 application/json https")
        ask(server, request())
        server.wait_for_stderr("- application/json http")


@pytest.mark.parametrize("log_format", ["%(request_header:)s", "%(response_header:a b)s"])
def test_bad_header_atom_is_a_usage_error(log_format: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "theframework", FRAMEWORK, "--access-log",
         "--access-log-format", log_format],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "unknown access log field" in result.stderr


def test_supervised_workers_take_the_options() -> None:
    """With --workers 2 every worker's server gets --forwarded-allow-ips and --proxy-protocol."""
    from prefork_apps.harness import ServerProcess as Supervised

    arguments = ("--workers", "2", "--port", "0", "--proxy-protocol")
    with Supervised("apps.proxied:app", *arguments, "--forwarded-allow-ips", "127.0.0.1") as server:
        port = server.port()
        for index in range(4):  # new connections, to whichever worker accepts each
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"PROXY TCP4 192.0.2.{index} 192.0.2.99 4000 80\r\n".encode())
                sock.sendall(request(headers=b"X-Forwarded-Proto: https\r\n"))
                seen = json.loads(ResponseReader(sock).read_response().body)
                assert seen["client"] == [f"192.0.2.{index}", 4000]
                assert seen["scheme"] == "http"  # 192.0.2.x is not trusted for headers
