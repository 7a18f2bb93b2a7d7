"""One serving process: a hub, the native HTTP server over listening sockets, signals, hooks.

``serve_listeners()`` is the whole life of a serving process once its sockets listen:
hub -> startup hooks -> ready() -> serve until SIGINT/SIGTERM -> drain -> shutdown hooks.
``serve_one_process()`` adds binding (and removing a UNIX socket file it made) around it.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence

from .. import _core
from ..app import Framework, Handler
from ..config import ServerConfig
from ..wsgi import WSGIAdapter
from .accesslog import AccessLog
from .signals import drain_on_signals
from .sockets import bind_socket, check_tcp_address_free, listener_url, remove_own_socket_file

__all__ = ["serve_listeners", "serve_one_process"]

logger = logging.getLogger("theframework")


def serve_listeners(
    handler: Handler,
    listeners: Sequence[socket.socket],
    config: ServerConfig,
    *,
    ready: Callable[[], None] | None = None,
    hub_started: Callable[[], None] | None = None,
    access_log: AccessLog | None = None,
    rebalance_every: int = 0,
    created: Callable[[_core.Hub, _core.HttpServer], None] | None = None,
    owns_listeners: bool = True,
) -> None:
    """Serves ``handler`` (loaded by the boot sequence) on sockets that already listen, in this
    process, until SIGINT/SIGTERM (or ``http_server.shutdown``) and the drain finish. Does not
    close the sockets.

    ``access_log`` goes to the native server (see theframework.accesslog); every
    ``rebalance_every``-th response closes its connection (workers: clients spread again over the
    SO_REUSEPORT group); ``created(hub, http_server)`` is
    called once both exist, before the hub runs (a worker sets its heartbeat there).

    In the hub: ``hub_started()``, the app's startup hooks, then ``ready()``, then serving; the
    shutdown hooks run after the drain (also when serving fails), but only when the startup hooks
    succeeded. (A worker tells the phase an exception escaped from by the callbacks it saw.)
    """
    if isinstance(handler, WSGIAdapter) and listeners:
        handler.set_server_address(listeners[0].getsockname())
    framework = handler if isinstance(handler, Framework) else None
    logger.setLevel(config.log_level.upper())
    hub = _core.Hub(config.backend)
    urls = ", ".join(listener_url(listener) for listener in listeners)
    http_server = _core.HttpServer(
        handler,
        [listener.fileno() for listener in listeners],
        access_log=access_log,
        rebalance_every=rebalance_every,
        **config.engine_limits(),
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

    with drain_on_signals(
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
    stats = http_server.stats()
    logger.info(
        "stopped serving %s (%d connections, at most %d open at once)",
        urls,
        stats["connections_accepted"],
        stats["connections_peak"],
    )


def serve_one_process(
    handler: Handler,
    config: ServerConfig,
    *,
    ready: Callable[[], None] | None = None,
    access_log: AccessLog | None = None,
) -> None:
    """Binds ``config``'s address and serves ``handler`` on it in this process until
    SIGINT/SIGTERM and the drain finish (see serve_listeners); the socket is closed, and a UNIX
    socket file this call made is removed. OSError (bind, backend) propagates."""
    check_tcp_address_free(config)
    listener = bind_socket(config)
    socket_inode = os.stat(config.uds).st_ino if config.uds is not None else None
    try:
        serve_listeners(handler, [listener], config, ready=ready, access_log=access_log)
    finally:
        listener.close()
        if config.uds is not None:
            remove_own_socket_file(config.uds, socket_inode)
