"""Signals of a serving process.

``drain_on_signals``: SIGINT/SIGTERM; the first starts the drain, a second SIGINT stops the hub.
Handlers only call into the native server; the draining itself runs in the hub.
``single_process_signals``: what README's signal table promises the single process (no
supervisor) for the other signals: SIGHUP, SIGTTIN and SIGTTOU are ignored with a log line,
SIGUSR1 logs every greenlet's traceback, SIGUSR2 makes faulthandler dump every thread's stack.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

from .. import _core

__all__ = ["Drain", "drain_on_signals", "format_greenlet_stacks", "single_process_signals"]

logger = logging.getLogger("theframework")


@dataclass
class Drain:
    """What the SIGINT/SIGTERM handlers did: ``stopped_at_once`` after a second SIGINT."""

    stopped_at_once: bool = False


_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextmanager
def drain_on_signals(
    http_server: _core.HttpServer,
    hub: _core.Hub,
    graceful_timeout: float,
    own_listeners: Sequence[socket.socket],
    stopping: Callable[[], None] | None = None,
) -> Iterator[Drain]:
    """Installs SIGINT/SIGTERM handlers for the duration of the block (main thread only;
    elsewhere signals are left alone). The first signal calls ``stopping()`` and starts a
    graceful shutdown; a later SIGINT stops the hub at once (the yielded Drain says so); a later
    SIGTERM is ignored."""
    drain = Drain()
    if threading.current_thread() is not threading.main_thread():
        yield drain
        return
    shutting_down = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal shutting_down
        if not shutting_down:
            shutting_down = True
            if stopping is not None:
                stopping()
            http_server.shutdown(graceful_timeout)
            # The native server took what was queued; from now on connection attempts are
            # refused at once instead of waiting in a backlog nobody will accept from.
            for listener in own_listeners:
                with contextlib.suppress(OSError):
                    listener.shutdown(socket.SHUT_RD)
        elif signum == signal.SIGINT:
            drain.stopped_at_once = True
            hub.stop()

    previous: dict[int, _SignalHandler] = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, on_signal)
        yield drain
    finally:
        for restored, handler in previous.items():
            signal.signal(restored, signal.SIG_DFL if handler is None else handler)


def format_greenlet_stacks(current: FrameType | None) -> str:
    """Every live greenlet's Python stack (and the current one, from ``current``), for the log."""
    import greenlet

    parts = []
    if current is not None:
        parts.append("Running greenlet:\n" + "".join(traceback.format_stack(current)))
    for candidate in gc.get_objects():
        if isinstance(candidate, greenlet.greenlet) and candidate.gr_frame is not None:
            stack = "".join(traceback.format_stack(candidate.gr_frame))
            parts.append(f"Greenlet {candidate!r}:\n{stack}")
    return "\n".join(parts) or "(no Python frame)"


# Why the single process ignores each supervisor signal (README's signal table).
_IGNORED: dict[int, str] = {
    signal.SIGHUP: "reloading needs a supervisor: run with --workers 2 or more (or 0)",
    signal.SIGTTIN: "adding workers needs a supervisor: run with --workers 2 or more (or 0)",
    signal.SIGTTOU: "removing workers needs a supervisor: run with --workers 2 or more (or 0)",
}


@contextmanager
def single_process_signals() -> Iterator[None]:
    """For the duration of the block (main thread only): SIGHUP/SIGTTIN/SIGTTOU are ignored
    with a log line, SIGUSR1 logs every greenlet's traceback, SIGUSR2 dumps every thread's
    stack to stderr (faulthandler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ignore(signum: int, frame: FrameType | None) -> None:
        logger.warning("%s ignored: %s", signal.Signals(signum).name, _IGNORED[signum])

    def dump(signum: int, frame: FrameType | None) -> None:
        logger.warning(
            "SIGUSR1: tracebacks of every greenlet (pid %d):\n%s",
            os.getpid(),
            format_greenlet_stacks(frame),
        )

    previous: dict[int, _SignalHandler] = {}
    registered = False
    try:
        for signum in (*_IGNORED, signal.SIGUSR1):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, dump if signum == signal.SIGUSR1 else ignore)
        with contextlib.suppress(RuntimeError, ValueError):
            faulthandler.register(signal.SIGUSR2, all_threads=True)
            registered = True
        yield
    finally:
        if registered:
            faulthandler.unregister(signal.SIGUSR2)
        for restored, handler in previous.items():
            signal.signal(restored, signal.SIG_DFL if handler is None else handler)
