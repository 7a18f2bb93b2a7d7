"""Microbenchmark of the Python side of the WSGI adapter, with stand-ins for the native Request
and Response (the native getters' own cost is not included; wrk measures the whole).

    .venv/bin/python -m tests.wsgi_apps.bench_environ
"""

from __future__ import annotations

import timeit
from typing import Any

from theframework.datastructures import Headers
from theframework.wsgi import WSGIAdapter

BROWSER_HEADERS = [
    ("Host", "example.com:8000"),
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Connection", "keep-alive"),
    ("Cookie", "session=abc; theme=dark"),
    ("Upgrade-Insecure-Requests", "1"),
    ("Sec-Fetch-Dest", "document"),
    ("Sec-Fetch-Mode", "navigate"),
]


class StandInRequest:
    """The attributes WSGIAdapter reads, as plain attributes."""

    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.method = "GET"
        self.raw_path = "/hello"
        self.query_string = "a=1"
        self.version = "HTTP/1.1"
        self.client = ("127.0.0.1", 50000)
        self._pairs = headers

    @property
    def headers(self) -> Headers:
        return Headers(list(self._pairs))  # built per access, as the native getter does

    def read(self, size: int = -1) -> bytes:
        return b""


class StandInResponse:
    headers_sent = False

    def set_status(self, status: int) -> None:
        pass

    def add_header(self, name: str, value: str) -> None:
        pass

    def write(self, data: Any) -> None:
        pass

    def flush(self) -> None:
        pass


def hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [b"hello world"]


def measure(label: str, statement: Any, number: int = 200_000) -> None:
    best = min(timeit.repeat(statement, number=number, repeat=5))
    print(f"{label:<48} {best / number * 1e6:6.2f} us")


def main() -> None:
    adapter = WSGIAdapter(hello)
    adapter.set_server_address(("127.0.0.1", 8000))
    wrk_request = StandInRequest([("Host", "127.0.0.1:8000")])
    browser_request = StandInRequest(BROWSER_HEADERS)
    response = StandInResponse()
    measure("Headers(pairs) alone, 1 header", lambda: wrk_request.headers)
    measure("Headers(pairs) alone, 10 headers", lambda: browser_request.headers)
    measure("build_environ, 1 header (wrk)", lambda: adapter.build_environ(wrk_request))
    measure("build_environ, 10 headers (browser)", lambda: adapter.build_environ(browser_request))
    measure(
        "whole adapter call, 1 header, hello app",
        lambda: adapter(wrk_request, response),  # type: ignore[arg-type]
    )
    measure(
        "whole adapter call, 10 headers, hello app",
        lambda: adapter(browser_request, response),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
