"""redis-py against a real redis-server under patch_all(): 200 concurrent handlers blocked in
BLPOP all complete once values are pushed, and the worker keeps answering /hello meanwhile."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis
from monkey_scripts.runner import run_script

pytestmark = pytest.mark.timeout(120)

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    if REDIS_SERVER is None:
        pytest.fail("redis-server is not installed (scripts/bootstrap.sh installs it)")
    port = free_port()
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not answer PING"
                time.sleep(0.02)  # no readiness signal but the answer to PING
        client.close()
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_blpop_handlers_and_hello(backend: str, redis_port: int) -> None:
    report = run_script("redis_blpop.py", backend, str(redis_port))
    assert report["most_blocked"] == 200  # all handlers waited in BLPOP at the same time
    assert report["wrong"] == []
    assert report["elapsed"] < 15
    hello = report["hello"]
    assert hello["failures"] == []
    assert hello["answers"] >= 5
    assert hello["slowest"] < 1.0, hello
