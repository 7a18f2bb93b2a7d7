"""PostgreSQL through psycopg 3, psycopg_pool and psycopg2 in handlers, served under
--patch-all by tests/test_monkey_postgres.py. The server to use comes from PG_TEST_DSN.

/hello answers at once with how many handlers are inside a database call (``in_flight``) and
how many wait for a notification (``listening``): an answer with in_flight > 0 was given while
queries were running. ``?driver=`` picks psycopg (default), pool or psycopg2.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import greenlet
import psycopg
import psycopg2
import psycopg_pool

from theframework import Framework, Request, Response, _core
from theframework.monkey import green_psycopg, is_patched

DSN = os.environ["PG_TEST_DSN"]
app = Framework()
counters = {"in_flight": 0, "listening": 0}
pool = psycopg_pool.ConnectionPool(DSN, min_size=2, max_size=40, open=False, timeout=30)


@contextlib.contextmanager
def counted(name: str) -> Iterator[None]:
    counters[name] += 1
    try:
        yield
    finally:
        counters[name] -= 1


@contextlib.contextmanager
def connection(driver: str) -> Iterator[Any]:
    """A connection of ``driver`` (closed, or returned to the pool, afterwards)."""
    if driver == "psycopg2":
        connection2 = psycopg2.connect(DSN)
        try:
            yield connection2
        finally:
            connection2.close()
    elif driver == "pool":
        if pool.closed:
            pool.open(wait=False)
        with pool.connection() as pooled:
            yield pooled
    else:
        with psycopg.connect(DSN) as connection3:
            yield connection3


def query(driver: str, sql: str, *parameters: Any) -> tuple[Any, ...]:
    with connection(driver) as conn:
        cursor = conn.cursor()
        cursor.execute(sql, parameters or None)
        row: tuple[Any, ...] = cursor.fetchone()
        if driver == "psycopg2":
            conn.commit()
        return row


@app.get("/hello")
def hello(request: Request, response: Response) -> None:
    response.json(counters)


@app.get("/patched")
def patched(request: Request, response: Response) -> None:
    response.json(
        {
            "psycopg": is_patched("psycopg"),
            "drivers": sorted(green_psycopg.patched_drivers()),
            "implementation": psycopg.pq.__impl__,
        }
    )


@app.get("/sleep")
def sleep(request: Request, response: Response) -> None:
    """pg_sleep(seconds); answers the backend pid that ran it."""
    driver = request.query_params.get("driver") or "psycopg"
    seconds = float(request.query_params.get("seconds") or "0.5")
    with counted("in_flight"):
        row = query(driver, "SELECT pg_backend_pid(), pg_sleep(%s)", seconds)
    response.write(str(row[0]))


@app.get("/copy")
def copy(request: Request, response: Response) -> None:
    """COPY FROM STDIN of N rows into a temporary table, then COPY TO STDOUT of them back."""
    rows = int(request.query_params.get("rows") or "1000")
    with connection("psycopg") as conn, counted("in_flight"):
        conn.execute("CREATE TEMPORARY TABLE items (id int, name text)")
        with conn.cursor().copy("COPY items (id, name) FROM STDIN") as copy_in:
            for index in range(rows):
                copy_in.write_row((index, f"item {index}"))
        total = 0
        count = 0
        with conn.cursor().copy("COPY items (id, name) TO STDOUT") as copy_out:
            for row in copy_out.rows():
                total += int(row[0])
                count += 1
    response.json({"count": count, "total": total})


@app.get("/server_cursor")
def server_cursor(request: Request, response: Response) -> None:
    """A named (server-side) cursor over generate_series, fetched 100 rows at a time."""
    rows = int(request.query_params.get("rows") or "10000")
    driver = request.query_params.get("driver") or "psycopg"
    with connection(driver) as conn, counted("in_flight"):
        cursor = conn.cursor(name="series")
        cursor.itersize = 100
        cursor.execute("SELECT n, pg_sleep(0) FROM generate_series(1, %s) AS n", (rows,))
        total = sum(row[0] for row in cursor)
        cursor.close()
        conn.commit()
    response.json({"total": total})


@app.get("/listen")
def listen(request: Request, response: Response) -> None:
    """LISTEN on ``channel`` and answer the payload of the first notification."""
    channel = request.query_params["channel"]
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f"LISTEN {channel}")
        with counted("listening"):
            for notification in conn.notifies(timeout=30, stop_after=1):
                response.write(notification.payload)
                return
    response.set_status(504)


def throw_after(seconds: float, target: Any, error: BaseException) -> Any:
    """A greenlet throwing ``error`` into ``target`` after ``seconds``: a request timeout."""

    def fire() -> None:
        _core.sleep(seconds)
        if not target.dead:
            _core.kill(target, error)

    return _core.spawn(fire)


@app.get("/cancel")
def cancel(request: Request, response: Response) -> None:
    """Runs pg_sleep(60) tagged with ``tag`` and interrupts it after 0.3 s: mode=timeout throws
    TimeoutError into this handler; mode=kill runs the query in a child greenlet and kills it
    (GreenletExit). Then checks that the same connection still works."""
    driver = request.query_params.get("driver") or "psycopg"
    tag = request.query_params["tag"]
    mode = request.query_params.get("mode") or "timeout"
    sql = f"SELECT pg_sleep(60) /* {tag} */"
    started = time.monotonic()
    outcome = "finished"
    with connection(driver) as conn:
        cursor = conn.cursor()

        def run_query() -> None:
            cursor.execute(sql)

        if mode == "timeout":
            watchdog = throw_after(0.3, greenlet.getcurrent(), TimeoutError("request timed out"))
            try:
                run_query()
            except TimeoutError as error:
                outcome = f"TimeoutError: {error}"
            _core.kill(watchdog)
        else:
            child = _core.spawn(run_query)
            _core.sleep(0.3)
            _core.kill(child)
            wait_dead(child)
            outcome = "killed"
        elapsed = time.monotonic() - started
        usable = conn_usable(driver, conn)
    response.json({"outcome": outcome, "elapsed": elapsed, "usable": usable})


def wait_dead(child: Any) -> None:
    while not child.dead:
        _core.sleep(0.01)


def conn_usable(driver: str, conn: Any) -> bool:
    if conn.closed:
        return False
    conn.rollback()
    cursor = conn.cursor()
    cursor.execute("SELECT 41 + 1")
    return bool(cursor.fetchone()[0] == 42)


@app.get("/statement_timeout")
def statement_timeout(request: Request, response: Response) -> None:
    """pg_sleep(30) under statement_timeout = 200 ms: the server cancels it."""
    driver = request.query_params.get("driver") or "psycopg"
    started = time.monotonic()
    error_name = "none"
    with connection(driver) as conn:
        cursor = conn.cursor()
        cursor.execute("SET statement_timeout = 200")
        try:
            cursor.execute("SELECT pg_sleep(30)")
        except (psycopg.errors.QueryCanceled, psycopg2.errors.QueryCanceled) as error:
            error_name = type(error).__name__
        usable = conn_usable(driver, conn)
    response.json({"error": error_name, "elapsed": time.monotonic() - started, "usable": usable})


@app.get("/connect_timeout")
def connect_timeout(request: Request, response: Response) -> None:
    """Connects (psycopg 3) to an address that never answers, with connect_timeout=1."""
    host = request.query_params["host"]
    port = request.query_params["port"]
    started = time.monotonic()
    try:
        with counted("in_flight"):
            psycopg.connect(f"host={host} port={port} connect_timeout=1 user=postgres")
        error_name = "none"
    except psycopg.OperationalError as error:
        error_name = type(error).__name__ + ": " + str(error).splitlines()[0]
    response.json({"error": error_name, "elapsed": time.monotonic() - started})
