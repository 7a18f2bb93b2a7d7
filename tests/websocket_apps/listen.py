"""WebSocket apps of the listen() tests: routes whose handlers call ``ws.listen(on_message,
on_close)`` and return (echo, a slow callback, a Group room, a failing callback, misuse of the
API), the same echo with a blocking handler for comparison, and /greenlets, which counts the
greenlets alive in the worker. Every on_close prints ``on_close <route> <code> <reason>``."""

from __future__ import annotations

import gc
import struct

from greenlet import greenlet

from theframework import Framework, Request, Response, WebSocket, _core
from theframework.websocket import Group

app = Framework()


def report_close(route: str) -> object:
    def on_close(ws: WebSocket, code: int, reason: str) -> None:
        print(f"on_close {route} {code} {reason!r}", flush=True)

    return on_close


def echo_message(ws: WebSocket, message: str | bytes) -> None:
    ws.send(message)


@app.get("/echo")
def echo(request: Request, response: Response) -> None:
    request.websocket().listen(echo_message, report_close("/echo"))


@app.websocket("/route")
def echo_route(ws: WebSocket, request: Request) -> None:
    """The decorator form, without on_close."""
    ws.listen(echo_message)


@app.get("/blocking")
def blocking(request: Request, response: Response) -> None:
    ws = request.websocket()
    for message in ws:
        ws.send(message)


def slow_message(ws: WebSocket, message: str | bytes) -> None:
    """ "sleep:<seconds>:<text>" answers "sleeping <text>", sleeps that long, then answers
    <text>: messages that arrive meanwhile wait for this one. Others are echoed."""
    if isinstance(message, str) and message.startswith("sleep:"):
        _, seconds, text = message.split(":", 2)
        ws.send(f"sleeping {text}")
        _core.sleep(float(seconds))
        ws.send(text)
    else:
        ws.send(message)


@app.get("/slow")
def slow(request: Request, response: Response) -> None:
    request.websocket().listen(slow_message, report_close("/slow"))


room = Group()


def room_message(ws: WebSocket, message: str | bytes) -> None:
    """A message is broadcast to every member; "count" also answers how many it reached."""
    reached = room.broadcast(message)
    if message == "count":
        ws.send(f"reached {reached}")


def room_close(ws: WebSocket, code: int, reason: str) -> None:
    room.discard(ws)
    print(f"on_close /room {code} {reason!r}", flush=True)


@app.get("/room")
def join_room(request: Request, response: Response) -> None:
    ws = request.websocket()
    room.add(ws)
    ws.listen(room_message, room_close)


def failing_message(ws: WebSocket, message: str | bytes) -> None:
    if message == "fail":
        raise ValueError("on_message failed on purpose")
    ws.send(message)


@app.get("/fail")
def fail(request: Request, response: Response) -> None:
    request.websocket().listen(failing_message, report_close("/fail"))


def closing_message(ws: WebSocket, message: str | bytes) -> None:
    """ "bye" closes with 4000 from the callback; anything else is echoed."""
    if message == "bye":
        ws.close(4000, "callback closed")
    else:
        ws.send(message)


@app.get("/close")
def close_from_callback(request: Request, response: Response) -> None:
    request.websocket().listen(closing_message, report_close("/close"))


closable = Group()


@app.get("/closable")
def join_closable(request: Request, response: Response) -> None:
    ws = request.websocket()
    closable.add(ws)
    ws.listen(echo_message, report_close("/closable"))


@app.get("/close-all")
def close_all(request: Request, response: Response) -> None:
    """Closes every /closable WebSocket with 4005 from this request's greenlet (not a callback):
    close() on a listening WebSocket returns without waiting for the client's answer."""
    for ws in closable:
        ws.close(4005, "closed by a request")
        closable.discard(ws)
    response.write("closed")


@app.get("/misuse")
def misuse(request: Request, response: Response) -> None:
    """Tells the client what a second listen() and a receive() after listen() raise, then
    listens."""
    ws = request.websocket()
    ws.listen(echo_message, report_close("/misuse"))
    for attempt in (lambda: ws.listen(echo_message), ws.receive, lambda: next(iter(ws))):
        try:
            attempt()
        except RuntimeError as error:
            ws.send(f"RuntimeError: {error}")
        else:
            ws.send("no error")


@app.get("/raise")
def raise_after_listen(request: Request, response: Response) -> None:
    """listen(), then the handler fails: 1011 and on_close, as for a failing handler."""
    request.websocket().listen(echo_message, report_close("/raise"))
    raise RuntimeError("the handler failed after listen()")


@app.get("/greenlets")
def greenlets(request: Request, response: Response) -> None:
    """The number of greenlets alive in this worker (the hub's included)."""
    gc.collect()
    response.write(str(sum(isinstance(item, greenlet) for item in gc.get_objects())))


held = {"released": False}
# Per WebSocket of /hold: [messages expected, next index]; absent before the first message.
holds: dict[WebSocket, list[int]] = {}


def hold_message(ws: WebSocket, message: str | bytes) -> None:
    """Backpressure: the first message says how many follow; the callback answers "holding" and
    blocks until GET /release, so the others queue; each later one must carry its index (4 bytes
    big-endian) in order, and the last is answered "received N in order"."""
    state = holds.get(ws)
    if state is None:
        holds[ws] = [int(message), 0]
        ws.send("holding")
        while not held["released"]:
            _core.sleep(0.01)
        return
    assert isinstance(message, bytes)
    if struct.unpack("!I", message[:4])[0] != state[1]:
        ws.send(f"message {state[1]} missing")
    state[1] += 1
    if state[1] == state[0]:
        ws.send(f"received {state[0]} in order")


@app.get("/hold")
def hold(request: Request, response: Response) -> None:
    request.websocket().listen(hold_message, lambda ws, code, reason: holds.pop(ws, None))


@app.get("/release")
def release(request: Request, response: Response) -> None:
    held["released"] = True
    response.write("released")
