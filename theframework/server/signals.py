"""SIGINT/SIGTERM of a serving process: the first starts the drain, a second SIGINT stops the hub.
Handlers only call into the native server; the draining itself runs in the hub."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from .. import _core

__all__ = ["drain_on_signals"]

_SignalHandler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextmanager
def drain_on_signals(
    http_server: _core.HttpServer,
    hub: _core.Hub,
    graceful_timeout: float,
    own_listeners: Sequence[socket.socket],
) -> Iterator[None]:
    """Installs SIGINT/SIGTERM handlers for the duration of the block (main thread only;
    elsewhere signals are left alone). The first signal starts a graceful shutdown; a later
    SIGINT stops the hub at once; a later SIGTERM is ignored, also after the block once a signal
    started the shutdown."""
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
            if restored == signal.SIGTERM and shutting_down:
                # Stopping already: a second SIGTERM (systemd signals the whole process group,
                # then the supervisor its workers) must not kill the process on its way out.
                signal.signal(restored, signal.SIG_IGN)
                continue
            signal.signal(restored, signal.SIG_DFL if handler is None else handler)
