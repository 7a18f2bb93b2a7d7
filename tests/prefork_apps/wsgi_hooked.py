"""A plain WSGI application answering "<HOOK_WORKER> <pid>": HOOK_WORKER is set by the config
file's worker_start hook (tests/config_files/recording.py) before this module is imported."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"{os.environ.get('HOOK_WORKER', '<unset>')} {os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
