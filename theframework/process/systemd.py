"""systemd's protocols: notify (sd_notify: a datagram to $NOTIFY_SOCKET), the watchdog
($WATCHDOG_USEC) and socket activation ($LISTEN_FDS).

What is sent when (both modes; docs/deployment.md has the unit files):
- ``READY=1`` with ``MAINPID`` and a ``STATUS=`` line once serving (every worker ready);
- ``RELOADING=1`` with ``MONOTONIC_USEC`` when SIGHUP starts a reload, ``READY=1`` when it ends;
- ``STATUS=`` when the worker count changes; ``STOPPING=1`` when the drain starts;
- ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` while the server proves it is alive (the
  supervisor: every worker's heartbeat is fresh; the single process: its hub runs timers).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

__all__ = [
    "ActivatedSocket",
    "Activation",
    "notify_systemd",
    "reloading_message",
    "stale_heartbeat",
    "take_listen_fds",
    "tell_systemd",
    "watchdog_interval",
]

logger = logging.getLogger("theframework")

# The first descriptor systemd passes (SD_LISTEN_FDS_START).
LISTEN_FDS_START = 3


def notify_systemd(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Sends ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET (a datagram UNIX socket; "@name" is
    in the abstract namespace). False when the variable is unset; OSError when sending fails
    (BlockingIOError when the receiver's queue is full)."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifier:
        # Never blocks (the single process sends from its hub): a full queue is an OSError.
        notifier.setblocking(False)
        notifier.connect(address)
        notifier.send(state.encode())
    return True


def tell_systemd(state: str) -> None:
    """notify_systemd, logging a warning instead of raising when the socket refuses it."""
    try:
        notify_systemd(state)
    except OSError as error:
        logger.warning("cannot notify systemd (%s): %s", state.split("\n", 1)[0], error)


def reloading_message() -> str:
    """The notification that a reload starts (systemd wants the CLOCK_MONOTONIC time)."""
    return f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}"


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between two WATCHDOG=1 pings (half $WATCHDOG_USEC), or None when systemd asks
    for none: unset, not a positive number, or $WATCHDOG_PID naming another process."""
    variables = os.environ if environ is None else environ
    text = variables.get("WATCHDOG_USEC", "")
    owner = variables.get("WATCHDOG_PID", "")
    if owner and owner != str(os.getpid()):
        return None
    try:
        microseconds = int(text)
    except ValueError:
        return None
    return microseconds / 2e6 if microseconds > 0 else None


def stale_heartbeat(
    ages: Iterable[tuple[int, int | None, float]], interval: float, beat_period: float
) -> tuple[int, int | None, float] | None:
    """The first (worker id, pid, heartbeat age) whose age reaches $WATCHDOG_USEC (twice the
    ping ``interval``) plus ``beat_period`` (an idle hub beats that often): the supervisor does
    not ping while there is one. None when all are fresh."""
    limit = 2 * interval + beat_period
    return next((entry for entry in ages if entry[2] >= limit), None)


@dataclass(frozen=True, slots=True)
class ActivatedSocket:
    """One descriptor passed by socket activation, with its name from $LISTEN_FDNAMES."""

    fd: int
    name: str


@dataclass(frozen=True, slots=True)
class Activation:
    """What socket activation passed: the sockets, and a note to log (a variable that was
    ignored, and why) once logging is set up."""

    sockets: tuple[ActivatedSocket, ...] = ()
    note: str | None = None


def take_listen_fds(environ: MutableMapping[str, str] | None = None) -> Activation:
    """The sockets systemd passed this process ($LISTEN_FDS from fd 3 on, when $LISTEN_PID is
    this pid; names from $LISTEN_FDNAMES, "unknown" when absent). The three variables are
    removed from the environment in any case, so that no child process takes them for its own.
    A malformed value yields no socket and a note saying so."""
    variables = os.environ if environ is None else environ
    count_text = variables.pop("LISTEN_FDS", None)
    pid_text = variables.pop("LISTEN_PID", None)
    names_text = variables.pop("LISTEN_FDNAMES", None)
    if count_text is None:
        return Activation()
    if pid_text is None:
        return Activation(note="LISTEN_FDS without LISTEN_PID: ignored (as sd_listen_fds does)")
    if pid_text.strip() != str(os.getpid()):
        return Activation(note=f"LISTEN_FDS is for pid {pid_text}, not this one: ignored")
    with contextlib.suppress(ValueError):
        count = int(count_text)
        if count >= 0:
            names = names_text.split(":") if names_text else []
            names += ["unknown"] * (count - len(names))
            return Activation(
                tuple(
                    ActivatedSocket(LISTEN_FDS_START + index, names[index])
                    for index in range(count)
                )
            )
    return Activation(note=f"LISTEN_FDS={count_text!r} is not a count of descriptors: ignored")
