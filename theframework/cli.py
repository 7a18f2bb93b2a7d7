"""Command line: ``theframework APP [options]`` / ``python -m theframework APP [options]``.

The parser is made from the option table (theframework.config.OPTIONS). Each option's value comes
from the command line, else THEFRAMEWORK_<OPTION>, else the config file (``--config``), else the
``[tool.theframework]`` table of ./pyproject.toml, else PORT / WEB_CONCURRENCY for those two, else
the default (theframework.config.layered_config). The
exit status is ``main.run``'s (README has the table); 2 for a usage error found here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import (
    OPTIONS,
    Option,
    ProcessConfig,
    ServerConfig,
    env_name,
    layered_config,
    option,
)
from .configfile import ConfigFileError, load_config_file, load_pyproject_options
from .main import PROGRAM, run

__all__ = [
    "build_parser",
    "config_from_arguments",
    "configs_from_arguments",
    "main",
    "process_config_from_arguments",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _help(entry: Option) -> str:
    """The option's help line with its default and variable (argparse %-escaped)."""
    if entry.cli == "flag":
        tail = f"env {entry.env}=1"
    elif entry.cli == "toggle":
        tail = f"default: on; env {entry.env}=0 turns it off"
    elif entry.cli == "append":
        tail = f"env {entry.env}: {entry.expected}"
    else:
        tail = f"default: {entry.default}; env {entry.env}"
    return f"{entry.help} ({tail})".replace("%", "%%")


def _add_option(group: argparse._ActionsContainer, entry: Option) -> None:
    """One command-line argument for ``entry``; its default is None (unset), so that a value
    given on the command line can be told from one to take from the environment."""
    if entry.cli == "positional":
        group.add_argument(
            entry.name, nargs="?", metavar="APP", help=f"{entry.help} (env {entry.env})"
        )
    elif entry.cli == "flag":
        group.add_argument(
            entry.cli_flag, dest=entry.name, action="store_const", const=True, default=None,
            help=_help(entry),
        )  # fmt: skip
    elif entry.cli == "toggle":
        group.add_argument(
            entry.cli_flag, dest=entry.name, action=argparse.BooleanOptionalAction, default=None,
            help=_help(entry),
        )  # fmt: skip
    elif entry.cli == "append":
        group.add_argument(
            entry.cli_flag, dest=entry.name, action="append", type=entry.cli_type,
            metavar=entry.metavar, default=None, help=_help(entry),
        )  # fmt: skip
    elif entry.choices:
        group.add_argument(
            entry.cli_flag, dest=entry.name, choices=entry.choices, type=entry.cli_type,
            default=None, help=_help(entry),
        )  # fmt: skip
    else:
        group.add_argument(
            entry.cli_flag, dest=entry.name, type=entry.cli_type, metavar=entry.metavar,
            default=None, help=_help(entry),
        )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, made from the option table; every option defaults to None (unset)."""
    parser = _Parser(
        prog=PROGRAM,
        description="Serve a theframework application (or any handler(request, response)).",
        epilog="Every option can also be set with THEFRAMEWORK_<OPTION> "
        "(e.g. THEFRAMEWORK_MAX_BODY_SIZE=2097152) or in a --config file; the command line wins "
        "over the environment, which wins over the config file.",
    )
    processes = parser.add_argument_group("processes")
    for entry in OPTIONS:
        _add_option(parser if entry.section == "server" else processes, entry)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _given(arguments: argparse.Namespace, config_type: type[Any]) -> dict[str, Any]:
    given = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(config_type)
        if getattr(arguments, field.name, None) is not None
    }
    for name, value in given.items():
        if isinstance(value, list):
            given[name] = tuple(value)
    return given


def config_from_arguments(
    arguments: argparse.Namespace,
    environ: Mapping[str, str],
    file_options: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """Defaults, PORT, the config file's options, THEFRAMEWORK_*, the command line (highest).
    ValueError with a clear message."""
    given = _given(arguments, ServerConfig)
    return layered_config(ServerConfig, environ, file_options or {}, given)


def process_config_from_arguments(
    arguments: argparse.Namespace,
    environ: Mapping[str, str],
    file_options: Mapping[str, Any] | None = None,
) -> ProcessConfig:
    """ProcessConfig in the same order as ``config_from_arguments``. ValueError."""
    given = _given(arguments, ProcessConfig)
    return layered_config(ProcessConfig, environ, file_options or {}, given)


def configs_from_arguments(
    arguments: argparse.Namespace, environ: Mapping[str, str]
) -> tuple[ServerConfig, ProcessConfig]:
    """Both records from the parsed command line, ``environ`` and the config file it names
    (--config, else THEFRAMEWORK_CONFIG), in the order of precedence. ConfigFileError for the
    file, ValueError for a value."""
    file_options = _config_file_options(arguments, environ)
    return (
        config_from_arguments(arguments, environ, file_options),
        process_config_from_arguments(arguments, environ, file_options),
    )


def _config_file_options(
    arguments: argparse.Namespace, environ: Mapping[str, str]
) -> dict[str, Any]:
    """The options of the ``[tool.theframework]`` table of ./pyproject.toml, updated with those
    of the config file named by --config or THEFRAMEWORK_CONFIG (the file wins). The config
    file's path becomes absolute, winning over the relative one given (workers load its hooks by
    that path whatever --chdir does). ConfigFileError."""
    options = load_pyproject_options(os.getcwd())
    path = arguments.config_file or environ.get(option("config_file").env) or None
    if path is not None:
        loaded = load_config_file(path)
        arguments.config_file = loaded.path
        options.update(loaded.options)
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version, usage errors
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        config, process = configs_from_arguments(arguments, os.environ)
    except ConfigFileError as error:
        if error.traceback:
            sys.stderr.write(error.traceback)
        print(f"{PROGRAM}: error: {error.message}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    if config.app is None:
        print(
            f"{PROGRAM}: error: APP is required (module:attribute, or {env_name('app')})",
            file=sys.stderr,
        )
        return 2
    problem = _enter_directories(process)
    if problem is not None:
        print(f"{PROGRAM}: error: {problem}", file=sys.stderr)
        return 2
    return run(config, process)


def _enter_directories(process: ProcessConfig) -> str | None:
    """``--chdir``, then the directory APP is looked up in first: ``--app-dir``, else (like
    "python -m") the current directory. Workers inherit both. The usage error, or None."""
    if process.chdir is not None:
        try:
            os.chdir(process.chdir)
        except OSError as error:
            return f"--chdir {process.chdir}: {error.strerror or error}"
    if process.app_dir is not None:
        directory = os.path.abspath(process.app_dir)
        if not os.path.isdir(directory):
            return f"--app-dir {process.app_dir}: not a directory"
        sys.path.insert(0, directory)
    elif os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    return None
