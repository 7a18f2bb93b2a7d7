"""Cooperative standard library: ``patch_all()`` makes blocking calls of the standard library
(and of the libraries built on it: requests, urllib3, redis-py, database drivers written on the
socket module) suspend only the calling greenlet instead of the whole worker; so do the
PostgreSQL drivers built on libpq (``patch_psycopg``), and Django's database connections become
per greenlet.

Call it before importing third-party modules (``theframework --patch-all`` does it in every
worker). Patching is process-wide and cannot be undone; patching twice is harmless. Outside a
running hub (the parent process, plain threads, the hub greenlet itself) every patched call
behaves like the original. See docs/monkey.md for what is patched and the caveats.
"""

from __future__ import annotations

import select as _select_module
import selectors as _selectors_module
import socket as _socket_module
import ssl as _ssl_module
import subprocess as _subprocess_module
import threading
import time as _time_module

from . import (
    _originals,
    dns,
    green_django,
    green_psycopg,
    green_select,
    green_socket,
    green_ssl,
    green_subprocess,
    green_time,
)

__all__ = ["MODULES", "is_patched", "patch_all", "patch_psycopg"]

MODULES = ("socket", "dns", "time", "select", "ssl", "subprocess", "psycopg", "django")
"""The names ``patch_all`` switches and ``is_patched`` accepts."""

_patched: set[str] = set()
_lock = threading.Lock()

# Present on some platforms only; hidden so that libraries fall back to the cooperative poll.
_HIDDEN_SELECT = ("epoll", "kqueue", "kevent", "devpoll")
_HIDDEN_SELECTORS = ("EpollSelector", "KqueueSelector", "DevpollSelector")


def _replace(owner: object, name: str, value: object) -> None:
    setattr(owner, name, value)


def _patch_socket() -> None:
    _replace(_socket_module, "socket", green_socket.GreenSocket)
    _replace(_socket_module, "SocketType", green_socket.GreenSocket)
    _replace(_socket_module, "socketpair", green_socket.socketpair)
    _replace(_socket_module, "fromfd", green_socket.fromfd)
    # socket.create_connection looks ``socket`` and ``getaddrinfo`` up in the module namespace
    # at each call, so the original function (also the copy ``ssl`` and others imported) builds
    # green sockets and honours timeouts through GreenSocket.connect; it stays as it is.
    assert _socket_module.create_connection is _originals.create_connection


def _patch_dns() -> None:
    _replace(_socket_module, "getaddrinfo", dns.getaddrinfo)
    _replace(_socket_module, "gethostbyname", dns.gethostbyname)
    _replace(_socket_module, "gethostbyname_ex", dns.gethostbyname_ex)
    _replace(_socket_module, "gethostbyaddr", dns.gethostbyaddr)
    _replace(_socket_module, "getnameinfo", dns.getnameinfo)


def _patch_time() -> None:
    _replace(_time_module, "sleep", green_time.sleep)


def _patch_select() -> None:
    _replace(_select_module, "select", green_select.select_function)
    _replace(_select_module, "poll", green_select.GreenPoll)
    for name in _HIDDEN_SELECT:
        if hasattr(_select_module, name):
            delattr(_select_module, name)
    for name in _HIDDEN_SELECTORS:
        if hasattr(_selectors_module, name):
            delattr(_selectors_module, name)
    _replace(_selectors_module, "PollSelector", green_select.GreenPollSelector)
    _replace(_selectors_module, "SelectSelector", green_select.GreenSelectSelector)
    _replace(_selectors_module, "DefaultSelector", green_select.GreenPollSelector)


def _patch_ssl() -> None:
    # ssl.SSLSocket itself stays: ssl's own code says super(SSLSocket, self) and needs the
    # original there. GreenSSLSocket derives from it, so isinstance checks still hold.
    # SSLContext.wrap_socket (and so ssl.wrap_socket, http.client, urllib3) builds this class.
    _replace(_ssl_module.SSLContext, "sslsocket_class", green_ssl.GreenSSLSocket)


def _patch_subprocess() -> None:
    popen = _subprocess_module.Popen
    _replace(popen, "_wait", green_subprocess.wait)
    _replace(popen, "communicate", green_subprocess.communicate)
    # communicate's selector path uses this class, bound when subprocess was imported.
    _replace(_subprocess_module, "_PopenSelector", green_select.GreenPollSelector)


def _patch_psycopg() -> None:
    green_psycopg.patch_psycopg()


def _patch_django() -> None:
    green_django.patch_django()


_PATCHERS = {
    "socket": _patch_socket,
    "dns": _patch_dns,
    "time": _patch_time,
    "select": _patch_select,
    "ssl": _patch_ssl,
    "subprocess": _patch_subprocess,
    "psycopg": _patch_psycopg,
    "django": _patch_django,
}


def patch_all(
    *,
    socket: bool = True,
    dns: bool = True,
    time: bool = True,
    select: bool = True,
    ssl: bool = True,
    subprocess: bool = True,
    psycopg: bool = True,
    django: bool = True,
) -> None:
    """Patches the chosen standard library modules (all by default) so that their blocking calls
    wait on the hub, the PostgreSQL drivers likewise (``psycopg``: see patch_psycopg) and
    Django's database connections per greenlet (``django``); libraries not imported yet are
    patched when they are. What is already patched is left alone."""
    wanted = {
        "socket": socket,
        "dns": dns,
        "time": time,
        "select": select,
        "ssl": ssl,
        "subprocess": subprocess,
        "psycopg": psycopg,
        "django": django,
    }
    with _lock:
        for name in MODULES:
            if wanted[name] and name not in _patched:
                _PATCHERS[name]()
                _patched.add(name)


def patch_psycopg() -> None:
    """Makes the installed PostgreSQL drivers wait on the hub for libpq's socket: psycopg 3 (C
    and pure-Python implementations; connect, execute, fetch, COPY, notifies, server-side
    cursors, pipelines), psycopg_pool's waiting clients and psycopg2 (its wait callback). A
    query whose greenlet is interrupted is cancelled on the server. Outside a hub the drivers
    behave unchanged. Drivers already imported are patched at once, the others when they are
    imported; patching twice is harmless."""
    with _lock:
        if "psycopg" not in _patched:
            _patch_psycopg()
            _patched.add("psycopg")


def is_patched(name: str) -> bool:
    """Whether ``name`` (one of MODULES) has been patched in this process."""
    if name not in MODULES:
        raise ValueError(f"unknown module {name!r}; expected one of {', '.join(MODULES)}")
    return name in _patched
