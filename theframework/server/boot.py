"""The one boot sequence of a serving process (the single process, or each worker), in order:

logging (``--log-config``) -> access log format -> ``--env-file`` -> ``--patch-all`` -> runtime
options (offload, DNS pools) -> the config file's ``worker_start`` hook -> import and load the
application. (``boot_application`` is the sequence after its logging steps: the single process
runs the ``on_starting`` hook between the two.)

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
from ..configfile import NO_HOOKS, SINGLE_PROCESS_WORKER_ID, HookFailed, Hooks
from ..runtime import offload
from .accesslog import AccessLog, access_logger
from .envfile import load_env_files
from .exitcodes import ExitCode
from .loading import AppLoadError, call_factory, import_from_string, load_app
from .logs import apply_log_config, configure_logging

__all__ = [
    "LOGGING_UNTOUCHED",
    "BootError",
    "Booted",
    "boot",
    "boot_application",
    "hook_failed",
    "set_up_logging",
]


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
    hooks: Hooks = NO_HOOKS,
    worker_id: int = SINGLE_PROCESS_WORKER_ID,
) -> Booted:
    """Runs the boot sequence for ``app`` (an object or a "module:attribute" string); raises
    BootError. ``log_label``: see LOGGING_UNTOUCHED. ``multiprocess``: wsgi.multiprocess.
    ``hooks``' worker_start(``worker_id``) runs just before the application is imported."""
    access_log = set_up_logging(server, process, log_label)
    return boot_application(
        app, server, process, access_log, multiprocess=multiprocess, hooks=hooks,
        worker_id=worker_id,
    )  # fmt: skip


def boot_application(
    app: object,
    server: ServerConfig,
    process: ProcessConfig,
    access_log: AccessLog | None,
    *,
    multiprocess: bool = False,
    hooks: Hooks = NO_HOOKS,
    worker_id: int = SINGLE_PROCESS_WORKER_ID,
) -> Booted:
    """The boot sequence after ``set_up_logging`` (which made ``access_log``): env files,
    patch_all, runtime options, the worker_start hook, the application. BootError; a raising
    worker_start hook is exit 3 with its traceback."""
    _load_environment(process)
    _configure_runtime(process)
    try:
        hooks.call_or_raise("worker_start", worker_id)
    except HookFailed as failure:
        raise hook_failed(failure) from None
    return Booted(_load_application(app, server, multiprocess), access_log)


def hook_failed(failure: HookFailed) -> BootError:
    """The BootError (exit 3, the hook's traceback) of a hook that stops a start."""
    return BootError(ExitCode.APP_FAILED, str(failure), failure.traceback)


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
