"""The database benchmark on theframework's own API (bench/database.py): psycopg 3 through a
psycopg_pool ConnectionPool, made cooperative by ``--patch-all`` (psycopg waits on the hub)."""

from __future__ import annotations

import db_common

from theframework import Framework, Request, Response

app = Framework()
pool = db_common.psycopg_pool_unopened()


@app.on_startup
def open_pool() -> None:
    """In the worker, before it reports ready (a pool's threads do not survive a fork);
    open(wait=True) waits on the pool's threads, which startup hooks may do (docs/monkey.md)."""
    pool.open(wait=True)


@app.get("/plaintext")
def plaintext(request: Request, response: Response) -> None:
    response.set_header("Content-Type", "text/plain")
    response.write(db_common.PLAINTEXT)


@app.get("/db")
def single_query(request: Request, response: Response) -> None:
    with pool.connection() as connection:
        row = connection.execute(db_common.SELECT_WORLD, (db_common.random_id(),)).fetchone()
    response.json(db_common.world(row))


@app.get("/queries")
def queries(request: Request, response: Response) -> None:
    count = db_common.query_count(request.query_string)
    with pool.connection() as connection, connection.cursor() as cursor:
        worlds = db_common.read_worlds(cursor, count)
    response.json(worlds)


@app.get("/fortunes")
def fortunes(request: Request, response: Response) -> None:
    with pool.connection() as connection:
        rows = connection.execute(db_common.SELECT_FORTUNES).fetchall()
    response.set_header("Content-Type", "text/html; charset=utf-8")
    response.write(db_common.fortunes_html(db_common.sorted_fortunes(rows)))


@app.get("/updates")
def updates(request: Request, response: Response) -> None:
    count = db_common.query_count(request.query_string)
    with pool.connection() as connection, connection.cursor() as cursor:
        worlds = db_common.update_worlds(cursor, count)
    response.json(worlds)
