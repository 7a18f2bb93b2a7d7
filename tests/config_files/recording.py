"""A config file (``--config``) whose hooks record each call as one JSON line, with the pid of the
process that ran it, in the file named by HOOKS_RECORD; a hook named in HOOKS_RAISE (comma
separated) raises after recording. ``worker_start`` also sets HOOK_WORKER in the environment,
which the application reads: a WSGI app's per-worker start-up done the config file's way."""

from __future__ import annotations

import json
import os
from typing import Any


def _record(hook: str, *arguments: Any) -> None:
    line = json.dumps({"hook": hook, "pid": os.getpid(), "args": arguments})
    with open(os.environ["HOOKS_RECORD"], "a", encoding="utf-8") as stream:
        stream.write(line + "\n")
    if hook in os.environ.get("HOOKS_RAISE", "").split(","):
        raise RuntimeError(f"{hook} failed on purpose")


def on_starting(config: Any) -> None:
    _record("on_starting", config.workers, config.start_method)


def when_ready(config: Any) -> None:
    _record("when_ready", config.workers)


def worker_start(worker_id: int) -> None:
    os.environ["HOOK_WORKER"] = str(worker_id)
    _record("worker_start", worker_id)


def worker_ready(worker_id: int) -> None:
    _record("worker_ready", worker_id)


def worker_shutdown(worker_id: int) -> None:
    _record("worker_shutdown", worker_id)


def worker_exit(worker_id: int, exit_code: int) -> None:
    _record("worker_exit", worker_id, exit_code)


def on_reload(config: Any) -> None:
    _record("on_reload", config.workers)


def on_exit(config: Any) -> None:
    _record("on_exit", config.workers)


def pre_request(request: Any) -> None:
    _record("pre_request", request.path)


def post_request(request: Any, status: int, seconds: float) -> None:
    _record("post_request", request.path, status, seconds > 0)
