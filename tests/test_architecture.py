"""The promises of the layout (docs/architecture.md) that the import contracts cannot check: what
importing a layer loads at run time, the one option table and what is made from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from theframework import _core
from theframework.cli import build_parser, config_from_arguments, process_config_from_arguments
from theframework.config import (
    OPTIONS,
    ProcessConfig,
    ServerConfig,
    config_from_env,
    options_markdown,
)
from theframework.process import heartbeat

ROOT = Path(__file__).resolve().parent.parent


def _modules_loaded_by(statement: str) -> set[str]:
    """The theframework modules a fresh interpreter has loaded after ``statement``."""
    code = (
        f"{statement}\nimport sys\n"
        "print('\\n'.join(name for name in sys.modules if name.startswith('theframework')))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(output.split())


@pytest.mark.parametrize(
    "statement",
    [
        "import theframework.process.supervisor",
        "from theframework.process.supervisor import Supervisor",
        "import theframework.process.spec",
        "import theframework.process.slots",
        "import theframework.config",
        "import theframework",
    ],
)
def test_the_supervisor_side_never_loads_the_engine_or_the_application_layers(
    statement: str,
) -> None:
    loaded = _modules_loaded_by(statement)
    assert statement.split()[1].split(".")[0] in {name.split(".")[0] for name in loaded}
    forbidden = {"theframework._core", "theframework.app", "theframework.wsgi"}
    assert not loaded & forbidden, sorted(loaded & forbidden)
    assert not any(name.startswith("theframework.server.serve") for name in loaded)


def test_the_runtime_stands_on_the_engine_alone() -> None:
    loaded = _modules_loaded_by("import theframework.monkey")
    assert "theframework._core" in loaded
    for layer in ("app", "wsgi", "server", "process", "main", "cli"):
        assert not any(name.startswith(f"theframework.{layer}") for name in loaded), layer


def test_public_names_load_on_first_use() -> None:
    loaded = _modules_loaded_by("from theframework import Framework, serve, HTTPError")
    assert {"theframework.app", "theframework.main", "theframework.errors"} <= loaded


def test_heartbeat_layout_matches_the_hub() -> None:
    assert heartbeat.CELL_SIZE == _core.HEARTBEAT_CELL_SIZE == 16
    memory = bytearray(heartbeat.CELL_SIZE * 3)
    memory[16:32] = b"\xff" * 16
    heartbeat.clear(memory, 1)
    assert heartbeat.read(memory, 1) == (0, 0)
    assert heartbeat.cell_offset(2) == 32


def test_readme_options_table_is_made_from_the_option_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert options_markdown() in readme, "run: python scripts/readme_options.py"


def test_every_option_is_declared_once_and_matches_its_dataclass() -> None:
    names = [entry.name for entry in OPTIONS]
    assert len(names) == len(set(names))
    server_fields = [field.name for field in dataclasses.fields(ServerConfig)]
    process_fields = [field.name for field in dataclasses.fields(ProcessConfig)]
    assert names == server_fields + process_fields


@pytest.mark.parametrize("entry", OPTIONS, ids=lambda entry: entry.name)
def test_every_option_reaches_its_field_from_the_command_line_and_the_environment(
    entry: object,
) -> None:
    """A non-default value given as text, on the command line and in the environment, arrives
    in the field the table names."""
    from theframework.config import Option

    assert isinstance(entry, Option)
    samples = {
        "app": ("pkg.mod:app", "pkg.mod:app"),
        "host": ("::1", "::1"),
        "uds": ("/tmp/x.sock", "/tmp/x.sock"),
        "uds_mode": ("0660", 0o660),
        "uds_group": ("0", "0"),
        "fds": ("3", (3,)),
        "backend": ("epoll", "epoll"),
        "log_level": ("debug", "debug"),
        "interface": ("wsgi", "wsgi"),
        "root_path": ("/api", "/api"),
        "start_method": ("spawn", "spawn"),
        "proc_name": ("named", "named"),
        "env_files": ("a.env", ("a.env",)),
        "pid_file": ("/tmp/x.pid", "/tmp/x.pid"),
        "patch_all": ("1", True),
        "factory": ("1", True),
        "chdir": ("/srv/app", "/srv/app"),
        "app_dir": ("src", "src"),
        "access_log": ("1", True),
        "forwarded_allow_ips": ("10.0.0.0/8,*", "10.0.0.0/8,*"),
        "proxy_headers": ("0", False),
        "proxy_protocol": ("1", True),
        "metrics_address": ("0.0.0.0", "0.0.0.0"),
        "metrics_port": ("9100", 9100),
        "access_log_format": ("%(status)s", "%(status)s"),
        "log_config": ("/tmp/log.json", "/tmp/log.json"),
        "offload_threads": ("3", 3),
        "offload_processes": ("2", 2),
        "offload_start_method": ("forkserver", "forkserver"),
        "reload": ("1", True),
        "reload_dirs": ("src", ("src",)),
        "reload_includes": ("*.html", ("*.html",)),
        "reload_excludes": ("build", ("build",)),
        "ws_compression": ("none", "none"),
    }
    if entry.name in samples:
        text, value = samples[entry.name]
    elif entry.cli_type is int:
        value = entry.default + 7
        text = str(value)
    else:
        value = entry.default + 1.5
        text = str(value)
    from_env = config_from_env(
        ServerConfig() if entry.section == "server" else ProcessConfig(), {entry.env: text}
    )
    assert getattr(from_env, entry.name) == value
    if entry.cli == "positional":
        argv = [text]
    elif entry.cli == "flag":
        argv = ["m:app", entry.cli_flag]
    elif entry.cli == "toggle":
        argv = ["m:app", "--no-" + entry.cli_flag[2:]]
    else:
        argv = ["m:app", entry.cli_flag, text]
    arguments = build_parser().parse_args(argv)
    server = config_from_arguments(arguments, {})
    process = process_config_from_arguments(arguments, {})
    assert getattr(server if entry.section == "server" else process, entry.name) == value
