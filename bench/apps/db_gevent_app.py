"""The database benchmark as a WSGI application for gunicorn -k gevent (bench/database.py):
psycopg2 made cooperative by psycogreen, connections kept in a fixed pool (a gevent queue; the
first request of the worker fills it)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import db_common
import gevent.queue
import psycopg2
from psycogreen.gevent import patch_psycopg

patch_psycopg()

StartResponse = Callable[..., Any]
_pool: gevent.queue.Queue[Any] | None = None


@contextmanager
def connection() -> Iterator[Any]:
    global _pool
    if _pool is None:
        _pool = gevent.queue.Queue()
        for _ in range(db_common.POOL_SIZE):
            conn = psycopg2.connect(db_common.DATABASE_URL)
            conn.autocommit = True
            _pool.put(conn)
    conn = _pool.get()
    try:
        yield conn
    finally:
        _pool.put(conn)


def single_query(query_string: str) -> tuple[str, bytes]:
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(db_common.SELECT_WORLD, (db_common.random_id(),))
        row = cursor.fetchone()
    return "application/json", db_common.json_bytes(db_common.world(row))


def queries(query_string: str) -> tuple[str, bytes]:
    count = db_common.query_count(query_string)
    with connection() as conn, conn.cursor() as cursor:
        worlds = db_common.read_worlds(cursor, count)
    return "application/json", db_common.json_bytes(worlds)


def fortunes(query_string: str) -> tuple[str, bytes]:
    with connection() as conn, conn.cursor() as cursor:
        cursor.execute(db_common.SELECT_FORTUNES)
        rows = cursor.fetchall()
    body = db_common.fortunes_html(db_common.sorted_fortunes(rows))
    return "text/html; charset=utf-8", body


def updates(query_string: str) -> tuple[str, bytes]:
    count = db_common.query_count(query_string)
    with connection() as conn, conn.cursor() as cursor:
        worlds = db_common.update_worlds(cursor, count)
    return "application/json", db_common.json_bytes(worlds)


def plaintext(query_string: str) -> tuple[str, bytes]:
    return "text/plain", db_common.PLAINTEXT


ROUTES: dict[str, Callable[[str], tuple[str, bytes]]] = {
    "/plaintext": plaintext,
    "/db": single_query,
    "/queries": queries,
    "/fortunes": fortunes,
    "/updates": updates,
}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    route = ROUTES.get(environ["PATH_INFO"])
    if route is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    content_type, body = route(environ.get("QUERY_STRING", ""))
    start_response("200 OK", [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]
