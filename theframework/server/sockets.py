"""Listening sockets: TCP (IPv4/IPv6, optionally SO_REUSEPORT), UNIX (a stale socket file is
replaced, a live one or any other file is refused; ``--uds-mode`` / ``--uds-group`` are applied
before the file takes its name, so it never exists with other permissions), and inherited
sockets (``--fd``, systemd socket activation), checked before use; and who already listens on a
TCP address (``check_tcp_address_free``: one server per address, even where SO_REUSEPORT would
let a second one join the first's group)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import ipaddress
import os
import secrets
import socket
import stat
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

from ..config import ServerConfig

__all__ = [
    "InheritedSocketError",
    "ListeningSocket",
    "adopt_socket",
    "attach_steering",
    "bind_socket",
    "check_tcp_address_free",
    "conflicts",
    "listener_url",
    "parse_proc_net_tcp",
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


# SOL_SOCKET option (asm-generic/socket.h): a classic BPF program choosing the socket of an
# SO_REUSEPORT group that a new connection goes to.
SO_ATTACH_REUSEPORT_CBPF = 51


def attach_steering(member: socket.socket, filter_array: bytes) -> None:
    """Attaches ``filter_array`` (struct sock_filter entries, theframework.process.steering)
    to the SO_REUSEPORT group of the listening socket ``member``, replacing its program: it then
    chooses the socket of the group each new connection goes to. OSError when the kernel
    refuses."""
    instructions = ctypes.create_string_buffer(filter_array, len(filter_array))
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }, native layout.
    program = struct.pack("@HP", len(filter_array) // 8, ctypes.addressof(instructions))
    member.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, program)


# -- who listens on an address -----------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_TCP_LISTEN = "0A"  # the state column of /proc/net/tcp{,6}


@dataclass(frozen=True)
class ListeningSocket:
    """A TCP socket in the LISTEN state, as /proc/net/tcp{,6} shows it."""

    address: IPAddress
    port: int
    inode: int


def _proc_address(text: str) -> tuple[IPAddress, int]:
    """An address column of /proc/net/tcp ("0100007F:1F90") or tcp6 (32 hex digits + port),
    each 32-bit word in host (little-endian) order."""
    address_hex, port_hex = text.split(":")
    raw = bytes.fromhex(address_hex)
    host_order = b"".join(
        int.from_bytes(raw[i : i + 4], "little").to_bytes(4, "big") for i in range(0, len(raw), 4)
    )
    address = ipaddress.ip_address(host_order)
    return address, int(port_hex, 16)


def parse_proc_net_tcp(text: str) -> list[ListeningSocket]:
    """The listening sockets of one /proc/net/tcp or /proc/net/tcp6 table (pure)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _TCP_LISTEN:
            continue
        address, port = _proc_address(fields[1])
        found.append(ListeningSocket(address, port, int(fields[9])))
    return found


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def conflicts(wanted: IPAddress, held: IPAddress) -> bool:
    """Whether a listener on ``held`` takes connections meant for ``wanted`` (same port): the
    same address, a wildcard of the same family on either side, or the IPv6 wildcard (dual
    stack) against any IPv4 address (pure)."""
    wanted, held = _unmapped(wanted), _unmapped(held)
    if wanted.version == held.version:
        return wanted == held or wanted.is_unspecified or held.is_unspecified
    return any(side.version == 6 and side.is_unspecified for side in (wanted, held))


def _listening_sockets() -> list[ListeningSocket]:
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                found.extend(parse_proc_net_tcp(handle.read()))
        except OSError:
            continue  # no IPv6 in this kernel, or no /proc
    return found


# How long naming the holder of a taken address may take: each descriptor of every process is
# looked at, which on a host holding hundreds of thousands of sockets takes seconds.
HOLDER_SCAN_SECONDS = 3.0


def _socket_holders(inodes: Iterable[int], deadline: float) -> list[int]:
    """The pids (other than this one) with a descriptor on one of the socket ``inodes``; only
    the processes this user may inspect, and only those looked at before ``deadline``
    (time.monotonic())."""
    targets = {f"socket:[{inode}]" for inode in inodes}
    holders = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if time.monotonic() > deadline:
            break
        try:
            descriptors = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue  # gone, or another user's
        with descriptors:
            for descriptor in descriptors:
                try:
                    if os.readlink(descriptor.path) in targets:
                        holders.append(int(entry.name))
                        break
                except OSError:
                    continue
    return sorted(holders)


def _bindable(family: int, address: tuple[object, ...]) -> bool:
    """Whether a socket with SO_REUSEADDR but not SO_REUSEPORT binds ``address``: Linux refuses
    that bind while any socket listens on a conflicting address (the same one, a wildcard of
    either side, or a dual-stack IPv6 wildcard), SO_REUSEPORT or not, and allows it beside
    connections and TIME_WAIT. A constant-time answer, where /proc/net/tcp lists every
    socket of the host."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError:
        return False
    return True


def _process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read().split(b"\0")
        return " ".join(word.decode(errors="replace") for word in words if word)[:120]
    except OSError:
        return "?"


def check_tcp_address_free(config: ServerConfig) -> None:
    """Raises OSError(EADDRINUSE) naming the holder's pid when another process already listens
    on ``config``'s TCP address (what the kernel shows in /proc/net/tcp{,6}). Called once before
    binding, by the process that binds first (a supervisor or a single process): SO_REUSEPORT
    would otherwise let a second server join the first's group and share its traffic, silently.
    Nothing to check for UNIX sockets (bind_socket refuses a live one) or port 0."""
    if config.uds is not None or config.port == 0:
        return
    host = config.host.strip("[]")
    try:
        infos = socket.getaddrinfo(host, config.port, type=socket.SOCK_STREAM)
    except OSError:
        return  # binding reports it
    if all(_bindable(info[0], info[4]) for info in infos):
        return  # the kernel refuses a bind beside any listener there: none (the common case)
    wanted = {_unmapped(ipaddress.ip_address(str(info[4][0]).split("%")[0])) for info in infos}
    inodes = [
        held.inode
        for held in _listening_sockets()
        if held.port == config.port and any(conflicts(address, held.address) for address in wanted)
    ]
    if not inodes:
        return
    holders = _socket_holders(inodes, time.monotonic() + HOLDER_SCAN_SECONDS)
    if holders:
        who = ", ".join(f"pid {pid} ({_process_name(pid)})" for pid in holders)
        detail = f"{who} already listens on it"
    else:
        detail = (
            "another process already listens on it (not one this user can see, or not found "
            f"within {HOLDER_SCAN_SECONDS:g} s)"
        )
    raise OSError(errno.EADDRINUSE, f"cannot listen on {config.bind_description}: {detail}")
