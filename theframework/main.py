"""The entry points: ``serve()`` / ``serve_wsgi()`` for programs, ``run()`` for the command line.
Each chooses between one serving process (``workers`` 1) and the supervisor (any other count).

Single process: logging -> the config file's on_starting hook -> boot sequence
(theframework.server.boot, with the worker_start hook) -> pid file check -> bind (or the
inherited sockets) -> serve (systemd told READY=1, watchdog pings from the hub; the worker_ready
and when_ready hooks; worker_shutdown after the drain) -> pid file removed -> on_exit.
Supervisor: theframework.process.supervisor, which runs the same boot sequence in every worker
and the other hooks itself. Both take systemd's socket activation ($LISTEN_FDS) first. With
``--reload`` (command line only) theframework.process.reloader runs the supervisor with one
worker and a watcher that makes it reload on each change.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from . import _core
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
from .process.reloader import reload_problem, run_reloading
from .process.supervisor import Supervisor, SupervisorError
from .process.systemd import Activation, take_listen_fds, tell_systemd, watchdog_interval
from .server.boot import (
    LOGGING_UNTOUCHED,
    Booted,
    BootError,
    boot_application,
    hook_failed,
    set_up_logging,
)
from .server.exitcodes import ExitCode, exit_code_for_hub_failure, exit_code_for_os_error
from .server.logs import configure_logging
from .server.serve import serve_one_process
from .server.sockets import InheritedSocketError

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


def _socket_activation(server: ServerConfig) -> tuple[ServerConfig, Activation]:
    """``server`` serving the sockets systemd passed ($LISTEN_FDS, consumed here) unless
    ``--fd`` names its own; and what was passed, to be logged once logging is set up."""
    activation = take_listen_fds()
    if server.fds or not activation.sockets:
        return server, activation
    return dataclasses.replace(
        server, fds=tuple(entry.fd for entry in activation.sockets)
    ), activation


def _log_activation(server: ServerConfig, activation: Activation) -> None:
    if activation.note is not None:
        logger.warning("%s", activation.note)
    if activation.sockets and server.fds != tuple(entry.fd for entry in activation.sockets):
        logger.warning("socket activation: ignored, --fd %s given", server.bind_description)
        return
    for entry in activation.sockets:
        logger.info("socket activation: fd %d (name %s)", entry.fd, entry.name)


class _SingleProcess:
    """The single process's callbacks around serving: how far it got (a failure before the hub
    ran is the engine's, between that and ready one of the startup hooks'), the pid file, and
    what systemd is told (READY=1 and the watchdog, STOPPING=1), and the config file's hooks
    that run once it serves (worker_ready, when_ready with ``settings``)."""

    def __init__(
        self,
        server: ServerConfig,
        pid_file: str | None,
        ready: Callable[[], None] | None,
        hooks: Hooks = NO_HOOKS,
        settings: HookConfig | None = None,
    ) -> None:
        self.server = server
        self.pid_file = pid_file
        self.ready = ready
        self.hooks = hooks
        self.settings = settings
        self.hub_started = False
        self.serving = False
        # What it listens on ("http://127.0.0.1:8000"), once the sockets are open.
        self.address = ""

    def on_listening(self, address: str) -> None:
        self.address = address

    def on_hub_started(self) -> None:
        self.hub_started = True

    def on_ready(self) -> None:
        """In the hub, once serving: the pid file, READY=1, the watchdog greenlet, ready()."""
        self.serving = True
        if self.pid_file is not None:
            try:
                write_pid_file(self.pid_file)
            except OSError as error:
                logger.error("cannot write the pid file: %s", error)
        tell_systemd(
            f"READY=1\nMAINPID={os.getpid()}\n"
            f"STATUS=serving on {self.address} (1 process, no supervisor)"
        )
        interval = watchdog_interval()
        if interval is not None:
            _core.spawn(_watchdog, interval)
        self.hooks.call("worker_ready", SINGLE_PROCESS_WORKER_ID)
        if self.settings is not None:
            self.hooks.call("when_ready", self.settings)
        if self.ready is not None:
            self.ready()

    def on_stopping(self) -> None:
        logger.info(
            "stopping: draining for at most %g s (a second SIGINT stops at once)",
            self.server.graceful_timeout,
        )
        tell_systemd("STOPPING=1\nSTATUS=draining")

    @property
    def startup_hooks_failed(self) -> bool:
        """A failure now came from the startup hooks (the hub ran, serving had not begun)."""
        return self.hub_started and not self.serving


def _watchdog(interval: float) -> None:
    """In a hub greenlet: WATCHDOG=1 every ``interval`` s. It runs only while the hub's loop
    turns (timers fire, greenlets get switched to), which is what proves the process alive."""
    while True:
        tell_systemd("WATCHDOG=1")
        _core.sleep(interval)


def _serve_booted(booted: Booted, server: ServerConfig, life: _SingleProcess) -> None:
    """Serves what the boot sequence loaded in this process, with the pid file around it and
    systemd told (see _SingleProcess). KeyboardInterrupt when a second SIGINT stopped it before
    the drain finished."""
    if life.pid_file is not None:
        check_pid_file(life.pid_file)
    try:
        stopped_at_once = serve_one_process(
            booted.handler,
            server,
            ready=life.on_ready,
            hub_started=life.on_hub_started,
            access_log=booted.access_log,
            stopping=life.on_stopping,
            listening=life.on_listening,
            hooks=life.hooks,
        )
    finally:
        if life.pid_file is not None:
            remove_pid_file(life.pid_file)
    if stopped_at_once:
        raise KeyboardInterrupt


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
    be loaded), OSError (bind, backend), InheritedSocketError (``fds`` or $LISTEN_FDS name no
    listening stream socket), KeyboardInterrupt (a second SIGINT stopped it before the drain
    finished), or what the startup/shutdown hooks raise. Otherwise a
    supervisor runs the workers: ``ready()`` is called in this process once every worker is
    ready, and a failure raises SupervisorError carrying the exit code.
    """
    server, process = _configs(app, config, process, options)
    if process.reload:
        raise ValueError("reload: only the command line watches files (theframework APP --reload)")
    server, activated = _socket_activation(server)
    _log_activation(server, activated)
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
    booted, hooks, settings = _boot_single(app, server, process, LOGGING_UNTOUCHED)
    try:
        _serve_booted(
            booted, server, _SingleProcess(server, process.pid_file, ready, hooks, settings)
        )
    finally:
        hooks.call("on_exit", settings)


def _boot_single(
    app: object, server: ServerConfig, process: ProcessConfig, log_label: str | None
) -> tuple[Booted, Hooks, HookConfig]:
    """The single process's start: logging, the config file's hooks and on_starting, then the
    rest of the boot sequence (with worker_start). BootError (a bad config file: exit 2; a
    raising on_starting or worker_start: exit 3). Once on_starting ran, the caller runs on_exit
    at the end (here when the boot sequence fails)."""
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
    except BaseException:
        hooks.call("on_exit", settings)
        raise
    return booted, hooks, settings


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


def _run_supervised(
    app: str, server: ServerConfig, process: ProcessConfig, activated: Activation
) -> int:
    """The supervisor (with the --reload watcher when asked), after its logging set-up."""
    try:
        set_up_logging(server, process, "master")
    except BootError as error:
        return _usage_error(error.message)
    _log_activation(server, activated)
    if process.reload:
        return run_reloading(app, server, process)
    return Supervisor(app, server, process).run()


def run(server: ServerConfig, process: ProcessConfig) -> int:
    """The command line's server: runs ``server.app`` to the end; returns the exit status
    (README has the table; the single process exits with the same codes as the supervisor).
    Logging is set up here."""
    app = server.app
    assert app is not None
    problem = reload_problem(process)
    if problem is not None:
        return _usage_error(problem)
    server, activated = _socket_activation(server)
    if process.supervised:
        return _run_supervised(app, server, process, activated)
    return _run_single_process(server, process, activated)


def _run_single_process(server: ServerConfig, process: ProcessConfig, activated: Activation) -> int:
    problem = _refuse_supervisor_options(process)
    if problem is not None:
        return _usage_error(problem)
    set_process_title(process.proc_name)
    try:
        booted, hooks, settings = _boot_single(server.app, server, process, None)
    except BootError as error:
        return _boot_failed(error)
    except OSError as error:  # out of file descriptors while importing
        return _os_error(error)
    _log_activation(server, activated)
    life = _SingleProcess(server, process.pid_file, None, hooks, settings)
    try:
        return _serve_single_process(booted, server, life)
    finally:
        hooks.call("on_exit", settings)


def _serve_single_process(booted: Booted, server: ServerConfig, life: _SingleProcess) -> int:
    """Serves the booted application; the exit code."""
    try:
        _serve_booted(booted, server, life)
    except InheritedSocketError as error:
        return _usage_error(f"cannot serve an inherited socket: {error}")
    except KeyboardInterrupt:
        logger.warning("second SIGINT: stopped at once")
        return ExitCode.INTERRUPTED
    except Exception as error:
        if life.startup_hooks_failed:
            return _startup_hook_failed()
        if life.serving:
            # As a supervised worker: 50 MemoryError, 51 OSError, 52 another exception.
            logger.exception("the hub failed while serving")
            return exit_code_for_hub_failure(error)
        if isinstance(error, OSError):  # binding or creating the backend
            return _os_error(error)
        logger.exception("server failed")
        return ExitCode.GENERIC
    return ExitCode.OK


def _boot_failed(error: BootError) -> int:
    if error.traceback:
        sys.stderr.write(error.traceback)
    print(f"{PROGRAM}: error: {error.message}", file=sys.stderr)
    return error.exit_code


def _os_error(error: OSError) -> int:
    """The same codes as a supervised worker: 42 address in use, 43 permission, 44 no fds."""
    print(f"{PROGRAM}: error: {error}", file=sys.stderr)
    return exit_code_for_os_error(error)


def _startup_hook_failed() -> int:
    """A startup hook raised (the exception being handled): exit 3 with its traceback."""
    logger.exception("a startup hook failed; not serving")
    return ExitCode.APP_FAILED
