"""Single-process server: listening socket, hub, native HTTP server, signals, hooks.

``serve()`` is the whole life of one serving process:
bind -> hub -> startup hooks -> ready() -> serve until SIGINT/SIGTERM -> drain -> shutdown hooks.
Signal handlers only ask the native server to shut down (or, on a second SIGINT, stop the hub);
the draining itself runs in the hub.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from . import _core
from .app import Framework, Handler
from .config import ProcessConfig, ServerConfig
from .wsgi import WSGIAdapter, detect_interface

__all__ = [
    "AppLoadError",
    "apply_log_config",
    "bind_socket",
    "check_pid_file",
    "configure_logging",
    "import_from_string",
    "listener_url",
    "load_app",
    "make_config",
    "remove_pid_file",
    "serve",
    "serve_listeners",
    "write_pid_file",
]

logger = logging.getLogger("theframework")

# ServerConfig fields handed to the native HttpServer as keyword arguments.
_SERVER_LIMITS = (
    "max_header_size",
    "max_body_size",
    "header_timeout",
    "body_timeout",
    "keepalive_timeout",
    "write_timeout",
    "max_connections",
)

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


def configure_logging(level: str, process_label: str | None = None) -> None:
    """Logging for command-line and ``app.run()`` use: a stderr handler on the root logger when
    none is configured yet (logging.basicConfig), and ``level`` on the "theframework" logger.

    With ``process_label`` ("master", "worker-2"), the root configuration is replaced (a forked
    worker inherits its parent's) and every line shows the label after the level."""
    if process_label is None:
        logging.basicConfig(
            level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    else:
        logging.basicConfig(
            level=level.upper(),
            format=f"%(asctime)s %(levelname)s [{process_label}] %(name)s: %(message)s",
            force=True,
        )
    logger.setLevel(level.upper())


def apply_log_config(path: str) -> None:
    """Applies the ``logging.config.dictConfig`` JSON file at ``path`` (``--log-config``) over
    the default set-up. ValueError naming the file when it cannot be read or applied."""
    import json
    import logging.config

    try:
        with open(path, encoding="utf-8") as stream:
            configuration = json.load(stream)
        if not isinstance(configuration, dict):
            raise ValueError("expected a JSON object")
        configuration.setdefault("version", 1)
        # Keep the loggers created so far (the supervisor's, the server's) working.
        configuration.setdefault("disable_existing_loggers", False)
        logging.config.dictConfig(configuration)
    except (OSError, ValueError, TypeError, AttributeError, ImportError) as error:
        raise ValueError(f"--log-config {path}: {error}") from None


def check_pid_file(path: str) -> None:
    """Refuses (OSError EEXIST) a pid file naming a live process other than this one; a stale
    file (dead pid, or not a pid) is left to be overwritten."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            text = stream.read(64).strip()
    except FileNotFoundError:
        return
    try:
        pid = int(text)
    except ValueError:
        return
    if pid <= 0 or pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass  # alive, owned by another user
    raise FileExistsError(
        errno.EEXIST,
        f"the pid file {path} names a live process (pid {pid}): is the server already running? "
        "stop it, or remove the file if that process is not a server",
    )


def write_pid_file(path: str) -> None:
    """Writes this pid to ``path`` atomically (temporary file, then rename)."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="ascii") as stream:
        stream.write(f"{os.getpid()}\n")
    os.replace(temporary, path)


def remove_pid_file(path: str) -> bool:
    """Removes ``path`` only when it still holds this pid; True when removed."""
    try:
        with open(path, encoding="ascii", errors="replace") as stream:
            if stream.read(64).strip() != str(os.getpid()):
                return False
        os.unlink(path)
    except OSError:
        return False
    return True


class AppLoadError(ValueError):
    """The application reference is unusable: not "module:attribute", the attribute is missing,
    or the object is not callable. (Errors raised while importing the module propagate as
    themselves.)"""


def import_from_string(reference: str) -> object:
    """Imports "module:attribute" (attribute may be dotted: "pkg.mod:factory.app")."""
    module_name, separator, attribute = reference.partition(":")
    if not separator or not module_name or not attribute:
        raise AppLoadError(f"application must be given as 'module:attribute', got {reference!r}")
    module = importlib.import_module(module_name)
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    return target


def load_app(
    app: object, config: ServerConfig | None = None, *, multiprocess: bool = False
) -> Handler:
    """The request handler for ``app``: a Framework, any ``handler(request, response)`` callable,
    a WSGI application (wrapped in a WSGIAdapter), or an import string naming one.
    ``config.interface`` says which ("auto": detected, see wsgi.detect_interface); without
    ``config`` the object is returned as it is. ``multiprocess``: wsgi.multiprocess (a worker
    of a supervisor)."""
    target = import_from_string(app) if isinstance(app, str) else app
    if not callable(target):
        raise AppLoadError(f"application {app!r} is not callable (got {type(target).__name__})")
    if isinstance(target, WSGIAdapter) or config is None:
        handler: Handler = target
        return handler
    interface = config.interface
    if interface == "auto":
        interface = detect_interface(target)
    if interface == "wsgi":
        if isinstance(target, Framework):
            name = config.app or app
            raise AppLoadError(f"application {name!r} is a Framework, not a WSGI application")
        return WSGIAdapter(target, root_path=config.root_path, multiprocess=multiprocess)
    handler = target
    return handler


def make_config(config: ServerConfig | None, options: dict[str, Any]) -> ServerConfig:
    """``config`` (default ServerConfig()) with ``options`` applied. TypeError for an unknown
    option, ValueError for a bad value."""
    known = {field.name for field in dataclasses.fields(ServerConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown server option(s): {', '.join(unknown)}")
    base = ServerConfig() if config is None else config
    return dataclasses.replace(base, **options) if options else base


def _remove_stale_socket_file(path: str) -> None:
    """Unlinks a UNIX socket file nobody listens on. Refuses (OSError) to remove anything that is
    not a socket, or a socket some process still accepts on."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"refusing to remove {path!r}: it exists and is not a socket"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # stale: nobody listens
        except OSError as error:
            raise OSError(
                errno.EADDRINUSE, f"cannot tell whether {path!r} is in use: {error}"
            ) from None
        else:
            raise OSError(errno.EADDRINUSE, f"another server is listening on {path!r}")
    os.unlink(path)


def bind_socket(config: ServerConfig, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket for ``config``: UNIX at ``uds`` (a stale socket file is replaced), else
    TCP on host:port (IPv6 when host contains ":"), with SO_REUSEADDR, and SO_REUSEPORT when
    ``reuse_port`` (each worker of a supervisor binds its own). OSError naming the address (and
    keeping the errno) on failure."""
    description = config.bind_description
    if config.uds is not None:
        _remove_stale_socket_file(config.uds)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = config.uds
    else:
        host = config.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        address = (host, config.port)
    try:
        listener.bind(address)
        listener.listen(config.backlog)
    except OSError as error:
        listener.close()
        raise OSError(
            error.errno, f"cannot listen on {description}: {error.strerror or error}"
        ) from None
    except BaseException:
        listener.close()
        raise
    return listener


def listener_url(listener: socket.socket) -> str:
    """The address of a listening socket as logged: "http://host:port" or "unix:/path"."""
    address = listener.getsockname()
    if listener.family == socket.AF_UNIX:
        return f"unix:{address}"
    if listener.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    return f"http://{address[0]}:{address[1]}"


@contextmanager
def _signal_handlers(
    http_server: _core.HttpServer,
    hub: _core.Hub,
    graceful_timeout: float,
    own_listeners: Sequence[socket.socket],
) -> Iterator[None]:
    """Installs SIGINT/SIGTERM handlers for the duration of the block (main thread only;
    elsewhere signals are left alone). The first signal starts a graceful shutdown; a later
    SIGINT stops the hub at once; a later SIGTERM is ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    shutting_down = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal shutting_down
        if not shutting_down:
            shutting_down = True
            http_server.shutdown(graceful_timeout)
            # The native server took what was queued; from now on connection attempts are
            # refused at once instead of waiting in a backlog nobody will accept from.
            for listener in own_listeners:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RD)
        elif signum == signal.SIGINT:
            hub.stop()

    previous: dict[int, _SignalHandler] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
        yield
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, signal.SIG_DFL if handler is None else handler)


def serve_listeners(
    app: object,
    listeners: Sequence[socket.socket],
    config: ServerConfig,
    *,
    ready: Callable[[], None] | None = None,
    hub_started: Callable[[], None] | None = None,
    access_log: Callable[[Any, int, int, float], object] | None = None,
    rebalance_every: int = 0,
    created: Callable[[_core.Hub, _core.HttpServer], None] | None = None,
    owns_listeners: bool = True,
) -> None:
    """Serves ``app`` on sockets that already listen, in this process, until SIGINT/SIGTERM
    (or ``http_server.shutdown``) and the drain finish. Does not close the sockets.

    ``access_log`` goes to the native server (see theframework.accesslog); every
    ``rebalance_every``-th response closes its connection (workers: clients spread again over the
    SO_REUSEPORT group); ``created(hub, http_server)`` is
    called once both exist, before the hub runs (a worker sets its heartbeat there).

    In the hub: ``hub_started()``, the app's startup hooks, then ``ready()``, then serving; the
    shutdown hooks run after the drain (also when serving fails), but only when the startup hooks
    succeeded. (A worker tells the phase an exception escaped from by the callbacks it saw.)
    """
    handler = load_app(app, config)
    if isinstance(handler, WSGIAdapter) and listeners:
        handler.set_server_address(listeners[0].getsockname())
    framework = handler if isinstance(handler, Framework) else None
    logger.setLevel(config.log_level.upper())
    hub = _core.Hub(config.backend)
    urls = ", ".join(listener_url(listener) for listener in listeners)
    limits: dict[str, Any] = {name: getattr(config, name) for name in _SERVER_LIMITS}
    http_server = _core.HttpServer(
        handler,
        [listener.fileno() for listener in listeners],
        access_log=access_log,
        rebalance_every=rebalance_every,
        **limits,
    )
    if created is not None:
        created(hub, http_server)

    def main() -> None:
        if hub_started is not None:
            hub_started()
        if framework is not None:
            framework.startup()
        try:
            if ready is not None:
                ready()
            http_server.serve()
        finally:
            if framework is not None:
                framework.shutdown()

    with _signal_handlers(
        http_server, hub, config.graceful_timeout, listeners if owns_listeners else ()
    ):
        # "listening on" is the readiness signal: logged only once the SIGINT/SIGTERM handlers
        # are installed, so a signal sent as soon as it appears drains instead of killing.
        if hub.fallback_reason:
            logger.info(
                "listening on %s (pid %d, backend %s; io_uring unavailable: %s)",
                urls,
                os.getpid(),
                hub.backend,
                hub.fallback_reason,
            )
        else:
            logger.info("listening on %s (pid %d, backend %s)", urls, os.getpid(), hub.backend)
        hub.run(main)
    logger.info("stopped serving %s", urls)


def serve(
    app: object,
    config: ServerConfig | None = None,
    *,
    ready: Callable[[], None] | None = None,
    process: ProcessConfig | None = None,
    **options: Any,
) -> None:
    """Serves ``app`` (a Framework, any ``handler(request, response)`` callable, or a
    "module:attribute" string) until SIGINT or SIGTERM, then drains.

    ``options`` are ServerConfig or ProcessConfig fields applied over ``config`` / ``process``.
    With ``workers`` 1 (the default) it serves in this process: ``ready()`` is called in the hub
    once the socket listens and the startup hooks ran; raises AppLoadError, OSError (bind,
    backend), or what the startup/shutdown hooks raise. Otherwise a supervisor runs the workers
    (see theframework.supervisor): ``ready()`` is called in this process once every worker is
    ready, and a failure raises supervisor.SupervisorError carrying the exit code.
    """
    process_names = {field.name for field in dataclasses.fields(ProcessConfig)}
    process_options = {name: options.pop(name) for name in list(options) if name in process_names}
    process = ProcessConfig() if process is None else process
    if process_options:
        process = dataclasses.replace(process, **process_options)
    if isinstance(app, str) and (config is None or config.app is None) and "app" not in options:
        options["app"] = app
    config = make_config(config, options)
    if process.supervised:
        from .supervisor import Supervisor, SupervisorError  # supervisor imports this module

        supervisor = Supervisor(app, config, process, ready=ready)
        code = supervisor.run()
        if code != 0:
            message = supervisor.error_message or f"the server stopped with exit code {code}"
            raise SupervisorError(code, message)
        return
    if process.env_files or process.patch_all:
        from .worker import load_env_files, patch_all  # worker imports this module

        load_env_files(process.env_files)
        if process.patch_all:
            patch_all()
    ignored = process.supervisor_only_options_set()
    if ignored:
        raise ValueError(
            f"{', '.join(ignored)}: only a supervisor uses these; set workers to 0 or 2 or more"
        )
    if process.log_config is not None:
        apply_log_config(process.log_config)
    access_log = None
    if process.access_log:
        from .accesslog import access_logger

        access_log = access_logger(process.access_log_format)
    handler = load_app(app)
    pid_file = process.pid_file
    if pid_file is not None:
        check_pid_file(pid_file)
    listener = bind_socket(config)
    socket_inode = os.stat(config.uds).st_ino if config.uds is not None else None

    def on_ready() -> None:
        if pid_file is not None:
            try:
                write_pid_file(pid_file)
            except OSError as error:
                logger.error("cannot write the pid file: %s", error)
        if ready is not None:
            ready()

    try:
        serve_listeners(handler, [listener], config, ready=on_ready, access_log=access_log)
    finally:
        if pid_file is not None:
            remove_pid_file(pid_file)
        listener.close()
        if config.uds is not None:
            try:
                if os.stat(config.uds).st_ino == socket_inode:
                    os.unlink(config.uds)
            except FileNotFoundError:
                pass
