"""The WebSocket benchmark app on theframework's own API (bench/websocket_*.py).

``/echo`` sends every message back; ``/echo-listen`` too, through ``WebSocket.listen`` (no
greenlet held between messages); ``/broadcast`` joins the connection to one ``Group``, says
"joined" once, and broadcasts every message it receives to the whole group (itself included).
``/plaintext`` answers "Hello, World!" (bench/run.py's readiness probe)."""

from __future__ import annotations

from payloads import PLAINTEXT

from theframework import Framework, Request, Response, WebSocket
from theframework.websocket import Group

app = Framework()
room = Group()


@app.get("/plaintext")
def plaintext(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write(PLAINTEXT)


@app.get("/echo")
def echo(request: Request, response: Response) -> None:
    ws = request.websocket()
    for message in ws:
        ws.send(message)


def echo_message(ws: WebSocket, message: str | bytes) -> None:
    ws.send(message)


@app.get("/echo-listen")
def echo_listen(request: Request, response: Response) -> None:
    request.websocket().listen(echo_message)


@app.get("/broadcast")
def broadcast(request: Request, response: Response) -> None:
    ws = request.websocket()
    room.add(ws)
    try:
        ws.send("joined")
        for message in ws:
            room.broadcast(message)
    finally:
        room.discard(ws)
