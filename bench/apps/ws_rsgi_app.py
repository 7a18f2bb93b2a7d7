"""The WebSocket benchmark app on Granian's RSGI interface, the same routes as ws_tf_app.py and
ws_asgi_app.py.

A WebSocket scope has ``proto == "ws"``: ``await protocol.accept()`` upgrades and returns the
transport, whose ``receive()`` yields messages of kind 0 (close), 1 (bytes) or 2 (str), sent
back with ``send_bytes`` / ``send_str``; a peer that goes away without a close frame makes
``receive()`` raise ``ProtocolClosed``. ``/echo`` sends every message back; ``/broadcast`` adds
the transport to a set, says "joined" once, and on every message it receives loops over the set
awaiting each send (as ws_asgi_app.py does). ``/plaintext`` answers "Hello, World!" (bench/run.py's
readiness probe)."""

from __future__ import annotations

from typing import Any

from granian.rsgi import ProtocolClosed
from payloads import PLAINTEXT

CLOSE, BYTES, TEXT = 0, 1, 2  # granian.rsgi.WebsocketMessageType

members: set[Any] = set()


async def _send(transport: Any, message: Any) -> None:
    if message.kind == TEXT:
        await transport.send_str(message.data)
    else:
        await transport.send_bytes(message.data)


async def _echo(transport: Any) -> None:
    while True:
        message = await transport.receive()
        if message.kind == CLOSE:
            return
        await _send(transport, message)


async def _broadcast(transport: Any) -> None:
    members.add(transport)
    try:
        await transport.send_str("joined")
        while True:
            message = await transport.receive()
            if message.kind == CLOSE:
                return
            for member in list(members):
                try:
                    await _send(member, message)
                except Exception:  # a member that went away leaves the set
                    members.discard(member)
    finally:
        members.discard(transport)


async def app(scope: Any, protocol: Any) -> None:
    if scope.proto == "http":
        headers = [("content-type", "text/plain"), ("content-length", str(len(PLAINTEXT)))]
        protocol.response_bytes(200, headers, PLAINTEXT)
        return
    if scope.proto != "ws":
        return
    transport = await protocol.accept()
    try:
        if scope.path == "/broadcast":
            await _broadcast(transport)
        else:
            await _echo(transport)
    except ProtocolClosed:
        pass  # the client went away without a close frame (ws_client at the end of a run)
    finally:
        protocol.close(1000)
