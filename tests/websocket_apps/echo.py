"""WebSocket apps of the tests: an echo route (Autobahn's target), a subprotocol route, routes that
close with a code, send many, or ping, check the Origin, or hold messages unread; and a plain HTTP
route beside them."""

from __future__ import annotations

import struct

from theframework import Framework, Request, Response, WebSocket, WebSocketClosed, _core
from theframework.websocket import Group

app = Framework()


@app.get("/echo")
def echo(request: Request, response: Response) -> None:
    ws = request.websocket()
    for message in ws:
        ws.send(message)


@app.get("/chat")
def chat(request: Request, response: Response) -> None:
    ws = request.websocket(subprotocols=["chat.v2", "chat.v1"])
    ws.send(ws.subprotocol or "none")
    ws.close()


@app.get("/close/{code}")
def close_with(request: Request, response: Response) -> None:
    ws = request.websocket()
    ws.close(int(request.params["code"]), "bye")


@app.get("/many")
def many(request: Request, response: Response) -> None:
    ws = request.websocket()
    ws.send_many(["one", b"two", "three"])
    ws.receive()


@app.get("/closed")
def closed(request: Request, response: Response) -> None:
    """Reports how the client closed: sends nothing until the client closes, then logs it."""
    ws = request.websocket()
    try:
        ws.receive()
    except WebSocketClosed as error:
        print(f"closed code={error.code} reason={error.reason!r}", flush=True)


@app.get("/timeout")
def timeout(request: Request, response: Response) -> None:
    ws = request.websocket()
    try:
        ws.receive(timeout=0.05)
    except TimeoutError:
        ws.send("timed out")
    ws.send(ws.receive())


@app.get("/plain")
def plain(request: Request, response: Response) -> None:
    response.write("plain")


room = Group()


@app.get("/room")
def join_room(request: Request, response: Response) -> None:
    """Members of one group: a text message from a member is broadcast to every member, a
    message "count" answers the number of members reached by that broadcast."""
    ws = request.websocket()
    room.add(ws)
    try:
        for message in ws:
            reached = room.broadcast(message)
            if message == "count":
                ws.send(f"reached {reached}")
    finally:
        room.discard(ws)


@app.websocket("/route/{name}", subprotocols=["v1"])
def websocket_route(ws: WebSocket, request: Request) -> None:
    """The decorator form: greets with the path parameter and the subprotocol, then echoes."""
    ws.send(f"hello {request.params['name']} over {ws.subprotocol}")
    for message in ws:
        ws.send(message)


@app.get("/origin/listed")
def origin_listed(request: Request, response: Response) -> None:
    ws = request.websocket(origins=["https://app.example", "http://localhost:8080"])
    ws.send("admitted")
    ws.receive()


def example_subdomain(origin: str | None) -> bool:
    return origin is not None and origin.endswith(".example.org")


@app.websocket("/origin/callable", origins=example_subdomain)
def origin_callable(ws: WebSocket, request: Request) -> None:
    ws.send(f"admitted {request.headers['origin']}")
    ws.receive()


held = {"released": False}


@app.get("/hold")
def hold(request: Request, response: Response) -> None:
    """Backpressure: the first message says how many follow; the handler answers "holding" and
    takes none of them until GET /release, then reads them all and says whether each arrived,
    in order (each starts with its index, 4 bytes big-endian)."""
    ws = request.websocket()
    expected = int(ws.receive())
    ws.send("holding")
    while not held["released"]:
        _core.sleep(0.01)
    for index in range(expected):
        message = ws.receive()
        assert isinstance(message, bytes)
        if struct.unpack("!I", message[:4])[0] != index:
            ws.send(f"message {index} missing")
            return
    ws.send(f"received {expected} in order")
    ws.receive()


@app.get("/release")
def release(request: Request, response: Response) -> None:
    held["released"] = True
    response.write("released")
