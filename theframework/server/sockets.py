"""Listening sockets: TCP (IPv4/IPv6, optionally SO_REUSEPORT) and UNIX (a stale socket file is
replaced, a live one or any other file is refused)."""

from __future__ import annotations

import errno
import os
import socket
import stat

from ..config import ServerConfig

__all__ = ["bind_socket", "listener_url", "remove_own_socket_file"]


def _remove_stale_socket_file(path: str) -> None:
    """Unlinks a UNIX socket file nobody listens on. Refuses (OSError) to remove anything that is
    not a socket, or a socket some process still accepts on."""
    try:
        status = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(status.st_mode):
        raise FileExistsError(
            errno.EEXIST, f"refusing to remove {path!r}: it exists and is not a socket"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # stale: nobody listens
        except OSError as error:
            raise OSError(
                errno.EADDRINUSE, f"cannot tell whether {path!r} is in use: {error}"
            ) from None
        else:
            raise OSError(errno.EADDRINUSE, f"another server is listening on {path!r}")
    os.unlink(path)


def bind_socket(config: ServerConfig, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket for ``config``: UNIX at ``uds`` (a stale socket file is replaced), else
    TCP on host:port (IPv6 when host contains ":"), with SO_REUSEADDR, and SO_REUSEPORT when
    ``reuse_port`` (each worker of a supervisor binds its own). OSError naming the address (and
    keeping the errno) on failure."""
    description = config.bind_description
    if config.uds is not None:
        _remove_stale_socket_file(config.uds)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: str | tuple[str, int] = config.uds
    else:
        host = config.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        address = (host, config.port)
    try:
        listener.bind(address)
        listener.listen(config.backlog)
    except OSError as error:
        listener.close()
        raise OSError(
            error.errno, f"cannot listen on {description}: {error.strerror or error}"
        ) from None
    except BaseException:
        listener.close()
        raise
    return listener


def listener_url(listener: socket.socket) -> str:
    """The address of a listening socket as logged: "http://host:port" or "unix:/path"."""
    address = listener.getsockname()
    if listener.family == socket.AF_UNIX:
        return f"unix:{address}"
    if listener.family == socket.AF_INET6:
        return f"http://[{address[0]}]:{address[1]}"
    return f"http://{address[0]}:{address[1]}"


def remove_own_socket_file(path: str, inode: int | None) -> None:
    """Unlinks the UNIX socket file ``path`` when it is still the one this process made (its
    inode is ``inode``): a successor's file is left alone."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
