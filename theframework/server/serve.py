"""One serving process: a hub, the native HTTP server over listening sockets, signals, hooks.

``serve_listeners()`` is the whole life of a serving process once its sockets listen:
hub -> startup hooks -> ready() -> serve until SIGINT/SIGTERM -> drain -> shutdown hooks ->
the config file's worker_shutdown hook. ``serve_one_process()`` adds binding, or adopting
inherited sockets (``--fd``, socket activation), the single process's other signals, and removing
a UNIX socket file it made, around it.

The config file's ``pre_request`` / ``post_request`` hooks cost nothing when absent: only a file
that defines one gets a wrapper around the handler (pre_request) or an access-log callback
(post_request, called after the response is sent, with its status and duration).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from .. import _core
from ..app import Framework, Handler
from ..config import ServerConfig
from ..configfile import NO_HOOKS, SINGLE_PROCESS_WORKER_ID, Hooks
from .accesslog import AccessLog
from .loading import wsgi_adapters
from .signals import drain_on_signals, single_process_signals
from .sockets import (
    adopt_socket,
    bind_socket,
    check_tcp_address_free,
    listener_url,
    remove_own_socket_file,
)

__all__ = ["serve_listeners", "serve_one_process", "with_post_request", "with_request_hooks"]

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
    stopping: Callable[[], None] | None = None,
    hooks: Hooks = NO_HOOKS,
    worker_id: int = SINGLE_PROCESS_WORKER_ID,
) -> bool:
    """Serves ``handler`` (loaded by the boot sequence) on sockets that already listen, in this
    process, until SIGINT/SIGTERM (or ``http_server.shutdown``) and the drain finish. Does not
    close the sockets.

    ``access_log`` goes to the native server (see theframework.accesslog); every
    ``rebalance_every``-th response closes its connection (workers: clients spread again over the
    SO_REUSEPORT group); ``created(hub, http_server)`` is
    called once both exist, before the hub runs (a worker sets its heartbeat there);
    ``stopping()`` is called when SIGINT/SIGTERM starts the drain. ``owns_listeners``: the
    sockets are this process's alone, and are shut down when the drain starts (never inherited
    or shared sockets: others keep queueing on them).

    Returns True when a second SIGINT stopped the hub before the drain finished.

    In the hub: ``hub_started()``, the app's startup hooks, then ``ready()``, then serving; the
    shutdown hooks run after the drain (also when serving fails), but only when the startup hooks
    succeeded, and then ``hooks``' worker_shutdown(``worker_id``). (A worker tells the phase an
    exception escaped from by the callbacks it saw.) ``hooks``' pre_request and post_request run
    around every request.
    """
    if listeners:
        for adapter in wsgi_adapters(handler):
            adapter.set_server_address(listeners[0].getsockname())
    framework = handler if isinstance(handler, Framework) else None
    logger.setLevel(config.log_level.upper())
    hub = _core.Hub(config.backend)
    urls = ", ".join(listener_url(listener) for listener in listeners)
    http_server = _core.HttpServer(
        with_request_hooks(handler, hooks),
        [listener.fileno() for listener in listeners],
        access_log=with_post_request(access_log, hooks),
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
            try:
                if framework is not None:
                    framework.shutdown()
            finally:
                hooks.call("worker_shutdown", worker_id)

    with drain_on_signals(
        http_server,
        hub,
        config.graceful_timeout,
        listeners if owns_listeners else (),
        stopping,
    ) as drain:
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
        "stopped serving %s (%d connections, at most %d open at once)%s",
        urls,
        stats["connections_accepted"],
        stats["connections_peak"],
        _websocket_summary(stats["websockets"]),
    )
    return drain.stopped_at_once


def _websocket_summary(websockets: dict[str, Any]) -> str:
    """The WebSocket part of the "stopped serving" line: how many the drain sent away (close
    1001) and how every session ended, by close code (1006: cut without a close frame)."""
    if not websockets["accepted"]:
        return ""
    closes = ", ".join(f"{code}: {count}" for code, count in sorted(websockets["closes"].items()))
    return (
        f"; {websockets['accepted']} WebSockets, {websockets['going_away']} open at the drain"
        f" and sent close 1001; closes by code {{{closes}}}"
    )


def with_request_hooks(handler: Handler, hooks: Hooks) -> Handler:
    """``handler``, called after ``hooks``' pre_request(request) when the file defines it (a
    raising hook is logged and the request handled all the same); ``handler`` itself otherwise.
    Both interfaces get theframework's Request (a WSGI app's environ is made from it later)."""
    if hooks.get("pre_request") is None:
        return handler
    call = hooks.call

    def handle(request: _core.Request, response: _core.Response) -> object:
        call("pre_request", request)
        return handler(request, response)

    return handle


def with_post_request(access_log: AccessLog | None, hooks: Hooks) -> AccessLog | None:
    """The native server's after-response callback: ``access_log``, then ``hooks``'
    post_request(request, status, seconds) when the file defines it (a raising hook is
    logged)."""
    if hooks.get("post_request") is None:
        return access_log
    call = hooks.call

    def after_response(
        request: _core.Request,
        status: int,
        sent: int,
        seconds: float,
        response: _core.Response,
    ) -> None:
        if access_log is not None:
            access_log(request, status, sent, seconds, response)
        call("post_request", request, status, seconds)

    return after_response


def serve_one_process(
    handler: Handler,
    config: ServerConfig,
    *,
    ready: Callable[[], None] | None = None,
    hub_started: Callable[[], None] | None = None,
    access_log: AccessLog | None = None,
    stopping: Callable[[], None] | None = None,
    listening: Callable[[str], None] | None = None,
    hooks: Hooks = NO_HOOKS,
) -> bool:
    """Serves ``handler`` in this process until SIGINT/SIGTERM and the drain finish (see
    serve_listeners, which gets the other callbacks), on the inherited sockets ``config.fds``
    (left listening for whoever passed them) or on a socket bound to ``config``'s address
    (closed at the end; a UNIX socket file it made is removed). ``listening(urls)`` is called
    with the addresses once the sockets are open. SIGHUP/SIGTTIN/SIGTTOU/SIGUSR1/SIGUSR2 as
    README's table says (single_process_signals). ``hooks``: the config file's (serve_listeners
    runs the worker's and the request hooks). OSError (bind, backend) and InheritedSocketError
    propagate. True when a second SIGINT stopped it at once."""
    inherited = bool(config.fds)
    listeners: list[socket.socket] = []
    socket_inode = None
    try:
        if inherited:
            for descriptor in config.fds:
                listeners.append(adopt_socket(descriptor))
        else:
            check_tcp_address_free(config)  # one server per address (exit 42 naming the holder)
            listeners.append(bind_socket(config))
            if config.uds is not None:
                socket_inode = os.stat(config.uds).st_ino
        if listening is not None:
            listening(", ".join(listener_url(listener) for listener in listeners))
        with single_process_signals():
            return serve_listeners(
                handler,
                listeners,
                config,
                ready=ready,
                hub_started=hub_started,
                access_log=access_log,
                owns_listeners=not inherited,
                stopping=stopping,
                hooks=hooks,
            )
    finally:
        for listener in listeners:
            listener.close()
        if socket_inode is not None and config.uds is not None:
            remove_own_socket_file(config.uds, socket_inode)
