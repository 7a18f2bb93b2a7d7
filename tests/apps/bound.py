"""Handlers of the connection-bound tests (one server process).

- ``/block?seconds=S``: blocks the whole hub for S seconds (a plain ``time.sleep``), after
  printing ``hub blocked`` on stderr: meanwhile the kernel queues every new client.
- ``/nap?seconds=S``: sleeps S seconds in the hub (other requests go on) and answers
  ``ACTIVE FINISHED``: how many /nap handlers were running when it started (itself included) and
  how many had finished, so a test can tell waves apart without timing them.
"""

from __future__ import annotations

import sys
import time

from theframework import Framework, Request, Response, _core

app = Framework()

_running = 0
_finished = 0


@app.get("/block")
def block(request: Request, response: Response) -> None:
    print("hub blocked", file=sys.stderr, flush=True)
    time.sleep(float(request.query_params.get("seconds") or "1"))
    response.write("unblocked")


@app.get("/nap")
def nap(request: Request, response: Response) -> None:
    global _running, _finished
    _running += 1
    started = f"{_running} {_finished}"
    try:
        _core.sleep(float(request.query_params.get("seconds") or "0.3"))
    finally:
        _running -= 1
        _finished += 1
    response.write(started)
