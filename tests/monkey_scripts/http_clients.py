"""100 concurrent outbound HTTP calls per client library (http.client, urllib.request,
requests) to a slow upstream, under patch_all(). Usage: http_clients.py BACKEND PORT
(the upstream answers GET /slow?n=I after 0.5 s with "slow I")."""

from theframework.monkey import patch_all

patch_all()

import http.client  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import requests  # noqa: E402
from common import join, run, spawn_all  # noqa: E402

CALLS = 100


def with_http_client(port: int, index: int) -> str:
    connection = http.client.HTTPConnection("localhost", port, timeout=20)
    try:
        connection.request("GET", f"/slow?n={index}")
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def with_urllib(port: int, index: int) -> str:
    with urllib.request.urlopen(f"http://localhost:{port}/slow?n={index}", timeout=20) as answer:
        body: bytes = answer.read()
        return body.decode()


def with_requests(port: int, index: int) -> str:
    return requests.get(f"http://localhost:{port}/slow?n={index}", timeout=20).text


def measure(port: int, call: Callable[[int, int], str]) -> dict[str, Any]:
    started = time.monotonic()
    greenlets, results = spawn_all(CALLS, lambda index: call(port, index))
    join(greenlets, timeout=60)
    wrong = [repr(r) for i, r in enumerate(results) if r != f"slow {i}"]
    return {"elapsed": time.monotonic() - started, "wrong": wrong[:5]}


def main() -> dict[str, Any]:
    port = int(sys.argv[2])
    return {
        "http.client": measure(port, with_http_client),
        "urllib.request": measure(port, with_urllib),
        "requests": measure(port, with_requests),
    }


if __name__ == "__main__":
    run(sys.argv[1], main)
