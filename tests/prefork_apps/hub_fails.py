"""``/fail?with=NAME`` answers, then makes the hub itself raise the built-in exception NAME
(MemoryError, OSError, RuntimeError...): a SIGALRM handler raises it from the hub loop, where
Python signal handlers run, so it escapes the hub and ends the worker (exit 50 / 51 / 52).
Any other path answers with the pid."""

from __future__ import annotations

import builtins
import os
import signal
from types import FrameType

from theframework import Framework, Request, Response

app = Framework()


@app.get("/fail")
def fail(request: Request, response: Response) -> None:
    error_type = getattr(builtins, request.query_params.get("with") or "RuntimeError")

    def raise_in_hub(signum: int, frame: FrameType | None) -> None:
        raise error_type(f"raised in the hub of {os.getpid()}")

    signal.signal(signal.SIGALRM, raise_in_hub)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    response.write(str(os.getpid()))


@app.get("/")
def pid(request: Request, response: Response) -> None:
    response.write(str(os.getpid()))
