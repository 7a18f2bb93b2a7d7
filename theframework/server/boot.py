"""The one boot sequence of a serving process (the single process, or each worker), in order:

logging (``--log-config``) -> access log format -> ``--env-file`` -> ``--patch-all`` -> runtime
options (offload, DNS pools) -> import and load the application.

Every failure raises ``BootError(exit_code, message, traceback)``: the caller reports it its own
way (the command line prints one line, a worker sends it to its supervisor) and exits with the
code. Nothing here binds a socket or starts a hub.
"""

from __future__ import annotations

import errno
import traceback
from dataclasses import dataclass

from ..app import Handler
from ..config import ProcessConfig, ServerConfig, option
from ..runtime import offload
from .accesslog import AccessLog, access_logger
from .envfile import load_env_files
from .exitcodes import ExitCode
from .loading import AppLoadError, call_factory, import_from_string, load_app
from .logs import apply_log_config, configure_logging

__all__ = ["LOGGING_UNTOUCHED", "BootError", "Booted", "boot", "set_up_logging"]


class BootError(Exception):
    """The process cannot start serving: ``exit_code`` (an ExitCode) says why, ``message`` is
    the one line to report, ``traceback`` the formatted traceback worth showing ("" if none)."""

    def __init__(self, exit_code: int, message: str, traceback: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.traceback = traceback


@dataclass(frozen=True, slots=True)
class Booted:
    """What the boot sequence produced: the request handler and the access-log callback (None
    without ``--access-log``)."""

    handler: Handler
    access_log: AccessLog | None


# Logging set-up: "skip" (the embedding program owns logging), or a label for the lines
# (None: no label, "master", "worker-2").
LOGGING_UNTOUCHED = "skip"


def set_up_logging(
    server: ServerConfig, process: ProcessConfig, log_label: str | None = LOGGING_UNTOUCHED
) -> AccessLog | None:
    """The logging steps of the boot sequence (the supervisor runs only these): the default
    set-up unless ``log_label`` is LOGGING_UNTOUCHED, ``--log-config``, and the access-log
    callback (None without ``--access-log``). BootError (exit 2) for a bad file or format."""
    if log_label != LOGGING_UNTOUCHED:
        configure_logging(server.log_level, log_label)
    if process.log_config is not None:
        try:
            apply_log_config(process.log_config)
        except ValueError as error:
            raise BootError(ExitCode.USAGE, str(error)) from None
    if not process.access_log:
        return None
    try:
        return access_logger(process.access_log_format)
    except ValueError as error:
        raise BootError(ExitCode.USAGE, f"--access-log-format: {error}") from None


def boot(
    app: object,
    server: ServerConfig,
    process: ProcessConfig,
    *,
    log_label: str | None = LOGGING_UNTOUCHED,
    multiprocess: bool = False,
) -> Booted:
    """Runs the boot sequence for ``app`` (an object or a "module:attribute" string); raises
    BootError. ``log_label``: see LOGGING_UNTOUCHED. ``multiprocess``: wsgi.multiprocess."""
    access_log = set_up_logging(server, process, log_label)
    _load_environment(process)
    _configure_runtime(process)
    return Booted(_load_application(app, server, multiprocess), access_log)


def _load_environment(process: ProcessConfig) -> None:
    try:
        load_env_files(process.env_files)
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            raise
        raise BootError(ExitCode.USAGE, f"cannot load the environment file: {error}") from None
    if process.patch_all:
        try:
            from .. import monkey
        except ImportError as error:
            raise BootError(
                ExitCode.USAGE, f"--patch-all: theframework.monkey is not available: {error}"
            ) from None
        monkey.patch_all()


def _configure_runtime(process: ProcessConfig) -> None:
    """The runtime options given to the server (the runtime reads their variables itself)."""
    offload.configure(
        threads=process.offload_threads,
        processes=process.offload_processes,
        start_method=process.offload_start_method,
    )
    if process.dns_threads != option("dns_threads").default:
        from ..monkey import dns

        dns.configure(threads=process.dns_threads)


def _is_missing_module(error: ModuleNotFoundError, module_name: str) -> bool:
    """True when ``error`` says the module itself (or a parent package) does not exist, rather
    than something it imports."""
    missing = error.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def _load_application(app: object, server: ServerConfig, multiprocess: bool) -> Handler:
    """Imports and loads ``app``. A reference that names nothing callable: exit 2; a module that
    does not exist: exit 3 without a traceback; anything the import raises: exit 3 with it."""
    module_name = app.partition(":")[0] if isinstance(app, str) else ""
    try:
        if isinstance(app, str):
            target = import_from_string(app, factory=server.factory)
        else:
            target = call_factory(app, app) if server.factory else app
        return load_app(target, server, multiprocess=multiprocess)
    except AppLoadError as error:
        raise BootError(ExitCode.USAGE, str(error)) from None
    except ModuleNotFoundError as error:
        trace = "" if _is_missing_module(error, module_name) else traceback.format_exc()
        raise BootError(
            ExitCode.APP_FAILED, f"cannot import {module_name!r}: {error}", trace
        ) from error
    except OSError as error:
        if error.errno in (errno.EMFILE, errno.ENFILE):
            raise
        raise BootError(
            ExitCode.APP_FAILED, f"cannot import {app!r}: {error}", traceback.format_exc()
        ) from error
    except Exception as error:
        what = repr(module_name) if module_name else repr(app)
        raise BootError(
            ExitCode.APP_FAILED, f"cannot import {what}: {error}", traceback.format_exc()
        ) from error
