"""Handlers of the engine-timeout tests (tests/test_promises.py).

- ``POST /upload``: reads the whole body and answers with its length (a client that stops
  sending meets --body-timeout).
- ``GET /big?mib=N``: answers N MiB in one write (a client that never reads meets
  --write-timeout); the handler prints ``write failed: ERROR`` on stderr when the write raises.
- any other GET: ``ok`` (a keep-alive connection then waits for --keepalive-timeout).
"""

from __future__ import annotations

import sys

from theframework import Framework, Request, Response

app = Framework()


@app.post("/upload")
def upload(request: Request, response: Response) -> None:
    response.write(f"body={len(request.body)}")


@app.get("/big")
def big(request: Request, response: Response) -> None:
    size = int(request.query_params.get("mib") or "64") << 20
    try:
        response.write(b"x" * size)
    except Exception as error:
        print(f"write failed: {type(error).__name__}", file=sys.stderr, flush=True)
        raise


@app.get("/")
def ok(request: Request, response: Response) -> None:
    response.write("ok")
