"""A named one-shot gate shared by the requests of one server process: a handler waits in
``wait(name)`` until another request calls ``release(name)``. The waiter sleeps in the hub and is
woken by an exception thrown into it (``_core.kill``), so it resumes as soon as the gate opens."""

from __future__ import annotations

from greenlet import getcurrent, greenlet

from theframework import _core

_opened: set[str] = set()
_waiters: dict[str, list[greenlet]] = {}


class _Opened(Exception):
    """Thrown into a waiting greenlet when its gate opens."""


def wait(name: str, timeout: float = 10.0) -> bool:
    """Waits until gate ``name`` is released; False after ``timeout`` seconds."""
    if name in _opened:
        return True
    current = getcurrent()
    _waiters.setdefault(name, []).append(current)
    try:
        _core.sleep(timeout)
    except _Opened:
        return True
    finally:
        waiters = _waiters.get(name, [])
        if current in waiters:
            waiters.remove(current)
    return name in _opened


def release(name: str) -> int:
    """Opens gate ``name`` for good; returns how many greenlets were waiting on it."""
    _opened.add(name)
    waiters = _waiters.pop(name, [])
    for waiter in waiters:
        _core.kill(waiter, _Opened())
    return len(waiters)


_arrived: dict[str, int] = {}


def barrier(name: str, parties: int, timeout: float = 20.0) -> bool:
    """Waits until ``parties`` greenlets have called barrier(name); False after ``timeout``."""
    _arrived[name] = _arrived.get(name, 0) + 1
    if _arrived[name] >= parties:
        release(f"barrier:{name}")
        return True
    return wait(f"barrier:{name}", timeout)
