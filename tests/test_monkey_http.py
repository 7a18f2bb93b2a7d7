"""Outbound HTTP from greenlets under patch_all(): 100 concurrent calls with http.client,
urllib.request and requests to a slow upstream served by this test overlap instead of running
one after the other (serially 50 s per library)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from monkey_scripts.runner import run_script

pytestmark = pytest.mark.timeout(120)

DELAY = 0.5


class SlowHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        index = parse_qs(urlsplit(self.path).query)["n"][0]
        time.sleep(DELAY)
        body = f"slow {index}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Upstream(ThreadingHTTPServer):
    request_queue_size = 512  # 100 connections arrive at once
    daemon_threads = True


@pytest.fixture(scope="module")
def upstream_port() -> Iterator[int]:
    server = Upstream(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_outbound_http_calls_overlap(backend: str, upstream_port: int) -> None:
    report = run_script("http_clients.py", backend, str(upstream_port))
    for library in ("http.client", "urllib.request", "requests"):
        result = report[library]
        assert result["wrong"] == [], library
        assert DELAY <= result["elapsed"] < 5.0, (library, result["elapsed"])
