"""WebSocket apps of the tests: an echo route (Autobahn's target), a subprotocol route, routes that
close with a code, send many, or ping; and a plain HTTP route beside them."""

from __future__ import annotations

from theframework import Framework, Request, Response, WebSocket, WebSocketClosed
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
