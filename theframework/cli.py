"""Command line: ``theframework APP [options]`` / ``python -m theframework APP [options]``.

Each option's value comes from the command line, else from THEFRAMEWORK_<OPTION>, else from the
ServerConfig default. Exit status: 0 after a clean shutdown, 2 for a usage error (bad option
value, malformed or unusable APP), 1 when the application cannot be imported or the server fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from . import __version__
from .config import BACKENDS, LOG_LEVELS, ServerConfig, config_from_env, env_name
from .server import AppLoadError, configure_logging, import_from_string, load_app, serve

__all__ = ["build_parser", "main"]

PROGRAM = "theframework"

_DEFAULTS = ServerConfig()

# (option, type, metavar, help) of every server option; argparse defaults stay None so that an
# option given on the command line can be told from one to take from the environment.
_OPTIONS: list[tuple[str, type[Any], str | None, str]] = [
    ("host", str, "HOST", "TCP address to listen on; IPv6 when it contains ':'"),
    ("port", int, "PORT", "TCP port (0: any free port)"),
    ("uds", str, "PATH", "listen on this UNIX socket instead of TCP"),
    ("backlog", int, "N", "listen backlog"),
    ("backend", str, None, "I/O backend; auto tries io_uring then epoll"),
    ("max_header_size", int, "BYTES", "largest request line + headers (431 above)"),
    ("max_body_size", int, "BYTES", "largest request body (413 above)"),
    ("header_timeout", float, "SECONDS", "time allowed to receive the headers (408 after)"),
    ("body_timeout", float, "SECONDS", "time allowed between two reads of the body"),
    ("keepalive_timeout", float, "SECONDS", "how long an idle keep-alive connection stays open"),
    ("write_timeout", float, "SECONDS", "how long a write may wait for the client"),
    ("max_connections", int, "N", "open connections per process"),
    ("graceful_timeout", float, "SECONDS", "time in-flight requests get to finish at shutdown"),
    ("log_level", str, None, "logging level"),
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every server option is optional and defaults to None (unset)."""
    parser = _Parser(
        prog=PROGRAM,
        description="Serve a theframework application (or any handler(request, response)).",
        epilog="Every option can also be set with THEFRAMEWORK_<OPTION> "
        "(e.g. THEFRAMEWORK_MAX_BODY_SIZE=2097152); the command line wins over the environment.",
    )
    parser.add_argument(
        "app",
        nargs="?",
        metavar="APP",
        help=f"the application as module:attribute, e.g. myapp:app (env {env_name('app')})",
    )
    for option, value_type, metavar, text in _OPTIONS:
        default = getattr(_DEFAULTS, option)
        flag = "--" + option.replace("_", "-")
        help_text = f"{text} (default: {default}; env {env_name(option)})"
        if option == "backend":
            parser.add_argument(flag, choices=BACKENDS, default=None, help=help_text)
        elif option == "log_level":
            parser.add_argument(
                flag, choices=LOG_LEVELS, type=str.lower, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag, type=value_type, metavar=metavar, default=None, help=help_text
            )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def config_from_arguments(
    arguments: argparse.Namespace, environ: Mapping[str, str]
) -> ServerConfig:
    """Defaults, then the environment, then the command line. ValueError with a clear message."""
    config = config_from_env(ServerConfig(), environ)
    given = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(ServerConfig)
        if getattr(arguments, field.name, None) is not None
    }
    return dataclasses.replace(config, **given) if given else config


def _is_missing_module(error: ModuleNotFoundError, module_name: str) -> bool:
    """True when ``error`` says the module itself (or a parent package) does not exist, rather
    than something it imports."""
    missing = error.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    parser = build_parser()
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version, usage errors
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        config = config_from_arguments(arguments, os.environ)
    except ValueError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    if config.app is None:
        print(
            f"{PROGRAM}: error: APP is required (module:attribute, or {env_name('app')})",
            file=sys.stderr,
        )
        return 2
    configure_logging(config.log_level)
    # Like "python -m": the application is looked up from the current directory first.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name = config.app.partition(":")[0]
    try:
        handler = load_app(import_from_string(config.app))
    except AppLoadError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if not _is_missing_module(error, module_name):
            traceback.print_exc()
        print(f"{PROGRAM}: error: cannot import {module_name!r}: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        traceback.print_exc()
        print(f"{PROGRAM}: error: cannot import {module_name!r}: {error}", file=sys.stderr)
        return 1
    try:
        serve(handler, config)
    except OSError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception:
        logging.getLogger("theframework").exception("server failed")
        return 1
    return 0
