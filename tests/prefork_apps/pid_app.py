"""Answers every request with the pid of the worker that served it; ``/slow?marker=PATH`` creates
PATH (so the test knows the request is in flight), then sleeps 2 s in the hub before answering;
``/hold?marker=PATH`` likewise, but sleeps an hour (a request no drain waits out)."""

from __future__ import annotations

import os

from theframework import Framework, Request, Response, _core

app = Framework()


@app.get("/")
def pid(request: Request, response: Response) -> None:
    response.write(str(os.getpid()))


@app.get("/slow")
def slow(request: Request, response: Response) -> None:
    marker = request.query_params.get("marker")
    if marker:
        with open(marker, "w") as stream:
            stream.write(str(os.getpid()))
    _core.sleep(2.0)
    response.write(f"slow {os.getpid()}")


@app.get("/env")
def environment(request: Request, response: Response) -> None:
    response.write(os.environ.get(request.query_params.get("name") or "", "<unset>"))


@app.get("/nap")
def nap(request: Request, response: Response) -> None:
    _core.sleep(0.2)
    response.write(str(os.getpid()))


@app.get("/patched")
def patched(request: Request, response: Response) -> None:
    import sys

    monkey = sys.modules.get("theframework.monkey")
    response.write("yes" if monkey is not None and monkey.is_patched("socket") else "no")


@app.get("/hold")
def hold(request: Request, response: Response) -> None:
    with open(request.query_params.get("marker") or os.devnull, "w") as stream:
        stream.write(str(os.getpid()))
    _core.sleep(3600.0)
    response.write("held")


@app.get("/dotenv")
def dotenv_presence(request: Request, response: Response) -> None:
    try:
        import dotenv  # noqa: F401
    except ImportError:
        response.write("hidden")
    else:
        response.write("present")
