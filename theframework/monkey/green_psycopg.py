"""Cooperative PostgreSQL: psycopg 3 (its C and pure-Python implementations), psycopg_pool and
psycopg2 wait on the hub for libpq's socket instead of blocking the worker.

libpq does the protocol; the drivers only ask us to wait until its socket is readable or
writable, through one hook each:

- psycopg 3 drives every operation as a generator that yields what it waits for; it hands the
  generator to ``psycopg.waiting.wait`` / ``wait_conn`` (connect, cancel) and, for everything on
  an open connection (execute, fetch, COPY, notifies, server-side cursors, pipelines), to
  ``Connection.wait``. Those three are replaced by functions that drive the generator on the hub.
  A greenlet interrupted while its query runs (killed, or thrown a timeout) sends the server a
  cancel request and waits (at most 5 s) for the query to end before the interruption goes on,
  as psycopg itself does on Ctrl-C.
- psycopg_pool hands connections to waiting clients through a condition variable; its
  ``WaitingClient`` is replaced by one that waits on an eventfd on the hub (the pool's own
  threads, which open connections, may be the ones handing them over).
- psycopg2 has the official hook ``psycopg2.extensions.set_wait_callback``.

Outside a running hub (plain threads, the pool's threads, the parent process) every replaced
function calls the original: the drivers behave unchanged there.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import time
from collections.abc import Callable, Generator
from types import ModuleType
from typing import Any, TypeVar

from .. import _core
from ._imports import when_imported
from ._wait import deadline_after, remaining, wait_fd

__all__ = ["CANCEL_TIMEOUT", "patch_psycopg", "patched_drivers"]

CANCEL_TIMEOUT = 5.0
"""Seconds an interrupted query gets to end after its cancel request; beyond, the connection
is closed (its state would be unknown)."""

_logger = logging.getLogger("theframework.monkey")
_patched: set[str] = set()

_R = TypeVar("_R")

# psycopg's Wait / Ready values (selectors.EVENT_READ = 1, EVENT_WRITE = 2).
_READ = 1
_WRITE = 2


def _wait_ready(fileno: int, wanted: int, deadline: float | None) -> int:
    """Waits on the hub until ``fileno`` is ready for ``wanted`` (1 read, 2 write, 3 both);
    returns what it is ready for. TimeoutError once ``deadline`` has passed."""
    if wanted == _READ:
        _core.wait_readable(fileno, remaining(deadline))
        return _READ
    if wanted == _WRITE:
        _core.wait_writable(fileno, remaining(deadline))
        return _WRITE
    readable, writable = _core.wait_fds([fileno], [fileno], remaining(deadline))
    if not readable and not writable:
        raise TimeoutError("timed out")
    return (_READ if readable else 0) | (_WRITE if writable else 0)


def _expired(deadline: float | None) -> bool:
    """Whether ``deadline`` has passed, give or take the hub timer's rounding (1 ms): tells our
    own timeout from a TimeoutError thrown into the greenlet."""
    return deadline is not None and time.monotonic() >= deadline - 0.001


# --- psycopg 3 --------------------------------------------------------------------------------


def _drive(
    generator: Generator[Any, Any, _R],
    fileno: int | None,
    timeout: float | None,
    on_interrupt: Callable[[], None] | None = None,
) -> _R:
    """Consumes a psycopg generator on the hub: it yields a Wait (or, with ``fileno`` None, an
    (fd, Wait) pair), is sent the Ready state, and returns the result. ``timeout`` raises
    psycopg's ``_WaitTimeout`` as psycopg's own wait functions do. Whatever interrupts a wait
    (a kill, an exception thrown in) runs ``on_interrupt`` first, then propagates.

    Runs for every query: nothing is imported or built on the way (the Ready state is sent as
    the plain int psycopg's own wait functions send). Importing psycopg.errors and building
    Ready(...) here on every call cost 93,300 instructions per simple query against 78,100
    without (callgrind, client side)."""
    deadline = deadline_after(timeout)
    try:
        wanted = next(generator)
        while True:
            fd, state = wanted if fileno is None else (fileno, wanted)
            try:
                ready = _wait_ready(fd, int(state), deadline)
            except BaseException as error:
                if isinstance(error, TimeoutError) and _expired(deadline):
                    from psycopg import errors

                    # psycopg checks its deadline after resuming the generator once.
                    generator.send(0)  # Ready.NONE
                    raise errors._WaitTimeout("wait timeout expired") from None
                # A kill or an exception thrown in: the caller will not see the result.
                if on_interrupt is not None:
                    on_interrupt()
                raise
            wanted = generator.send(ready)
    except StopIteration as stop:
        result: _R = stop.value
        return result


def _cancel_and_finish(connection: Any, generator: Generator[Any, Any, Any]) -> None:
    """After an interruption while ``connection`` runs a query: asks the server to cancel it
    and consumes the rest of ``generator`` (normally a QueryCanceled) so the connection is
    usable again; closes the connection when that does not happen within CANCEL_TIMEOUT."""
    from psycopg import errors, pq

    if connection.closed or connection.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    try:
        connection.cancel_safe(timeout=CANCEL_TIMEOUT)
        _drive(generator, connection.pgconn.socket, CANCEL_TIMEOUT)
    except errors.QueryCanceled:
        pass  # what the cancel asked for
    except Exception as error:
        _logger.warning("query not ended after cancellation (%s): closing the connection", error)
        connection.pgconn.finish()  # not close(): a pool's close_returns would take it back
    except BaseException:
        connection.pgconn.finish()  # interrupted again: the connection's state is unknown
        raise


def _psycopg3_supported() -> bool:
    """Whether this psycopg has the wait interface patched here: wait(gen, fileno, interval,
    timeout), wait_conn(gen, interval, timeout), Connection.wait(gen, interval, timeout), where
    timeout is a deadline (psycopg 3.3 has them; older versions differ)."""
    import psycopg
    from psycopg import waiting

    wanted = {
        psycopg.Connection.wait: {"gen", "interval", "timeout"},
        waiting.wait: {"gen", "fileno", "interval", "timeout"},
        getattr(waiting, "wait_conn", None): {"gen", "interval", "timeout"},
    }
    if all(
        callable(function) and names <= set(inspect.signature(function).parameters)
        for function, names in wanted.items()
    ):
        return True
    _logger.warning(
        "psycopg %s has an unknown wait interface: not patched, its queries block the worker",
        psycopg.__version__,
    )
    return False


def _patch_psycopg3() -> None:
    import psycopg
    from psycopg import waiting

    if not _psycopg3_supported():
        return
    original_wait = waiting.wait
    original_wait_conn = waiting.wait_conn
    original_connection_wait = psycopg.Connection.wait

    def wait(
        gen: Generator[Any, Any, _R],
        fileno: int,
        interval: float = 0.0,
        timeout: float | None = None,
    ) -> _R:
        """psycopg.waiting.wait on the hub (the original outside one)."""
        if not _core.in_hub():
            return original_wait(gen, fileno, interval, timeout)
        return _drive(gen, fileno, timeout)

    def wait_conn(
        gen: Generator[Any, Any, _R], interval: float = 0.0, timeout: float | None = None
    ) -> _R:
        """psycopg.waiting.wait_conn on the hub (the original outside one)."""
        if not _core.in_hub():
            return original_wait_conn(gen, interval, timeout)
        return _drive(gen, None, timeout)

    def connection_wait(
        self: Any,
        gen: Generator[Any, Any, _R],
        interval: float = 0.1,
        timeout: float | None = None,
    ) -> _R:
        """Connection.wait on the hub: an interrupted query is cancelled on the server."""
        if not _core.in_hub():
            result: _R = original_connection_wait(self, gen, interval, timeout)
            return result
        return _drive(
            gen, self.pgconn.socket, timeout, on_interrupt=lambda: _cancel_and_finish(self, gen)
        )

    waiting.wait = wait
    waiting.wait_conn = wait_conn
    psycopg.Connection.wait = connection_wait  # type: ignore[method-assign]
    _patched.add("psycopg")


class _GreenWaiting:
    """What psycopg_pool's WaitingClient (a client waiting for a pooled connection) becomes:
    inside a hub it waits on an eventfd that set() and fail() write, from a greenlet or from one
    of the pool's threads. Mixed in before the original class by _patch_psycopg_pool."""

    # The original's attributes (slots), and the eventfd of a waiting greenlet.
    conn: Any
    error: BaseException | None
    _cond: Any
    _wakeup: int | None

    def __init__(self) -> None:
        super().__init__()
        self._wakeup = None

    def wait(self, timeout: float) -> Any:
        if not _core.in_hub():
            return super().wait(timeout)  # type: ignore[misc]
        wakeup = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            with self._cond:
                self._wakeup = wakeup
            self._wait_on(wakeup, timeout)
        finally:
            with self._cond:
                self._wakeup = None
                os.close(wakeup)
        if self.error:
            raise self.error
        return self.conn

    def _wait_on(self, wakeup: int, timeout: float) -> None:
        from psycopg_pool import PoolTimeout

        deadline = deadline_after(timeout)
        while True:
            with self._cond:
                if self.conn or self.error:
                    return
            try:
                _core.wait_readable(wakeup, remaining(deadline))
            except BaseException as error:
                if not (isinstance(error, TimeoutError) and _expired(deadline)):
                    self._refuse(error)  # no connection for a waiter that is gone
                    raise
                self._refuse(PoolTimeout(f"couldn't get a connection after {timeout:.2f} sec"))

    def _refuse(self, error: BaseException) -> None:
        with self._cond:
            if not (self.conn or self.error):
                self.error = error

    def _wake(self) -> None:
        if self._wakeup is not None:
            os.eventfd_write(self._wakeup, 1)

    def set(self, conn: Any) -> bool:
        with self._cond:
            accepted: bool = super().set(conn)  # type: ignore[misc]
            self._wake()
            return accepted

    def fail(self, error: Exception) -> bool:
        with self._cond:
            accepted: bool = super().fail(error)  # type: ignore[misc]
            self._wake()
            return accepted


def _patch_psycopg_pool() -> None:
    from psycopg_pool import pool

    class WaitingClient(_GreenWaiting, pool.WaitingClient[_R]):  # type: ignore[type-var]
        """psycopg_pool's WaitingClient, waiting on the hub inside one."""

    WaitingClient.__qualname__ = "WaitingClient"
    pool.WaitingClient = WaitingClient  # type: ignore[misc]
    _patched.add("psycopg_pool")


# --- psycopg2 ---------------------------------------------------------------------------------


def _wait_socket(fileno: int, write: bool, deadline: float | None) -> None:
    """Waits for ``fileno`` on the hub (what is thrown in propagates as it is), or with the
    real poll() outside one."""
    if _core.in_hub():
        _wait_ready(fileno, _WRITE if write else _READ, deadline)
    else:
        wait_fd(fileno, write=write, deadline=deadline)


def _psycopg2_wait(connection: Any) -> None:
    """psycopg2's wait callback: polls the connection until the operation is done, waiting for
    its socket on the hub (with the real poll() outside one). An interruption sends the server
    a cancel request and lets the query end (QueryCanceledError) before it propagates."""
    import psycopg2
    from psycopg2 import extensions

    interruption: BaseException | None = None
    deadline: float | None = None
    while True:
        try:
            state = connection.poll()
        except psycopg2.Error as error:
            if interruption is None:
                raise
            raise interruption from error  # normally QueryCanceledError, what the cancel asked
        if state == extensions.POLL_OK:
            if interruption is not None:
                raise interruption
            return
        if state not in (extensions.POLL_READ, extensions.POLL_WRITE):
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        try:
            _wait_socket(connection.fileno(), state == extensions.POLL_WRITE, deadline)
        except BaseException as error:
            if interruption is not None:  # interrupted again, or the cancel did not take
                connection.close()
                raise interruption from error
            if connection.status not in (extensions.STATUS_READY, extensions.STATUS_BEGIN):
                raise  # still connecting: no query to cancel (psycopg2 closes the connection)
            interruption = error
            deadline = deadline_after(CANCEL_TIMEOUT)
            with contextlib.suppress(psycopg2.Error):
                connection.cancel()


def _patch_psycopg2() -> None:
    from psycopg2 import extensions

    extensions.set_wait_callback(_psycopg2_wait)
    _patched.add("psycopg2")


# --- entry point ------------------------------------------------------------------------------

_DRIVERS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("psycopg", _patch_psycopg3),
    ("psycopg_pool", _patch_psycopg_pool),
    ("psycopg2", _patch_psycopg2),
)


def _patcher(name: str, patch: Callable[[], None]) -> Callable[[ModuleType], None]:
    """The import callback patching driver ``name`` (each patch records itself in _patched)."""

    def patch_once(_module: ModuleType) -> None:
        if name not in _patched:
            patch()

    return patch_once


def patch_psycopg() -> None:
    """Makes psycopg 3, psycopg_pool and psycopg2 wait on the hub: those already imported at
    once, the others right after their first import (nothing is imported here). Process-wide,
    cannot be undone; patching twice is harmless."""
    for name, patch in _DRIVERS:
        when_imported(name, _patcher(name, patch))


def patched_drivers() -> frozenset[str]:
    """The drivers patch_psycopg() has patched in this process so far (a driver is patched
    when it is imported)."""
    return frozenset(_patched)
