"""Hello-world twins for comparing the WSGI adapter with the native handler under wrk: serve
``tests.wsgi_apps.hello:wsgi_app`` and ``tests.wsgi_apps.hello:native_handler`` side by side."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from theframework import Request, Response

BODY = b"hello world"


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
    return [BODY]


def native_handler(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write(BODY)
