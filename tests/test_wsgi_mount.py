"""A Flask site and WebSockets under one server: WSGI applications mounted on a Framework
(``Framework.mount``) beside its own routes, in one process and under ``--workers 2``, with real
clients (requests, the websockets library)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from http_helpers import ServerProcess, exchange
from websockets.sync.client import connect

MOUNTED = "tests.wsgi_apps.mounted:app"


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend``: one server per backend per module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(MOUNTED, backend) as process:
        yield process


def test_the_framework_routes_answer_first(server: ServerProcess) -> None:
    assert requests.get(server.url("/native"), timeout=10).text == "framework route"
    below = requests.get(server.url("/legacy/native"), timeout=10)
    assert below.text == "framework route below a mount"


def test_a_websocket_route_beside_the_mounted_flask_app(server: ServerProcess) -> None:
    with connect(f"ws://{server.host}:{server.port}/ws/echo", open_timeout=10) as websocket:
        websocket.send("through the framework")
        assert websocket.recv(timeout=10) == "through the framework"
        websocket.send(b"\x00\x01")
        assert websocket.recv(timeout=10) == b"\x00\x01"
    # Meanwhile Flask keeps serving its pages, bodies included, through the root mount.
    assert requests.get(server.url("/"), timeout=10).text == "hello from flask"
    posted = requests.post(server.url("/json"), json={"a": 1}, timeout=10)
    assert posted.json() == {"received": {"a": 1}, "method": "POST"}


def test_the_mounted_flask_app_sees_paths_as_if_it_were_alone(server: ServerProcess) -> None:
    response = requests.get(server.url("/users/7"), timeout=10)
    assert response.json() == {"id": 7, "url": server.url("/users/7")}
    environ = requests.get(server.url("/environ"), timeout=10).json()
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("", "/environ")
    assert environ["SERVER_PORT"] == str(server.port)
    assert environ["multiprocess"] is False
    # Paths no one routes get the Flask app's own 404 (its error handler), not the Framework's.
    missing = requests.get(server.url("/no/such/page"), timeout=10)
    assert (missing.status_code, missing.json()) == (
        404,
        {"error": "not found", "path": "/no/such/page"},
    )


def test_a_prefix_mount_gets_script_name_and_the_rest_of_the_path(server: ServerProcess) -> None:
    for path, path_info in (("/legacy", ""), ("/legacy/", "/"), ("/legacy/a/b", "/a/b")):
        view = requests.delete(server.url(path), timeout=10).json()
        assert view["SCRIPT_NAME"] == "/legacy", path
        assert (view["PATH_INFO"], view["REQUEST_METHOD"]) == (path_info, "DELETE"), path
    # Without a Host header, SERVER_NAME/PORT come from the listening socket, as for a WSGI
    # application served alone.
    response, reader = exchange(server, b"GET /legacy/x HTTP/1.0\r\n\r\n")
    reader.sock.close()
    assert json.loads(response.body)["SERVER_PORT"] == str(server.port)
    # "/legacyx" is not below "/legacy": the root mount (Flask) answers it.
    assert requests.get(server.url("/legacyx"), timeout=10).json()["path"] == "/legacyx"


def test_two_workers_set_wsgi_multiprocess_in_mounted_apps(backend: str) -> None:
    with ServerProcess(MOUNTED, backend, "--workers", "2") as server:
        server.wait_for_stderr("ready: http://")
        assert requests.get(server.url("/environ"), timeout=10).json()["multiprocess"] is True
        assert requests.get(server.url("/legacy/x"), timeout=10).json()["multiprocess"] is True
        with connect(f"ws://{server.host}:{server.port}/ws/echo", open_timeout=10) as websocket:
            websocket.send("workers")
            assert websocket.recv(timeout=10) == "workers"
