"""Messages between a worker and its supervisor (the exit codes that say why a worker ended are
in theframework.server.exitcodes).

Transport: one ``socketpair(AF_UNIX, SOCK_SEQPACKET)`` per worker; every datagram is one message,
a small JSON object whose "kind" names its type. The worker sends Ready, Failure, Stats (every
second), Recycle (asking for a rolling replacement), Dumped (its tracebacks are logged) and
Released (after a LEAVE drain); the supervisor sends Drain (stop accepting as its mode says,
close connections after their next response, then exit). The supervisor's end is non-blocking
and read from its selector loop; the worker's is read by a greenlet. Messages are advisory:
the supervisor learns that a worker died from its process sentinel, never from this channel.
"""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

__all__ = [
    "HANDOVER",
    "LEAVE",
    "MAX_MESSAGE_SIZE",
    "Drain",
    "Dumped",
    "Failure",
    "Message",
    "Ready",
    "Recycle",
    "Released",
    "Stats",
    "channel_pair",
    "decode",
    "encode",
    "receive",
    "send",
]

# Larger messages are refused by ``encode`` (a failure's traceback is cut to fit, keeping its end).
MAX_MESSAGE_SIZE = 65536


@dataclass(frozen=True, slots=True)
class Ready:
    """The worker listens and its hub runs (sent once, after the startup hooks)."""

    kind: ClassVar[str] = "ready"
    worker_id: int
    pid: int
    # Where it listens, as logged: "http://127.0.0.1:8000" or "unix:/run/app.sock".
    address: str


@dataclass(frozen=True, slots=True)
class Failure:
    """Why the worker is about to exit with ``exit_code``: one line, and for failures that stop
    the whole server (exit 2 and 3) the formatted traceback, which the supervisor logs once
    (the worker does not log it: every worker fails the same way)."""

    kind: ClassVar[str] = "failure"
    worker_id: int
    pid: int
    exit_code: int
    description: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Stats:
    """A worker's counters (``HttpServer.stats()``), resident memory and hub loop lag."""

    kind: ClassVar[str] = "stats"
    worker_id: int
    pid: int
    stats: dict[str, Any]
    rss_bytes: int
    # How late the worker's 1-second timer fired last (seconds): the hub loop's lag.
    loop_lag: float


@dataclass(frozen=True, slots=True)
class Recycle:
    """The worker asks to be replaced (rolling): ``reason`` is "max-requests", "lifetime" or
    "max-rss"; ``detail`` is for the log. Sent again while the condition holds."""

    kind: ClassVar[str] = "recycle"
    worker_id: int
    pid: int
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Dumped:
    """The worker has logged every greenlet's traceback (after SIGUSR1)."""

    kind: ClassVar[str] = "dumped"
    worker_id: int
    pid: int


@dataclass(frozen=True, slots=True)
class Exiting:
    """The worker's last word: it exits with ``exit_code`` now. Under forkserver the supervisor
    learns a worker's status from the fork server (the worker's parent), which a signal sent to
    the whole process group may end first; this message is then the only source."""

    kind: ClassVar[str] = "exiting"
    worker_id: int
    pid: int
    exit_code: int


# Drain modes. HANDOVER: a successor now accepts from this worker's listening socket: stop
# accepting and leave what is queued to it (never shut the socket down). LEAVE: the socket
# leaves the group (SIGTTOU, or a shared socket's worker gone for good): new connections are
# already steered away from it; keep accepting for ``settle`` seconds, take what is queued,
# then send Released (the supervisor shuts the socket down). The whole server's shutdown is
# SIGTERM, not a Drain: take what is queued, then shut the socket down at once.
HANDOVER = "handover"
LEAVE = "leave"


@dataclass(frozen=True, slots=True)
class Drain:
    """Supervisor to worker: stop taking connections (as ``mode`` says) and drain: each open
    connection closes after its next response."""

    kind: ClassVar[str] = "drain"
    graceful_timeout: float
    mode: str = HANDOVER
    # LEAVE: seconds to keep accepting after the steering was attached.
    settle: float = 0.0


@dataclass(frozen=True, slots=True)
class Released:
    """Worker to supervisor, after a LEAVE drain: it no longer accepts and took every
    connection that was queued on its listening socket."""

    kind: ClassVar[str] = "released"
    worker_id: int
    pid: int


Message = Ready | Failure | Stats | Recycle | Dumped | Exiting | Drain | Released
_TYPES: dict[str, Any] = {
    message_type.kind: message_type
    for message_type in (Ready, Failure, Stats, Recycle, Dumped, Exiting, Drain, Released)
}


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end): a connected SOCK_SEQPACKET pair, both close-on-exec."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def encode(message: Message) -> bytes:
    """One datagram for ``message``; a Failure description too long for MAX_MESSAGE_SIZE is cut."""
    fields: dict[str, Any] = {"kind": message.kind, **asdict(message)}
    data = json.dumps(fields).encode()
    if len(data) > MAX_MESSAGE_SIZE and isinstance(message, Failure):
        fields["description"] = message.description[:1000]
        fields["traceback"] = "...\n" + message.traceback[-(MAX_MESSAGE_SIZE // 4) :]
        data = json.dumps(fields).encode()
    if len(data) > MAX_MESSAGE_SIZE:
        raise ValueError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_SIZE}")
    return data


def decode(data: bytes) -> Message:
    """The message in one datagram; ValueError when it is not one this module writes."""
    try:
        fields = json.loads(data)
        message_type = _TYPES[fields.pop("kind")]
        message: Message = message_type(**fields)
        return message
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"not a supervisor message: {data[:80]!r} ({error})") from None


def send(channel: socket.socket, message: Message) -> None:
    """Sends ``message`` (blocking; the supervisor drains its end continuously)."""
    channel.send(encode(message))


def receive(channel: socket.socket) -> list[Message] | None:
    """Every message waiting on the non-blocking ``channel``; None once the peer has closed it
    and nothing is left. Undecodable datagrams are dropped (ValueError is not raised)."""
    messages: list[Message] = []
    while True:
        try:
            data = channel.recv(MAX_MESSAGE_SIZE + 1)
        except BlockingIOError:
            return messages
        except ConnectionResetError:
            return messages or None
        if not data:
            return messages or None
        try:
            messages.append(decode(data))
        except ValueError:
            continue
