"""The config file (``--config`` / THEFRAMEWORK_CONFIG) and ``[tool.theframework]`` in
./pyproject.toml: every value is checked as the command line checks it, unknown names are
refused (exit 2, named), and the precedence is command line > THEFRAMEWORK_* > config file >
pyproject.toml > PORT / WEB_CONCURRENCY > defaults, made with the real parser and environment
mappings. (The hooks in real servers: test_prefork_hooks.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from prefork_apps.harness import TESTS_DIRECTORY

from theframework.cli import build_parser, configs_from_arguments, main
from theframework.config import ProcessConfig, ServerConfig
from theframework.configfile import ConfigFileError, HookConfig, load_config_file


def _write(directory: Path, text: str, name: str = "theframework.conf.py") -> str:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _configs(
    argv: list[str], environ: dict[str, str] | None = None
) -> tuple[ServerConfig, ProcessConfig]:
    return configs_from_arguments(build_parser().parse_args(argv), environ or {})


# -- options ----------------------------------------------------------------------------------


def test_file_options_are_checked_and_converted_like_the_command_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "import os\n"
        "import os.path as osp\n"
        "from os import environ\n"
        "from typing import TYPE_CHECKING\n"
        "try:\n    from json import loads as load_json\nexcept ImportError:\n    pass\n"
        "workers = 3\n"
        "log_level = 'DEBUG'\n"
        "env_files = ['a.env', 'b.env']\n"
        "graceful_timeout = 2\n"
        "max_body_size = 2_000_000\n"
        "_helper = object()\n",
    )
    server, process = _configs(["m:app", "--config", path])
    assert process.workers == 3
    assert server.log_level == "debug"
    assert process.env_files == ("a.env", "b.env")
    assert server.graceful_timeout == 2
    assert server.max_body_size == 2_000_000
    assert process.config_file == path


def test_precedence_command_line_then_environment_then_file_then_port_variables(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, "port = 9001\nworkers = 3\n")
    # The file wins over the defaults and over PORT / WEB_CONCURRENCY.
    server, process = _configs(
        ["m:app", "--config", path], {"PORT": "9004", "WEB_CONCURRENCY": "5"}
    )
    assert (server.port, process.workers) == (9001, 3)
    # THEFRAMEWORK_* wins over the file.
    server, process = _configs(
        ["m:app", "--config", path], {"THEFRAMEWORK_PORT": "9002", "THEFRAMEWORK_WORKERS": "4"}
    )
    assert (server.port, process.workers) == (9002, 4)
    # The command line wins over both.
    server, process = _configs(
        ["m:app", "--config", path, "--port", "9003", "--workers", "6"],
        {"THEFRAMEWORK_PORT": "9002", "THEFRAMEWORK_WORKERS": "4"},
    )
    assert (server.port, process.workers) == (9003, 6)
    # PORT / WEB_CONCURRENCY still apply to what the file leaves unset.
    other = _write(tmp_path, "backlog = 64\n", "other.py")
    server, process = _configs(
        ["m:app", "--config", other], {"PORT": "9004", "WEB_CONCURRENCY": "5"}
    )
    assert (server.port, process.workers, server.backlog) == (9004, 5, 64)
    # A bad PORT is not read when the file sets the port.
    server, _ = _configs(["m:app", "--config", path], {"PORT": "not-a-port"})
    assert server.port == 9001


def test_config_file_from_the_environment_and_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "workers = 2\n", "relative.conf.py")
    monkeypatch.chdir(tmp_path)
    _, process = _configs(["m:app"], {"THEFRAMEWORK_CONFIG": "relative.conf.py"})
    assert process.workers == 2
    assert process.config_file == str(tmp_path / "relative.conf.py")


def test_the_app_may_come_from_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "app = 'pkg.module:application'\n")
    server, _ = _configs(["--config", path])
    assert server.app == "pkg.module:application"
    server, _ = _configs(["other:app", "--config", path])
    assert server.app == "other:app"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "wokers = 4\n",
            "unknown name 'wokers': not an option or a hook (did you mean 'workers'?)",
        ),
        ("bind = '0.0.0.0:80'\n", "gunicorn's bind; here: host and port, or uds"),
        ("def helper():\n    pass\n", "helpers and other values must start with '_'"),
        ("workers = 'many'\n", "workers must be an integer, got 'many'"),
        ("port = 70000\n", "port must be between 0 and 65535, got 70000"),
        ("log_level = 'loud'\n", "log_level must be one of"),
        ("config_file = 'other.py'\n", "config_file cannot be set here (use --config)"),
        ("post_fork = 3\n", "post_fork must be a function post_fork(worker_id), got int"),
        (
            "def post_fork(server, worker):\n    pass\n",
            "the post_fork hook must take 1 argument(s): post_fork(worker_id)",
        ),
        (
            "def post_fork(worker_id):\n    pass\ndef worker_start(worker_id):\n    pass\n",
            "post_fork and worker_start are the same hook; define one",
        ),
    ],
)
def test_bad_config_files_exit_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError, match="config file"):
        load_config_file(path)
    assert main(["m:app", "--config", path]) == 2
    error = capsys.readouterr().err
    assert f"theframework: error: config file {path}: " in error
    assert message in error


def test_missing_and_raising_config_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "absent.py")
    assert main(["m:app", "--config", missing]) == 2
    assert f"config file {missing}: no such file" in capsys.readouterr().err
    raising = _write(tmp_path, "import json\nvalue = json.loads('{')\n")
    assert main(["m:app", "--config", raising]) == 2
    error = capsys.readouterr().err
    assert "Traceback (most recent call last)" in error
    assert f"config file {raising} raised JSONDecodeError" in error


def test_hook_config_exposes_every_option() -> None:
    config = HookConfig(ServerConfig(port=9000), ProcessConfig(workers=3))
    assert (config.port, config.workers, config.server.port) == (9000, 3, 9000)
    with pytest.raises(AttributeError, match="no option named 'nope'"):
        _ = config.nope


def test_serve_refuses_a_config_file_that_sets_options(tmp_path: Path) -> None:
    from theframework.main import serve

    path = _write(tmp_path, "workers = 2\n")
    with pytest.raises(ValueError, match=r"sets options \(workers\): serve\(\) takes options"):
        serve("m:app", config_file=path)


def test_an_unknown_name_exits_2_before_anything_starts(tmp_path: Path) -> None:
    path = _write(tmp_path, "workers = 2\ntimeout = 30\n")
    completed = subprocess.run(
        [sys.executable, "-m", "theframework", "prefork_apps.pid_app:app", "--config", path],
        cwd=TESTS_DIRECTORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 2
    assert "unknown name 'timeout'" in completed.stderr
    assert "here: worker_timeout" in completed.stderr
    assert "listening" not in completed.stderr + completed.stdout


def test_the_example_config_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    loaded = load_config_file(str(TESTS_DIRECTORY.parent / "examples" / "theframework.conf.py"))
    assert loaded.options["workers"] == 2
    assert loaded.options["port"] == 8000
    assert sorted(loaded.hooks.functions) == [
        "on_exit", "on_starting", "post_request", "when_ready", "worker_exit", "worker_shutdown",
        "worker_start",
    ]  # fmt: skip


def test_request_hooks_install_nothing_when_absent(tmp_path: Path) -> None:
    """Zero cost without pre_request / post_request: the native server gets the handler and the
    access-log callback themselves."""
    from theframework.configfile import NO_HOOKS
    from theframework.server.serve import with_post_request, with_request_hooks

    def handler(request: object, response: object) -> None:
        pass

    def access_log(
        request: object, status: int, sent: int, seconds: float, response: object
    ) -> None:
        pass

    assert with_request_hooks(handler, NO_HOOKS) is handler
    assert with_post_request(None, NO_HOOKS) is None
    assert with_post_request(access_log, NO_HOOKS) is access_log
    other_hooks = load_config_file(_write(tmp_path, "def on_exit(config):\n    pass\n")).hooks
    assert with_request_hooks(handler, other_hooks) is handler
    assert with_post_request(None, other_hooks) is None
    hooked = load_config_file(_write(tmp_path, "def pre_request(request):\n    pass\n", "p.py"))
    assert with_request_hooks(handler, hooked.hooks) is not handler


# -- [tool.theframework] in ./pyproject.toml ------------------------------------------------------


def test_pyproject_table_sits_below_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n'
        "[tool.theframework]\n"
        "workers = 3\nmax-body-size = 4096\nlog_level = 'DEBUG'\nport = 9100\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    server, process = _configs(["m:app"], {"PORT": "9004", "WEB_CONCURRENCY": "5"})
    assert (process.workers, server.max_body_size, server.log_level) == (3, 4096, "debug")
    assert server.port == 9100  # above PORT, like the config file
    path = _write(tmp_path, "workers = 4\n")
    server, process = _configs(["m:app", "--config", path], {"THEFRAMEWORK_LOG_LEVEL": "error"})
    assert (process.workers, server.max_body_size, server.log_level) == (4, 4096, "error")


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "wokers = 2\n",
            "unknown name 'wokers': not an option or a hook (did you mean 'workers'?)",
        ),
        ("workers = 'two'\n", "workers must be an integer, got 'two'"),
        ("on-starting = 'x'\n", "on-starting: hooks go in a --config file, not in TOML"),
        ("config-file = 'x.py'\n", "config_file cannot be set here (use --config)"),
    ],
)
def test_bad_pyproject_table_exits_2_naming_the_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    table: str,
    message: str,
) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.theframework]\n{table}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["m:app"]) == 2
    error = capsys.readouterr().err
    assert f"{tmp_path / 'pyproject.toml'} [tool.theframework]: " in error
    assert message in error


def test_pyproject_without_the_table_or_broken_elsewhere_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n", "utf-8")
    assert _configs(["m:app"]) == (ServerConfig(app="m:app"), ProcessConfig())
    (tmp_path / "pyproject.toml").write_text("[tool.other\nbroken", "utf-8")
    assert _configs(["m:app"]) == (ServerConfig(app="m:app"), ProcessConfig())
    (tmp_path / "pyproject.toml").write_text("[tool.theframework]\nworkers = \n", "utf-8")
    with pytest.raises(ConfigFileError, match=r"pyproject\.toml: "):
        _configs(["m:app"])


def test_the_migration_guide_names_every_option_and_hook() -> None:
    """docs/gunicorn-migration.md's flag table lists every option, and its hook table every hook
    (a new option or hook must be placed in the map)."""
    from theframework.config import OPTIONS
    from theframework.configfile import HOOK_ALIASES, HOOKS

    guide = (TESTS_DIRECTORY.parent / "docs" / "gunicorn-migration.md").read_text("utf-8")
    flags_table = guide.split("## Command-line flags", 1)[1]
    for entry in OPTIONS:
        assert f"| `{entry.cli_flag}" in flags_table, entry.cli_flag
    hooks_table = guide.split("## Server hooks", 1)[1].split("## Command-line flags", 1)[0]
    for name in [*HOOKS, *HOOK_ALIASES]:
        assert f"`{name}(" in hooks_table, name


def test_pyproject_table_without_a_toml_parser_is_skipped_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python 3.10 without tomli: the table is ignored, and stderr says why."""
    from theframework import configfile

    monkeypatch.setattr(configfile, "_toml_parser", lambda: None)
    (tmp_path / "pyproject.toml").write_text("[tool.theframework]\nworkers = 2\n", "utf-8")
    assert configfile.load_pyproject_options(str(tmp_path)) == {}
    assert capsys.readouterr().err == (
        f"theframework: {tmp_path / 'pyproject.toml'}: [tool.theframework] ignored: reading "
        "TOML needs Python 3.11+ or the tomli package\n"
    )
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n", "utf-8")
    assert configfile.load_pyproject_options(str(tmp_path)) == {}
    assert capsys.readouterr().err == ""
