"""The benchmark app on theframework's own API (``Framework``, ``handler(request, response)``)."""

from __future__ import annotations

from payloads import JSON_OBJECT, LARGE, PLAINTEXT, SLEEP_SECONDS

from theframework import Framework, Request, Response
from theframework._core import sleep

app = Framework()


@app.get("/plaintext")
def plaintext(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write(PLAINTEXT)


@app.get("/json")
def json(request: Request, response: Response) -> None:
    response.json(JSON_OBJECT)


@app.get("/10k")
def large(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "application/octet-stream")
    response.write(LARGE)


@app.post("/echo")
def echo(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "application/octet-stream")
    response.write(request.body)


@app.get("/sleep")
def nap(request: Request, response: Response) -> None:
    sleep(SLEEP_SECONDS)  # the hub runs other requests meanwhile
    response.set_header("Content-Type", "text/plain")
    response.write(PLAINTEXT)
