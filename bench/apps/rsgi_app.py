"""The benchmark app on Granian's RSGI interface."""

from __future__ import annotations

import asyncio
from typing import Any

from payloads import LARGE, PLAINTEXT, SLEEP_SECONDS, json_body


def _headers(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [("content-type", content_type), ("content-length", str(len(body)))]


async def app(scope: Any, protocol: Any) -> None:
    path = scope.path
    if path == "/plaintext":
        protocol.response_bytes(200, _headers("text/plain", PLAINTEXT), PLAINTEXT)
    elif path == "/json":
        body = json_body()
        protocol.response_bytes(200, _headers("application/json", body), body)
    elif path == "/10k":
        protocol.response_bytes(200, _headers("application/octet-stream", LARGE), LARGE)
    elif path == "/echo" and scope.method == "POST":
        body = await protocol()
        protocol.response_bytes(200, _headers("application/octet-stream", body), body)
    elif path == "/sleep":
        await asyncio.sleep(SLEEP_SECONDS)
        protocol.response_bytes(200, _headers("text/plain", PLAINTEXT), PLAINTEXT)
    else:
        protocol.response_bytes(404, _headers("text/plain", b""), b"")
