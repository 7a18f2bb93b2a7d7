"""Choosing the interface (auto-detection, --interface, --root-path) and the adapter's
construction errors; in process, no server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from http_helpers import REPO_ROOT

from theframework import Framework, Request, Response, ServerConfig
from theframework.config import config_from_env
from theframework.server.loading import AppLoadError, detect_interface, load_app
from theframework.wsgi import FileWrapper, WSGIAdapter


def wsgi_function(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [])
    return [b""]


def wsgi_env_function(env: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
    return []


def handler_function(request: Request, response: Response) -> None:
    response.write("x")


def annotated_handler(first: Request, second: Response) -> None:
    pass


def short_handler(req: Any, resp: Any) -> None:
    pass


class WSGICallable:
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return []


def varargs(*args: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (wsgi_function, "wsgi"),
        (wsgi_env_function, "wsgi"),
        (WSGICallable(), "wsgi"),
        (handler_function, "framework"),
        (annotated_handler, "framework"),
        (short_handler, "framework"),
        (Framework(), "framework"),
        (WSGIAdapter(wsgi_function), "framework"),
        (varargs, "framework"),  # undecidable: a handler, with a hint in the log
        (print, "framework"),  # no signature
    ],
)
def test_detect_interface(target: object, expected: str) -> None:
    assert detect_interface(target) == expected


def test_detect_real_frameworks() -> None:
    from tests.wsgi_apps.falcon_app import app as falcon_app
    from tests.wsgi_apps.flask_app import app as flask_app

    assert detect_interface(flask_app) == "wsgi"
    assert detect_interface(falcon_app) == "wsgi"


def test_load_app_wraps_wsgi_apps() -> None:
    config = ServerConfig(root_path="/base")
    handler = load_app(wsgi_function, config)
    assert isinstance(handler, WSGIAdapter)
    assert handler.root_path == "/base"
    # Loading the adapter again (cli, then serve, then serve_listeners) does not wrap it twice.
    assert load_app(handler, config) is handler
    assert load_app(handler, ServerConfig(interface="wsgi")) is handler
    # Without a config (old callers), nothing is wrapped.
    assert load_app(wsgi_function) is wsgi_function


def test_load_app_interface_forced() -> None:
    assert load_app(handler_function, ServerConfig(interface="framework")) is handler_function
    assert load_app(wsgi_function, ServerConfig(interface="framework")) is wsgi_function
    forced = load_app(varargs, ServerConfig(interface="wsgi"))
    assert isinstance(forced, WSGIAdapter)
    assert load_app(handler_function, ServerConfig()) is handler_function
    with pytest.raises(AppLoadError, match="is a Framework, not a WSGI application"):
        load_app(Framework(), ServerConfig(interface="wsgi"))


def test_load_app_multiprocess() -> None:
    handler = load_app(wsgi_function, ServerConfig(), multiprocess=True)
    assert isinstance(handler, WSGIAdapter)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interface": "asgi"}, "interface must be one of auto, framework, wsgi"),
        ({"root_path": "api"}, "root_path must be empty or start with '/'"),
    ],
)
def test_config_validation(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**options)


def test_config_from_environment() -> None:
    environ = {"THEFRAMEWORK_INTERFACE": "WSGI", "THEFRAMEWORK_ROOT_PATH": "/mounted"}
    config = config_from_env(ServerConfig(), environ)
    assert (config.interface, config.root_path) == ("wsgi", "/mounted")


def test_adapter_arguments() -> None:
    assert WSGIAdapter(wsgi_function, root_path="/").root_path == ""
    assert WSGIAdapter(wsgi_function, root_path="/a/b/").root_path == "/a/b"
    with pytest.raises(ValueError, match="root_path must start with '/'"):
        WSGIAdapter(wsgi_function, root_path="a")
    with pytest.raises(ValueError, match="url_scheme"):
        WSGIAdapter(wsgi_function, url_scheme="ftp")
    with pytest.raises(TypeError, match="must be callable"):
        WSGIAdapter(42)  # type: ignore[arg-type]


def test_file_wrapper_sendfile_path(tmp_path: Any) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"0123456789")
    with open(path, "rb") as file:
        assert FileWrapper(file).sendfile_path(None) == str(path)
        assert FileWrapper(file).sendfile_path(10) == str(path)
        assert FileWrapper(file).sendfile_path(5) is None  # a partial length: read blocks
        file.read(1)
        assert FileWrapper(file).sendfile_path(None) is None  # not at the start
    with open(path, "rb") as file:
        path.unlink()
        path.write_bytes(b"replaced")
        assert FileWrapper(file).sendfile_path(None) is None  # not the file at that path
    wrapper = FileWrapper(open(path, "rb"), 3)  # noqa: SIM115
    assert list(wrapper) == [b"rep", b"lac", b"ed"]
    wrapper.close()
    assert wrapper.filelike.closed


def run_cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "theframework", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_rejects_a_framework_as_wsgi() -> None:
    result = run_cli("examples.hello:app", "--interface", "wsgi", "--port", "0")
    assert result.returncode == 2
    assert "is a Framework, not a WSGI application" in result.stderr


def test_cli_rejects_bad_interface_and_root_path() -> None:
    result = run_cli("examples.hello:app", "--interface", "asgi")
    assert result.returncode == 2
    assert "invalid choice: 'asgi'" in result.stderr
    result = run_cli("examples.hello:app", "--root-path", "api")
    assert result.returncode == 2
    assert "root_path must be empty or start with '/'" in result.stderr
