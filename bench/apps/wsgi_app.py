"""The benchmark app as a PEP 3333 WSGI application (gunicorn sync and gevent, Granian WSGI,
bjoern, fastwsgi, and theframework's --interface wsgi). The sleep is ``time.sleep``: cooperative
where the server patches it (gevent, theframework --patch-all), blocking elsewhere."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable
from typing import Any

from payloads import LARGE, PLAINTEXT, SLEEP_SECONDS, json_body

StartResponse = Callable[..., Any]


def _answer(start_response: StartResponse, content_type: str, body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


# The framework apps of scenarios 9-12, imported on first use (a server serving only /plaintext
# never loads them): path prefix -> (module, attribute).
_FRAMEWORK_APPS = {
    "/flask/": ("flask_app", "app"),  # scenario 9
    "/django/": ("django_app", "application"),  # scenarios 10 and 11
    "/falcon/": ("falcon_app", "app"),  # scenario 12
}
_loaded: dict[str, Any] = {}


def _framework_app(prefix: str) -> Any:
    application = _loaded.get(prefix)
    if application is None:
        module, attribute = _FRAMEWORK_APPS[prefix]
        application = _loaded[prefix] = getattr(importlib.import_module(module), attribute)
    return application


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path.startswith(("/flask/", "/django/", "/falcon/")):
        prefix = path[: path.index("/", 1) + 1]
        result: Iterable[bytes] = _framework_app(prefix)(environ, start_response)
        return result
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
