"""Unmodified Flask, Django and Falcon applications served through the WSGI adapter, in one
process and under ``--workers 2``. The interface is auto-detected for these apps (the Flask
server passes ``--interface wsgi`` explicitly, the others rely on ``auto``)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator

import pytest
import requests
from http_helpers import ServerProcess, exchange, simple_get

FLASK = "tests.wsgi_apps.flask_app:app"
DJANGO = "tests.wsgi_apps.djangoproject.wsgi:application"
FALCON = "tests.wsgi_apps.falcon_app:app"


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> str:
    """Module-scoped override of conftest's ``backend``: one server per backend per module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def flask_server(backend: str) -> Iterator[ServerProcess]:
    # /crash logs a traceback on purpose (Flask's own 500 handling).
    with ServerProcess(FLASK, backend, "--interface", "wsgi", allow_tracebacks=True) as server:
        yield server


@pytest.fixture(scope="module")
def django_server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(DJANGO, backend) as server:
        yield server


@pytest.fixture(scope="module")
def falcon_server(backend: str) -> Iterator[ServerProcess]:
    with ServerProcess(FALCON, backend) as server:
        yield server


# -- Flask ---------------------------------------------------------------------------------


def test_flask_routing_and_url_for(flask_server: ServerProcess) -> None:
    response = requests.get(flask_server.url("/"), timeout=10)
    assert response.status_code == 200
    assert response.text == "hello from flask"
    assert response.headers["Content-Length"] == str(len("hello from flask"))
    response = requests.get(flask_server.url("/users/42"), timeout=10)
    assert response.json() == {"id": 42, "url": flask_server.url("/users/42")}


def test_flask_json(flask_server: ServerProcess) -> None:
    payload = {"a": [1, 2, {"b": None}], "text": "h\u00e9llo"}
    response = requests.post(flask_server.url("/json"), json=payload, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"received": payload, "method": "POST"}


def test_flask_form_post(flask_server: ServerProcess) -> None:
    data = [("name", "J\u00fcrgen & co"), ("tag", "a"), ("tag", "b")]
    response = requests.post(flask_server.url("/form"), data=data, timeout=10)
    assert response.json() == {"name": "J\u00fcrgen & co", "tags": ["a", "b"]}


def test_flask_file_upload(flask_server: ServerProcess) -> None:
    content = os.urandom(300_000)
    response = requests.post(
        flask_server.url("/upload"),
        files={"file": ("data.bin", content, "application/octet-stream")},
        data={"note": "multipart"},
        timeout=10,
    )
    assert response.json() == {
        "filename": "data.bin",
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "note": "multipart",
    }


def test_flask_streaming(flask_server: ServerProcess) -> None:
    response = simple_get(flask_server, "/stream?count=50")
    assert response.status == 200
    assert response.framing == "chunked"
    lines = response.body.decode().splitlines()
    assert lines == [f"line {index} of /stream" for index in range(50)]


def test_flask_send_file(flask_server: ServerProcess) -> None:
    response = simple_get(flask_server, "/download")
    assert response.status == 200
    # Larger than the adapter buffers: a Content-Length means the zero-copy path was taken.
    assert response.framing == "content-length"
    digest = requests.get(flask_server.url("/digest"), timeout=10).json()["sha256"]
    assert hashlib.sha256(response.body).hexdigest() == digest
    head, reader = exchange(
        flask_server, b"HEAD /download HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HEAD"
    )
    reader.sock.close()
    assert head.header("Content-Length") == str(len(response.body))


def test_flask_head_of_a_view(flask_server: ServerProcess) -> None:
    response = requests.head(flask_server.url("/users/7"), timeout=10)
    full = requests.get(flask_server.url("/users/7"), timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(full.content))
    assert response.content == b""


def test_flask_error_handlers(flask_server: ServerProcess) -> None:
    response = requests.get(flask_server.url("/teapot"), timeout=10)
    assert response.status_code == 418
    assert response.json() == {"error": "teapot", "detail": "short and stout"}
    response = requests.get(flask_server.url("/missing"), timeout=10)
    assert response.status_code == 404
    assert response.json() == {"error": "not found", "path": "/missing"}
    response = requests.get(flask_server.url("/crash"), timeout=10)
    assert response.status_code == 500
    flask_server.wait_for_stderr("flask view failing on purpose")


def test_flask_keep_alive(flask_server: ServerProcess) -> None:
    with requests.Session() as session:
        for index in range(20):
            response = session.post(flask_server.url("/json"), json={"i": index}, timeout=10)
            assert response.json()["received"] == {"i": index}


def test_flask_root_path(backend: str) -> None:
    arguments = ("--interface", "wsgi", "--root-path", "/prefix")
    with ServerProcess(FLASK, backend, *arguments) as server:
        response = requests.get(server.url("/prefix/users/3"), timeout=10)
        assert response.json() == {"id": 3, "url": server.url("/prefix/users/3")}
        environ = requests.get(server.url("/prefix/environ"), timeout=10).json()
        assert environ["SCRIPT_NAME"] == "/prefix"
        assert environ["PATH_INFO"] == "/environ"


# -- Django --------------------------------------------------------------------------------


def test_django_view(django_server: ServerProcess) -> None:
    response = requests.get(django_server.url("/hello/"), timeout=10)
    assert response.status_code == 200
    assert response.text == "hello from django at /hello/"


def test_django_json_echo(django_server: ServerProcess) -> None:
    response = requests.post(django_server.url("/echo/?q=x%20y"), json={"k": [1]}, timeout=10)
    assert response.json() == {
        "method": "POST",
        "body": {"k": [1]},
        "query": "x y",
        "script_name": "",
        "absolute": django_server.url("/echo/?q=x%20y"),
    }


def test_django_admin_login_page(django_server: ServerProcess) -> None:
    response = requests.get(django_server.url("/admin/login/"), timeout=10)
    assert response.status_code == 200
    assert "<title>Log in | Django site admin</title>" in response.text
    assert 'name="csrfmiddlewaretoken"' in response.text
    assert "csrftoken" in response.cookies
    redirect = requests.get(django_server.url("/admin/"), allow_redirects=False, timeout=10)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "/admin/login/?next=/admin/"


def test_django_not_found(django_server: ServerProcess) -> None:
    response = requests.get(django_server.url("/nope/"), timeout=10)
    assert response.status_code == 404


def test_django_root_path(backend: str) -> None:
    with ServerProcess(DJANGO, backend, "--root-path", "/site") as server:
        response = requests.get(server.url("/site/hello/"), timeout=10)
        assert response.text == "hello from django at /site/hello/"
        page = requests.get(server.url("/site/admin/login/"), timeout=10).text
        assert re.search(r'action="/site/admin/login/', page), page[:2000]


# -- Falcon --------------------------------------------------------------------------------


def test_falcon_resources(falcon_server: ServerProcess) -> None:
    assert requests.get(falcon_server.url("/hello?who=you"), timeout=10).text == "hello you"
    response = requests.put(falcon_server.url("/items/pen"), json={"color": "blue"}, timeout=10)
    assert response.status_code == 201
    assert response.json() == {"stored": "pen"}
    assert requests.get(falcon_server.url("/items/pen"), timeout=10).json() == {"color": "blue"}
    missing = requests.get(falcon_server.url("/items/none"), timeout=10)
    assert missing.status_code == 404
    assert missing.json()["title"] == "no such item"


# -- --workers 2 ---------------------------------------------------------------------------


def _pids_and_flags(server: ServerProcess) -> tuple[set[int], set[bool]]:
    pids: set[int] = set()
    flags: set[bool] = set()
    for _ in range(200):
        # A fresh connection each time, so SO_REUSEPORT spreads them over the workers.
        environ = requests.get(server.url("/environ"), headers={"Connection": "close"}, timeout=10)
        view = environ.json()
        pids.add(view["pid"])
        flags.add(view["multiprocess"])
        if len(pids) == 2:
            break
    return pids, flags


@pytest.mark.parametrize("app", [FLASK, DJANGO, FALCON])
def test_two_workers(backend: str, app: str) -> None:
    with ServerProcess(app, backend, "--workers", "2") as server:
        server.wait_for_stderr("ready: http://")
        if app == FLASK:
            pids, _ = _pids_and_flags(server)
            assert len(pids) == 2
            response = requests.post(server.url("/json"), json={"w": 2}, timeout=10)
            assert response.json()["received"] == {"w": 2}
            assert simple_get(server, "/download").framing == "content-length"
        elif app == DJANGO:
            page = requests.get(server.url("/admin/login/"), timeout=10)
            assert "Log in | Django site admin" in page.text
        else:
            assert requests.get(server.url("/hello"), timeout=10).text == "hello falcon"


def test_two_workers_set_wsgi_multiprocess(backend: str) -> None:
    with ServerProcess(FLASK, backend, "--workers", "2") as server:
        server.wait_for_stderr("ready: http://")
        _, flags = _pids_and_flags(server)
        assert flags == {True}
