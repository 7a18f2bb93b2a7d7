"""ServerConfig validation, THEFRAMEWORK_<OPTION> parsing, the command line, and the
pure-Python helpers of server.py (listening sockets, application loading).

The paths that start a server are covered by the end-to-end tests with real sockets.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from theframework import Framework, ServerConfig
from theframework.cli import build_parser, config_from_arguments, main
from theframework.config import config_from_env, env_name
from theframework.main import make_config
from theframework.server.loading import AppLoadError, import_from_string, load_app
from theframework.server.sockets import bind_socket

# -- ServerConfig ---------------------------------------------------------------------------------


def test_defaults() -> None:
    config = ServerConfig()
    assert (config.host, config.port, config.uds, config.backlog) == ("127.0.0.1", 8000, None, 1024)
    assert (config.backend, config.log_level, config.app) == ("auto", "info", None)
    assert (config.max_header_size, config.max_body_size) == (32768, 1048576)
    assert (config.header_timeout, config.body_timeout) == (10.0, 30.0)
    assert (config.keepalive_timeout, config.write_timeout) == (5.0, 30.0)
    assert (config.max_connections, config.graceful_timeout) == (1024, 30.0)
    assert (config.forwarded_allow_ips, config.proxy_headers, config.proxy_protocol) == (
        "127.0.0.1,::1",
        True,
        False,
    )


def test_only_implemented_options_exist() -> None:
    assert [field.name for field in dataclasses.fields(ServerConfig)] == [
        "app",
        "factory",
        "host",
        "port",
        "uds",
        "uds_mode",
        "uds_group",
        "fds",
        "backlog",
        "backend",
        "max_header_size",
        "max_body_size",
        "header_timeout",
        "body_timeout",
        "keepalive_timeout",
        "write_timeout",
        "max_connections",
        "ws_max_message_size",
        "ws_max_queue",
        "ws_ping_interval",
        "ws_ping_timeout",
        "ws_compression",
        "graceful_timeout",
        "log_level",
        "interface",
        "root_path",
        "forwarded_allow_ips",
        "proxy_headers",
        "proxy_protocol",
    ]


def test_frozen_and_slotted() -> None:
    config = ServerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert not hasattr(config, "__dict__")
    assert dataclasses.replace(config, port=0).port == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": -1}, "port must be between 0 and 65535, got -1"),
        ({"port": 65536}, "port must be between 0 and 65535, got 65536"),
        ({"port": "80"}, "port must be an integer, got '80'"),
        ({"port": True}, "port must be an integer"),
        ({"host": ""}, "host must be a non-empty string"),
        ({"uds": ""}, "uds must be a non-empty path"),
        ({"uds_mode": 0o1777}, "uds_mode must be an octal mode between 0 and 0777, got 1023"),
        ({"uds_group": "no-such-group-here"}, "uds_group: no group 'no-such-group-here'"),
        ({"fds": (3, -1)}, "fds must be a tuple of file descriptor numbers"),
        ({"backlog": 0}, "backlog must be >= 1"),
        ({"backend": "kqueue"}, "backend must be one of auto, io_uring, epoll, got 'kqueue'"),
        ({"max_header_size": 0}, "max_header_size must be >= 1"),
        ({"max_body_size": -5}, "max_body_size must be >= 1"),
        ({"header_timeout": 0}, "header_timeout must be finite and > 0"),
        ({"body_timeout": float("inf")}, "body_timeout must be finite"),
        ({"keepalive_timeout": float("nan")}, "keepalive_timeout must be finite"),
        ({"write_timeout": "3"}, "write_timeout must be a number of seconds"),
        ({"max_connections": 0}, "max_connections must be >= 1"),
        ({"graceful_timeout": -1}, "graceful_timeout must be finite and >= 0"),
        ({"log_level": "verbose"}, "log_level must be one of critical, error"),
        ({"app": "no_colon"}, "app must be 'module:attribute'"),
    ],
)
def test_validation_messages(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        ServerConfig(**options)


def test_edge_values_are_accepted() -> None:
    config = ServerConfig(port=0, graceful_timeout=0, header_timeout=1, log_level="DEBUG")
    assert config.port == 0 and config.graceful_timeout == 0
    assert ServerConfig(port=65535, uds="/tmp/x.sock", app="pkg.mod:app").port == 65535


def test_bind_description() -> None:
    assert ServerConfig().bind_description == "127.0.0.1:8000"
    assert ServerConfig(host="::1", port=80).bind_description == "[::1]:80"
    assert ServerConfig(host="[::]", port=80).bind_description == "[::]:80"
    assert ServerConfig(uds="/run/app.sock").bind_description == "unix:/run/app.sock"


def test_make_config_applies_options_and_names_unknown_ones() -> None:
    assert make_config(None, {}) == ServerConfig()
    assert make_config(ServerConfig(port=1), {"host": "::"}) == ServerConfig(port=1, host="::")
    with pytest.raises(TypeError, match=r"unknown server option.*workers"):
        make_config(None, {"workers": 4})
    with pytest.raises(ValueError, match="port"):
        make_config(None, {"port": 99999})


# -- environment -----------------------------------------------------------------------------------


def test_env_name() -> None:
    assert env_name("max_body_size") == "THEFRAMEWORK_MAX_BODY_SIZE"


def test_config_from_env_converts_every_type() -> None:
    environ = {
        "THEFRAMEWORK_APP": "pkg:app",
        "THEFRAMEWORK_HOST": "::1",
        "THEFRAMEWORK_PORT": " 9000 ",
        "THEFRAMEWORK_UDS": "/tmp/app.sock",
        "THEFRAMEWORK_UDS_MODE": "0660",
        "THEFRAMEWORK_UDS_GROUP": "0",
        "THEFRAMEWORK_FDS": "3, 4",
        "THEFRAMEWORK_BACKLOG": "2_048",
        "THEFRAMEWORK_BACKEND": "EPOLL",
        "THEFRAMEWORK_MAX_HEADER_SIZE": "16384",
        "THEFRAMEWORK_MAX_BODY_SIZE": "2097152",
        "THEFRAMEWORK_HEADER_TIMEOUT": "2.5",
        "THEFRAMEWORK_BODY_TIMEOUT": "3",
        "THEFRAMEWORK_KEEPALIVE_TIMEOUT": "1e1",
        "THEFRAMEWORK_WRITE_TIMEOUT": "4",
        "THEFRAMEWORK_MAX_CONNECTIONS": "10",
        "THEFRAMEWORK_GRACEFUL_TIMEOUT": "0",
        "THEFRAMEWORK_LOG_LEVEL": "Debug",
        "THEFRAMEWORK_WORKERS": "4",  # not a ServerConfig option: ignored here
        "PORT": "1",
    }
    config = config_from_env(ServerConfig(), environ)
    assert config == ServerConfig(
        app="pkg:app",
        host="::1",
        port=9000,
        uds="/tmp/app.sock",
        uds_mode=0o660,
        uds_group="0",
        fds=(3, 4),
        backlog=2048,
        backend="epoll",
        max_header_size=16384,
        max_body_size=2097152,
        header_timeout=2.5,
        body_timeout=3.0,
        keepalive_timeout=10.0,
        write_timeout=4.0,
        max_connections=10,
        graceful_timeout=0.0,
        log_level="debug",
    )


def test_forwarded_allow_ips_variables_and_checks() -> None:
    """FORWARDED_ALLOW_IPS (gunicorn's and uvicorn's name) applies below THEFRAMEWORK_'s; the list
    takes addresses, CIDR networks and '*', and names a bad entry."""
    assert config_from_env(ServerConfig(), {"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == "*"
    both = {"FORWARDED_ALLOW_IPS": "*", "THEFRAMEWORK_FORWARDED_ALLOW_IPS": "10.0.0.0/8"}
    assert config_from_env(ServerConfig(), both).forwarded_allow_ips == "10.0.0.0/8"
    ServerConfig(forwarded_allow_ips=" 10.0.0.0/8, ::1, 2001:db8::/32 ,*")
    ServerConfig(forwarded_allow_ips="")
    for bad in ("localhost", "10.0.0.0/33", "10.0.0.0/255.0.0.0", "::/129", "1.2.3.4/"):
        with pytest.raises(ValueError, match=f"forwarded_allow_ips: '{re.escape(bad)}' is not"):
            ServerConfig(forwarded_allow_ips=bad)


def test_proxy_headers_toggle_and_proxy_protocol_flag() -> None:
    arguments = build_parser().parse_args(["m:app", "--no-proxy-headers", "--proxy-protocol"])
    config = config_from_arguments(arguments, {})
    assert (config.proxy_headers, config.proxy_protocol) == (False, True)
    arguments = build_parser().parse_args(["m:app", "--proxy-headers"])
    assert config_from_arguments(arguments, {"THEFRAMEWORK_PROXY_HEADERS": "0"}).proxy_headers
    assert not config_from_arguments(
        build_parser().parse_args(["m:app"]), {"THEFRAMEWORK_PROXY_HEADERS": "off"}
    ).proxy_headers


def test_config_from_env_keeps_base_when_unset_and_empty_uds_means_none() -> None:
    base = ServerConfig(port=1234, uds="/x.sock")
    assert config_from_env(base, {}) is base
    assert config_from_env(base, {"THEFRAMEWORK_UDS": ""}).uds is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("THEFRAMEWORK_PORT", "http", "THEFRAMEWORK_PORT='http' is not an integer"),
        ("THEFRAMEWORK_PORT", "8.5", "THEFRAMEWORK_PORT='8.5' is not an integer"),
        ("THEFRAMEWORK_PORT", "70000", "THEFRAMEWORK_PORT='70000': port must be between"),
        ("THEFRAMEWORK_HEADER_TIMEOUT", "soon", "THEFRAMEWORK_HEADER_TIMEOUT='soon' is not a"),
        ("THEFRAMEWORK_BODY_TIMEOUT", "inf", "THEFRAMEWORK_BODY_TIMEOUT='inf' is not a"),
        ("THEFRAMEWORK_BACKEND", "kqueue", "THEFRAMEWORK_BACKEND='kqueue': backend must be"),
        ("THEFRAMEWORK_MAX_BODY_SIZE", "-1", "THEFRAMEWORK_MAX_BODY_SIZE='-1': max_body_size"),
        ("THEFRAMEWORK_HOST", "", "THEFRAMEWORK_HOST='': host must be"),
    ],
)
def test_config_from_env_errors_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        config_from_env(ServerConfig(), {variable: value})
    assert str(raised.value).startswith(message)


# -- command line --------------------------------------------------------------------------------


def test_help_exits_0_and_shows_defaults_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "usage: theframework" in text
    assert "default: 8000" in text
    assert "default: 127.0.0.1" in text
    assert "THEFRAMEWORK_MAX_BODY_SIZE" in text
    for flag in (
        "--host",
        "--port",
        "--uds",
        "--uds-mode",
        "--uds-group",
        "--fd",
        "--backlog",
        "--backend",
        "--max-header-size",
        "--max-body-size",
        "--header-timeout",
        "--body-timeout",
        "--keepalive-timeout",
        "--write-timeout",
        "--max-connections",
        "--graceful-timeout",
        "--log-level",
    ):
        assert flag in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("theframework ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["app:app", "--port", "70000"], "port must be between 0 and 65535, got 70000"),
        (["app:app", "--port", "eighty"], "argument --port: invalid int value: 'eighty'"),
        (["app:app", "--backend", "kqueue"], "argument --backend: invalid choice: 'kqueue'"),
        (["app:app", "--header-timeout", "0"], "header_timeout must be finite and > 0"),
        (["app:app", "--log-level", "loud"], "argument --log-level: invalid choice"),
        (["app:app", "--uds-mode", "rw"], "argument --uds-mode: invalid octal_mode value: 'rw'"),
        (["app:app", "--uds-mode", "0999"], "argument --uds-mode: invalid octal_mode value"),
        (["app:app", "--uds-mode", "01777"], "uds_mode must be an octal mode between 0 and 0777"),
        (["app:app", "--uds-group", "no-such-group"], "uds_group: no group 'no-such-group'"),
        (["app:app", "--fd", "three"], "argument --fd: invalid int value: 'three'"),
        (["app:app", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["app_without_colon"], "app must be 'module:attribute', got 'app_without_colon'"),
        ([], "APP is required"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in list(os.environ):
        if variable.startswith("THEFRAMEWORK_"):
            monkeypatch.delenv(variable)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.strip().splitlines()[-1].startswith("theframework: error:")


def test_bad_environment_value_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THEFRAMEWORK_MAX_CONNECTIONS", "many")
    assert main(["app:app"]) == 2
    assert capsys.readouterr().err == (
        "theframework: error: THEFRAMEWORK_MAX_CONNECTIONS='many' is not an integer\n"
    )


def test_command_line_wins_over_environment_which_wins_over_defaults() -> None:
    environ = {"THEFRAMEWORK_PORT": "9000", "THEFRAMEWORK_HOST": "0.0.0.0"}
    arguments = build_parser().parse_args(["mod:app", "--port", "9100", "--log-level", "DEBUG"])
    config = config_from_arguments(arguments, environ)
    assert (config.app, config.port, config.host) == ("mod:app", 9100, "0.0.0.0")
    assert (config.log_level, config.backlog) == ("debug", 1024)
    arguments = build_parser().parse_args(["--max-body-size", "10", "--backend", "epoll"])
    config = config_from_arguments(arguments, {"THEFRAMEWORK_APP": "env:app"})
    assert (config.app, config.max_body_size, config.backend) == ("env:app", 10, "epoll")


# -- loading the application -----------------------------------------------------------------------


@pytest.fixture
def app_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory holding importable test modules, removed from sys.modules after."""
    (tmp_path / "tf_good_app.py").write_text(
        "from theframework import Framework\n"
        "app = Framework()\n"
        "def handler(request, response):\n"
        "    pass\n"
        "class holder:\n"
        "    nested = handler\n"
        "not_callable = 42\n"
    )
    (tmp_path / "tf_broken_app.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "tf_bad_dependency_app.py").write_text("import tf_missing_dependency\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry not in ("", ".")])
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    for variable in list(os.environ):
        if variable.startswith("THEFRAMEWORK_"):
            monkeypatch.delenv(variable)
    return tmp_path


def test_import_from_string(app_directory: Path) -> None:
    sys.path.insert(0, str(app_directory))
    assert isinstance(import_from_string("tf_good_app:app"), Framework)
    handler = import_from_string("tf_good_app:holder.nested")
    assert callable(handler)
    assert load_app("tf_good_app:handler") is handler
    framework = Framework()
    assert load_app(framework) is framework
    with pytest.raises(AppLoadError, match="has no attribute 'missing'"):
        import_from_string("tf_good_app:missing")
    with pytest.raises(AppLoadError, match="is not callable"):
        load_app("tf_good_app:not_callable")
    for reference in ("tf_good_app", ":app", "tf_good_app:"):
        with pytest.raises(AppLoadError, match="module:attribute"):
            import_from_string(reference)
    with pytest.raises(ModuleNotFoundError):
        import_from_string("tf_no_such_module:app")


def test_cli_attribute_problems_exit_2(
    app_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tf_good_app:missing"]) == 2
    assert capsys.readouterr().err == (
        "theframework: error: module 'tf_good_app' has no attribute 'missing'\n"
    )
    assert main(["tf_good_app:not_callable"]) == 2
    assert "is not callable (got int)" in capsys.readouterr().err
    assert str(app_directory) in sys.path  # the current directory was put on sys.path


def test_cli_missing_module_exits_3_without_traceback(
    app_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tf_no_such_module:app"]) == 3
    error = capsys.readouterr().err
    assert error == (
        "theframework: error: cannot import 'tf_no_such_module': "
        "No module named 'tf_no_such_module'\n"
    )


@pytest.mark.parametrize(
    ("reference", "detail"),
    [
        ("tf_broken_app:app", "RuntimeError: broken at import"),
        ("tf_bad_dependency_app:app", "No module named 'tf_missing_dependency'"),
    ],
)
def test_cli_import_failure_exits_3_with_one_traceback(
    reference: str, detail: str, app_directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([reference]) == 3
    error = capsys.readouterr().err
    assert error.count("Traceback (most recent call last)") == 1
    assert detail in error
    assert error.splitlines()[-1].startswith("theframework: error: cannot import")


# -- listening sockets ---------------------------------------------------------------------------


def test_bind_ipv4_with_any_port() -> None:
    with bind_socket(ServerConfig(host="127.0.0.1", port=0, backlog=8)) as listener:
        assert listener.family == socket.AF_INET
        host, port = listener.getsockname()
        assert host == "127.0.0.1" and port > 0
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        with socket.create_connection((host, port), timeout=5):
            pass


def test_bind_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        listener = bind_socket(ServerConfig(host="[::1]", port=0))
    except OSError as error:
        if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            pytest.skip(f"no IPv6 loopback here: {error}")
        raise
    with listener:
        assert listener.family == socket.AF_INET6
        assert listener.getsockname()[0] == "::1"


def test_bind_failure_names_the_address() -> None:
    with bind_socket(ServerConfig(port=0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}") as raised:
            bind_socket(ServerConfig(port=port))
        assert raised.value.errno == errno.EADDRINUSE


def test_bind_unix_socket_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()  # the file stays behind, nobody listens
    with bind_socket(ServerConfig(uds=path)) as listener:
        assert listener.family == socket.AF_UNIX
        assert listener.getsockname() == path
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)


def test_bind_unix_socket_refuses_a_live_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "app.sock")
    with bind_socket(ServerConfig(uds=path)):
        with pytest.raises(OSError, match="another server is listening") as raised:
            bind_socket(ServerConfig(uds=path))
        assert raised.value.errno == errno.EADDRINUSE
        assert os.path.exists(path)


def test_bind_unix_socket_refuses_to_remove_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "important.txt"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a socket"):
        bind_socket(ServerConfig(uds=str(path)))
    assert path.read_text() == "keep me"


def test_bind_unix_socket_in_missing_directory_names_the_address(tmp_path: Path) -> None:
    path = str(tmp_path / "missing" / "app.sock")
    with pytest.raises(OSError, match=f"cannot listen on unix:{path}"):
        bind_socket(ServerConfig(uds=path))
