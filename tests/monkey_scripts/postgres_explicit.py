"""patch_psycopg() alone (no patch_all): outside a hub the drivers work as before (connect,
query, COPY, notifications, a wait timeout, psycopg2 but for its COPY, a pool used from a plain
thread); inside a
hub 40 greenlets each run pg_sleep(0.5) (psycopg 3 and psycopg2 alternately) at the same time.
Usage: postgres_explicit.py BACKEND DSN"""

from theframework.monkey import patch_psycopg

patch_psycopg()

import io  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

# Patching imports no driver: each is patched when the application imports it.
IMPORTED_BY_PATCH = sorted(
    name for name in ("psycopg", "psycopg2", "psycopg_pool") if name in sys.modules
)
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import greenlet  # noqa: E402
import psycopg  # noqa: E402
import psycopg2  # noqa: E402
import psycopg_pool  # noqa: E402
from common import join, report, spawn_all  # noqa: E402

from theframework import _core  # noqa: E402
from theframework.monkey import green_psycopg  # noqa: E402

DSN = sys.argv[2]
GREENLETS = 40


def outside() -> dict[str, Any]:
    assert not _core.in_hub()
    result: dict[str, Any] = {}
    with psycopg.connect(DSN, autocommit=True) as connection:
        result["psycopg"] = list(connection.execute("SELECT 1").fetchone())
        with connection.cursor().copy(
            "COPY (SELECT n FROM generate_series(1, 300) AS n) TO STDOUT"
        ) as copy:
            result["copy"] = sum(1 for _ in copy.rows())
        connection.execute("LISTEN outside")
        connection.execute("NOTIFY outside, 'outside payload'")
        result["notify"] = next(iter(connection.notifies(timeout=5, stop_after=1))).payload
        started = time.monotonic()
        nothing = list(connection.notifies(timeout=0.2))
        waited = time.monotonic() - started
        result["wait_timeout"] = "ok" if nothing == [] and 0.15 < waited < 5 else waited
    connection2 = psycopg2.connect(DSN)
    cursor = connection2.cursor()
    cursor.execute("SELECT 2")
    result["psycopg2"] = list(cursor.fetchone())
    try:  # psycopg2's rule while a wait callback is set (documented in docs/monkey.md)
        cursor.copy_expert("COPY (SELECT 1) TO STDOUT", io.StringIO())
        result["psycopg2_copy"] = "allowed"
    except psycopg2.ProgrammingError as error:
        result["psycopg2_copy"] = str(error)
    connection2.close()
    pooled: dict[str, Any] = {}

    def use_pool() -> None:
        with (
            psycopg_pool.ConnectionPool(DSN, min_size=1, max_size=2) as pool,
            pool.connection() as connection,
        ):
            pooled["row"] = list(connection.execute("SELECT 3").fetchone())

    thread = threading.Thread(target=use_pool)
    thread.start()
    thread.join(30)
    result["pool"] = pooled.get("row")
    return result


def inside() -> dict[str, Any]:
    running = {"now": 0, "most": 0}

    def sleep(index: int) -> list[Any]:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        try:
            if index % 2:
                connection2 = psycopg2.connect(DSN)
                try:
                    cursor = connection2.cursor()
                    cursor.execute("SELECT 7 FROM pg_sleep(0.5)")
                    return list(cursor.fetchone())
                finally:
                    connection2.close()
            with psycopg.connect(DSN) as connection:
                return list(connection.execute("SELECT 7 FROM pg_sleep(0.5)").fetchone())
        finally:
            running["now"] -= 1

    started = time.monotonic()
    greenlets, results = spawn_all(GREENLETS, sleep)
    join(greenlets, timeout=60)
    elapsed = time.monotonic() - started
    # psycopg's own timeout on the hub: notifies(timeout=) ends after it with nothing.
    with psycopg.connect(DSN, autocommit=True) as connection:
        connection.execute("LISTEN inside")
        started = time.monotonic()
        nothing = list(connection.notifies(timeout=0.2))
        waited = time.monotonic() - started
    return {
        "results": [r if isinstance(r, list) else repr(r) for r in results],
        "elapsed": elapsed,
        "most_running": running["most"],
        "notifies_timeout": "ok" if nothing == [] and 0.15 < waited < 5 else waited,
    }


def interrupted_connects() -> dict[str, Any]:
    """A connection attempt to a server that never answers, interrupted after 0.3 s by a
    TimeoutError thrown in: the interruption comes at once (no query to cancel)."""
    outcome: dict[str, Any] = {}
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dsn = f"host=127.0.0.1 port={silent.getsockname()[1]} user=nobody"
        for name, connect in (("psycopg", psycopg.connect), ("psycopg2", psycopg2.connect)):
            me = greenlet.getcurrent()

            def interrupt(target: Any = me) -> None:
                _core.sleep(0.3)
                _core.kill(target, TimeoutError("request timed out"))

            _core.spawn(interrupt)
            started = time.monotonic()
            try:
                connect(dsn)
                outcome[name] = "connected"
            except TimeoutError as error:
                outcome[name] = [str(error), time.monotonic() - started < 3]
    return outcome


def pool_waiters() -> dict[str, Any]:
    """A one-connection pool: a greenlet killed while waiting for the connection must not be
    handed it later (the next client gets it at once), and a client's timeout is honoured while
    the hub keeps running."""
    ticks = {"count": 0}

    def tick() -> None:
        while True:
            ticks["count"] += 1
            _core.sleep(0.01)

    ticker = _core.spawn(tick)
    result: dict[str, Any] = {}
    with psycopg_pool.ConnectionPool(DSN, min_size=1, max_size=1, timeout=10) as pool:
        holder = pool.getconn()
        waiter = _core.spawn(pool.getconn)
        while pool.get_stats().get("requests_waiting", 0) < 1:  # readiness: it is queued
            _core.sleep(0.005)
        _core.kill(waiter)
        join([waiter])
        pool.putconn(holder)
        started = time.monotonic()
        connection = pool.getconn(timeout=5)
        result["after_kill"] = time.monotonic() - started < 1
        started = time.monotonic()
        ticks_before = ticks["count"]
        try:
            pool.getconn(timeout=0.3)
            result["timeout"] = "got a connection"
        except psycopg_pool.PoolTimeout:
            result["timeout"] = "PoolTimeout"
        result["timeout_elapsed_ok"] = 0.25 < time.monotonic() - started < 5
        result["ticked_meanwhile"] = ticks["count"] - ticks_before > 5
        pool.putconn(connection)
    _core.kill(ticker)
    return result


if __name__ == "__main__":
    outcome: dict[str, Any] = {"imported_by_patch": IMPORTED_BY_PATCH, "outside": outside()}
    outcome["inside"] = _core.Hub(sys.argv[1]).run(inside)
    outcome["pool"] = _core.Hub(sys.argv[1]).run(pool_waiters)
    outcome["interrupted_connects"] = _core.Hub(sys.argv[1]).run(interrupted_connects)
    outcome["patched"] = sorted(green_psycopg.patched_drivers())
    report(outcome)
