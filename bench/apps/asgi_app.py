"""The benchmark app as an ASGI 3 application (uvicorn with httptools)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from payloads import LARGE, PLAINTEXT, SLEEP_SECONDS, json_body

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def _answer(send: Send, content_type: bytes, body: bytes, status: int = 200) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # lifespan: nothing to set up
    path = scope["path"]
    if path == "/plaintext":
        await _answer(send, b"text/plain", PLAINTEXT)
    elif path == "/json":
        await _answer(send, b"application/json", json_body())
    elif path == "/10k":
        await _answer(send, b"application/octet-stream", LARGE)
    elif path == "/echo" and scope["method"] == "POST":
        await _answer(send, b"application/octet-stream", await _read_body(receive))
    elif path == "/sleep":
        await asyncio.sleep(SLEEP_SECONDS)
        await _answer(send, b"text/plain", PLAINTEXT)
    else:
        await _answer(send, b"text/plain", b"", 404)
