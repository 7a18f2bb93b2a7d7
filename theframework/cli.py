"""Command line: ``theframework APP [options]`` / ``python -m theframework APP [options]``.

Each option's value comes from the command line, else from THEFRAMEWORK_<OPTION>, else from the
ServerConfig / ProcessConfig default. Exit status of one process (``--workers 1``): 0 after a
clean shutdown, 2 for a usage error (bad option value, malformed or unusable APP), 1 when the
application cannot be imported or the server fails. With a supervisor (``--workers`` other than
1) the exit status is the supervisor's (docs/processes.md has the table).
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
from .accesslog import check_format
from .config import (
    BACKENDS,
    INTERFACES,
    LOG_LEVELS,
    START_METHODS,
    ProcessConfig,
    ServerConfig,
    config_from_env,
    env_name,
)
from .ipc import ExitCode, exit_code_for_os_error
from .proctitle import set_process_title
from .server import (
    AppLoadError,
    apply_log_config,
    configure_logging,
    import_from_string,
    load_app,
    serve,
)

__all__ = ["build_parser", "config_from_arguments", "main", "process_config_from_arguments"]

PROGRAM = "theframework"

_DEFAULTS = ServerConfig()
_PROCESS_DEFAULTS = ProcessConfig()

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
    ("interface", str, None, "what APP is: a Framework/handler, a WSGI app, or auto-detected"),
    ("root_path", str, "PATH", "URL prefix the WSGI app is mounted under (SCRIPT_NAME)"),
]

# The same for ProcessConfig (env_files, patch_all and access_log are added by hand: repeatable,
# flags).
_PROCESS_OPTIONS: list[tuple[str, type[Any], str | None, str]] = [
    ("workers", int, "N", "worker processes; 1 serves in this process, 0 one per CPU"),
    ("start_method", str, None, "how workers start; auto forks a single-threaded supervisor"),
    ("startup_timeout", float, "SECONDS", "time a worker gets to report ready"),
    ("proc_name", str, "NAME", "process titles '<NAME> master' / '<NAME> worker-<id>'"),
    ("pid_file", str, "PATH", "write the server's pid here once ready (refused when it names a "
     "live process; removed at exit if it still holds our pid)"),
    ("worker_timeout", float, "SECONDS", "kill and respawn a worker whose hub loop stalls this "
     "long, after logging its tracebacks (0: off)"),
    ("max_requests", int, "N", "recycle a worker after N requests (0: never)"),
    ("max_requests_jitter", int, "N", "add a random 0..N to --max-requests per worker"),
    ("worker_lifetime", float, "SECONDS", "recycle a worker after this long (0: never)"),
    ("worker_lifetime_jitter", float, "SECONDS", "add a random 0..SECONDS to --worker-lifetime"),
    ("worker_max_rss", int, "MIB", "recycle a worker whose resident memory exceeds this MiB "
     "(0: never)"),
    ("rss_interval", float, "SECONDS", "how often --worker-max-rss samples the memory"),
    ("rss_samples", int, "K", "consecutive samples above --worker-max-rss before recycling"),
    ("metrics_address", str, "HOST", "address of the Prometheus endpoint"),
    ("metrics_port", int, "PORT", "serve Prometheus metrics on this port (0: any free port)"),
    ("access_log_format", str, "FORMAT", "access log line, %%-style over named fields "
     "(docs/operations.md)"),
    ("log_config", str, "PATH", "a logging dictConfig JSON file applied after the default set-up"),
]  # fmt: skip


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
        elif option == "interface":
            parser.add_argument(flag, choices=INTERFACES, default=None, help=help_text)
        elif option == "log_level":
            parser.add_argument(
                flag, choices=LOG_LEVELS, type=str.lower, default=None, help=help_text
            )
        else:
            parser.add_argument(
                flag, type=value_type, metavar=metavar, default=None, help=help_text
            )
    processes = parser.add_argument_group("processes")
    for option, value_type, metavar, text in _PROCESS_OPTIONS:
        default = str(getattr(_PROCESS_DEFAULTS, option)).replace("%", "%%")
        flag = "--" + option.replace("_", "-")
        help_text = f"{text} (default: {default}; env {env_name(option)})"
        if option == "start_method":
            processes.add_argument(
                flag, choices=START_METHODS, type=str.lower, default=None, help=help_text
            )
        else:
            processes.add_argument(
                flag, type=value_type, metavar=metavar, default=None, help=help_text
            )
    processes.add_argument(
        "--env-file",
        dest="env_files",
        action="append",
        metavar="PATH",
        default=None,
        help="load KEY=VALUE lines into each worker before the application is imported; "
        "repeatable, later files win, the environment wins over files (env "
        f"{env_name('env_files')}, paths separated by {os.pathsep!r})",
    )
    processes.add_argument(
        "--access-log",
        action="store_const",
        const=True,
        default=None,
        help="log every request to the 'theframework.access' logger "
        f"(env {env_name('access_log')}=1)",
    )
    processes.add_argument(
        "--patch-all",
        action="store_const",
        const=True,
        default=None,
        help="call theframework.monkey.patch_all() in each worker before the application is "
        f"imported (env {env_name('patch_all')}=1)",
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


def process_config_from_arguments(
    arguments: argparse.Namespace, environ: Mapping[str, str]
) -> ProcessConfig:
    """ProcessConfig defaults, then the environment, then the command line. ValueError."""
    config = config_from_env(ProcessConfig(), environ)
    given: dict[str, Any] = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(ProcessConfig)
        if getattr(arguments, field.name, None) is not None
    }
    if "env_files" in given:
        given["env_files"] = tuple(given["env_files"])
    return dataclasses.replace(config, **given) if given else config


def _prepare_process(process: ProcessConfig) -> str | None:
    """Env files and --patch-all for a single-process server; a usage error message or None."""
    from .worker import load_env_files, patch_all

    try:
        load_env_files(process.env_files)
    except (OSError, ValueError) as error:
        return f"cannot load the environment file: {error}"
    if process.patch_all:
        try:
            patch_all()
        except ImportError as error:
            return f"--patch-all: theframework.monkey is not available: {error}"
    return None


def _is_missing_module(error: ModuleNotFoundError, module_name: str) -> bool:
    """True when ``error`` says the module itself (or a parent package) does not exist, rather
    than something it imports."""
    missing = error.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def _set_up_logging(
    config: ServerConfig, process: ProcessConfig, process_label: str | None
) -> str | None:
    """Configures logging (level, ``--log-config``) and checks ``--access-log-format``; the
    problem to report as a usage error, or None."""
    configure_logging(config.log_level, process_label)
    if process.log_config is not None:
        try:
            apply_log_config(process.log_config)
        except ValueError as error:
            return str(error)
    if process.access_log:
        try:
            check_format(process.access_log_format)
        except ValueError as error:
            return f"--access-log-format: {error}"
    return None


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
        process = process_config_from_arguments(arguments, os.environ)
    except ValueError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    if config.app is None:
        print(
            f"{PROGRAM}: error: APP is required (module:attribute, or {env_name('app')})",
            file=sys.stderr,
        )
        return 2
    # Like "python -m": the application is looked up from the current directory first.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    if process.supervised:
        from .supervisor import run_supervisor  # supervisor imports server, which imports cli's

        problem = _set_up_logging(config, process, "master")
        if problem is not None:
            print(f"{PROGRAM}: error: {problem}", file=sys.stderr)
            return 2
        return run_supervisor(config.app, config, process)
    ignored = process.supervisor_only_options_set()
    if ignored:
        flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
        print(
            f"{PROGRAM}: error: {flags}: only a supervisor uses these; use --workers 0 or "
            "--workers 2 or more",
            file=sys.stderr,
        )
        return 2
    problem = _set_up_logging(config, process, None)
    if problem is not None:
        print(f"{PROGRAM}: error: {problem}", file=sys.stderr)
        return 2
    set_process_title(process.proc_name)
    problem = _prepare_process(process)
    if problem is not None:
        print(f"{PROGRAM}: error: {problem}", file=sys.stderr)
        return 2
    module_name = config.app.partition(":")[0]
    try:
        handler = load_app(import_from_string(config.app), config)
    except AppLoadError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if not _is_missing_module(error, module_name):
            traceback.print_exc()
        print(f"{PROGRAM}: error: cannot import {module_name!r}: {error}", file=sys.stderr)
        return ExitCode.APP_FAILED
    except Exception as error:
        traceback.print_exc()
        print(f"{PROGRAM}: error: cannot import {module_name!r}: {error}", file=sys.stderr)
        return ExitCode.APP_FAILED
    try:
        serve(
            handler,
            config,
            process=dataclasses.replace(process, env_files=(), patch_all=False, log_config=None),
        )
    except OSError as error:
        # The same codes as a supervised worker: 42 address in use, 43 permission, 44 no fds.
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return exit_code_for_os_error(error)
    except KeyboardInterrupt:
        return 130
    except Exception:
        logging.getLogger("theframework").exception("server failed")
        return 1
    return 0
