"""The operations tests' application.

- ``/``: the serving worker's pid.
- ``/spin``: a handler stuck in ``while True: pass`` (never yields to the hub), after printing
  "spinning in pid P".
- ``/grow?mib=N``: keeps N MiB more resident in this worker (touched pages).
- ``/status/CODE``: answers with that status.
- ``/version``: the module's VERSION (reload tests change it through the environment file).

With ``OPS_APP_BROKEN_MARKER`` naming an existing file, importing this module fails (a reload
of a broken application).
"""

from __future__ import annotations

import os

from theframework import Framework, Request, Response

marker = os.environ.get("OPS_APP_BROKEN_MARKER")
if marker and os.path.exists(marker):
    raise RuntimeError("ops_app is broken on purpose (the marker file exists)")

VERSION = os.environ.get("OPS_APP_VERSION", "1")
_kept: list[bytearray] = []

app = Framework()


@app.get("/")
def pid(request: Request, response: Response) -> None:
    response.write(str(os.getpid()))


@app.get("/version")
def version(request: Request, response: Response) -> None:
    response.write(VERSION)


@app.get("/spin")
def spin(request: Request, response: Response) -> None:
    print(f"spinning in pid {os.getpid()}", flush=True)
    while True:
        pass


@app.get("/grow")
def grow(request: Request, response: Response) -> None:
    mib = int(request.query_params.get("mib") or "1")
    block = bytearray(mib * 1024 * 1024)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    _kept.append(block)
    response.write(str(os.getpid()))


@app.get("/status/{code}")
def status(request: Request, response: Response) -> None:
    response.status = int(request.params["code"])
    response.write("status")
