"""The benchmark app as a PEP 3333 WSGI application (gunicorn sync and gevent, Granian WSGI,
bjoern, fastwsgi, and theframework's --interface wsgi). The sleep is ``time.sleep``: cooperative
where the server patches it (gevent, theframework --patch-all), blocking elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from payloads import LARGE, PLAINTEXT, SLEEP_SECONDS, json_body

StartResponse = Callable[..., Any]


def _answer(start_response: StartResponse, content_type: str, body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


_flask_app: Any = None


def _flask(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Scenario 9: the same Flask app on every WSGI server (imported on first use)."""
    global _flask_app
    if _flask_app is None:
        from flask_app import app as flask_app

        _flask_app = flask_app
    result: Iterable[bytes] = _flask_app(environ, start_response)
    return result


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path.startswith("/flask/"):
        return _flask(environ, start_response)
    if path == "/plaintext":
        return _answer(start_response, "text/plain", PLAINTEXT)
    if path == "/json":
        return _answer(start_response, "application/json", json_body())
    if path == "/10k":
        return _answer(start_response, "application/octet-stream", LARGE)
    if path == "/echo" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        return _answer(start_response, "application/octet-stream", body)
    if path == "/sleep":
        time.sleep(SLEEP_SECONDS)
        return _answer(start_response, "text/plain", PLAINTEXT)
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]
