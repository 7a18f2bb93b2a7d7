"""The entry points: ``serve()`` / ``serve_wsgi()`` for programs, ``run()`` for the command line.
Each chooses between one serving process (``workers`` 1) and the supervisor (any other count).

Single process: logging -> the config file's on_starting hook -> boot sequence
(theframework.server.boot, with the worker_start hook) -> pid file check -> bind -> serve
(worker_ready and when_ready once listening; worker_shutdown after the drain) -> pid file
removed -> on_exit. Supervisor: theframework.process.supervisor, which runs the same boot sequence
in every worker and the other hooks itself.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import ProcessConfig, ServerConfig
from .configfile import (
    NO_HOOKS,
    SINGLE_PROCESS_WORKER_ID,
    ConfigFileError,
    HookConfig,
    HookFailed,
    Hooks,
    hooks_for,
    load_config_file,
)
from .process.pidfile import check_pid_file, remove_pid_file, write_pid_file
from .process.proctitle import set_process_title
from .process.supervisor import Supervisor, SupervisorError
from .server.boot import (
    LOGGING_UNTOUCHED,
    Booted,
    BootError,
    boot_application,
    hook_failed,
    set_up_logging,
)
from .server.exitcodes import ExitCode, exit_code_for_os_error
from .server.logs import configure_logging
from .server.serve import serve_one_process

__all__ = ["make_config", "run", "run_app", "serve", "serve_wsgi"]

logger = logging.getLogger("theframework")

PROGRAM = "theframework"


def make_config(config: ServerConfig | None, options: dict[str, Any]) -> ServerConfig:
    """``config`` (default ServerConfig()) with ``options`` applied. TypeError for an unknown
    option, ValueError for a bad value."""
    known = {field.name for field in dataclasses.fields(ServerConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown server option(s): {', '.join(unknown)}")
    base = ServerConfig() if config is None else config
    return dataclasses.replace(base, **options) if options else base


def _configs(
    app: object,
    config: ServerConfig | None,
    process: ProcessConfig | None,
    options: dict[str, Any],
) -> tuple[ServerConfig, ProcessConfig]:
    """``options`` (ServerConfig or ProcessConfig fields) applied over ``config``/``process``."""
    process_names = {field.name for field in dataclasses.fields(ProcessConfig)}
    process_options = {name: options.pop(name) for name in list(options) if name in process_names}
    process = ProcessConfig() if process is None else process
    if process_options:
        process = dataclasses.replace(process, **process_options)
    if isinstance(app, str) and (config is None or config.app is None) and "app" not in options:
        options["app"] = app
    return make_config(config, options), _with_config_file(process)


def _with_config_file(process: ProcessConfig) -> ProcessConfig:
    """``process`` with its config file loaded (its absolute path kept for the workers).
    Programs pass options as arguments: a file that sets some is refused (ConfigFileError, a
    ValueError) rather than half applied; its hooks run."""
    if process.config_file is None:
        return process
    loaded = load_config_file(process.config_file)
    if loaded.options:
        names = ", ".join(sorted(loaded.options))
        raise ConfigFileError(
            f"config file {loaded.path} sets options ({names}): serve() takes options as "
            "arguments, and reads only the hooks of a config file"
        )
    return dataclasses.replace(process, config_file=loaded.path)


def _refuse_supervisor_options(process: ProcessConfig) -> str | None:
    """The usage error for supervisor-only options given to a single process, or None."""
    ignored = process.supervisor_only_options_set()
    if not ignored:
        return None
    flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
    return f"{flags}: only a supervisor uses these; use --workers 0 or --workers 2 or more"


def _serve_booted(
    booted: Booted,
    server: ServerConfig,
    process: ProcessConfig,
    ready: Callable[[], None] | None,
    hooks: Hooks = NO_HOOKS,
) -> None:
    """Serves what the boot sequence loaded in this process, with the pid file around it."""
    pid_file = process.pid_file
    if pid_file is not None:
        check_pid_file(pid_file)

    def on_ready() -> None:
        if pid_file is not None:
            try:
                write_pid_file(pid_file)
            except OSError as error:
                logger.error("cannot write the pid file: %s", error)
        hooks.call("worker_ready", SINGLE_PROCESS_WORKER_ID)
        hooks.call("when_ready", HookConfig(server, process))
        if ready is not None:
            ready()

    try:
        serve_one_process(
            booted.handler, server, ready=on_ready, access_log=booted.access_log, hooks=hooks
        )
    finally:
        if pid_file is not None:
            remove_pid_file(pid_file)


def serve(
    app: object,
    config: ServerConfig | None = None,
    *,
    ready: Callable[[], None] | None = None,
    process: ProcessConfig | None = None,
    **options: Any,
) -> None:
    """Serves ``app`` (a Framework, any ``handler(request, response)`` callable, a WSGI
    application, or a "module:attribute" string) until SIGINT or SIGTERM, then drains.

    ``options`` are ServerConfig or ProcessConfig fields applied over ``config`` / ``process``.
    With ``workers`` 1 (the default) it serves in this process: ``ready()`` is called in the hub
    once the socket listens and the startup hooks ran; raises BootError (the application cannot
    be loaded), OSError (bind, backend), or what the startup/shutdown hooks raise. Otherwise a
    supervisor runs the workers: ``ready()`` is called in this process once every worker is
    ready, and a failure raises SupervisorError carrying the exit code.
    """
    server, process = _configs(app, config, process, options)
    if process.supervised:
        supervisor = Supervisor(app, server, process, ready=ready)
        code = supervisor.run()
        if code != 0:
            message = supervisor.error_message or f"the server stopped with exit code {code}"
            raise SupervisorError(code, message)
        return
    problem = _refuse_supervisor_options(process)
    if problem is not None:
        raise ValueError(problem)
    _serve_single(app, server, process, ready, LOGGING_UNTOUCHED)


def _serve_single(
    app: object,
    server: ServerConfig,
    process: ProcessConfig,
    ready: Callable[[], None] | None,
    log_label: str | None,
) -> None:
    """One serving process, with the config file's hooks: logging, on_starting, the boot
    sequence, serving; on_exit at the end once on_starting succeeded. BootError (a bad config
    file: exit 2; a raising on_starting or worker_start: exit 3), OSError."""
    access_log = set_up_logging(server, process, log_label)
    try:
        hooks = hooks_for(process)
    except ConfigFileError as error:
        raise BootError(ExitCode.USAGE, error.message, error.traceback) from None
    settings = HookConfig(server, process)
    try:
        hooks.call_or_raise("on_starting", settings)
    except HookFailed as failure:
        raise hook_failed(failure) from None
    try:
        booted = boot_application(app, server, process, access_log, hooks=hooks)
        _serve_booted(booted, server, process, ready, hooks)
    finally:
        hooks.call("on_exit", settings)


def serve_wsgi(
    app: object,
    config: ServerConfig | None = None,
    *,
    ready: Callable[[], None] | None = None,
    **options: Any,
) -> None:
    """``serve()`` for a WSGI application (an object or a "module:attribute" string):
    ``serve_wsgi(flask_app, port=8000, root_path="/api")``."""
    serve(app, config, ready=ready, interface="wsgi", **options)


def run_app(app: object, **options: Any) -> None:
    """``Framework.run()``: logging as on the command line, then ``serve()``."""
    configure_logging(str(options.get("log_level", "info")))
    serve(app, **options)


def _usage_error(message: str) -> int:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)
    return ExitCode.USAGE


def run(server: ServerConfig, process: ProcessConfig) -> int:
    """The command line's server: runs ``server.app`` to the end; returns the exit status
    (README has the table). Logging is set up here."""
    assert server.app is not None
    if process.supervised:
        try:
            set_up_logging(server, process, "master")
        except BootError as error:
            return _usage_error(error.message)
        return Supervisor(server.app, server, process).run()
    problem = _refuse_supervisor_options(process)
    if problem is not None:
        return _usage_error(problem)
    set_process_title(process.proc_name)
    try:
        _serve_single(server.app, server, process, None, None)
    except BootError as error:
        if error.traceback:
            sys.stderr.write(error.traceback)
        print(f"{PROGRAM}: error: {error.message}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        # The same codes as a supervised worker: 42 address in use, 43 permission, 44 no fds.
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return exit_code_for_os_error(error)
    except KeyboardInterrupt:
        return 130
    except Exception:
        logger.exception("server failed")
        return ExitCode.GENERIC
    return ExitCode.OK
