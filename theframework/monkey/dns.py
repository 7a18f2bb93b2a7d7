"""Cooperative name resolution: the resolver functions of ``socket`` run on a small thread pool
(THEFRAMEWORK_DNS_THREADS, default 4) while only the calling greenlet waits. Outside a hub, and
for numeric hosts that need no lookup, the original functions are called directly."""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .. import _core
from ..config import env_value
from ..runtime.offload import ExecutorHolder, wait_future
from . import _originals

__all__ = [
    "getaddrinfo",
    "gethostbyaddr",
    "gethostbyname",
    "gethostbyname_ex",
    "getnameinfo",
    "is_numeric_host",
    "resolver_pool",
]

T = TypeVar("T")


class _Settings:
    threads: int | None = None


def _pool_size() -> int:
    if _Settings.threads is not None:
        return _Settings.threads
    threads: int = env_value("dns_threads")
    return threads


def configure(*, threads: int | None = None) -> None:
    """Sets the resolver pool's size (default: --dns-threads / THEFRAMEWORK_DNS_THREADS, 4); a
    pool already created is replaced on next use."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    _Settings.threads = threads
    resolver_pool.reset()


resolver_pool = ExecutorHolder(
    lambda size: ThreadPoolExecutor(max_workers=size, thread_name_prefix="theframework-dns"),
    _pool_size,
)


def _off_hub(function: Callable[..., T], *args: Any) -> T:
    if not _core.in_hub():
        return function(*args)
    return wait_future(resolver_pool.get().submit(function, *args))


def is_numeric_host(host: object) -> bool:
    """True for None, "" and IPv4/IPv6 literals (str or bytes): names getaddrinfo resolves
    without asking any resolver."""
    if host is None or host in ("", b""):
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str):
        return False
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return True
    return False


def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[tuple[Any, Any, int, str, Any]]:
    """socket.getaddrinfo, resolved off the hub thread."""
    if is_numeric_host(host) or flags & socket.AI_NUMERICHOST:
        return _originals.getaddrinfo(host, port, family, type, proto, flags)
    return _off_hub(_originals.getaddrinfo, host, port, family, type, proto, flags)


def gethostbyname(hostname: str, /) -> str:
    """socket.gethostbyname, resolved off the hub thread."""
    if is_numeric_host(hostname):
        return _originals.gethostbyname(hostname)
    return _off_hub(_originals.gethostbyname, hostname)


def gethostbyname_ex(hostname: str, /) -> tuple[str, list[str], list[str]]:
    """socket.gethostbyname_ex, resolved off the hub thread."""
    return _off_hub(_originals.gethostbyname_ex, hostname)


def gethostbyaddr(ip_address: str, /) -> tuple[str, list[str], list[str]]:
    """socket.gethostbyaddr, resolved off the hub thread."""
    return _off_hub(_originals.gethostbyaddr, ip_address)


def getnameinfo(sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int, /) -> Any:
    """socket.getnameinfo, resolved off the hub thread."""
    return _off_hub(_originals.getnameinfo, sockaddr, flags)
