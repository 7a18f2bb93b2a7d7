"""The standard library objects as they were before any patching.

Imported (so captured) by ``theframework.monkey`` before it patches anything; every green
replacement falls back to these outside a running hub, and ``select``/``poll`` here are the real
ones even after ``select`` is patched.
"""

from __future__ import annotations

import select
import socket
import ssl
import subprocess
import time
from typing import Any, Final

sleep: Final = time.sleep

socket_class: Final = socket.socket
socket_type: Final = socket.SocketType
socketpair: Final = socket.socketpair
fromfd: Final = socket.fromfd
create_connection: Final = socket.create_connection

getaddrinfo: Final = socket.getaddrinfo
gethostbyname: Final = socket.gethostbyname
gethostbyname_ex: Final = socket.gethostbyname_ex
gethostbyaddr: Final = socket.gethostbyaddr
getnameinfo: Final = socket.getnameinfo

select_function: Final = select.select
poll: Final = select.poll

ssl_socket_class: Final = ssl.SSLSocket

popen_wait: Final[Any] = subprocess.Popen._wait  # type: ignore[attr-defined]
popen_communicate: Final = subprocess.Popen.communicate
