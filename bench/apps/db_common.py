"""What every database benchmark app shares (bench/database.py): TechEmpower's test rules for the
``World`` and ``Fortune`` tables, written once in plain Python so that both the project's .venv and
bench/.venv-peers can import it.

- ``/db``: one random ``World`` row as ``{"id": ..., "randomNumber": ...}``.
- ``/queries?queries=N``: N rows, one query each; N is clamped to 1..500 (1 when missing or not
  a number).
- ``/fortunes``: every ``Fortune`` row plus one added at request time, sorted by message,
  HTML-escaped, in an HTML table.
- ``/updates?queries=N``: N rows read one by one, each given a new random number, written back in
  one batched statement (sorted by id, so that concurrent batches take their row locks in the
  same order).
"""

from __future__ import annotations

import html
import json
import os
import random
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

PLAINTEXT = b"Hello, World!"  # bench/run.py's readiness check asks GET /plaintext for it
ROWS = 10_000
POOL_SIZE = 16  # connections per server, the same for every server
ADDITIONAL_FORTUNE = "Additional fortune added at request time."

# The connection URL (libpq and asyncpg both read it), set by bench/database.py.
DATABASE_URL = os.environ.get("DATABASE_URL", "")

# SQL with psycopg's placeholders; asyncpg's ($1, $2) are made from them by ``numbered``.
SELECT_WORLD = "SELECT id, randomnumber FROM world WHERE id = %s"
SELECT_FORTUNES = "SELECT id, message FROM fortune"


def numbered(sql: str) -> str:
    """``sql`` with its ``%s`` placeholders turned into ``$1``, ``$2``, ... (asyncpg)."""
    parts = sql.split("%s")
    out = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        out.append(f"${index}{part}")
    return "".join(out)


def update_sql(count: int) -> str:
    """One UPDATE for ``count`` rows; its parameters are id, randomNumber pairs (``flat_pairs``)."""
    values = ", ".join(["(%s::int, %s::int)"] * count)
    return (
        f"UPDATE world SET randomnumber = new.randomnumber FROM (VALUES {values}) "
        "AS new (id, randomnumber) WHERE world.id = new.id"
    )


def flat_pairs(worlds: Iterable[dict[str, int]]) -> list[int]:
    """id, randomNumber, id, randomNumber, ... sorted by id (the update's parameters)."""
    flat: list[int] = []
    for world in sorted(worlds, key=lambda row: row["id"]):
        flat += (world["id"], world["randomNumber"])
    return flat


def random_id() -> int:
    return random.randint(1, ROWS)


def query_count(query_string: str | bytes) -> int:
    """The ``queries`` parameter clamped to 1..500 (1 when absent or not an integer)."""
    if isinstance(query_string, bytes):
        query_string = query_string.decode("latin-1")
    values = parse_qs(query_string).get("queries")
    try:
        count = int(values[0]) if values else 1
    except ValueError:
        return 1
    return min(max(count, 1), 500)


def world(row: Any) -> dict[str, int]:
    """An (id, randomnumber) row as TechEmpower's JSON object."""
    identifier, number = row
    return {"id": identifier, "randomNumber": number}


def json_bytes(value: object) -> bytes:
    return json.dumps(value).encode()


def sorted_fortunes(rows: Iterable[Any]) -> list[tuple[int, str]]:
    """The (id, message) rows plus the request-time fortune, sorted by message."""
    fortunes = [(identifier, message) for identifier, message in rows]
    fortunes.append((0, ADDITIONAL_FORTUNE))
    fortunes.sort(key=lambda fortune: fortune[1])
    return fortunes


FORTUNES_HEAD = (
    "<!DOCTYPE html><html><head><title>Fortunes</title></head><body><table>"
    "<tr><th>id</th><th>message</th></tr>"
)
FORTUNES_TAIL = "</table></body></html>"


def fortunes_html(fortunes: Iterable[tuple[int, str]]) -> bytes:
    """TechEmpower's fortunes page: one escaped table row per fortune."""
    rows = "".join(
        f"<tr><td>{identifier}</td><td>{html.escape(message)}</td></tr>"
        for identifier, message in fortunes
    )
    return (FORTUNES_HEAD + rows + FORTUNES_TAIL).encode()


def read_worlds(cursor: Any, count: int) -> list[dict[str, int]]:
    """``count`` random World rows, one query each, through a DB-API ``cursor`` (psycopg 3 or
    psycopg2)."""
    worlds = []
    for _ in range(count):
        cursor.execute(SELECT_WORLD, (random_id(),))
        worlds.append(world(cursor.fetchone()))
    return worlds


def update_worlds(cursor: Any, count: int) -> list[dict[str, int]]:
    """TechEmpower's updates through a DB-API ``cursor``: ``count`` random World rows read one
    query each, given new random numbers, written back in one statement; the updated rows."""
    worlds = read_worlds(cursor, count)
    for row in worlds:
        row["randomNumber"] = random_id()
    cursor.execute(update_sql(count), flat_pairs(worlds))
    return worlds


def psycopg_pool_unopened() -> Any:
    """Our apps' psycopg_pool.ConnectionPool: POOL_SIZE autocommit connections to
    DATABASE_URL, not opened yet (the app opens it where it may wait)."""
    import psycopg_pool  # the asyncpg and gevent apps import this module without psycopg

    return psycopg_pool.ConnectionPool(
        DATABASE_URL,
        min_size=POOL_SIZE,
        max_size=POOL_SIZE,
        kwargs={"autocommit": True},
        open=False,
    )
