"""Loading applications like gunicorn and uvicorn users expect: factories (``--factory`` and
``module:create_app()`` call syntax), the refusal of a factory given as an application, and the
PORT / WEB_CONCURRENCY conventions. Real server processes on loopback."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest
from prefork_apps.harness import ServerProcess, http_get

from theframework.cli import build_parser, config_from_arguments, process_config_from_arguments
from theframework.config import ProcessConfig, ServerConfig, config_from_env

pytestmark = pytest.mark.timeout(120)

_LISTENING = r"listening on http://127\.0\.0\.1:(\d+)"


def _single_process_port(server: ServerProcess) -> int:
    return int(server.wait_for_line(_LISTENING).group(1))


def test_factory_flag_calls_the_factory_in_a_single_process() -> None:
    with ServerProcess("prefork_apps.factory_app:create_app", "--factory", "--port", "0") as server:
        port = _single_process_port(server)
        status, _, body = http_get(port)
        assert (status, body) == (200, f"made by a factory in {server.pid}")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_call_syntax_with_literal_arguments() -> None:
    reference = "prefork_apps.factory_app:create_app('hello', punctuation='!')"
    with ServerProcess(reference, "--port", "0") as server:
        status, _, body = http_get(_single_process_port(server))
        assert (status, body) == (200, f"hello! in {server.pid}")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_each_worker_calls_the_factory(start_method: str) -> None:
    with ServerProcess(
        "prefork_apps.factory_app:create_app()", "--workers", "2", "--port", "0",
        "--start-method", start_method,
    ) as server:  # fmt: skip
        port = server.port()
        workers = set(server.worker_pids().values())
        built_in = set()
        for _ in range(200):
            status, _, body = http_get(port)
            assert status == 200
            built_in.add(int(body.rsplit(" ", 1)[1]))
            if built_in == workers:
                break
        assert built_in == workers  # every worker built its own application
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_factory_given_as_the_application_is_refused_with_exit_2(workers: str) -> None:
    with ServerProcess(
        "prefork_apps.factory_app:create_app", "--workers", workers, "--port", "0"
    ) as server:
        assert server.wait() == 2
        assert "takes no arguments: it looks like an application factory" in server.output
        assert "--factory" in server.output
        assert "prefork_apps.factory_app:create_app()" in server.output
        assert "Traceback" not in server.output


@pytest.mark.parametrize(
    ("reference", "arguments", "message"),
    [
        ("prefork_apps.factory_app:create_app(open('x'))", (), "arguments must be literals"),
        ("prefork_apps.factory_app:create_app(**{})", (), "** is not allowed"),
        ("prefork_apps.factory_app:returns_nothing", ("--factory",), "returned None"),
        ("prefork_apps.factory_app:calls", ("--factory",), "is not callable (got int)"),
    ],
)
def test_bad_factories_exit_2_with_one_line(
    reference: str, arguments: tuple[str, ...], message: str
) -> None:
    with ServerProcess(reference, *arguments, "--port", "0") as server:
        assert server.wait() == 2
        assert message in server.output
        assert re.search(r"^theframework: error: ", server.output, re.MULTILINE)


def test_a_factory_that_raises_exits_3_with_its_traceback() -> None:
    with ServerProcess(
        "prefork_apps.factory_app:create_app(1, 2, 3)", "--port", "0",
        expected_tracebacks=("TypeError",),
    ) as server:  # fmt: skip
        assert server.wait() == 3
        assert server.output.count("Traceback (most recent call last)") == 1
        assert "TypeError" in server.output


@pytest.mark.parametrize(
    ("environment", "argv", "port", "workers"),
    [
        ({}, [], 8000, 1),
        ({"PORT": "9000", "WEB_CONCURRENCY": "3"}, [], 9000, 3),
        (
            {"PORT": "9000", "WEB_CONCURRENCY": "3", "THEFRAMEWORK_PORT": "9100",
             "THEFRAMEWORK_WORKERS": "4"},
            [], 9100, 4,
        ),
        (
            {"PORT": "9000", "WEB_CONCURRENCY": "3", "THEFRAMEWORK_PORT": "9100",
             "THEFRAMEWORK_WORKERS": "4"},
            ["--port", "9200", "--workers", "5"], 9200, 5,
        ),
    ],
)  # fmt: skip
def test_port_and_web_concurrency_come_below_our_variables_and_the_command_line(
    environment: dict[str, str], argv: list[str], port: int, workers: int
) -> None:
    arguments = build_parser().parse_args(["m:app", *argv])
    assert config_from_arguments(arguments, environment).port == port
    assert process_config_from_arguments(arguments, environment).workers == workers


def test_bad_conventional_variables_are_named() -> None:
    with pytest.raises(ValueError, match=r"^PORT='http' is not an integer"):
        config_from_env(ServerConfig(), {"PORT": "http"})
    with pytest.raises(ValueError, match=r"^WEB_CONCURRENCY='-1': workers must be >= 0"):
        config_from_env(ProcessConfig(), {"WEB_CONCURRENCY": "-1"})


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """A directory outside the tests holding an application module."""
    (tmp_path / "tf_elsewhere_app.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.getcwd().encode()]\n"
    )
    return tmp_path


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("option", "start_method"), [("--app-dir", "spawn"), ("--chdir", "forkserver")]
)
def test_app_dir_and_chdir_find_the_application(
    elsewhere: Path, workers: str, option: str, start_method: str
) -> None:
    """--app-dir puts the directory first on the path and leaves the working directory alone;
    --chdir moves into it before loading. Workers inherit both."""
    with ServerProcess(
        "tf_elsewhere_app:app", option, str(elsewhere), "--workers", workers,
        "--start-method", start_method, "--port", "0",
    ) as server:  # fmt: skip
        port = _single_process_port(server) if workers == "1" else server.port()
        status, _, body = http_get(port)
        working_directory = elsewhere if option == "--chdir" else Path(__file__).parent
        assert (status, body) == (200, str(working_directory))
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [("--chdir", "--chdir {}: No such file or directory"), ("--app-dir", "--app-dir {}: not a")],
)
def test_bad_directories_exit_2_naming_the_option(
    tmp_path: Path, option: str, message: str
) -> None:
    missing = tmp_path / "missing"
    with ServerProcess("tf_elsewhere_app:app", option, str(missing), "--port", "0") as server:
        assert server.wait() == 2
        assert f"theframework: error: {message.format(missing)}" in server.output
