"""Listening sockets: TCP (IPv4/IPv6, optionally SO_REUSEPORT), UNIX (a stale socket file is
replaced, a live one or any other file is refused; ``--uds-mode`` / ``--uds-group`` are applied
before the file takes its name, so it never exists with other permissions), and inherited
sockets (``--fd``, systemd socket activation), checked before use."""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import secrets
import socket
import stat

from ..config import ServerConfig

__all__ = [
    "InheritedSocketError",
    "adopt_socket",
    "bind_socket",
    "listener_url",
    "remove_own_socket_file",
]


class InheritedSocketError(ValueError):
    """An inherited file descriptor (``--fd``, LISTEN_FDS) cannot be served: not open, not a
    socket, not a listening stream socket, or of a family we do not serve."""


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
    """A listening socket for ``config``: UNIX at ``uds`` (a stale socket file is replaced; its
    ``uds_mode`` and ``uds_group`` set before it takes its name), else
    TCP on host:port (IPv6 when host contains ":"), with SO_REUSEADDR, and SO_REUSEPORT when
    ``reuse_port`` (each worker of a supervisor binds its own). OSError naming the address (and
    keeping the errno) on failure."""
    description = config.bind_description
    if config.uds is not None:
        _remove_stale_socket_file(config.uds)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        host = config.host
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        if config.uds is not None:
            _bind_unix(listener, config)
        else:
            listener.bind((host, config.port))
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


def _bind_unix(listener: socket.socket, config: ServerConfig) -> None:
    """Binds ``listener`` at ``config.uds``. With a mode or a group, it binds a temporary name in
    the same directory, sets them there and renames the file into place: the socket is never
    reachable under its name with the umask's permissions."""
    assert config.uds is not None
    if config.uds_mode is None and config.uds_group is None:
        listener.bind(config.uds)
        return
    directory = os.path.dirname(config.uds) or "."
    temporary = os.path.join(directory, f".tf-{os.getpid()}-{secrets.token_hex(4)}.sock")
    listener.bind(temporary)
    try:
        if config.uds_group is not None:
            os.chown(temporary, -1, _group_id(config.uds_group))
        if config.uds_mode is not None:
            os.chmod(temporary, config.uds_mode)
        os.rename(temporary, config.uds)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _group_id(group: str) -> int:
    """The id of ``group`` (a name or a number); OSError(EINVAL) when there is none."""
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(errno.EINVAL, f"no group {group!r}") from None


def adopt_socket(descriptor: int) -> socket.socket:
    """A socket object for the inherited listening socket ``descriptor`` (made close-on-exec).
    InheritedSocketError when it is not open, not a socket, not SOCK_STREAM, not listening, or
    not AF_INET/AF_INET6/AF_UNIX."""
    where = f"file descriptor {descriptor}"
    try:
        status = os.fstat(descriptor)
    except OSError as error:
        raise InheritedSocketError(f"{where} is not open: {error.strerror}") from None
    if not stat.S_ISSOCK(status.st_mode):
        raise InheritedSocketError(f"{where} is not a socket")
    listener = socket.socket(fileno=descriptor)
    try:
        kind = listener.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        listening = listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        if listener.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            family = getattr(listener.family, "name", listener.family)
            raise InheritedSocketError(f"{where} is a {family} socket, not TCP or UNIX")
        if kind != socket.SOCK_STREAM:
            raise InheritedSocketError(f"{where} is not a stream socket (SOCK_STREAM)")
        if not listening:
            raise InheritedSocketError(f"{where} is a socket that does not listen")
        listener.set_inheritable(False)
    except BaseException:
        listener.detach()  # not ours to close: the descriptor stays as it was
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
