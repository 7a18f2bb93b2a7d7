"""A Framework with its own routes (a WebSocket echo, a plain route) and two WSGI applications
mounted beside them: the Flask test app at "/" and a bare WSGI app at "/legacy" that shows the
environ it gets (SCRIPT_NAME, PATH_INFO, wsgi.multiprocess)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from theframework import Framework, Request, Response, WebSocket
from theframework.wsgi import WSGIAdapter

from .flask_app import app as flask_app

app = Framework()


@app.websocket("/ws/echo")
def echo(ws: WebSocket, request: Request) -> None:
    for message in ws:
        ws.send(message)


@app.get("/native")
def native(request: Request, response: Response) -> None:
    response.write(b"framework route")


@app.get("/legacy/native")
def legacy_native(request: Request, response: Response) -> None:
    response.write(b"framework route below a mount")


def legacy(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    view = {
        "SCRIPT_NAME": environ["SCRIPT_NAME"],
        "PATH_INFO": environ["PATH_INFO"],
        "REQUEST_METHOD": environ["REQUEST_METHOD"],
        "multiprocess": environ["wsgi.multiprocess"],
        "SERVER_PORT": environ["SERVER_PORT"],
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(view).encode()]


app.mount("/", WSGIAdapter(flask_app))
app.mount("/legacy", WSGIAdapter(legacy, root_path="/legacy"))
