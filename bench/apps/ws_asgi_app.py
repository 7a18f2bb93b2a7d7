"""The WebSocket benchmark app as an ASGI 3 application (uvicorn with ``websockets``, Granian's
ASGI interface), the same routes as ws_tf_app.py.

``/echo`` sends every message back; ``/broadcast`` adds the connection's ``send`` to a set, says
"joined" once, and on every message it receives loops over the set awaiting each ``send`` (the
idiomatic ASGI broadcast, as in Starlette's and the ASGI servers' chat examples).
``/plaintext`` answers "Hello, World!" (bench/run.py's readiness probe)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from payloads import PLAINTEXT

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

members: set[Send] = set()


def _outgoing(event: dict[str, Any]) -> dict[str, Any]:
    if event.get("text") is not None:
        return {"type": "websocket.send", "text": event["text"]}
    return {"type": "websocket.send", "bytes": event["bytes"]}


async def _echo(receive: Receive, send: Send) -> None:
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        await send(_outgoing(event))


async def _broadcast(receive: Receive, send: Send) -> None:
    members.add(send)
    try:
        await send({"type": "websocket.send", "text": "joined"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            outgoing = _outgoing(event)
            for member in list(members):
                try:
                    await member(outgoing)
                except Exception:  # a member that went away leaves the set
                    members.discard(member)
    finally:
        members.discard(send)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(PLAINTEXT))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": PLAINTEXT})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    if scope["path"] == "/broadcast":
        await _broadcast(receive, send)
    else:
        await _echo(receive, send)
