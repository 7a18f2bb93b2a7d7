"""The bodies every benchmark app answers with, shared by all server interfaces (stdlib only: the
peers' virtual environment imports it too)."""

from __future__ import annotations

import json

PLAINTEXT = b"Hello, World!"  # 13 bytes
# About 100 bytes once serialized; every app serializes it per request with json.dumps.
JSON_OBJECT: dict[str, object] = {
    "message": "Hello, World!",
    "id": 12345,
    "tags": ["fast", "green", "uring"],
    "active": True,
    "ratio": 0.5,
}
LARGE = b"x" * 10240  # 10 KiB
SLEEP_SECONDS = 0.01  # simulated I/O

PATHS = ("/plaintext", "/json", "/10k", "/echo", "/sleep")


def json_body() -> bytes:
    return json.dumps(JSON_OBJECT).encode()
