"""What a request behind a proxy looks like, as JSON: ``app`` (a Framework) answers with the
request's client, scheme, host and URL; ``wsgi_app`` answers with the WSGI environ's client,
scheme and host variables. Used by the proxy-header, PROXY protocol, nginx and HAProxy tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from theframework import Framework, Request, Response

app = Framework()


@app.get("/{rest:path}")
def describe(request: Request, response: Response) -> None:
    client = request.client
    response.json(
        {
            "client": list(client) if isinstance(client, tuple) else client,
            "scheme": request.scheme,
            "host": request.host,
            "url": request.url,
            "x_forwarded_for": request.headers.get("x-forwarded-for"),
        }
    )


@app.get("/")
def describe_root(request: Request, response: Response) -> None:
    describe(request, response)


WSGI_KEYS = (
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "SERVER_NAME",
    "SERVER_PORT",
    "HTTP_X_FORWARDED_FOR",
)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = json.dumps({key: environ.get(key) for key in WSGI_KEYS}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]
