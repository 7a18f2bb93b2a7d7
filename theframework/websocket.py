"""WebSocket helpers over ``Request.websocket()``: ``Group``, the broadcast set of the chat and
notification cases. The WebSocket type itself is ``theframework.WebSocket`` (engine)."""

from __future__ import annotations

from collections.abc import Iterator

from . import _core
from .errors import WebSocketClosed

__all__ = ["Group"]


class Group:
    """A set of open WebSockets that a message is broadcast to.

    ``broadcast()`` frames the message once and hands the same bytes to every member (no copy
    per member). Members that are closed, or whose send fails, leave the group. Sends go out in
    the calling greenlet, member after member: each write is tried without waiting first, so a
    member only delays the others when its socket buffer is full (up to --write-timeout).
    """

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[_core.WebSocket, None] = {}  # insertion-ordered set

    def add(self, websocket: _core.WebSocket) -> None:
        """Adds ``websocket`` (again: no effect)."""
        self._members[websocket] = None

    def discard(self, websocket: _core.WebSocket) -> None:
        """Removes ``websocket`` if it is a member."""
        self._members.pop(websocket, None)

    def __contains__(self, websocket: object) -> bool:
        return websocket in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[_core.WebSocket]:
        return iter(list(self._members))

    def broadcast(self, message: str | bytes | bytearray | memoryview) -> int:
        """Sends ``message`` (text for str, binary otherwise) to every member; returns how many
        it reached. Members found closed are removed."""
        frame = _core.encode_frame(message)
        reached = 0
        for websocket in list(self._members):
            if websocket.closed:
                self.discard(websocket)
                continue
            try:
                websocket._send_frame(frame)
            except (WebSocketClosed, OSError):
                self.discard(websocket)
                continue
            reached += 1
        return reached
