"""The entry points: ``serve()`` / ``serve_wsgi()`` for programs, ``run()`` for the command line.
Each chooses between one serving process (``workers`` 1) and the supervisor (any other count).

Single process: boot sequence (theframework.server.boot) -> pid file check -> bind -> serve ->
pid file removed. Supervisor: theframework.process.supervisor, which runs the same boot sequence
in every worker; with ``--reload`` (command line only) theframework.process.reloader runs it with
one worker and a watcher that makes it reload on each change.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import ProcessConfig, ServerConfig
from .process.pidfile import check_pid_file, remove_pid_file, write_pid_file
from .process.proctitle import set_process_title
from .process.reloader import reload_problem, run_reloading
from .process.supervisor import Supervisor, SupervisorError
from .server.boot import Booted, BootError, boot, set_up_logging
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
    return make_config(config, options), process


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
        if ready is not None:
            ready()

    try:
        serve_one_process(booted.handler, server, ready=on_ready, access_log=booted.access_log)
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
    if process.reload:
        raise ValueError("reload: only the command line watches files (theframework APP --reload)")
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
    _serve_booted(boot(app, server, process), server, process, ready)


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


def _run_supervised(app: str, server: ServerConfig, process: ProcessConfig) -> int:
    """The supervisor (with the --reload watcher when asked), after its logging set-up."""
    try:
        set_up_logging(server, process, "master")
    except BootError as error:
        return _usage_error(error.message)
    if process.reload:
        return run_reloading(app, server, process)
    return Supervisor(app, server, process).run()


def run(server: ServerConfig, process: ProcessConfig) -> int:
    """The command line's server: runs ``server.app`` to the end; returns the exit status
    (README has the table). Logging is set up here."""
    assert server.app is not None
    problem = reload_problem(process)
    if problem is not None:
        return _usage_error(problem)
    if process.supervised:
        return _run_supervised(server.app, server, process)
    problem = _refuse_supervisor_options(process)
    if problem is not None:
        return _usage_error(problem)
    set_process_title(process.proc_name)
    try:
        booted = boot(server.app, server, process, log_label=None)
    except BootError as error:
        if error.traceback:
            sys.stderr.write(error.traceback)
        print(f"{PROGRAM}: error: {error.message}", file=sys.stderr)
        return error.exit_code
    try:
        _serve_booted(booted, server, process, None)
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
