"""Worker bootstrap: what a supervised child process does, the same under fork, spawn and
forkserver (under spawn and forkserver ``WorkerSpec`` is pickled, sockets included).

Order: signals reset -> process title -> logging -> env files -> monkey.patch_all() -> import
the application -> bind (TCP, SO_REUSEPORT) or take the supervisor's UNIX listener -> serve
(``serve_listeners``), reporting Ready over IPC once listening with the hub running and the
startup hooks done. Every failure ends the process with an ``ExitCode`` (see ipc.py), after a
one-line Failure message to the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import ipc
from .config import ProcessConfig, ServerConfig
from .ipc import ExitCode, exit_code_for_os_error
from .proctitle import set_process_title
from .server import (
    AppLoadError,
    bind_socket,
    configure_logging,
    import_from_string,
    listener_url,
    load_app,
    serve_listeners,
)

__all__ = ["WorkerSpec", "load_env_files", "parse_env_file", "run"]

logger = logging.getLogger("theframework.worker")

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs (picklable when ``app`` is an import string)."""

    worker_id: int
    # "module:attribute", or the application object itself (fork only).
    app: object
    server: ServerConfig
    process: ProcessConfig
    # The worker's end of its IPC channel.
    channel: socket.socket
    # The supervisor's listening UNIX socket; None for TCP (the worker binds its own).
    listener: socket.socket | None


class _WorkerIdFilter(logging.Filter):
    """Puts ``worker_id`` on every record (for handlers with their own formats)."""

    def __init__(self, worker_id: int) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker_id = self.worker_id
        return True


def parse_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of ``path``: python-dotenv when installed; else blank lines and "#"
    comments are skipped, an "export " prefix is allowed, and a value in matching single or
    double quotes is unquoted (no interpolation). OSError when the file cannot be read,
    ValueError naming the line for a line that is not KEY=VALUE."""
    try:
        from dotenv import dotenv_values
    except ImportError:
        pass
    else:
        with open(path, encoding="utf-8") as stream:  # raises OSError like the fallback
            values = dotenv_values(stream=stream)
        return {key: value for key, value in values.items() if value is not None}
    parsed: dict[str, str] = {}
    with open(path, encoding="utf-8") as stream:
        for number, raw in enumerate(stream, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").lstrip()
            key, separator, value = line.partition("=")
            key, value = key.strip(), value.strip()
            if not separator or not key.isidentifier():
                raise ValueError(f"{path}:{number}: expected KEY=VALUE, got {raw.rstrip()!r}")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            parsed[key] = value
    return parsed


def load_env_files(paths: Iterable[str]) -> None:
    """Loads ``paths`` into os.environ: a later file wins over an earlier one, and a variable
    already set in the environment wins over every file."""
    merged: dict[str, str] = {}
    for path in paths:
        merged.update(parse_env_file(path))
    for key, value in merged.items():
        os.environ.setdefault(key, value)


def patch_all() -> None:
    """``theframework.monkey.patch_all()`` (imported only when asked for)."""
    import importlib

    monkey: Any = importlib.import_module("theframework.monkey")
    monkey.patch_all()


def _report(
    spec: WorkerSpec, code: ExitCode, description: str, *, with_traceback: bool = False
) -> ExitCode:
    """Tells the supervisor why this worker ends (with the traceback of the exception being
    handled when ``with_traceback``); returns ``code``."""
    formatted = traceback.format_exc() if with_traceback else ""
    failure = ipc.Failure(spec.worker_id, os.getpid(), int(code), description, formatted)
    try:
        ipc.send(spec.channel, failure)
    except OSError:  # the supervisor is gone: say it here, the exit code says the rest
        logger.error("%s\n%s", description, formatted)
    return code


def _reset_signals() -> None:
    """A forked worker inherits the supervisor's handlers and wake-up fd. SIGINT is ignored until
    serving starts (the supervisor turns a Ctrl-C into SIGTERM); SIGTERM kills until then."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def _stop_with_parent() -> None:
    """Asks the kernel for SIGTERM (a graceful drain) when the parent process dies, so that a
    killed supervisor leaves no worker behind (under forkserver the parent is the fork server,
    which exits with the supervisor)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def run(spec: WorkerSpec) -> int:
    """Runs one worker to its end; returns its exit code (see ExitCode)."""
    _reset_signals()
    _stop_with_parent()
    worker_label = f"worker-{spec.worker_id}"
    set_process_title(f"{spec.process.proc_name} {worker_label}")
    configure_logging(spec.server.log_level, worker_label)
    id_filter = _WorkerIdFilter(spec.worker_id)
    for handler in logging.getLogger().handlers:
        handler.addFilter(id_filter)
    try:
        return _boot_and_serve(spec)
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            return _report(spec, ExitCode.TOO_MANY_FILES, f"out of file descriptors: {error}")
        raise


def _boot_and_serve(spec: WorkerSpec) -> int:
    try:
        load_env_files(spec.process.env_files)
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            raise
        logger.error("cannot load the environment file: %s", error)
        return _report(spec, ExitCode.USAGE, f"cannot load the environment file: {error}")
    if spec.process.patch_all:
        try:
            patch_all()
        except ImportError as error:
            logger.error("--patch-all: theframework.monkey is not available: %s", error)
            return _report(spec, ExitCode.USAGE, f"--patch-all unavailable: {error}")

    try:
        target = import_from_string(spec.app) if isinstance(spec.app, str) else spec.app
        handler = load_app(target, spec.server, multiprocess=spec.process.supervised)
    except AppLoadError as error:
        return _report(spec, ExitCode.USAGE, str(error))
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            raise
        return _report(
            spec, ExitCode.APP_FAILED, f"cannot import {spec.app!r}: {error}", with_traceback=True
        )
    except Exception as error:
        return _report(
            spec, ExitCode.APP_FAILED, f"cannot import {spec.app!r}: {error}", with_traceback=True
        )

    if spec.listener is not None:
        listener = spec.listener
    else:
        try:
            listener = bind_socket(spec.server, reuse_port=True)
        except OSError as error:
            code = exit_code_for_os_error(error)
            return _report(spec, code, error.strerror or str(error))
    address = listener_url(listener)
    phase = "create the hub"

    def hub_started() -> None:
        nonlocal phase
        phase = "run the startup hooks"

    def ready() -> None:
        nonlocal phase
        phase = "serve"
        ipc.send(spec.channel, ipc.Ready(spec.worker_id, os.getpid(), address))

    try:
        serve_listeners(handler, [listener], spec.server, ready=ready, hub_started=hub_started)
    except Exception as error:
        if phase == "create the hub" and isinstance(error, OSError):
            if error.errno in (errno.EMFILE, errno.ENFILE):
                raise
            logger.error("cannot %s: %s", phase, error)
            return _report(spec, exit_code_for_os_error(error), f"cannot {phase}: {error}")
        if phase != "serve":
            return _report(
                spec, ExitCode.APP_FAILED, f"cannot {phase}: {error!r}", with_traceback=True
            )
        logger.exception("the hub failed while serving")
        if isinstance(error, MemoryError):
            code = ExitCode.HUB_MEMORY_ERROR
        elif isinstance(error, OSError):
            code = ExitCode.HUB_OS_ERROR
        else:
            code = ExitCode.HUB_EXCEPTION
        return _report(spec, code, f"the hub failed while serving: {error!r}")
    finally:
        listener.close()
    return ExitCode.OK


def main(spec: WorkerSpec) -> None:
    """The target of the worker's multiprocessing.Process: runs it and exits with its code."""
    code = run(spec)
    logging.shutdown()
    sys.exit(code)
