"""systemd's notify protocol (sd_notify): a datagram to $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify_systemd"]


def notify_systemd(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Sends ``state`` (e.g. "READY=1") to $NOTIFY_SOCKET (a datagram UNIX socket; "@name" is
    in the abstract namespace). False when the variable is unset; OSError when sending fails."""
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notifier:
        notifier.connect(address)
        notifier.sendall(state.encode())
    return True
