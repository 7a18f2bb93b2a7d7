"""What the supervisor hands a worker, and the worker process's entry point.

This module is imported by the supervisor, which must never load the engine: the entry point
imports the worker (and with it ``theframework._core``) only once it runs in the child.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from ..config import ProcessConfig, ServerConfig

__all__ = ["WorkerSpec", "run_worker"]


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
    # The listening sockets: for TCP the one SO_REUSEPORT socket of the worker's slot (the
    # supervisor bound it; a successor gets the same one), else the sockets the supervisor
    # shares with every worker (its UNIX socket, or the inherited ones).
    listeners: tuple[socket.socket, ...]
    # (supervisor pid, fd of the shared heartbeat memory in the supervisor, cell index), or None.
    heartbeat: tuple[int, int, int] | None = None
    # True: ``listeners`` is the slot's own socket, which a SIGTERM drain shuts down once it
    # took what is queued (the whole server stops); never for shared sockets.
    slot_listener: bool = False


def run_worker(spec: WorkerSpec) -> None:
    """The target of a worker's multiprocessing.Process: runs it and exits with its code."""
    # Deferred on purpose: the supervisor imports this module but must not load the engine.
    from .worker import main

    main(spec)
