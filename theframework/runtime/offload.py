"""Running blocking or CPU-heavy callables off the hub: ``offload(fn, *args, **kwargs)``.

The callable runs on a thread pool (default) or a process pool (``process=True``); only the
calling greenlet is suspended, and the result or the exception comes back to it.

Crossing threads: the hub's ``schedule`` may only be called in the hub's thread, so a completion
in a pool thread wakes its greenlet through an eventfd: the greenlet waits on it with
``_core.wait_readable`` and the future's done-callback (run in the pool or its management thread)
writes to it. A lock and a ``closed`` flag make sure the callback never writes to an eventfd that
was closed (and whose number may have been reused) because the greenlet was killed meanwhile.

Pools are created on first use in each process (a forked child gets fresh ones) and sized by
``configure()``, else by THEFRAMEWORK_OFFLOAD_THREADS / THEFRAMEWORK_OFFLOAD_PROCESSES /
THEFRAMEWORK_OFFLOAD_START_METHOD, else by the defaults below.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from .. import _core
from ..config import env_value

__all__ = ["ExecutorHolder", "configure", "offload", "shutdown", "wait_future"]

T = TypeVar("T")
E = TypeVar("E", bound=Executor)


class _Waker:
    """An eventfd written once from any thread, read by the greenlet waiting for it."""

    __slots__ = ("_closed", "_lock", "fd")

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._lock = threading.Lock()
        self._closed = False

    def notify(self, _future: object = None) -> None:
        """Wakes the waiter; does nothing once closed. Safe from any thread."""
        with self._lock:
            if not self._closed:
                os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            _core.close(self.fd)


def wait_future(future: Future[T]) -> T:
    """The result of ``future`` (its exception raised). Inside a hub only the calling greenlet
    waits; elsewhere the thread blocks. If the greenlet is killed while it waits, the future is
    cancelled when it has not started yet (a running callable cannot be interrupted)."""
    if future.done() or not _core.in_hub():
        return future.result()
    waker = _Waker()
    try:
        future.add_done_callback(waker.notify)
        try:
            _core.wait_readable(waker.fd)
        except BaseException:
            future.cancel()
            raise
    finally:
        waker.close()
    return future.result()


class ExecutorHolder(Generic[E]):
    """One executor per process, created on first use by ``factory(size)`` where size comes from
    ``size()``; a forked child (different pid) gets a fresh one instead of the parent's, whose
    threads do not exist in the child."""

    def __init__(self, factory: Callable[[int], E], size: Callable[[], int]) -> None:
        self._factory = factory
        self._size = size
        self._lock = threading.Lock()
        self._executor: E | None = None
        self._pid = 0

    def get(self) -> E:
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor = self._factory(self._size())
                self._pid = os.getpid()
            return self._executor

    def reset(self, *, wait: bool = False) -> None:
        """Shuts the current executor down (if this process created it); the next get() makes a
        new one."""
        with self._lock:
            executor, self._executor = self._executor, None
            owned = self._pid == os.getpid()
        if executor is not None and owned:
            executor.shutdown(wait=wait, cancel_futures=True)


class _Settings:
    threads: int | None = None
    processes: int | None = None
    start_method: str | None = None


def _thread_count() -> int:
    if _Settings.threads is not None:
        return _Settings.threads
    threads: int | None = env_value("offload_threads")
    return threads if threads is not None else min(32, (os.cpu_count() or 1) + 4)


def _process_count() -> int:
    if _Settings.processes is not None:
        return _Settings.processes
    processes: int | None = env_value("offload_processes")
    return processes if processes is not None else os.cpu_count() or 1


def _start_method() -> str:
    if _Settings.start_method is not None:
        return _Settings.start_method
    method: str | None = env_value("offload_start_method")
    return method or "spawn"


def _make_thread_pool(size: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="theframework-offload")


def _make_process_pool(size: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context(_start_method())
    return ProcessPoolExecutor(max_workers=size, mp_context=context)


_thread_pool = ExecutorHolder(_make_thread_pool, _thread_count)
_process_pool = ExecutorHolder(_make_process_pool, _process_count)


def configure(
    *, threads: int | None = None, processes: int | None = None, start_method: str | None = None
) -> None:
    """Sets the pool sizes (and the multiprocessing start method of the process pool: "spawn",
    "forkserver" or "fork"; default "spawn"). Pools already created are shut down (without
    waiting for their running calls) and recreated with the new sizes on next use."""
    for name, value in (("threads", threads), ("processes", processes)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if start_method is not None and start_method not in multiprocessing.get_all_start_methods():
        raise ValueError(f"unknown start method {start_method!r}")
    if threads is not None:
        _Settings.threads = threads
        _thread_pool.reset()
    if processes is not None or start_method is not None:
        _Settings.processes = processes if processes is not None else _Settings.processes
        _Settings.start_method = (
            start_method if start_method is not None else _Settings.start_method
        )
        _process_pool.reset()


def shutdown(*, wait: bool = True) -> None:
    """Shuts both pools down (they are recreated on next use)."""
    _thread_pool.reset(wait=wait)
    _process_pool.reset(wait=wait)


def offload(fn: Callable[..., T], /, *args: Any, process: bool = False, **kwargs: Any) -> T:
    """Runs ``fn(*args, **kwargs)`` on the thread pool (on the process pool when ``process``:
    then fn, its arguments and its result must be picklable) and returns its result or raises
    its exception. Inside a hub only the calling greenlet is suspended; outside one the calling
    thread waits."""
    pool: Executor = _process_pool.get() if process else _thread_pool.get()
    return wait_future(pool.submit(fn, *args, **kwargs))
